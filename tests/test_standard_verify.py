"""The Standard Webhooks adapter as a pure function: headers, body, secrets and `now` in."""

from __future__ import annotations

import base64
import hmac
import json

import pytest

from processors.config import load_settings
from receiver.errors import BadRequest, ReceiverError, Unauthorized
from receiver.vendors.base import IncomingRequest, parse_json
from receiver.vendors.standard import StandardAdapter
from tests.support import OLD_SECRET, SECRET, sign

NOW = 1_800_000_000
BODY = b'{"type": "job.completed", "data": {"job_id": "42"}}'


def adapter(secret: str = SECRET) -> StandardAdapter:
    settings = load_settings(
        {"LABELHOOK_SOURCES": "acme", "LABELHOOK_ACME_VENDOR": "standard", "LABELHOOK_ACME_SECRET": secret}
    )
    return StandardAdapter(settings.sources["acme"])


def request(headers: dict[str, str], body: bytes = BODY) -> IncomingRequest:
    return IncomingRequest({k.lower(): v for k, v in headers.items()}, {}, body)


def test_valid_signature_gives_a_callback_keyed_on_webhook_id() -> None:
    cb = adapter().verify(request(sign(BODY, "msg_1", timestamp=NOW)), now=NOW)
    assert (cb.dedupe_key, cb.job_id, cb.project, cb.enqueue) == ("acme:msg_1", "msg_1", "acme", True)


def test_any_of_several_signatures_and_any_of_several_keys_may_match() -> None:
    old = sign(BODY, "msg_1", secret=OLD_SECRET, timestamp=NOW)
    headers = dict(old, **{"webhook-signature": "v1,bm90LWl0 v2,abc " + old["webhook-signature"]})
    assert adapter(f"{SECRET},{OLD_SECRET}").verify(request(headers), NOW).job_id == "msg_1"


def test_signature_from_a_rotated_out_key_is_refused() -> None:
    with pytest.raises(Unauthorized) as info:
        adapter(SECRET).verify(request(sign(BODY, "msg_1", secret=OLD_SECRET, timestamp=NOW)), NOW)
    assert info.value.code == "invalid_signature"


@pytest.mark.parametrize("skew", [-301, 301, -600])
def test_timestamps_outside_five_minutes_are_stale(skew: int) -> None:
    with pytest.raises(Unauthorized) as info:
        adapter().verify(request(sign(BODY, "m", timestamp=NOW + skew)), NOW)
    assert info.value.code == "stale_timestamp"


@pytest.mark.parametrize("skew", [-299, 0, 299])
def test_timestamps_inside_the_window_pass(skew: int) -> None:
    assert adapter().verify(request(sign(BODY, "m", timestamp=NOW + skew)), NOW)


def test_body_tampering_breaks_the_signature() -> None:
    with pytest.raises(Unauthorized):
        adapter().verify(request(sign(BODY, "m", timestamp=NOW), BODY.replace(b"42", b"43")), NOW)


def test_webhook_id_is_part_of_what_is_signed() -> None:
    headers = sign(BODY, "m1", timestamp=NOW)
    headers["webhook-id"] = "m2"
    with pytest.raises(Unauthorized):
        adapter().verify(request(headers), NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers_are_401(missing: str) -> None:
    headers = sign(BODY, "m", timestamp=NOW)
    del headers[missing]
    with pytest.raises(Unauthorized) as info:
        adapter().verify(request(headers), NOW)
    assert info.value.code == "missing_signature"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("webhook-signature", "garbage"),
        ("webhook-signature", "v1,"),
        ("webhook-signature", "v1,!!!not-base64!!!"),
        ("webhook-signature", "v1,dG9vLXNob3J0"),
        ("webhook-signature", "v2," + base64.b64encode(b"x" * 32).decode()),
        ("webhook-timestamp", "yesterday"),
        ("webhook-timestamp", "1.5e9"),
        ("webhook-id", "x" * 300),
    ],
)
def test_garbled_headers_are_400_never_an_exception(header: str, value: str) -> None:
    headers = sign(BODY, "m", timestamp=NOW)
    headers[header] = value
    with pytest.raises(BadRequest):
        adapter().verify(request(headers), NOW)


def test_signed_body_that_is_not_json_is_malformed_not_unauthorized() -> None:
    body = b"this is not json"
    with pytest.raises(BadRequest) as info:
        adapter().verify(request(sign(body, "m", timestamp=NOW), body), NOW)
    assert info.value.code == "malformed_body"


def test_unsigned_non_json_body_is_unauthorized_first() -> None:
    headers = sign(BODY, "m", timestamp=NOW)
    with pytest.raises(Unauthorized):
        adapter().verify(request(headers, b"not json"), NOW)


def test_non_utf8_body_is_400_when_signed_and_401_when_not() -> None:
    body = b"\xff\xfe{}"
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signature = base64.b64encode(hmac.digest(key, b"m.%d.%s" % (NOW, body), "sha256")).decode()
    signed = {"webhook-id": "m", "webhook-timestamp": str(NOW), "webhook-signature": f"v1,{signature}"}
    with pytest.raises(ReceiverError) as info:
        adapter().verify(request(signed, body), NOW)
    assert info.value.status_code == 400
    with pytest.raises(Unauthorized):
        adapter().verify(request(sign(BODY, "m", timestamp=NOW), body), NOW)


def test_deeply_nested_json_is_refused_cheaply() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(BadRequest):
        adapter().verify(request(sign(body, "m", timestamp=NOW), body), NOW)


def test_svix_header_names_are_accepted_too() -> None:
    signed = sign(BODY, "msg_svix", timestamp=NOW)
    svix = {name.replace("webhook-", "svix-"): value for name, value in signed.items()}
    assert adapter().verify(request(svix), NOW).dedupe_key == "acme:msg_svix"
    forged = dict(
        svix, **{"svix-signature": sign(BODY + b" ", "msg_svix", timestamp=NOW)["webhook-signature"]}
    )
    with pytest.raises(Unauthorized):
        adapter().verify(request(forged), NOW)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": [1, 2.5, "\\u00e9", null, true]}',
        b' {"padded": 1} \n',  # whitespace around the document
        b'\xef\xbb\xbf{"bom": 1}',  # a UTF-8 BOM
        '{"utf16": 1}'.encode("utf-16"),
        b'{"a": NaN}',
        b'"just a string"',
        b"1",
        b'{"a": 1} trailing',
        b'{"a": ',
        b"\xff\xfe\xfd",
        b"",
        b"[" * 100_000,  # deeper than the parser's recursion guard
    ],
)
def test_body_parsing_accepts_and_refuses_exactly_what_json_loads_does(body: bytes) -> None:
    try:
        expected: object = json.loads(body)
    except (ValueError, RecursionError):
        with pytest.raises(BadRequest):
            parse_json(body)
    else:
        assert repr(parse_json(body)) == repr(expected)  # repr: NaN != NaN

"""Standard Webhooks `v1a,` (ed25519) signatures: Svix's published vector, mixed headers, bad keys."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from processors.config import ConfigError, load_settings
from receiver.errors import BadRequest, Unauthorized
from receiver.vendors.base import IncomingRequest
from receiver.vendors.standard import StandardAdapter
from tests.support import cli_env, run_cli

VECTORS = json.loads((Path(__file__).parent / "conformance/payloads/standard/v1a_vectors.json").read_text())
V1A, V1, V1_BAD = VECTORS["cases"]
NOW = int(V1A["timestamp"])


def adapter(secret: str) -> StandardAdapter:
    settings = load_settings(
        {"LABELHOOK_SOURCES": "acme", "LABELHOOK_ACME_VENDOR": "standard", "LABELHOOK_ACME_SECRET": secret}
    )
    return StandardAdapter(settings.sources["acme"])


def request(signature: str, case: dict[str, str] = V1A, body: str | None = None) -> IncomingRequest:
    headers = {
        "webhook-id": case["msg_id"],
        "webhook-timestamp": case["timestamp"],
        "webhook-signature": signature,
    }
    return IncomingRequest(headers, {}, (case["body"] if body is None else body).encode())


def fresh_key() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, "whpk_" + base64.b64encode(raw).decode()


def test_the_svix_v1a_vector_verifies_with_its_public_key() -> None:
    assert V1A["public_key"].startswith("whpk_")
    callback = adapter(V1A["public_key"]).verify(request(V1A["webhook-signature"]), NOW)
    assert callback.job_id == V1A["msg_id"]


def test_the_v1a_vector_fails_for_another_body_id_or_key() -> None:
    with pytest.raises(Unauthorized):
        adapter(V1A["public_key"]).verify(request(V1A["webhook-signature"], body='{"test": 2432232315}'), NOW)
    other = dict(V1A, msg_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")  # the spec example's id: does not verify
    with pytest.raises(Unauthorized):
        adapter(V1A["public_key"]).verify(request(V1A["webhook-signature"], other), NOW)
    with pytest.raises(Unauthorized) as info:
        adapter(fresh_key()[1]).verify(request(V1A["webhook-signature"]), NOW)
    assert info.value.code == "invalid_signature"


def test_a_mixed_header_verifies_with_either_kind_of_key() -> None:
    mixed = VECTORS["combined_header_example_derived"]["webhook-signature"]
    assert mixed.startswith("v1,") and " v1a," in mixed
    # Only the HMAC secret, only the public key, or both (in either order): each suffices.
    for secret in (V1["secret"], V1A["public_key"], f"{V1A['public_key']},{V1['secret']}"):
        assert adapter(secret).verify(request(mixed), NOW).job_id == V1A["msg_id"]


def test_a_wrong_v1_next_to_a_right_v1a_still_passes_and_two_wrong_ones_do_not() -> None:
    both = f"{V1_BAD['webhook-signature']} {V1A['webhook-signature']}"
    secrets = f"{V1['secret']},{V1A['public_key']}"
    assert adapter(secrets).verify(request(both), NOW)
    private, _public = fresh_key()
    forged = base64.b64encode(private.sign(b"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{}")).decode()
    with pytest.raises(Unauthorized):
        adapter(secrets).verify(request(f"{V1_BAD['webhook-signature']} v1a,{forged}"), NOW)


def test_the_v1_library_vector_still_verifies_and_its_tampered_twin_does_not() -> None:
    assert adapter(V1["secret"]).verify(request(V1["webhook-signature"], V1), NOW)
    with pytest.raises(Unauthorized):
        adapter(V1["secret"]).verify(request(V1_BAD["webhook-signature"], V1), NOW)


def test_a_key_pair_we_generate_round_trips_over_id_timestamp_body() -> None:
    private, public = fresh_key()
    signed = f"{V1A['msg_id']}.{V1A['timestamp']}.{V1A['body']}".encode()
    signature = "v1a," + base64.b64encode(private.sign(signed)).decode()
    assert adapter(public).verify(request(f"v2,abc {signature}"), NOW)


@pytest.mark.parametrize(
    "header",
    [
        "v1a,not base64!",
        "v1a," + base64.b64encode(b"x" * 63).decode(),  # one byte short of an ed25519 signature
        "v1a," + base64.b64encode(b"x" * 32).decode(),  # an HMAC's length under the ed25519 tag
        "v1a",
        "v2,abc",
    ],
)
def test_malformed_v1a_entries_alone_are_a_400(header: str) -> None:
    with pytest.raises(BadRequest) as info:
        adapter(V1A["public_key"]).verify(request(header), NOW)
    assert info.value.code == "malformed_signature"


def test_a_v1a_signature_is_never_checked_as_an_hmac() -> None:
    # A v1 entry carrying the ed25519 bytes is malformed for v1 (64 bytes), not a match.
    v1a_bytes = V1A["webhook-signature"].split(",", 1)[1]
    with pytest.raises(BadRequest):
        adapter(V1A["public_key"]).verify(request("v1," + v1a_bytes), NOW)


BAD_KEYS = [
    # Svix's refused keys of the asymmetric kind: a truncated whsk_, and a whsk_ at all (a receiver
    # holds only the public half).
    *[k for k in VECTORS["invalid_keys_svix_types_test"]["keys"] if k.startswith("whsk_")],
    V1A["secret_key"],
    "whpk_" + base64.b64encode(b"\x01" * 31).decode(),
    "whpk_" + base64.b64encode(b"\x01" * 64).decode(),
    "whpk_%%%",
    "whpk_" + V1A["public_key"].removeprefix("whpk_").rstrip("="),  # unpadded: not standard base64
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unusable_asymmetric_keys_are_refused_at_start_up(key: str) -> None:
    env = {"LABELHOOK_SOURCES": "a", "LABELHOOK_A_VENDOR": "standard", "LABELHOOK_A_SECRET": key}
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert "LABELHOOK_A_SECRET" in str(info.value) and key not in str(info.value)


def test_a_bad_whpk_key_stops_the_cli_with_exit_2_naming_the_key(tmp_path: Path) -> None:
    good = VECTORS["cases"][0]["public_key"]
    env = cli_env(tmp_path, LABELHOOK_ACME_SECRET=f"{good},whpk_AAAA")
    result = run_cli("sources", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "LABELHOOK_ACME_SECRET" in result.stderr and "secret #2" in result.stderr
    assert "whpk_AAAA" not in result.stderr and good not in result.stderr
    ok = run_cli("sources", env=cli_env(tmp_path, LABELHOOK_ACME_SECRET=good), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_a_header_stuffed_with_v1a_entries_is_refused_before_any_ed25519_work() -> None:
    entry = V1A["webhook-signature"]
    assert adapter(V1A["public_key"]).verify(request(" ".join([entry] * 8)), NOW)
    with pytest.raises(BadRequest, match="more than 8 v1a"):
        adapter(V1A["public_key"]).verify(request(" ".join([entry] * 9)), NOW)

"""The request headers a delivery keeps for its dashboard page: secrets redacted, size bounded."""

from __future__ import annotations

import timeit

from processors.config import load_settings
from receiver.header_record import MAX_HEADERS, MAX_VALUE, REDACTED, HeaderRecorder
from receiver.vendors import REGISTRY

SECRET_VALUE = "s3cret-value-0123456789abcdef"

#: Each vendor's credential headers, as its documentation names them (receiver/vendors/<name>.py):
#: the adapters must declare them, and the recorder must redact them whatever they are called.
VENDOR_SECRET_HEADERS = {
    "cvat": {"x-signature-256"},
    "standard": {"webhook-signature", "svix-signature"},
    "playment": {"x-playment-key"},
    "superai": {"x-labelhook-token", "x-superai-webhook-signature"},
    "labelstudio": {"x-studio-pass", "authorization"},  # TOKEN_HEADER configured below
    "techforge": set(),  # takes no callbacks
    "labelbox": {"x-hub-signature-256", "x-hub-signature"},
    "scale": {"scale-callback-auth"},
}


def _all_vendor_sources() -> dict[str, HeaderRecorder]:
    env = {
        "LABELHOOK_QUEUE": "sqlite:////nonexistent/queue.db",
        "LABELHOOK_STORE": "file:///nonexistent/out",
        "LABELHOOK_SOURCES": ",".join(REGISTRY),
        # A Label Studio header name no pattern would catch: only the adapter knows it is secret.
        "LABELHOOK_LABELSTUDIO_TOKEN_HEADER": "X-Studio-Pass",
    }
    for vendor in REGISTRY:
        prefix = f"LABELHOOK_{vendor.upper()}_"
        env |= {
            prefix + "VENDOR": vendor,
            prefix + "SECRET": SECRET_VALUE,
            prefix + "API_KEY": "api-key",
            prefix + "API_URL": "http://127.0.0.1:9",
        }
    settings = load_settings(env)
    return {
        name: HeaderRecorder(REGISTRY[source.vendor].adapter(source).secret_headers())
        for name, source in settings.sources.items()
    }


def test_every_secret_header_of_every_vendor_is_redacted() -> None:
    recorders = _all_vendor_sources()
    assert set(recorders) == set(REGISTRY) == set(VENDOR_SECRET_HEADERS)
    common = {"authorization": "Bearer abc", "proxy-authorization": "Basic abc", "cookie": "s=abc"}
    for vendor, recorder in recorders.items():
        secret = {name: SECRET_VALUE for name in VENDOR_SECRET_HEADERS[vendor]}
        plain = {"content-type": "application/json", "user-agent": "Vendor/1.0", "x-request-id": "r-1"}
        recorded = recorder({**plain, **secret, **common})
        for name in (*secret, *common):
            assert recorded[name] == REDACTED, (vendor, name)
        assert {k: recorded[k] for k in plain} == plain, vendor
        assert SECRET_VALUE not in repr(recorded) and "abc" not in repr(recorded)


def test_secret_looking_names_are_redacted_by_pattern() -> None:
    recorder = HeaderRecorder()
    names = ["x-api-key", "x-signature", "x-auth-token", "x-webhook-secret", "x-custom-auth", "set-cookie"]
    recorded = recorder({**{n: "hunter2" for n in names}, "x-event": "job.completed"})
    assert all(recorded[n] == REDACTED for n in names)
    assert recorded["x-event"] == "job.completed"


def test_a_configured_token_header_is_redacted_only_where_configured() -> None:
    # `x-pass` matches no pattern: redacted for the source that reads its secret from it.
    assert HeaderRecorder({"X-Pass"})({"x-pass": "hunter2"}) == {"x-pass": REDACTED}
    assert HeaderRecorder()({"x-pass": "visible"}) == {"x-pass": "visible"}


def test_the_record_is_bounded() -> None:
    many = {f"x-h{i:03}": "v" for i in range(500)}
    recorded = HeaderRecorder()(many)
    assert len(recorded) == MAX_HEADERS
    assert list(recorded)[: MAX_HEADERS - 1] == list(many)[: MAX_HEADERS - 1]  # arrival order kept
    assert recorded["…"] == f"{500 - (MAX_HEADERS - 1)} more headers not recorded"
    exactly = {f"x-h{i:03}": "v" for i in range(MAX_HEADERS)}
    assert HeaderRecorder()(exactly) == exactly  # no marker when nothing was left out

    long_value, long_name = "a" * 10_000, "x-" + "n" * 10_000
    recorded = HeaderRecorder()({"x-long": long_value, long_name: "v"})
    assert recorded["x-long"] == "a" * (MAX_VALUE - 1) + "…"
    [name] = [n for n in recorded if n != "x-long"]
    assert len(name) == MAX_VALUE and name.endswith("…")
    assert sum(len(k) + len(v) for k, v in HeaderRecorder()(many | {long_name: long_value}).items()) <= (
        MAX_HEADERS * 2 * MAX_VALUE
    )


def test_the_cost_per_request_is_small() -> None:
    """The intake's per-request cost: a vendor's usual dozen headers, measured in-process."""
    headers = {
        "host": "hooks.example.com",
        "user-agent": "Svix-Webhooks/1.24",
        "content-type": "application/json",
        "content-length": "412",
        "accept": "*/*",
        "accept-encoding": "gzip",
        "webhook-id": "msg_2Wq8Rrx1bY3zZ",
        "webhook-timestamp": "1700000000",
        "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
        "x-forwarded-for": "203.0.113.9",
        "x-forwarded-proto": "https",
        "x-request-id": "2b1f6c1e-5d7a-4d8e-9a0c-8f3e2d1c0b9a",
    }
    recorder = HeaderRecorder({"webhook-signature", "svix-signature"})
    recorder(headers)  # warm the per-name cache, as the first callback of a source does
    runs = 20_000
    per_call = min(timeit.repeat(lambda: recorder(headers), number=runs, repeat=3)) / runs
    print(f"header record: {per_call * 1e6:.2f} µs per request ({len(headers)} headers)")
    assert per_call < 100e-6  # generous for a busy shared machine; typically a few µs

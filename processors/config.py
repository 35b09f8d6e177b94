"""Settings: the one place that reads the environment, once, at start-up.

`load_settings(environ)` casts and validates every variable and raises `ConfigError` with a one-line
reason naming the bad key, so a misconfigured process refuses to start instead of accepting traffic it
cannot verify. Secrets stay wrapped in `Secret` (redacted in every repr) until the HMAC call.

A source's variables are ``LABELHOOK_<SOURCE>_*``: the common ones (`COMMON_OPTIONS`, fields of
`SourceConfig`) and its vendor's options dataclass (`processors.vendors.VENDORS[vendor].options`, on
`SourceConfig.options`). Any other ``LABELHOOK_<SOURCE>_*`` variable is a misspelling and an error.
"""

from __future__ import annotations

import dataclasses
import hmac
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from processors.masks.memory import max_pixels_for
from processors.origins import split_origin
from processors.vendors import VENDORS
from processors.vendors.options import OptionError, VendorOptions, parse_bool, parse_options, parse_seconds

DEMO_SOURCE = "demo"
# The published demo key: only used when LABELHOOK_SOURCES is unset, so `labelhook run --demo` and the
# README's curl example work out of the box. It is public, so start-up logs a warning while it is active.
DEMO_SECRET = "whsec_bGFiZWxob29rLWRlbW8tc2VjcmV0LWRvLW5vdC11c2U="

# Mask frames in flight per process: with a ~100 MB runtime this keeps a worker within 400 MB on
# a 512 MB dyno (docs/reliability.md has the measured peaks); the default pixel limit follows it.
DEFAULT_MASK_MEMORY_MB = 256
_SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_QUEUE_SCHEMES = ("sqlite", "sqs", "sqs+https", "sqs+http")
_STORE_SCHEMES = ("file", "s3")
#: Options every source accepts, whatever its vendor (``LABELHOOK_<SOURCE>_<NAME>``).
COMMON_OPTIONS = (
    "VENDOR",
    "SECRET",
    "API_KEY",
    "API_URL",
    "POLL",
    "POLL_INTERVAL_SECONDS",
    "DEADLINE_SECONDS",
    "FETCH_IMAGES",
    "FETCH_ALLOW",
    "MAX_BODY_BYTES",
)
#: The most a source may raise its callback body cap to (``LABELHOOK_<SOURCE>_MAX_BODY_BYTES``): the
#: receiver holds a body in memory until it is verified, up to LIMIT_CONCURRENCY of them at once.
MAX_SOURCE_BODY_BYTES = 256 * 1024 * 1024
MIN_BODY_BYTES = 1024
#: The settings that are not a source's; never read as one (a source may be called `fetch`).
GLOBAL_VARIABLES = frozenset(
    {
        "LABELHOOK_SOURCES",
        "LABELHOOK_QUEUE",
        "LABELHOOK_STORE",
        "LABELHOOK_LIMIT_CONCURRENCY",
        "LABELHOOK_MAX_BODY_BYTES",
        "LABELHOOK_FETCH_MAX_BYTES",
        "LABELHOOK_FETCH_ALLOW_HOSTS",
        "LABELHOOK_MAX_ATTEMPTS",
        "LABELHOOK_RETRY_BASE_SECONDS",
        "LABELHOOK_RETRY_MAX_SECONDS",
        "LABELHOOK_LEASE_SECONDS",
        "LABELHOOK_WORKER_CONCURRENCY",
        "LABELHOOK_POLL_INTERVAL_SECONDS",
        "LABELHOOK_MAX_PIXELS",
        "LABELHOOK_DASHBOARD_TOKEN",
        "LABELHOOK_PUBLIC_URL",
        "LABELHOOK_BODY_RETENTION_SECONDS",
        "LABELHOOK_ROW_RETENTION_SECONDS",
        "LABELHOOK_MASK_MEMORY_MB",
        "LABELHOOK_MASK_THREADS",
    }
)
DEFAULT_POLL_INTERVAL_SECONDS = 30.0
DEFAULT_DEADLINE_SECONDS = 24 * 3600.0


class ConfigError(Exception):
    """The environment is not a valid configuration; the message is one line naming the key."""


class Secret:
    """A secret value that never shows itself in repr/str (logs, tracebacks, `labelhook sources`)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        # Constant time like every other secret comparison (nothing compares secrets with == today).
        return isinstance(other, Secret) and hmac.compare_digest(other._value.encode(), self._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class SourceConfig:
    """One configured callback source: a name in the URL, the vendor adapter behind it, its secrets.

    The fields after ``secrets`` are the common ``LABELHOOK_<SOURCE>_*`` options; ``options`` is the
    vendor's own options dataclass (read it with ``<Vendor>Options.of(source)``; None = its defaults).
    """

    name: str
    vendor: str
    secrets: tuple[Secret, ...]
    api_key: Secret | None = None
    api_url: str | None = None
    #: Poll this source's open jobs from `work`/`run` (default: the vendor's `VendorSpec.polls`).
    poll: bool = False
    poll_interval_seconds: float = DEFAULT_POLL_INTERVAL_SECONDS
    #: A polled job still open after this long is marked failed.
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS
    #: Also fetch and store the job's source images (issue 19).
    fetch_images: bool = True
    #: ``host:port`` origins this source's fetches may reach past the SSRF guard (`processors.origins`).
    fetch_allow: tuple[str, ...] = ()
    #: This source's callback body cap; None: ``LABELHOOK_MAX_BODY_BYTES`` (`Settings.max_body_bytes`).
    max_body_bytes: int | None = None
    options: VendorOptions | None = None

    @property
    def verification(self) -> str:
        """A human description of how callbacks to this source are verified (no secret in it)."""
        return VENDORS[self.vendor].verification


@dataclass(frozen=True)
class Settings:
    """Validated configuration; build it with `load_settings`."""

    port: int = 8000
    host: str | None = None
    forwarded_allow_ips: str = "127.0.0.1"
    limit_concurrency: int | None = 128
    queue_url: str = "sqlite:///./var/queue.db"
    store_url: str = "file://./var/out"
    sources: Mapping[str, SourceConfig] = field(default_factory=dict)
    max_body_bytes: int = 4 * 1024 * 1024 + 256 * 1024
    fetch_max_bytes: int = 512 * 1024 * 1024
    #: ``host:port`` origins (LABELHOOK_FETCH_ALLOW_HOSTS) every source may fetch from past the SSRF
    #: guard; a source's own are in its options (``fetch_allow``) and its API_URL (`fetch_allow_for`).
    fetch_allow_hosts: tuple[str, ...] = ()
    max_attempts: int = 8
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 600.0
    lease_seconds: float = 60.0
    worker_concurrency: int = 2
    poll_interval_seconds: float = 1.0
    mask_memory_bytes: int = DEFAULT_MASK_MEMORY_MB * 1024 * 1024
    max_pixels: int = max_pixels_for(DEFAULT_MASK_MEMORY_MB * 1024 * 1024)
    mask_threads: int = 2
    dashboard_token: Secret | None = None
    public_url: str | None = None
    aws_endpoint_url: str | None = None
    demo_secret_in_use: bool = False
    body_retention_seconds: float = 7 * 86400.0
    row_retention_seconds: float = 30 * 86400.0

    def source(self, name: str) -> SourceConfig | None:
        return self.sources.get(name)


def _origins(key: str, raw: str | None) -> tuple[str, ...]:
    entries = _csv(raw)
    for entry in entries:
        try:
            split_origin(entry)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}; a bare host would admit every port on it") from None
    return tuple(e.lower() for e in entries)


def _int(environ: Mapping[str, str], key: str, default: int, *, minimum: int = 0) -> int:
    raw = environ.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {value}")
    return value


def _float(environ: Mapping[str, str], key: str, default: float, *, minimum: float = 0.0) -> float:
    raw = environ.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        # float() takes "nan" and "inf"; NaN passes every comparison below and inf disables a limit.
        raise ConfigError(f"{key} must be a finite number, got {raw!r}")
    if value < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {value}")
    return value


def _url(environ: Mapping[str, str], key: str, default: str, schemes: tuple[str, ...]) -> str:
    value = environ.get(key) or default
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        raise ConfigError(f"{key} must be a URL with scheme {' or '.join(schemes)}, got scheme {scheme!r}")
    return value


def _http_url(key: str, value: str | None) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{key} must be an http(s) URL")
    return value.rstrip("/")


def _csv(raw: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (raw or "").split(",") if item.strip())


def _prefix(name: str) -> str:
    return f"LABELHOOK_{name.upper().replace('-', '_')}_"


def _source_variables(environ: Mapping[str, str], names: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Each source's ``LABELHOOK_<SOURCE>_*`` variables, by source: suffix → raw value.

    A variable belongs to the source with the longest matching prefix (``LABELHOOK_A_B_SECRET`` is
    source ``a_b``'s, not an option ``B_SECRET`` of source ``a``). Global settings are never a
    source's (a source called ``fetch`` does not own ``LABELHOOK_FETCH_MAX_BYTES``).
    """
    prefixes = sorted(((_prefix(name), name) for name in names), key=lambda p: len(p[0]), reverse=True)
    found: dict[str, dict[str, str]] = {name: {} for name in names}
    for key, value in environ.items():
        if not key.startswith("LABELHOOK_") or key in GLOBAL_VARIABLES:
            continue
        for prefix, name in prefixes:
            if key.startswith(prefix) and len(key) > len(prefix):
                found[name][key[len(prefix) :]] = value
                break
    return found


def _load_source(name: str, variables: Mapping[str, str]) -> SourceConfig:
    if not _SOURCE_NAME.match(name):
        raise ConfigError(f"LABELHOOK_SOURCES: source name {name!r} must match {_SOURCE_NAME.pattern}")
    prefix = _prefix(name)
    vendor = variables.get("VENDOR", name).strip().lower()
    if vendor not in VENDORS:
        known = ", ".join(sorted(VENDORS))
        raise ConfigError(f"{prefix}VENDOR: unknown vendor {vendor!r} (known: {known})")
    spec = VENDORS[vendor]
    secrets = tuple(Secret(s) for s in _csv(variables.get("SECRET")))
    if not secrets and spec.needs_secret:
        raise ConfigError(
            f"{prefix}SECRET is required for source {name!r}: refusing to accept unverified callbacks"
        )
    api_key_raw = variables.get("API_KEY")
    vendor_values = {
        suffix.lower(): value for suffix, value in variables.items() if suffix not in COMMON_OPTIONS
    }
    try:
        source = SourceConfig(
            name=name,
            vendor=vendor,
            secrets=secrets,
            api_key=Secret(api_key_raw) if api_key_raw else None,
            api_url=_http_url(prefix + "API_URL", variables.get("API_URL")),
            poll=_option(variables, "POLL", parse_bool, spec.polls),
            poll_interval_seconds=_option(
                variables, "POLL_INTERVAL_SECONDS", parse_seconds, DEFAULT_POLL_INTERVAL_SECONDS
            ),
            deadline_seconds=_option(variables, "DEADLINE_SECONDS", parse_seconds, DEFAULT_DEADLINE_SECONDS),
            fetch_images=_option(variables, "FETCH_IMAGES", parse_bool, True),
            fetch_allow=_origins(prefix + "FETCH_ALLOW", variables.get("FETCH_ALLOW")),
            max_body_bytes=_option(variables, "MAX_BODY_BYTES", _body_bytes, None),
        )
        options = parse_options(spec.options, vendor_values, source)
    except OptionError as exc:
        if exc.problem == "unknown option":
            known = ", ".join(sorted((*COMMON_OPTIONS, *(n.upper() for n in spec.options.names()))))
            raise ConfigError(
                f"{prefix}{exc.key}: unknown option for source {name!r} (vendor {vendor}; known: {known})"
            ) from None
        raise ConfigError(f"{prefix}{exc}") from None
    return dataclasses.replace(source, options=options)


T = TypeVar("T")


def _body_bytes(key: str, raw: str) -> int | None:
    """A whole number of bytes from `MIN_BODY_BYTES` (1 KiB) to `MAX_SOURCE_BODY_BYTES` (256 MiB)."""
    try:
        value = int(raw.strip())
    except ValueError:
        raise OptionError(key, f"must be a whole number of bytes, got {raw!r}") from None
    if not MIN_BODY_BYTES <= value <= MAX_SOURCE_BODY_BYTES:
        raise OptionError(
            key, f"must be between {MIN_BODY_BYTES} and {MAX_SOURCE_BODY_BYTES} bytes, got {value}"
        )
    return value


def _option(variables: Mapping[str, str], key: str, parse: Callable[[str, str], T], default: T) -> T:
    raw = variables.get(key)
    return default if raw is None or raw == "" else parse(key, raw)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read, cast and validate the configuration; raise `ConfigError` with a one-line reason."""
    env = os.environ if environ is None else environ
    names = _csv(env.get("LABELHOOK_SOURCES"))
    demo_secret_in_use = False
    if names:
        if len(set(names)) != len(names):
            raise ConfigError("LABELHOOK_SOURCES lists a source twice")
        if len({_prefix(name) for name in names}) != len(names):
            # `a-b` and `a_b` would both read LABELHOOK_A_B_*.
            raise ConfigError("LABELHOOK_SOURCES: two source names share one LABELHOOK_<SOURCE>_ prefix")
        variables = _source_variables(env, names)
        sources = {name: _load_source(name, variables[name]) for name in names}
    else:
        # No sources configured: the demo source, with the public demo key unless one is given.
        demo_env = dict(env)
        demo_env.setdefault("LABELHOOK_DEMO_VENDOR", "standard")
        if not demo_env.get("LABELHOOK_DEMO_SECRET"):
            demo_env["LABELHOOK_DEMO_SECRET"] = DEMO_SECRET
            demo_secret_in_use = True
        sources = {
            DEMO_SOURCE: _load_source(DEMO_SOURCE, _source_variables(demo_env, (DEMO_SOURCE,))[DEMO_SOURCE])
        }
    token = env.get("LABELHOOK_DASHBOARD_TOKEN")
    # Frames being decoded hold at most this much at once, across every job of the process.
    mask_memory = _int(env, "LABELHOOK_MASK_MEMORY_MB", DEFAULT_MASK_MEMORY_MB, minimum=32) * 1024 * 1024
    # Finished deliveries lose their bodies after the first, their rows (the dedupe horizon) after the
    # second; a row without its body is still a dedupe key, so rows must outlive bodies.
    body_retention = _float(env, "LABELHOOK_BODY_RETENTION_SECONDS", 7 * 86400.0, minimum=1.0)
    row_retention = _float(env, "LABELHOOK_ROW_RETENTION_SECONDS", 30 * 86400.0, minimum=1.0)
    if row_retention < body_retention:
        raise ConfigError(
            "LABELHOOK_ROW_RETENTION_SECONDS must be at least LABELHOOK_BODY_RETENTION_SECONDS"
            f" ({row_retention:g} < {body_retention:g})"
        )
    return Settings(
        port=_int(env, "PORT", 8000, minimum=0),
        host=env.get("HOST") or None,
        forwarded_allow_ips=env.get("FORWARDED_ALLOW_IPS") or "127.0.0.1",
        # Requests in the app at once (idle connections do not count); above it a JSON 503, except
        # /healthz. Bounds buffered bodies to about 128 × LABELHOOK_MAX_BODY_BYTES. 0 = unlimited.
        limit_concurrency=_int(env, "LABELHOOK_LIMIT_CONCURRENCY", 128, minimum=0) or None,
        queue_url=_url(env, "LABELHOOK_QUEUE", "sqlite:///./var/queue.db", _QUEUE_SCHEMES),
        store_url=_url(env, "LABELHOOK_STORE", "file://./var/out", _STORE_SCHEMES),
        sources=sources,
        max_body_bytes=_int(
            env, "LABELHOOK_MAX_BODY_BYTES", 4 * 1024 * 1024 + 256 * 1024, minimum=MIN_BODY_BYTES
        ),
        fetch_max_bytes=_int(env, "LABELHOOK_FETCH_MAX_BYTES", 512 * 1024 * 1024, minimum=1),
        fetch_allow_hosts=_origins("LABELHOOK_FETCH_ALLOW_HOSTS", env.get("LABELHOOK_FETCH_ALLOW_HOSTS")),
        max_attempts=_int(env, "LABELHOOK_MAX_ATTEMPTS", 8, minimum=1),
        retry_base_seconds=_float(env, "LABELHOOK_RETRY_BASE_SECONDS", 2.0),
        retry_max_seconds=_float(env, "LABELHOOK_RETRY_MAX_SECONDS", 600.0),
        lease_seconds=_float(env, "LABELHOOK_LEASE_SECONDS", 60.0, minimum=1.0),
        worker_concurrency=_int(env, "LABELHOOK_WORKER_CONCURRENCY", 2, minimum=1),
        poll_interval_seconds=_float(env, "LABELHOOK_POLL_INTERVAL_SECONDS", 1.0, minimum=0.01),
        mask_memory_bytes=mask_memory,
        # The default admits the largest frame whose worst-case cost fits the mask memory budget.
        max_pixels=_int(env, "LABELHOOK_MAX_PIXELS", max_pixels_for(mask_memory), minimum=1),
        mask_threads=_int(env, "LABELHOOK_MASK_THREADS", min(4, os.cpu_count() or 1), minimum=1),
        dashboard_token=Secret(token) if token else None,
        public_url=_http_url("LABELHOOK_PUBLIC_URL", env.get("LABELHOOK_PUBLIC_URL")),
        aws_endpoint_url=_http_url("AWS_ENDPOINT_URL", env.get("AWS_ENDPOINT_URL")),
        demo_secret_in_use=demo_secret_in_use,
        body_retention_seconds=body_retention,
        row_retention_seconds=row_retention,
    )

"""`VendorOptions`: the typed, vendor-specific options of a source, parsed once at start-up.

Each vendor declares a frozen dataclass (`processors/vendors/<vendor>/options.py`) whose fields are its
``LABELHOOK_<SOURCE>_<FIELD>`` variables, each with a default. `parse_options` builds one from the
strings `processors.config` read from the environment: it casts each value by the field's type, refuses
a key the class does not declare (a misspelling would otherwise be silently ignored), and then asks the
class's `validate` for what only the vendor understands (required API keys, allowed modes, key formats).
Errors are `OptionError` naming the offending key; `processors.config` turns them into one-line
`ConfigError`s, so a bad option stops every command with exit 2.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from processors.config import SourceConfig

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

OptionsT = TypeVar("OptionsT", bound="VendorOptions")


class OptionError(ValueError):
    """One option is missing, unknown or malformed. ``key`` is the option name (upper case, no prefix)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class VendorOptions:
    """Base of every vendor's options dataclass (frozen; every field has a default).

    Field types allowed: ``str``, ``str | None``, ``int``, ``float``, ``bool``. Numbers must be finite
    and positive (every numeric option today is a count of seconds). Field names are the lower-case
    variable suffixes: ``export_format`` is ``LABELHOOK_<SOURCE>_EXPORT_FORMAT``.
    """

    def validate(self, source: SourceConfig) -> str | None:
        """Cross-field and source-level checks (a one-line problem starting with the key, or None)."""
        return None

    @classmethod
    def of(cls: type[OptionsT], source: SourceConfig) -> OptionsT:
        """``source.options`` as this vendor's options (defaults when the source was built without any)."""
        options = source.options
        if options is None:
            return cls()
        if not isinstance(options, cls):
            raise TypeError(f"source {source.name!r} has {type(options).__name__}, expected {cls.__name__}")
        return options

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names this vendor accepts (lower case)."""
        return tuple(f.name for f in dataclasses.fields(cls))


def parse_bool(key: str, raw: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); anything else is an `OptionError`."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise OptionError(key, f"must be one of 1/0, true/false, yes/no, on/off, got {raw!r}")


def parse_seconds(key: str, raw: str) -> float:
    """A finite, positive number."""
    try:
        value = float(raw)
    except ValueError:
        raise OptionError(key, f"must be a positive number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise OptionError(key, f"must be a positive number of seconds, got {raw!r}")
    return value


def _cast(key: str, kind: Any, raw: str) -> Any:
    if kind is bool:
        return parse_bool(key, raw)
    if kind is int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise OptionError(key, f"must be a positive integer, got {raw!r}") from None
        if value <= 0:
            raise OptionError(key, f"must be a positive integer, got {raw!r}")
        return value
    if kind is float:
        return parse_seconds(key, raw)
    if kind is str or kind == (str | None):
        return raw
    raise TypeError(f"option {key} has unsupported type {kind!r}")  # a programming error, not config


def parse_options(cls: type[OptionsT], values: Mapping[str, str], source: SourceConfig) -> OptionsT:
    """Build ``cls`` from ``values`` (lower-case option name → raw string) and validate it.

    ``source`` is the source as configured so far (common options, no vendor options yet), for the
    checks that need its secrets or API key. Raises `OptionError` for the first bad key.
    """
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for name in sorted(values):
        if name not in known:
            raise OptionError(name.upper(), "unknown option")
    # An empty variable means "unset" (as for every other setting): the default applies.
    kwargs = {name: _cast(name.upper(), hints[name], raw) for name, raw in values.items() if raw != ""}
    options = cls(**kwargs)
    problem = options.validate(dataclasses.replace(source, options=options))
    if problem:
        raise OptionError("", problem)
    return options

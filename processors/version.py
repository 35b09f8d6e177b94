"""labelhook's version, read once from the installed package metadata: pyproject.toml is its one source."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def _installed_version() -> str:
    try:
        return version("labelhook")
    except PackageNotFoundError:  # a bare source tree on sys.path, never installed (not even with -e)
        return "0+unknown"


VERSION = _installed_version()

"""The vendor registry: every vendor has both halves (adapter + processor) and typed options, one name."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from processors.vendors import VENDORS, VendorSpec
from processors.vendors.base import Processor
from processors.vendors.options import VendorOptions
from receiver.vendors import REGISTRY, VendorAdapter, derive_registry
from receiver.vendors.base import Callback, IncomingRequest
from receiver.vendors.cvat import CvatAdapter
from receiver.vendors.standard import StandardAdapter

ROOT = Path(__file__).resolve().parent.parent


def test_every_vendor_has_an_adapter_a_processor_and_an_options_class_under_one_name() -> None:
    assert set(REGISTRY) == set(VENDORS) and REGISTRY
    for name, vendor in REGISTRY.items():
        assert vendor.name == vendor.spec.name == name
        assert vendor.spec is VENDORS[name]
        # Receiver half: the adapter lives in receiver/vendors/<name>.py and names its vendor.
        assert issubclass(vendor.adapter, VendorAdapter)
        assert vendor.adapter.vendor == name
        assert vendor.adapter.__module__ == f"receiver.vendors.{name}"
        assert "verify" not in getattr(vendor.adapter, "__abstractmethods__", ())
        # Worker half: the processor lives in processors/vendors/<name>/processor.py.
        processor = vendor.processor_class()
        assert issubclass(processor, Processor)
        assert processor.__module__ == f"processors.vendors.{name}.processor"
        assert not getattr(processor, "__abstractmethods__", ())
        # Typed options: a frozen dataclass in processors/vendors/<name>/options.py, all fields defaulted.
        options = vendor.options
        assert issubclass(options, VendorOptions) and dataclasses.is_dataclass(options)
        assert options.__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert options.__module__ == f"processors.vendors.{name}.options"
        defaults = options()
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(defaults, "anything", 1)  # noqa: B010 - the point is that it is refused
        assert vendor.spec.verification.strip()


def test_options_modules_stay_light_enough_for_the_web_process() -> None:
    """The registry imports every options module at start-up; none may pull in numpy or a processor."""
    import subprocess
    import sys

    code = (
        "import sys, receiver.vendors; "
        "heavy = [m for m in sys.modules if m == 'numpy' or m.endswith('.processor')]; "
        "print(heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_option_field_types_are_ones_the_parser_knows() -> None:
    import typing

    allowed = (str, int, float, bool, str | None)
    for vendor in REGISTRY.values():
        for name, kind in typing.get_type_hints(vendor.options).items():
            assert kind in allowed, f"{vendor.name}.{name}: {kind}"
            assert name == name.lower()


def test_each_vendor_is_documented_with_every_option() -> None:
    """docs/vendors/<name>.md exists, the README lists the vendor, and names each of its options."""
    readme = (ROOT / "README.md").read_text()
    guide = (ROOT / "docs" / "vendors" / "README.md").read_text()
    for name, vendor in REGISTRY.items():
        assert (ROOT / "docs" / "vendors" / f"{name}.md").is_file(), name
        assert f"[{name}]({name}.md)" in guide, name
        [row] = [line for line in readme.splitlines() if line.startswith(f"| `{name}` |") and "(" in line][
            -1:
        ]
        for option in vendor.options.names():
            assert f"`{option.upper()}`" in row, (name, option)


class _Stray(VendorAdapter):
    vendor = "nobody"

    def verify(self, request: IncomingRequest, now: float) -> Callback:
        raise NotImplementedError


def test_an_adapter_without_a_vendor_or_a_vendor_without_an_adapter_is_refused() -> None:
    halves = (CvatAdapter, StandardAdapter)
    specs = {name: VENDORS[name] for name in ("cvat", "standard")}
    assert set(derive_registry(specs, halves)) == {"cvat", "standard"}
    with pytest.raises(RuntimeError, match=r"without a receiver adapter: \['standard'\]"):
        derive_registry(specs, (CvatAdapter,))
    with pytest.raises(RuntimeError, match=r"adapters without a vendor spec: \['nobody'\]"):
        derive_registry(specs, (*halves, _Stray))
    with pytest.raises(RuntimeError, match="two adapters for vendor 'cvat'"):
        derive_registry(specs, (*halves, CvatAdapter))
    misnamed = {"cvat": dataclasses.replace(VENDORS["cvat"], name="kvat"), "standard": VENDORS["standard"]}
    with pytest.raises(RuntimeError, match="registered under 'cvat'"):
        derive_registry(misnamed, halves)


def test_registry_is_the_only_list_of_vendors() -> None:
    """No module keeps its own vendor table: the old ADAPTERS / KNOWN_VENDORS names are gone."""
    assert not hasattr(importlib.import_module("receiver.vendors"), "ADAPTERS")
    assert not hasattr(importlib.import_module("processors.vendors"), "KNOWN_VENDORS")
    assert all(isinstance(spec, VendorSpec) for spec in VENDORS.values())

"""Typed source options: parsed once at start-up; a misspelt or malformed one stops every command (exit 2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from processors.config import GLOBAL_VARIABLES, ConfigError, load_settings
from processors.vendors.cvat.options import CvatOptions
from processors.vendors.playment.options import PlaymentOptions
from processors.vendors.standard.options import StandardOptions
from processors.vendors.superai.options import SuperAIOptions
from processors.vendors.techforge.options import TechForgeOptions
from tests.support import SECRET, cli_env, run_cli

CVAT = {
    "LABELHOOK_SOURCES": "cvat",
    "LABELHOOK_CVAT_SECRET": "s3cret",
    "LABELHOOK_CVAT_API_KEY": "key",
    "LABELHOOK_CVAT_API_URL": "https://app.cvat.ai",
}
ACME = {"LABELHOOK_SOURCES": "acme", "LABELHOOK_ACME_VENDOR": "standard", "LABELHOOK_ACME_SECRET": SECRET}
TF = {
    "LABELHOOK_SOURCES": "tf",
    "LABELHOOK_TF_VENDOR": "techforge",
    "LABELHOOK_TF_API_KEY": "k",
    "LABELHOOK_TF_API_URL": "https://api.example.com",
}


def refused(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_vendor_options_are_typed_and_defaulted() -> None:
    source = load_settings(
        {**CVAT, "LABELHOOK_CVAT_MODE": "export", "LABELHOOK_CVAT_EXPORT_FORMAT": "COCO 1.0"}
    ).sources["cvat"]
    assert source.options == CvatOptions(mode="export", export_format="COCO 1.0")
    assert CvatOptions.of(source).export_poll_seconds == 2.0
    assert CvatOptions.of(source).export_timeout_seconds == 300.0
    acme = load_settings({**ACME, "LABELHOOK_ACME_TOLERANCE_SECONDS": "60"}).sources["acme"]
    assert StandardOptions.of(acme).tolerance_seconds == 60
    tf = load_settings({**TF, "LABELHOOK_TF_STATUS_PATH": "/jobs/{uuid}"}).sources["tf"]
    assert TechForgeOptions.of(tf) == TechForgeOptions(status_path="/jobs/{uuid}")
    with pytest.raises(TypeError):
        PlaymentOptions.of(tf)  # a source's options are its own vendor's, nothing else


def test_common_options_apply_to_every_vendor() -> None:
    tf = load_settings(TF).sources["tf"]
    assert tf.poll is True  # a vendor without callbacks is polled by default
    assert tf.fetch_images is True and tf.poll_interval_seconds == 30.0 and tf.deadline_seconds == 86400.0
    acme = load_settings(ACME).sources["acme"]
    assert acme.poll is False
    acme = load_settings(
        {
            **ACME,
            "LABELHOOK_ACME_POLL": "yes",
            "LABELHOOK_ACME_POLL_INTERVAL_SECONDS": "5",
            "LABELHOOK_ACME_DEADLINE_SECONDS": "3600",
            "LABELHOOK_ACME_FETCH_IMAGES": "0",
        }
    ).sources["acme"]
    assert (acme.poll, acme.poll_interval_seconds, acme.deadline_seconds, acme.fetch_images) == (
        True,
        5.0,
        3600.0,
        False,
    )
    # An empty variable means unset, as for every other setting.
    assert load_settings({**ACME, "LABELHOOK_ACME_TOLERANCE_SECONDS": ""}).sources["acme"].options == (
        StandardOptions()
    )


def test_superai_project_and_app_ids() -> None:
    env = {"LABELHOOK_SOURCES": "superai", "LABELHOOK_SUPERAI_SECRET": "t", "LABELHOOK_SUPERAI_APP_ID": "a"}
    assert SuperAIOptions.of(load_settings(env).sources["superai"]).app == "a"
    env["LABELHOOK_SUPERAI_PROJECT_ID"] = "p"
    assert SuperAIOptions.of(load_settings(env).sources["superai"]).app == "p"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {**CVAT, "LABELHOOK_CVAT_PROJEKT_ID": "7"},
            "LABELHOOK_CVAT_PROJEKT_ID: unknown option for source 'cvat'",
        ),
        ({**ACME, "LABELHOOK_ACME_TOLERANCE": "60"}, "LABELHOOK_ACME_TOLERANCE: unknown option"),
        # An option of another vendor is unknown here too.
        ({**ACME, "LABELHOOK_ACME_MODE": "export"}, "LABELHOOK_ACME_MODE: unknown option"),
        ({**ACME, "LABELHOOK_ACME_TOLERANCE_SECONDS": "abc"}, "LABELHOOK_ACME_TOLERANCE_SECONDS: must be"),
        ({**ACME, "LABELHOOK_ACME_TOLERANCE_SECONDS": "-5"}, "LABELHOOK_ACME_TOLERANCE_SECONDS: must be"),
        ({**ACME, "LABELHOOK_ACME_TOLERANCE_SECONDS": "0"}, "LABELHOOK_ACME_TOLERANCE_SECONDS: must be"),
        ({**ACME, "LABELHOOK_ACME_POLL": "maybe"}, "LABELHOOK_ACME_POLL: must be one of 1/0"),
        ({**ACME, "LABELHOOK_ACME_FETCH_IMAGES": "sure"}, "LABELHOOK_ACME_FETCH_IMAGES: must be one of"),
        ({**ACME, "LABELHOOK_ACME_POLL_INTERVAL_SECONDS": "nan"}, "LABELHOOK_ACME_POLL_INTERVAL_SECONDS"),
        ({**TF, "LABELHOOK_TF_DEADLINE_SECONDS": "-1"}, "LABELHOOK_TF_DEADLINE_SECONDS: must be a positive"),
        (
            {**CVAT, "LABELHOOK_CVAT_EXPORT_POLL_SECONDS": "inf"},
            "LABELHOOK_CVAT_EXPORT_POLL_SECONDS: must be",
        ),
        ({**CVAT, "LABELHOOK_CVAT_MODE": "dump"}, "LABELHOOK_CVAT_MODE must be one of annotations, export"),
        (
            {**CVAT, "LABELHOOK_CVAT_MODE": "export"},
            "LABELHOOK_CVAT_EXPORT_FORMAT is required with MODE=export",
        ),
        ({**TF, "LABELHOOK_TF_STATUS_PATH": "/jobs"}, "LABELHOOK_TF_STATUS_PATH must contain {uuid}"),
        (
            {"LABELHOOK_SOURCES": "pm", "LABELHOOK_PM_VENDOR": "playment", "LABELHOOK_PM_SECRET": "k"},
            "LABELHOOK_PM_API_KEY is required",
        ),
        (
            {**CVAT, "LABELHOOK_CVAT_API_KEY": "k", "LABELHOOK_CVAT_TOKEN_IN_URL": "1"},
            "LABELHOOK_CVAT_TOKEN_IN_URL: unknown option",
        ),
    ],
)
def test_bad_options_are_refused_in_one_line_naming_the_variable(env: dict[str, str], message: str) -> None:
    assert message in refused(env)


def test_a_variable_belongs_to_the_source_with_the_longest_prefix_and_never_to_a_global() -> None:
    settings = load_settings(
        {
            "LABELHOOK_SOURCES": "a,a_b,fetch",
            "LABELHOOK_A_VENDOR": "standard",
            "LABELHOOK_A_SECRET": SECRET,
            "LABELHOOK_A_B_VENDOR": "standard",
            "LABELHOOK_A_B_SECRET": SECRET,
            "LABELHOOK_A_B_TOLERANCE_SECONDS": "10",
            "LABELHOOK_FETCH_VENDOR": "standard",
            "LABELHOOK_FETCH_SECRET": SECRET,
            "LABELHOOK_FETCH_MAX_BYTES": "1000",  # a global setting, not an option of source `fetch`
        }
    )
    assert StandardOptions.of(settings.sources["a_b"]).tolerance_seconds == 10
    assert StandardOptions.of(settings.sources["a"]).tolerance_seconds == 300
    assert settings.fetch_max_bytes == 1000


def test_every_global_setting_is_listed_as_not_a_sources() -> None:
    """A setting read by `load_settings` but missing from GLOBAL_VARIABLES would be taken for an option."""
    text = (Path(__file__).resolve().parent.parent / "processors" / "config.py").read_text()
    read = set(re.findall(r'"(LABELHOOK_[A-Z_]*[A-Z])"', text)) - {
        "LABELHOOK_DEMO_SECRET",
        "LABELHOOK_DEMO_VENDOR",
    }
    assert read <= GLOBAL_VARIABLES, sorted(read - GLOBAL_VARIABLES)


def test_two_sources_cannot_share_one_prefix() -> None:
    env = {"LABELHOOK_SOURCES": "a-b,a_b", "LABELHOOK_A_B_VENDOR": "standard", "LABELHOOK_A_B_SECRET": SECRET}
    assert "share one LABELHOOK_<SOURCE>_ prefix" in refused(env)


def test_variables_of_unconfigured_sources_are_not_ours_to_judge() -> None:
    # LABELHOOK_OTHER_* may belong to a deployment's other process; only configured sources are checked.
    assert load_settings({**ACME, "LABELHOOK_OTHER_PROJEKT_ID": "1"}).sources.keys() == {"acme"}


COMMANDS = [
    ("sources",),
    ("sources", "--json"),
    ("serve", "--port", "0"),
    ("run", "--port", "0"),
    ("work",),
    ("jobs",),
    ("dead", "list"),
    ("poll", "acme"),
    ("submit", "acme", "input.json"),
    ("decode", "mask.png", "--result", "result.json", "--out", "out"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_misspelt_option_stops_every_command_with_exit_2(tmp_path: Path, command: tuple[str, ...]) -> None:
    env = cli_env(tmp_path, LABELHOOK_ACME_TOLERANSE_SECONDS="60")
    result = run_cli(*command, env=env, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "LABELHOOK_ACME_TOLERANSE_SECONDS: unknown option for source 'acme'" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "queue.db").exists()  # stopped before opening anything


@pytest.mark.parametrize("value", ["abc", "-5"])
@pytest.mark.parametrize("command", [("sources",), ("serve", "--port", "0")], ids=" ".join)
def test_a_bad_option_value_stops_the_command_with_exit_2(
    tmp_path: Path, command: tuple[str, ...], value: str
) -> None:
    env = cli_env(tmp_path, LABELHOOK_ACME_TOLERANCE_SECONDS=value)
    result = run_cli(*command, env=env, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"LABELHOOK_ACME_TOLERANCE_SECONDS: must be a positive integer, got '{value}'" in result.stderr

from __future__ import annotations

import json
from pathlib import Path

import pytest

from processors.config import DEMO_SECRET, ConfigError, load_settings
from tests.support import OLD_SECRET, SECRET, cli_env, run_cli


def test_defaults_give_the_demo_source_with_the_public_key() -> None:
    settings = load_settings({})
    assert settings.queue_url == "sqlite:///./var/queue.db"
    assert settings.store_url == "file://./var/out"
    assert list(settings.sources) == ["demo"]
    assert settings.sources["demo"].vendor == "standard"
    assert settings.sources["demo"].secrets[0].reveal() == DEMO_SECRET
    assert settings.demo_secret_in_use
    assert settings.max_attempts == 8 and settings.fetch_max_bytes == 512 * 1024 * 1024


def test_rotation_secrets_are_comma_separated() -> None:
    s = load_settings(
        {
            "LABELHOOK_SOURCES": "acme",
            "LABELHOOK_ACME_VENDOR": "standard",
            "LABELHOOK_ACME_SECRET": f"{SECRET}, {OLD_SECRET}",
        }
    )
    assert [x.reveal() for x in s.sources["acme"].secrets] == [SECRET, OLD_SECRET]
    assert not s.demo_secret_in_use


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"LABELHOOK_SOURCES": "acme", "LABELHOOK_ACME_VENDOR": "nope", "LABELHOOK_ACME_SECRET": SECRET},
            "LABELHOOK_ACME_VENDOR: unknown vendor 'nope'",
        ),
        (
            {"LABELHOOK_SOURCES": "acme", "LABELHOOK_ACME_VENDOR": "standard"},
            "LABELHOOK_ACME_SECRET is required",
        ),
        (
            {
                "LABELHOOK_SOURCES": "acme",
                "LABELHOOK_ACME_VENDOR": "standard",
                "LABELHOOK_ACME_SECRET": "whsec_%%%",
            },
            "not a whsec_<base64> signing key",
        ),
        ({"LABELHOOK_QUEUE": "redis://localhost"}, "LABELHOOK_QUEUE must be a URL with scheme"),
        ({"LABELHOOK_STORE": "ftp://x"}, "LABELHOOK_STORE must be a URL with scheme"),
        ({"LABELHOOK_MAX_ATTEMPTS": "many"}, "LABELHOOK_MAX_ATTEMPTS must be an integer"),
        ({"LABELHOOK_MAX_ATTEMPTS": "0"}, "LABELHOOK_MAX_ATTEMPTS must be >= 1"),
        ({"LABELHOOK_SOURCES": "Bad Name"}, "source name 'Bad Name'"),
        (
            {"LABELHOOK_SOURCES": "a,a", "LABELHOOK_A_SECRET": SECRET, "LABELHOOK_A_VENDOR": "standard"},
            "lists a source twice",
        ),
        ({"LABELHOOK_PUBLIC_URL": "not a url"}, "LABELHOOK_PUBLIC_URL must be an http(s) URL"),
        # float() accepts these; NaN would pass every bound and inf would switch a limit off.
        ({"LABELHOOK_BODY_RETENTION_SECONDS": "nan"}, "LABELHOOK_BODY_RETENTION_SECONDS must be a finite"),
        ({"LABELHOOK_RETRY_MAX_SECONDS": "inf"}, "LABELHOOK_RETRY_MAX_SECONDS must be a finite number"),
    ],
)
def test_invalid_configuration_is_refused_with_the_key_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_secrets_never_show_in_reprs() -> None:
    settings = load_settings(
        {
            "LABELHOOK_SOURCES": "acme",
            "LABELHOOK_ACME_VENDOR": "standard",
            "LABELHOOK_ACME_SECRET": SECRET,
            "LABELHOOK_ACME_API_KEY": "key-123-abc",
            "LABELHOOK_DASHBOARD_TOKEN": "dash-token-xyz",
        }
    )
    text = repr(settings) + str(settings)
    for secret in (SECRET, "key-123-abc", "dash-token-xyz", SECRET.removeprefix("whsec_")):
        assert secret not in text


def test_sources_command_lists_vendor_and_mode_with_secrets_redacted(tmp_path: Path) -> None:
    env = cli_env(tmp_path, LABELHOOK_ACME_API_KEY="key-123-abc")
    result = run_cli("sources", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert row["source"] == "acme" and row["vendor"] == "standard"
    assert "Standard Webhooks" in row["verification"]
    assert row["secrets"] == "1 configured (redacted)"
    plain = run_cli("sources", env=env, cwd=tmp_path)
    for out in (result.stdout + result.stderr, plain.stdout + plain.stderr):
        assert SECRET not in out and "key-123-abc" not in out


def test_cli_refuses_to_start_on_bad_config_with_one_line(tmp_path: Path) -> None:
    env = cli_env(tmp_path, LABELHOOK_ACME_SECRET="")
    result = run_cli("serve", "--port", "0", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "LABELHOOK_ACME_SECRET is required" in result.stderr

"""Settings: YAML first, `SHUHI_*` variables win, mistakes are named; the README documents every variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.settings import ENVIRONMENT, SettingsError, load_settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "shuhi.yaml"
    config.write_text("database_url: sqlite:///from-file.db\nmax_body_bytes: 1000\nkey_cache_seconds: 3\n")
    settings = load_settings(config, {"SHUHI_DATABASE_URL": "sqlite:///from-env.db"})
    assert settings.database_url == "sqlite:///from-env.db"
    assert settings.max_body_bytes == 1000 and settings.key_cache_seconds == 3


def test_config_file_from_variable_and_secrets_hidden(tmp_path: Path) -> None:
    config = tmp_path / "shuhi.yaml"
    config.write_text("admin_token: very-secret-admin-token\n")
    settings = load_settings(None, {"SHUHI_CONFIG": str(config)})
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "very-secret-admin-token"
    assert "very-secret-admin-token" not in repr(settings)


@pytest.mark.parametrize("content, named", [
    ("max_body_bytes: -5\n", "max_body_bytes"),
    ("database_url: mysql://x\n", "database_url"),
    ("no_such_setting: 1\n", "no_such_setting"),
    ("destinations: [{id: x, base_url: http://h, api_format: gemini}]\n", "destinations.0.api_format"),
    ("- just\n- a list\n", "mapping"),
    ("key: [unclosed\n", "not valid YAML"),
])
def test_mistakes_name_the_file_and_field(tmp_path: Path, content: str, named: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    with pytest.raises(SettingsError) as caught:
        load_settings(config, {})
    assert named in str(caught.value) and str(config) in str(caught.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings(tmp_path / "absent.yaml", {})


def test_bad_variable_is_named() -> None:
    with pytest.raises(SettingsError, match="max_body_bytes"):
        load_settings(None, {"SHUHI_MAX_BODY_BYTES": "lots"})


def test_every_variable_is_documented_in_the_readme() -> None:
    documented = set(re.findall(r"`(SHUHI_[A-Z_]+)`", README.read_text(encoding="utf-8")))
    assert set(ENVIRONMENT) <= documented, set(ENVIRONMENT) - documented

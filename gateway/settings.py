"""Settings: a YAML file first, then `SHUHI_*` environment variables, which win.

Read once in `create_app` (or the CLI) and passed down; nothing else in the
package reads the environment, except a destination's upstream key, which is
looked up by the variable name the destination names (API.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

#: Every environment variable the gateway reads, with its settings field and meaning.
#: The README's table is checked against this mapping by the tests.
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "SHUHI_CONFIG": ("", "path of the YAML settings file"),
    "SHUHI_DATABASE_URL": ("database_url", "URL of the store: sqlite:///path or postgresql://user@host:port/db"),
    "SHUHI_REDIS_URL": ("redis_url", "Redis for notifications, rate limits, caches"),
    "SHUHI_ADMIN_TOKEN": ("admin_token", "the first admin token"),
    "SHUHI_SECRET_KEY": ("secret_key", "key of the keyed fingerprints and key hashes"),
    "SHUHI_POLICY": ("policy", "the policy file"),
    "SHUHI_MAX_BODY_BYTES": ("max_body_bytes", "largest accepted request body, in bytes"),
    "SHUHI_KEY_CACHE_SECONDS": ("key_cache_seconds", "how long a verified gateway key is trusted without a store lookup"),
    "SHUHI_UPSTREAM_CONNECT_TIMEOUT": ("upstream_connect_timeout", "seconds to connect to an upstream"),
    "SHUHI_FILES_DESTINATION": ("files_destination", "destination for /v1/files when X-Shuhi-Destination is absent"),
    "SHUHI_LOG_LEVEL": ("log_level", "log level of the gateway's own logs"),
    "SHUHI_AUDIT_SYNC": ("audit_sync", "full: sync the SQLite audit log at every commit; normal: survive a crash "
                                       "of the process, not of the machine"),
    "SHUHI_AUDIT_LINGER_MS": ("audit_linger_ms", "under load, how long the audit writer gathers records before the "
                                                 "next commit (fewer transactions and disk syncs, a little latency)"),
    "SHUHI_ACCUMULATION_WINDOW_SECONDS": ("accumulation_window_seconds",
                                          "how long one principal's fragments of an item add up (0: off)"),
    "SHUHI_REQUESTS_PER_MINUTE": ("requests_per_minute", "requests one principal may send per minute (none: no limit)"),
    "SHUHI_TOKENS_PER_DAY": ("tokens_per_day", "tokens one principal may use per UTC day (none: no quota)"),
    "SHUHI_LOG_FORMAT": ("log_format", "json: one JSON object per log line; text: plain lines"),
    "SHUHI_OTEL_ENDPOINT": ("otel_endpoint", "OTLP/HTTP endpoint for OpenTelemetry traces (none: tracing off)"),
}


class SettingsError(Exception):
    """The settings cannot be used; the message names the file or variable and the field."""


class DestinationSettings(BaseModel):
    """A destination declared in the settings file, created or updated at start."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    base_url: str
    api_format: Literal["openai", "anthropic"]
    models: list[str] = Field(default_factory=list)
    third_party: bool = True
    trains_on_inputs: bool = False
    api_key_env: str | None = None
    timeout_seconds: float = Field(default=600.0, gt=0)


class Limits(BaseModel):
    """A request rate and a token quota; a missing one is no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_day: int | None = Field(default=None, gt=0)


class Settings(BaseModel):
    """Validated settings of one gateway process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = "sqlite:///shuhi.db"
    redis_url: str | None = None
    admin_token: SecretStr | None = None
    secret_key: SecretStr | None = None
    policy: str | None = None
    max_body_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    key_cache_seconds: float = Field(default=1.0, ge=0)
    upstream_connect_timeout: float = Field(default=10.0, gt=0)
    files_destination: str | None = None
    accumulation_window_seconds: float = Field(default=600.0, ge=0)
    audit_sync: Literal["full", "normal"] = "full"
    audit_linger_ms: float = Field(default=2.0, ge=0, le=100)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_day: int | None = Field(default=None, gt=0)
    group_limits: dict[str, Limits] = Field(default_factory=dict)  # each group's budget, shared by its members
    otel_endpoint: str | None = None
    destinations: list[DestinationSettings] = Field(default_factory=list)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @property
    def store_directory(self) -> Path:
        """Where generated files (the secret key) live: beside a SQLite file, else the working directory."""
        if self.database_url.startswith("sqlite:///") and self.database_url != "sqlite:///:memory:":
            return Path(self.database_url.removeprefix("sqlite:///")).resolve().parent
        return Path.cwd()

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Read the YAML file (if any), overlay `SHUHI_*` variables, then explicit overrides."""
    env = dict(os.environ if environ is None else environ)
    path = config_file or env.get("SHUHI_CONFIG")
    data: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError(f"settings file {path}: cannot be read ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise SettingsError(f"settings file {path}: not valid YAML ({exc})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise SettingsError(f"settings file {path}: must be a mapping of setting names to values")
        data.update(loaded or {})
    for variable, (field_name, _meaning) in ENVIRONMENT.items():
        if field_name and variable in env and env[variable] != "":
            data[field_name] = env[variable]
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        where = f"settings file {path} / environment" if path else "environment"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"{where}: {problems}") from None

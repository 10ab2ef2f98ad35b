"""One frozen settings object, built once at start-up and passed down.

Sources, highest priority first: explicit keyword arguments (CLI flags), environment
variables ``SMARTLOCK_<SECTION>__<NAME>`` (e.g. ``SMARTLOCK_DETECTION__STOP_LIMIT_S=600``),
a TOML file (``--config FILE`` or ``SMARTLOCK_CONFIG``), then the documented defaults
below. Nothing else in the code base reads ``os.environ``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from smartlock.core.limits import DetectionSettings
from smartlock.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SigningSettings(_Section):
    """HMAC-SHA256 lock signing (CONTRACT section 6). Enabled when any key is configured."""

    keys: dict[str, SecretStr] = Field(default_factory=dict, description="lock_id -> secret key")
    keys_file: Path | None = Field(
        None, description="JSON file {lock_id: key}; merged under `keys`"
    )


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 1883
    client_id_prefix: str = "smartlock"
    shared_group: str = "smartlock-bridges"
    tls: bool = Field(
        False, description="connect with TLS; `port` is then the TLS listener (stack: 8883)"
    )
    ca_file: Path | None = Field(
        None,
        description="CA certificate that signed the broker's (stack up makes <run_dir>/tls/ca.crt)",
    )
    resend_s: float = Field(
        3.0,
        ge=0,
        description="publishers of inputs (replay, simulate, demo fleet, intake, gate clients) "
        "publish again, after a reconnect, the QoS 1 messages the broker acknowledged this many "
        "seconds before the connection broke: Mosquitto killed with -9 forgets what it "
        "acknowledged since its last save (~2 s); downstream drops the copies; 0: off",
    )
    reconnect_wait_s: float = Field(
        60.0,
        gt=0,
        description="how long `replay` and `simulate` wait for a lost broker to come back "
        "(re-sending their last `resend_s`) before they stop with an error",
    )


class KafkaSettings(_Section):
    bootstrap: str = "127.0.0.1:9092"
    inbound_topic: str = "smartlock.inbound"
    alerts_topic: str = "alerts"
    outputs_topic: str = "smartlock.outputs"
    deadletter_topic: str = "smartlock.deadletter"
    writeoffs_topic: str = Field(
        "smartlock.writeoffs", description="write-off records of released containers"
    )
    partitions: int = Field(4, ge=1)
    app_id: str = "smartlock"
    output_give_up_s: float = Field(
        300.0,
        gt=0,
        description="a worker or bridge that cannot write its output (MQTT, Redis, Kafka) retries "
        "with backoff for this long, holding the batch, then exits non-zero for a restart",
    )
    rebalance_timeout_s: float = Field(
        3.0,
        gt=0,
        description="short in local runs; the Tansu broker waits this long on every group join",
    )
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None,
        description="log in to Kafka with SASL/SCRAM as the process's service account (password "
        "from the credentials store); unset: no authentication (the local Tansu cannot)",
    )


class RedisSettings(_Section):
    url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="redis://HOST:PORT/DB, without user or password: each process logs in as its "
        "service account with the password from the credentials store",
    )
    prefix: str = "smartlock"
    alert_stream_maxlen: int = 100_000

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "redis.url must not carry a user or password (they would show in logs and "
                "process listings); the passwords are in the credentials store"
            )
        return url


class ConsoleSettings(_Section):
    """The monitoring centre's web console (``smartlock console``)."""

    host: str = "127.0.0.1"
    port: int = Field(8090, ge=1, le=65535)
    session_ttl_s: int = Field(12 * 3600, ge=60, description="a sign-in lasts this long")
    secure_cookie: bool = Field(
        False, description="mark the session cookie Secure (set when served over HTTPS)"
    )


class IntakeSettings(_Section):
    """The declaration intake service (``smartlock intake``) and fee estimate."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    timezone: str = Field(
        "Asia/Shanghai", description="zone in which local times are shown in messages"
    )
    max_days_before_departure: int = Field(
        14, ge=0, description="earliest submission, days before departure"
    )
    min_minutes_before_arrival: int = Field(
        30,
        ge=0,
        description="latest submission and binding, minutes before arrival at the control point",
    )
    hkd_rates: dict[str, Decimal] = Field(
        default_factory=lambda: {
            "HKD": Decimal("1"),
            "USD": Decimal("7.8"),
            "CNY": Decimal("1.08"),
            "EUR": Decimal("8.4"),
        },
        description="fixed HK$ per unit of each accepted currency (fee estimate)",
    )


class CredentialsSettings(_Section):
    """Where the credentials of every identity live (``smartlock credentials``, CONTRACT section 6)."""

    dir: Path | None = Field(
        None, description="owner-only credentials directory; default: <run_dir>/credentials"
    )


class Settings(BaseSettings):
    """The whole configuration. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="SMARTLOCK_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        # A refused value may be a secret (a key, a URL with a password): errors name the
        # setting and the rule, never echo the value.
        hide_input_in_errors=True,
    )

    geofence_dir: Path | None = Field(
        None, description="directory of geofence files; default: shipped geofences/"
    )
    run_dir: Path = Field(Path(".run"), description="logs, pids and data of the local stack")
    detection: DetectionSettings = DetectionSettings()
    signing: SigningSettings = SigningSettings()
    mqtt: MqttSettings = MqttSettings()
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    intake: IntakeSettings = IntakeSettings()
    console: ConsoleSettings = ConsoleSettings()
    credentials: CredentialsSettings = CredentialsSettings()

    @property
    def credentials_dir(self) -> Path:
        """The credentials store directory (``credentials.dir``, else ``<run_dir>/credentials``)."""
        return self.credentials.dir or self.run_dir / "credentials"


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Builds the frozen settings from defaults, the TOML file, the environment and overrides.

    Args:
        config_file: optional TOML file (sections ``[detection]``, ``[mqtt]``, ...).
        **overrides: highest-priority values, e.g. from CLI flags.

    Raises:
        ConfigError: the file is missing or invalid, or a value breaks its rule.
    """
    path = config_file or os.environ.get("SMARTLOCK_CONFIG") or None
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"config file {path} not found; pass an existing TOML file")

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            if path is None:
                return (init_settings, env_settings)
            return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, path))

    try:
        loaded = _Loaded(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {exc}") from exc
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    # A plain Settings (validated already): the loader's subclass stays private.
    settings = Settings.model_construct(**dict(loaded))
    if settings.signing.keys_file is not None:
        settings = _merge_keys_file(settings)
    return settings


def _merge_keys_file(settings: Settings) -> Settings:
    path = settings.signing.keys_file
    assert path is not None
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"signing keys file {path}: {exc}; expected JSON {{lock_id: key}}"
        ) from exc
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ConfigError(f"signing keys file {path}: expected JSON object {{lock_id: key}}")
    keys = {k: SecretStr(v) for k, v in raw.items()} | dict(settings.signing.keys)
    signing = settings.signing.model_copy(update={"keys": keys})
    return settings.model_copy(update={"signing": signing})


def settings_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process that must load these same settings.

    ``base`` (e.g. ``os.environ``) plus one ``SMARTLOCK_<SECTION>__<NAME>`` variable for every
    value that differs from its default. Secrets are left out: a child reads them from the
    credentials store, never from its environment. This is the one place that writes
    ``SMARTLOCK_*`` variables.
    """
    env = dict(base or {})
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            default = type(value)()
            for sub in type(value).model_fields:
                v, d = getattr(value, sub), getattr(default, sub)
                if v != d and not _secret(v):
                    env[f"SMARTLOCK_{name.upper()}__{sub.upper()}"] = _env_value(v)
        elif value != info.get_default(call_default_factory=True) and not _secret(value):
            env[f"SMARTLOCK_{name.upper()}"] = _env_value(value)
    return env


def _secret(value: Any) -> bool:
    if isinstance(value, SecretStr):
        return True
    if isinstance(value, Mapping):
        return any(isinstance(v, SecretStr) for v in value.values())
    return False


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)

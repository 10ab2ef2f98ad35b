"""One frozen settings object, built once at start-up and passed down.

Sources, highest priority first: explicit keyword arguments (CLI flags), environment
variables ``SMARTLOCK_<SECTION>__<NAME>`` (e.g. ``SMARTLOCK_DETECTION__STOP_LIMIT_S=600``),
a TOML file (``--config FILE`` or ``SMARTLOCK_CONFIG``), then the documented defaults
below. Nothing else in the code base reads ``os.environ``.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
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

    @property
    def enabled(self) -> bool:
        return bool(self.keys)


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 1883
    client_id_prefix: str = "smartlock"
    shared_group: str = "smartlock-bridges"
    qos: int = Field(1, ge=0, le=2)
    tls: bool = Field(
        False, description="connect with TLS; `port` is then the TLS listener (stack: 8883)"
    )
    ca_file: Path | None = Field(
        None,
        description="CA certificate that signed the broker's (stack up makes <run_dir>/tls/ca.crt)",
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


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "smartlock"
    alert_stream_maxlen: int = 100_000


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
        env_prefix="SMARTLOCK_", env_nested_delimiter="__", frozen=True, extra="forbid"
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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file named by the ``_config_file`` init value (set by load_settings)."""

    path: Path | None = None

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        return _read_toml(self.path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found; pass an existing TOML file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Builds the frozen settings from defaults, the TOML file, the environment and overrides.

    Args:
        config_file: optional TOML file (sections ``[detection]``, ``[mqtt]``, ...).
        **overrides: highest-priority values, e.g. from CLI flags.

    Raises:
        ConfigError: the file is missing or invalid, or a value breaks its rule.
    """
    _TomlSource.path = Path(config_file) if config_file else None
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {exc}") from exc
    finally:
        _TomlSource.path = None
    if settings.signing.keys_file is not None:
        settings = _merge_keys_file(settings)
    return settings


def _merge_keys_file(settings: Settings) -> Settings:
    import json

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

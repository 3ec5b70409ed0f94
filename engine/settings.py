"""Settings: one frozen, validated object read from flags and DECLIC_* variables."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.core.durations import MAX_DURATION_SECONDS
from engine.errors import ConfigError

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"


def _default_author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class FrequencyCap(BaseModel):
    """At most `max` in-app messages per user in any `per_seconds` window."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max: int = Field(ge=1)
    per_seconds: int = Field(ge=1, le=MAX_DURATION_SECONDS)  # the core's bound too


DEFAULT_FREQUENCY_CAPS = (
    FrequencyCap(max=1, per_seconds=30),
    FrequencyCap(max=3, per_seconds=86_400),
)


class Settings(BaseSettings):
    """Every setting of a Declic process; flags override DECLIC_* variables."""

    model_config = SettingsConfigDict(
        env_prefix="DECLIC_", frozen=True, extra="forbid", case_sensitive=False
    )

    kafka_bootstrap: str = Field(
        DEFAULT_BOOTSTRAP, description="Kafka bootstrap servers, host:port[,host:port]"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM file of the CA(s) that signed the brokers' certificates"
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="PEM file of this client's certificate (brokers requiring mTLS)"
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, description="PEM file of this client's private key"
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="Password of the private key, if it is encrypted"
    )

    app_id: str = Field(
        "declic",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Consumer group and prefix of the engine's internal topics",
    )
    topic_prefix: str = Field(
        "", pattern=r"^[A-Za-z0-9._-]{0,64}$", description="Prefix of every topic name"
    )
    partitions: int = Field(4, ge=1, le=1024, description="Partitions of topics created")
    replication_factor: int = Field(1, ge=1, le=16)
    worker_id: str = Field(
        default_factory=socket.gethostname,
        pattern=r"^[A-Za-z0-9._-]{1,128}$",
        description="Stable name of this worker",
    )
    data_dir: Path = Field(Path(".declic/data"), description="Local state (RocksDB) directory")

    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535, description="HTTP port: /metrics and more")

    max_event_age_seconds: float = Field(3600.0, gt=0)
    max_future_seconds: float = Field(300.0, ge=0)
    checkpoint_interval_seconds: float = Field(
        0.05, gt=0, le=60, description="How often outputs, state and offsets are committed"
    )
    max_batch_records: int = Field(10_000, ge=1, le=1_000_000)
    transaction_timeout_seconds: float = Field(15.0, ge=1, le=900)
    max_input_bytes: int = Field(
        262_144,
        ge=1024,
        le=100 * 1024 * 1024,
        description="Largest input record (key and value) a worker parses; a larger one is "
        "dead-lettered (too_large) unread",
    )
    max_record_bytes: int = Field(
        1_000_000,
        ge=65_536,
        le=100 * 1024 * 1024,
        description="Largest record a worker produces (key and value); larger outputs "
        "become dead letters. At most the topics' max.message.bytes (1 MB by default)",
    )

    frequency_caps: tuple[FrequencyCap, ...] = Field(
        DEFAULT_FREQUENCY_CAPS,
        description='Engine-wide caps per user, JSON: [{"max": 1, "per_seconds": 30}, ...]',
    )
    default_timezone: str = Field(
        "UTC", description="IANA zone for local-time schedules when the user's zone is unknown"
    )

    stats_interval_seconds: float = Field(
        30.0, ge=1, le=3600, description="How often workers publish engagement figures"
    )
    unseen_delivery_seconds: int = Field(
        3600, ge=60, description="A delivery this old without an impression counts as unseen"
    )

    author: str = Field(default_factory=_default_author, min_length=1, max_length=256)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port, got {server!r}")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    def topic(self, name: str) -> str:
        """Return the full name of a public topic."""
        return f"{self.topic_prefix}{name}"

    def internal_topic(self, name: str) -> str:
        """Return the full name of a topic private to this application."""
        return f"{self.topic_prefix}{self.app_id}-{name}"

    def kafka_client_options(self) -> dict[str, Any]:
        """Return the connection options shared by every aiokafka client."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return options

    def kafka_producer_options(self) -> dict[str, Any]:
        """Return the options of every producer: all in-sync replicas acknowledge, and
        retries never duplicate or reorder (idempotence)."""
        return {**self.kafka_client_options(), "acks": "all", "enable_idempotence": True}

    def describe(self) -> dict[str, str]:
        """Return the settings as text, secrets masked."""
        described: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            described[name] = "********" if isinstance(value, SecretStr) else str(value)
        return described


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build settings from DECLIC_* variables, with flag values (not None) taking precedence."""
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc']) or 'settings'}: {issue['msg']}"
            for issue in error.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None

"""Settings: one frozen, validated object read from flags and DECLIC_* variables."""

from __future__ import annotations

import getpass
import ipaddress
import os
import re
import socket
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from engine.core.caps import MAX_CAP_DELIVERIES
from engine.core.durations import MAX_DURATION_SECONDS
from engine.cpus import usable_cpus
from engine.errors import ConfigError

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"
# Settings given by variable only: a flag would show them in `ps` and shell histories.
SECRET_SETTINGS = ("kafka_sasl_password", "kafka_ssl_key_password", "gateway_token_secret")
# The delivery gateway's own settings, but its secret.
GATEWAY_SETTINGS = (
    "gateway_host",
    "gateway_port",
    "gateway_jwks_file",
    "gateway_token_audience",
    "gateway_allowed_origins",
    "gateway_rate_per_user",
    "gateway_rate_per_address",
    "gateway_history_seconds",
    "gateway_max_messages_per_user",
    "gateway_max_users",
)
# The campaign console's own settings.
CONSOLE_SETTINGS = (
    "console_host",
    "console_port",
    "console_users_file",
    "console_user_header",
    "console_trusted_proxies",
    "console_ssl_certfile",
    "console_ssl_keyfile",
)
# An HS256 key shorter than its hash (RFC 7518, 3.2) can be guessed offline from one token.
MIN_TOKEN_SECRET_BYTES = 32
_ORIGIN = re.compile(
    r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$"
)


def _default_author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class FrequencyCap(BaseModel):
    """At most `max` in-app messages per user in any `per_seconds` window."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max: int = Field(ge=1, le=MAX_CAP_DELIVERIES)  # the core's bound too
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
    worker_processes: int = Field(
        default_factory=usable_cpus,
        ge=1,
        le=256,
        description="Engine processes of `declic worker` (default: the CPUs it may use)",
    )

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

    gateway_host: str = Field("127.0.0.1", description="Address the delivery gateway listens on")
    gateway_port: int = Field(6080, ge=0, le=65535, description="Port of the delivery gateway")
    gateway_token_secret: SecretStr | None = Field(
        None, description="HS256 key of the app's tokens (at least 32 bytes); a variable only"
    )
    gateway_jwks_file: Path | None = Field(
        None, description="JWKS file of the public keys (RS256, ES256) of the app's tokens"
    )
    gateway_token_audience: str | None = Field(
        None, min_length=1, max_length=256, description="Required `aud` claim of tokens, if set"
    )
    gateway_allowed_origins: str = Field(
        "", description="Comma-separated origins allowed by CORS (scheme://host[:port], or *)"
    )
    gateway_rate_per_user: float = Field(
        10.0, gt=0, le=100_000, description="Requests per second per user, bursts of twice that"
    )
    gateway_rate_per_address: float = Field(
        50.0, gt=0, le=100_000, description="Requests per second per client address"
    )
    gateway_history_seconds: int = Field(
        86_400,
        ge=60,
        le=MAX_DURATION_SECONDS,
        description="Deliveries and impressions of this many seconds back are read at start",
    )
    gateway_max_messages_per_user: int = Field(
        20, ge=1, le=1000, description="Deliveries held per user (the newest)"
    )
    gateway_max_users: int = Field(
        1_000_000, ge=1, le=100_000_000, description="Users held; the least recent are dropped"
    )

    console_host: str = Field("127.0.0.1", description="Address the campaign console listens on")
    console_port: int = Field(6070, ge=0, le=65535, description="Port of the campaign console")
    console_users_file: Path = Field(
        Path(".declic/console-users.yaml"),
        description="The console's users, roles and password hashes (`declic console add-user`)",
    )
    console_user_header: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9-]+$",
        description="Header naming the user, set by an authenticating proxy (single sign-on)",
    )
    console_trusted_proxies: str = Field(
        "", description="Comma-separated addresses or networks whose user header is trusted"
    )
    console_ssl_certfile: Path | None = Field(
        None, description="Certificate chain (PEM) for the console to serve HTTPS itself"
    )
    console_ssl_keyfile: Path | None = Field(
        None, description="Private key (PEM) of console_ssl_certfile"
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port, got {server!r}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("default_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("gateway_allowed_origins")
    @classmethod
    def _check_origins(cls, value: str) -> str:
        for origin in _split_origins(value):
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(f"expected scheme://host[:port] origins or *, got {origin!r}")
        return value

    @field_validator("console_trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        for entry in _split_origins(value):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"expected IP addresses or networks, got {entry!r}") from None
        return value

    def console_proxies(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """Return the networks whose console_user_header is trusted."""
        return tuple(
            ipaddress.ip_network(entry, strict=False)
            for entry in _split_origins(self.console_trusted_proxies)
        )

    def check_console(self) -> None:
        """Raise ConfigError if the console's TLS files or proxy settings do not fit together."""
        certfile, keyfile = self.console_ssl_certfile, self.console_ssl_keyfile
        if (certfile is None) != (keyfile is None):
            missing = "console_ssl_keyfile" if keyfile is None else "console_ssl_certfile"
            raise ConfigError([(missing, "required with the other console TLS file")])
        for field, path in (("console_ssl_certfile", certfile), ("console_ssl_keyfile", keyfile)):
            if path is not None and not path.is_file():
                raise ConfigError([(field, f"no such file: {path}")])
        if self.console_user_header and not self.console_trusted_proxies:
            raise ConfigError(
                [
                    (
                        "console_trusted_proxies",
                        "required with console_user_header: the header is trusted only from "
                        "the proxies' addresses",
                    )
                ]
            )

    def gateway_origins(self) -> tuple[str, ...]:
        """Return the origins CORS allows, as listed ("*": any)."""
        return _split_origins(self.gateway_allowed_origins)

    def check_gateway_tokens(self) -> None:
        """Raise ConfigError unless exactly one way to check tokens is set: the HS256 secret
        or the JWKS file (which must exist)."""
        secret, jwks = self.gateway_token_secret, self.gateway_jwks_file
        if secret is None and jwks is None:
            raise ConfigError(
                [
                    (
                        "gateway_token_secret",
                        "required to check tokens: set it (HS256), or "
                        "DECLIC_GATEWAY_JWKS_FILE (RS256, ES256)",
                    )
                ]
            )
        if secret is not None and jwks is not None:
            raise ConfigError(
                [
                    (
                        "gateway_jwks_file",
                        "set together with DECLIC_GATEWAY_TOKEN_SECRET: set exactly one",
                    )
                ]
            )
        if secret is not None and len(secret.get_secret_value().encode()) < MIN_TOKEN_SECRET_BYTES:
            raise ConfigError(
                [("gateway_token_secret", f"must be at least {MIN_TOKEN_SECRET_BYTES} bytes")]
            )
        if jwks is not None and not jwks.is_file():
            raise ConfigError([("gateway_jwks_file", f"no such file: {jwks}")])

    def topic(self, name: str) -> str:
        """Return the full name of a public topic."""
        return f"{self.topic_prefix}{name}"

    def internal_topic(self, name: str) -> str:
        """Return the full name of a topic private to this application."""
        return f"{self.topic_prefix}{self.app_id}-{name}"

    def kafka_client_options(self) -> dict[str, Any]:
        """Return the connection options shared by every aiokafka client.

        Raise ConfigError, naming the setting, when the security settings are inconsistent
        or a certificate or key cannot be loaded.
        """
        self.check_kafka_security()
        protocol = self.kafka_security_protocol
        options: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": protocol,
        }
        if protocol in SASL_PROTOCOLS:
            password = self.kafka_sasl_password  # never None here: checked above
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = password.get_secret_value() if password else ""
        if protocol in SSL_PROTOCOLS:
            options["ssl_context"] = self.kafka_ssl_context()
        return options

    def check_kafka_security(self) -> None:
        """Raise ConfigError naming every security setting that is missing or out of place."""
        problems = _security_problems(self)
        if problems:
            raise ConfigError(problems)

    def kafka_ssl_context(self) -> ssl.SSLContext:
        """Return a TLS context verifying the brokers (with this client's certificate, if
        set); raise ConfigError naming the file that cannot be loaded."""
        from aiokafka.helpers import create_ssl_context

        key_password = self.kafka_ssl_key_password
        # A callable, even without a password: OpenSSL would otherwise prompt on the terminal
        # for the password of an encrypted key.
        secret = key_password.get_secret_value() if key_password is not None else ""
        try:
            context: ssl.SSLContext = create_ssl_context(
                cafile=self.kafka_ssl_cafile,
                certfile=self.kafka_ssl_certfile,
                keyfile=self.kafka_ssl_keyfile,
                password=lambda: secret,
            )
        except (ssl.SSLError, OSError, ValueError) as error:
            raise ConfigError([_ssl_problem(self, error)]) from None
        return context

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


def _split_origins(value: str) -> tuple[str, ...]:
    return tuple(origin.strip().rstrip("/") for origin in value.split(",") if origin.strip())


SSL_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
_SSL_FILES = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")


def _security_problems(settings: Settings) -> list[tuple[str, str]]:
    """Return what is wrong with the security settings: (field, reason) pairs."""
    protocol = settings.kafka_security_protocol
    problems = []
    sasl = {
        "kafka_sasl_mechanism": settings.kafka_sasl_mechanism,
        "kafka_sasl_username": settings.kafka_sasl_username,
        "kafka_sasl_password": settings.kafka_sasl_password,
    }
    for name, value in sasl.items():
        if protocol in SASL_PROTOCOLS and not (
            value.get_secret_value() if isinstance(value, SecretStr) else value
        ):
            problems.append((name, f"required with security protocol {protocol}"))
        elif protocol not in SASL_PROTOCOLS and value is not None:
            problems.append(
                (
                    name,
                    f"set, but security protocol {protocol} uses no SASL "
                    "(SASL_PLAINTEXT or SASL_SSL)",
                )
            )
    tls = {name: getattr(settings, name) for name in (*_SSL_FILES, "kafka_ssl_key_password")}
    for name, value in tls.items():
        if value is None:
            continue
        if protocol not in SSL_PROTOCOLS:
            problems.append(
                (name, f"set, but security protocol {protocol} uses no TLS (SSL or SASL_SSL)")
            )
        elif isinstance(value, Path) and not value.is_file():
            problems.append((name, f"no such file: {value}"))
        elif isinstance(value, Path) and not os.access(value, os.R_OK):
            problems.append((name, f"cannot read {value}"))
    if tls["kafka_ssl_certfile"] is not None and tls["kafka_ssl_keyfile"] is None:
        problems.append(("kafka_ssl_keyfile", "required with a client certificate"))
    if tls["kafka_ssl_keyfile"] is not None and tls["kafka_ssl_certfile"] is None:
        problems.append(("kafka_ssl_certfile", "required with a client key"))
    if tls["kafka_ssl_key_password"] is not None and tls["kafka_ssl_keyfile"] is None:
        problems.append(("kafka_ssl_key_password", "set without a client key file"))
    return problems


def _ssl_problem(settings: Settings, error: BaseException) -> tuple[str, str]:
    """Return which TLS file could not be loaded, and why (never the key's password)."""
    reason = getattr(error, "reason", None) or type(error).__name__
    if settings.kafka_ssl_cafile is not None:
        try:
            ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
        except (ssl.SSLError, OSError, ValueError):
            return (
                "kafka_ssl_cafile",
                f"no CA certificate in {settings.kafka_ssl_cafile} ({reason})",
            )
    keyfile = settings.kafka_ssl_keyfile
    try:
        encrypted = keyfile is not None and "ENCRYPTED" in keyfile.read_text(errors="replace")
    except OSError:
        encrypted = False
    if encrypted and settings.kafka_ssl_key_password is None:
        return (
            "kafka_ssl_keyfile",
            f"{keyfile} is encrypted: set DECLIC_KAFKA_SSL_KEY_PASSWORD",
        )
    if encrypted:
        return ("kafka_ssl_key_password", f"does not decrypt the client key {keyfile}")
    return (
        "kafka_ssl_certfile",
        f"cannot load {settings.kafka_ssl_certfile} with the key {keyfile} "
        f"(not PEM, or a key of another certificate: {reason})",
    )


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build settings from DECLIC_* variables, with flag values (not None) taking precedence.

    Raise ConfigError with one problem per invalid setting, in plain words.
    """
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    unknown = sorted(set(given) - set(Settings.model_fields))
    if unknown:
        raise ConfigError([("", f"no such setting: {', '.join(unknown)}")])
    try:
        return Settings(**given)
    except ValidationError as error:
        raise ConfigError([_plain_problem(issue) for issue in error.errors()]) from None
    except SettingsError as error:
        # pydantic-settings decodes JSON variables itself and stops at the first bad one.
        field = next((name for name in Settings.model_fields if f'"{name}"' in str(error)), "")
        raise ConfigError([(field, "expected JSON, like " + _json_example(field))]) from None


def _json_example(field: str) -> str:
    if field == "frequency_caps":
        return '[{"max": 3, "per_seconds": 86400}] ([] for none)'
    return "the form its documentation shows"


_PLAIN = {
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "literal_error": "expected {expected}",
    "string_too_short": "must not be empty",
    "string_too_long": "at most {max_length} characters",
    "json_invalid": "expected JSON",
    "tuple_type": "expected a JSON list",
    "model_type": "expected a JSON object",
    "model_attributes_type": "expected a JSON object",
    "dict_type": "expected a JSON object",
    "missing": "required",
    "extra_forbidden": "unknown field",
    "path_type": "expected a path",
    "bool_parsing": "expected true or false",
}
_PATTERNS = {
    "app_id": "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
    "topic_prefix": "at most 64 letters, digits, '.', '_' or '-'",
    "worker_id": "1 to 128 letters, digits, '.', '_' or '-'",
}


def _plain_problem(issue: ErrorDetails) -> tuple[str, str]:
    """Return (field, reason in plain words) for one pydantic validation error."""
    location = issue["loc"]
    field = str(location[0]) if location else ""
    inner = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location[1:])
    inner = inner.removeprefix(".")
    kind = issue["type"]
    if kind == "value_error":
        reason = issue["msg"].removeprefix("Value error, ")
    elif kind == "string_pattern_mismatch":
        reason = "expected " + _PATTERNS.get(field, "another form")
    elif kind in _PLAIN:
        context = dict(issue.get("ctx") or {})
        if kind == "literal_error":
            context["expected"] = str(context.get("expected", "")).replace("'", "")
        reason = _PLAIN[kind].format(**context)
    else:
        reason = issue["msg"]
    value = issue.get("input")
    if kind not in ("missing", "extra_forbidden", "value_error") and isinstance(
        value, str | int | float
    ):
        reason += f", got {value!r}"
    return field, (f"{inner}: {reason}" if inner else reason)

"""The setting flags: one per setting, named after its DECLIC_* variable, and which
commands show which."""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.settings import (
    CONSOLE_SETTINGS,
    DEFAULT_BOOTSTRAP,
    GATEWAY_SETTINGS,
    SECRET_SETTINGS,
    Settings,
)


@dataclass(frozen=True)
class SettingFlag:
    """The command-line face of one setting."""

    field: str
    metavar: str
    help: str
    aliases: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")

    @property
    def variable(self) -> str:
        return variable_of(self.field)


def variable_of(field: str) -> str:
    """Return the DECLIC_* variable of a settings field."""
    return "DECLIC_" + field.upper()


_FLAGS = (
    SettingFlag(
        "kafka_bootstrap",
        "HOST:PORT[,HOST:PORT]",
        f"Kafka bootstrap servers (default {DEFAULT_BOOTSTRAP})",
        aliases=("--bootstrap",),
    ),
    SettingFlag(
        "kafka_security_protocol",
        "PROTOCOL",
        "PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL",
    ),
    SettingFlag(
        "kafka_sasl_mechanism",
        "MECHANISM",
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; the password comes from "
        "DECLIC_KAFKA_SASL_PASSWORD only",
    ),
    SettingFlag("kafka_sasl_username", "USER", "SASL user"),
    SettingFlag("kafka_ssl_cafile", "FILE", "PEM file of the CA of the brokers' certificates"),
    SettingFlag("kafka_ssl_certfile", "FILE", "PEM client certificate, for brokers requiring one"),
    SettingFlag(
        "kafka_ssl_keyfile",
        "FILE",
        "PEM private key of the client certificate; its password comes from "
        "DECLIC_KAFKA_SSL_KEY_PASSWORD only",
    ),
    SettingFlag(
        "app_id", "NAME", "consumer group, transactional ids, internal topics (default declic)"
    ),
    SettingFlag("topic_prefix", "PREFIX", "prefix of every topic name (default none)"),
    SettingFlag("partitions", "N", "partitions of the topics created (default 4)"),
    SettingFlag("replication_factor", "N", "replicas of the topics created (default 1)"),
    SettingFlag("worker_id", "NAME", "stable, unique name of this worker (default: host name)"),
    SettingFlag("data_dir", "DIR", "local state directory (default .declic/data)"),
    SettingFlag(
        "worker_processes",
        "N",
        "engine processes, each with its own partitions and state (default: the CPUs this "
        "process may use, at most its cgroup's CPU quota)",
        aliases=("--processes",),
    ),
    SettingFlag("web_host", "ADDRESS", "address of the HTTP server (default 127.0.0.1)"),
    SettingFlag("web_port", "PORT", "port of /metrics and /health (default 6066)"),
    SettingFlag(
        "max_event_age_seconds",
        "SECONDS",
        "older events trigger nothing (default 3600)",
        aliases=("--max-event-age",),
    ),
    SettingFlag(
        "max_future_seconds", "SECONDS", "events further ahead trigger nothing (default 300)"
    ),
    SettingFlag(
        "checkpoint_interval_seconds",
        "SECONDS",
        "time between commits (default 0.05)",
        aliases=("--checkpoint-interval",),
    ),
    SettingFlag("max_batch_records", "N", "records taken from Kafka at once (default 10000)"),
    SettingFlag(
        "transaction_timeout_seconds",
        "SECONDS",
        "the broker aborts a dead worker's transaction after this (default 15)",
    ),
    SettingFlag(
        "max_input_bytes",
        "BYTES",
        "larger input records are dead-lettered unread (default 262144)",
    ),
    SettingFlag(
        "max_record_bytes",
        "BYTES",
        "largest record produced; larger outputs become dead letters (default 1000000)",
    ),
    SettingFlag(
        "frequency_caps",
        "JSON",
        'engine-wide caps per user, like [{"max": 3, "per_seconds": 86400}]; [] for none',
    ),
    SettingFlag("default_timezone", "ZONE", "IANA zone when the user's is unknown (default UTC)"),
    SettingFlag(
        "stats_interval_seconds",
        "SECONDS",
        "how often workers publish engagement figures (default 30)",
    ),
    SettingFlag(
        "unseen_delivery_seconds",
        "SECONDS",
        "a delivery this old without an impression is unseen (default 3600)",
    ),
    SettingFlag("author", "NAME", "who makes the change (default: the OS user)"),
    SettingFlag("gateway_host", "ADDRESS", "address the gateway listens on (default 127.0.0.1)"),
    SettingFlag("gateway_port", "PORT", "port of the gateway (default 6080)"),
    SettingFlag(
        "gateway_jwks_file",
        "FILE",
        "JWKS file of the public keys (RS256, ES256) checking tokens; or the HS256 key in "
        "DECLIC_GATEWAY_TOKEN_SECRET (a variable only)",
    ),
    SettingFlag("gateway_token_audience", "AUD", "required aud claim of tokens (default none)"),
    SettingFlag(
        "gateway_allowed_origins",
        "ORIGIN[,ORIGIN]",
        "origins allowed by CORS, like https://shop.example (default none)",
    ),
    SettingFlag(
        "gateway_rate_per_user", "N", "requests per second per user, bursts of 2 s (default 10)"
    ),
    SettingFlag(
        "gateway_rate_per_address",
        "N",
        "requests per second per client address, bursts of 2 s (default 50)",
    ),
    SettingFlag(
        "gateway_history_seconds",
        "SECONDS",
        "deliveries and impressions read back at start (default 86400)",
    ),
    SettingFlag(
        "gateway_max_messages_per_user", "N", "deliveries held per user, the newest (default 20)"
    ),
    SettingFlag(
        "gateway_max_users", "N", "users held; the least recent are dropped (default 1000000)"
    ),
    SettingFlag("console_host", "ADDRESS", "address the console listens on (default 127.0.0.1)"),
    SettingFlag("console_port", "PORT", "port of the console (default 6070)"),
    SettingFlag(
        "console_users_file",
        "FILE",
        "users, roles and password hashes (default .declic/console-users.yaml)",
    ),
    SettingFlag(
        "console_user_header",
        "HEADER",
        "trust this header, set by an authenticating proxy, to name the user (default none)",
    ),
    SettingFlag(
        "console_trusted_proxies",
        "ADDRESS[,ADDRESS]",
        "addresses or networks (like 10.0.0.0/8) of the proxies setting the user header",
    ),
    SettingFlag("console_ssl_certfile", "FILE", "certificate chain (PEM) to serve HTTPS"),
    SettingFlag("console_ssl_keyfile", "FILE", "private key (PEM) of the certificate"),
    SettingFlag(
        "log_level", "LEVEL", "DEBUG, INFO, WARNING or ERROR (default INFO; WARNING for commands)"
    ),
)
SETTING_FLAGS: dict[str, SettingFlag] = {flag.field: flag for flag in _FLAGS}

KAFKA = (
    "kafka_bootstrap",
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
    "topic_prefix",
    "log_level",
)
CREATING_TOPICS = ("app_id", "partitions", "replication_factor")
WORKER = (
    *KAFKA,
    *CREATING_TOPICS,
    "worker_id",
    "data_dir",
    "web_host",
    "web_port",
    "max_event_age_seconds",
    "max_future_seconds",
    "checkpoint_interval_seconds",
    "max_batch_records",
    "transaction_timeout_seconds",
    "max_input_bytes",
    "max_record_bytes",
    "frequency_caps",
    "default_timezone",
    "stats_interval_seconds",
    "unseen_delivery_seconds",
)
"""The settings each kind of command uses (and shows in its --help)."""
COMMAND_SETTINGS: dict[str, tuple[str, ...]] = {
    "worker": (*WORKER, "worker_processes"),
    "demo": WORKER,
    "bench": WORKER,
    "topics": (*KAFKA, *CREATING_TOPICS),
    "engagements-apply": (*KAFKA, *CREATING_TOPICS, "author"),
    "engagements-change": (*KAFKA, "app_id", "author"),
    "engagements-read": (*KAFKA, "app_id"),
    "diagnose": (*KAFKA, "app_id", "unseen_delivery_seconds"),
    "publish": (*KAFKA, "app_id"),
    "gateway": (*KAFKA, "app_id", *GATEWAY_SETTINGS),
    "console": (*KAFKA, "app_id", "unseen_delivery_seconds", *CONSOLE_SETTINGS),
    "console-users": ("console_users_file", "log_level"),
}


class _StoreSetting(argparse.Action):
    """Store a setting's text, and remember which spelling the user typed."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        typed: dict[str, str] = getattr(namespace, "setting_flags_typed", None) or {}
        typed[self.dest.removeprefix("setting_")] = option_string or self.dest
        namespace.setting_flags_typed = typed


def setting_flags_parser(kind: str) -> argparse.ArgumentParser:
    """Return a parent parser holding the flags of the settings a kind of command uses."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group(
        "settings", "Each flag overrides its DECLIC_* variable, named in brackets."
    )
    for field in COMMAND_SETTINGS[kind]:
        flag = SETTING_FLAGS[field]
        group.add_argument(
            flag.flag,
            *flag.aliases,
            dest=f"setting_{field}",
            action=_StoreSetting,
            default=None,
            metavar=flag.metavar,
            help=f"{flag.help} [{flag.variable}]",
        )
    return parent


class HelpFormatter(argparse.HelpFormatter):
    """Wrap descriptions to the terminal; keep example blocks (indented lines) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = text.split("\n\n")
        return "\n\n".join(
            paragraph
            if "\n  " in paragraph
            else super(HelpFormatter, self)._fill_text(paragraph, width, indent)
            for paragraph in paragraphs
        )


def add_command(
    commands: Any, name: str, kind: str | None, **options: Any
) -> argparse.ArgumentParser:
    """Add a subcommand showing the setting flags of its kind (none if None)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        parents=[setting_flags_parser(kind)] if kind else [],
        formatter_class=HelpFormatter,
        allow_abbrev=False,
        **options,
    )
    return parser


def settings_given(args: argparse.Namespace) -> dict[str, str]:
    """Return the settings given as flags, as the text typed."""
    return {
        name.removeprefix("setting_"): value
        for name, value in vars(args).items()
        if name.startswith("setting_") and name != "setting_flags_typed" and value is not None
    }


def user_names(args: argparse.Namespace | None) -> dict[str, str]:
    """Return, per settings field, the name the user gave it: the flag typed, else its
    variable if set, else both spellings."""
    typed: Mapping[str, str] = getattr(args, "setting_flags_typed", None) or {}
    names = {}
    for field in Settings.model_fields:
        variable = variable_of(field)
        if field in typed:
            names[field] = typed[field]
        elif variable in os.environ or field in SECRET_SETTINGS or field not in SETTING_FLAGS:
            names[field] = variable
        else:
            names[field] = f"{variable} (--{field.replace('_', '-')})"
    return names


# Variables read by the scripts (deploy/local/kafka.sh) and the schema loader, not settings.
OTHER_VARIABLES = frozenset(
    "DECLIC_" + name
    for name in (
        "SCHEMA_DIR",
        "SDK_DIR",
        "KAFKA_PORT",
        "KAFKA_RUN_DIR",
        "KAFKA_VERSION",
        "KAFKA_EXTRA_CONFIG",
        "KAFKA_FORMAT_ARGS",
        "KAFKA_HEAP",
        "KAFKA_JVM_OPTS",
        "KAFKA_CACHE",
        "KAFKA_PARTITIONS",
        "KAFKA_TIMEOUT",
        "KAFKA_CLUSTER_PORT",
        "KAFKA_CLUSTER_RUN_DIR",
        "KAFKA_CLUSTER_NODES",
        "KAFKA_CLUSTER_HEAP",
        "SUPERVISOR_PID",  # set by `declic worker --processes N` for its children
    )
)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Return a warning for each DECLIC_* variable that is no setting, naming the closest."""
    known = [variable_of(field) for field in Settings.model_fields]
    warnings = []
    for name in sorted(environ):
        if not name.startswith("DECLIC_") or name in known or name in OTHER_VARIABLES:
            continue
        closest = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {closest[0]}?" if closest else ""
        warnings.append(f"{name} is not a Declic setting, ignored{hint}")
    return warnings

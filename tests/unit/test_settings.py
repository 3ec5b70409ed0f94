"""Settings: DECLIC_* variables, flags over variables, validation, secrets kept secret."""

from __future__ import annotations

import pytest

from engine.core.durations import MAX_DURATION_SECONDS
from engine.errors import ConfigError
from engine.settings import load_settings


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECLIC_KAFKA_BOOTSTRAP", "env-host:9092")
    monkeypatch.setenv("DECLIC_PARTITIONS", "8")
    settings = load_settings({"kafka_bootstrap": "flag-host:9093", "partitions": None})
    assert settings.kafka_bootstrap == "flag-host:9093"
    assert settings.partitions == 8


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.partitions = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("DECLIC_KAFKA_BOOTSTRAP", "no-port", "kafka_bootstrap"),
        ("DECLIC_PARTITIONS", "0", "partitions"),
        ("DECLIC_APP_ID", "has space", "app_id"),
        ("DECLIC_CHECKPOINT_INTERVAL_SECONDS", "-1", "checkpoint_interval_seconds"),
    ],
)
def test_invalid_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ConfigError, match="no such setting: no_such_setting"):
        load_settings({"no_such_setting": 1})


def test_password_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECLIC_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("DECLIC_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("DECLIC_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("DECLIC_KAFKA_SASL_PASSWORD", "hunter2")
    settings = load_settings()
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.describe())
    assert settings.kafka_client_options()["sasl_plain_password"] == "hunter2"


def test_topic_names_carry_the_prefix() -> None:
    settings = load_settings({"topic_prefix": "staging-", "app_id": "declic"})
    assert settings.topic("sessions") == "staging-sessions"
    assert settings.internal_topic("state-changelog") == "staging-declic-state-changelog"


def test_frequency_cap_window_is_bounded_like_the_core(monkeypatch: pytest.MonkeyPatch) -> None:
    at_limit = f'[{{"max": 1, "per_seconds": {MAX_DURATION_SECONDS}}}]'
    monkeypatch.setenv("DECLIC_FREQUENCY_CAPS", at_limit)
    assert load_settings().frequency_caps[0].per_seconds == MAX_DURATION_SECONDS
    monkeypatch.setenv("DECLIC_FREQUENCY_CAPS", at_limit.replace("000}", "001}"))
    with pytest.raises(ConfigError, match="per_seconds"):
        load_settings()

"""Frequency caps and the policy that carries them."""

from __future__ import annotations

import pytest

from engine.core.caps import (
    DEFAULT_FREQUENCY_CAPS,
    FrequencyCap,
    history_limit,
    is_capped,
    record_delivery_time,
)
from engine.core.policy import MatchPolicy
from engine.errors import ConfigError


def test_default_caps_are_the_contract() -> None:
    assert (FrequencyCap(1, 30), FrequencyCap(3, 86_400)) == DEFAULT_FREQUENCY_CAPS
    assert MatchPolicy().frequency_caps == DEFAULT_FREQUENCY_CAPS
    assert MatchPolicy().cap_history == 3


@pytest.mark.parametrize(("max_", "per"), [(0, 30), (1, 0), (True, 30), (1, 1.5)])
def test_bad_caps_are_refused(max_: object, per: object) -> None:
    with pytest.raises(ValueError, match="frequency cap"):
        FrequencyCap(max_, per)  # type: ignore[arg-type]


def test_window_is_half_open() -> None:
    caps = (FrequencyCap(1, 30),)
    assert is_capped([1_000], 30_999, caps)
    assert not is_capped([1_000], 31_000, caps)
    assert not is_capped([], 0, caps)


def test_max_counts_the_most_recent_deliveries() -> None:
    caps = (FrequencyCap(3, 100),)
    assert not is_capped([0, 50_000, 60_000], 100_000, caps)  # 0 is out of the window
    assert is_capped([1_000, 50_000, 60_000], 100_000, caps)
    assert not is_capped([50_000, 60_000], 100_000, caps)


def test_history_is_bounded_and_ordered() -> None:
    times: list[int] = []
    for timestamp in (5, 1, 9, 3, 7):
        record_delivery_time(times, timestamp, limit=3)
    assert times == [5, 7, 9]
    assert history_limit(DEFAULT_FREQUENCY_CAPS) == 3
    assert history_limit(()) == 0


def test_policy_checks_its_zone_and_caps() -> None:
    assert MatchPolicy(default_timezone="Europe/Paris").default_zone.key == "Europe/Paris"
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        MatchPolicy(default_timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match="FrequencyCap"):
        MatchPolicy(frequency_caps=({"max": 1},))  # type: ignore[arg-type]
    assert MatchPolicy(frequency_caps=[FrequencyCap(2, 5)]).frequency_caps == (  # type: ignore[arg-type]
        FrequencyCap(2, 5),
    )

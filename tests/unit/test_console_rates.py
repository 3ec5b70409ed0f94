"""The console's rates, intervals and plain-words comparison of variants."""

from __future__ import annotations

import math

import pytest

from engine.console.rates import Rate, compare_variants, format_rate, two_proportion_p_value


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        # Published Wilson score intervals (95%).
        (5, 10, 0.2366, 0.7634),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (81, 263, 0.2553, 0.3662),
        (1, 1, 0.2065, 1.0),
    ],
)
def test_wilson_interval(successes: int, trials: int, low: float, high: float) -> None:
    rate = Rate(successes, trials)
    assert rate.value == successes / trials
    assert rate.low == pytest.approx(low, abs=1e-4)
    assert rate.high == pytest.approx(high, abs=1e-4)


def test_no_trials_no_rate() -> None:
    rate = Rate(0, 0)
    assert (rate.value, rate.low, rate.high) == (None, None, None)
    assert format_rate(rate) == "—"


def test_more_successes_than_trials_count_as_all() -> None:
    assert Rate(12, 10).value == 1.0
    assert Rate(12, 10).high == Rate(10, 10).high


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="counts must be >= 0"):
        Rate(-1, 10)


def test_format_rate() -> None:
    assert format_rate(Rate(5, 10)) == "50.0% (23.7\u201376.3%)"
    assert format_rate(Rate(0, 10)) == "0.0% (0.0\u201327.8%)"


def z_test_by_hand(x1: int, n1: int, x2: int, n2: int) -> float:
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    # Two-sided tail of the standard normal: 2 * (1 - Phi(|z|)).
    return 2 * (1 - 0.5 * (1 + math.erf(abs(z) / math.sqrt(2))))


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"), [(124, 1000, 80, 1000), (30, 200, 25, 210), (9, 40, 2, 45)]
)
def test_p_value_is_the_two_proportion_z_test(x1: int, n1: int, x2: int, n2: int) -> None:
    p = two_proportion_p_value(Rate(x1, n1), Rate(x2, n2))
    assert p == pytest.approx(z_test_by_hand(x1, n1, x2, n2), rel=1e-9)
    assert p == two_proportion_p_value(Rate(x2, n2), Rate(x1, n1))


def test_p_value_known_case() -> None:
    # 124/1000 against 80/1000: pooled 0.102, z = 0.044 / sqrt(0.102 * 0.898 * 0.002) = 3.2509.
    z = 0.044 / math.sqrt(0.102 * 0.898 * 0.002)
    assert z == pytest.approx(3.2509, abs=1e-4)
    assert two_proportion_p_value(Rate(124, 1000), Rate(80, 1000)) == pytest.approx(
        0.001151, abs=1e-6
    )


def test_p_value_without_a_difference_to_see() -> None:
    assert two_proportion_p_value(Rate(0, 10), Rate(0, 20)) == 1.0
    assert two_proportion_p_value(Rate(10, 10), Rate(20, 20)) == 1.0
    assert two_proportion_p_value(Rate(1, 10), Rate(0, 0)) == 1.0


def counts(deliveries: int, impressions: int, clicks: int, conversions: int) -> dict[str, int]:
    return {
        "deliveries": deliveries,
        "impressions": impressions,
        "clicks": clicks,
        "conversions": conversions,
    }


def test_a_significant_leader() -> None:
    variants = {"A": counts(1200, 1000, 80, 5), "B": counts(1200, 1000, 124, 9)}
    p = z_test_by_hand(124, 1000, 80, 1000)
    assert compare_variants(variants, None, "clicks") == (
        f"variant B leads on click rate: {format_rate(Rate(124, 1000))} against "
        f"{format_rate(Rate(80, 1000))} for variant A; the difference is significant at 95% "
        f"(two-proportion z-test, p = {p:.2g})"
    )


def test_a_leader_not_yet_significant() -> None:
    variants = {"A": counts(60, 50, 5, 1), "B": counts(60, 50, 7, 2), "C": counts(60, 50, 1, 0)}
    sentence = compare_variants(variants, None, "clicks")
    p = z_test_by_hand(7, 50, 5, 50)
    assert sentence == (
        f"not yet significant: variant B leads on click rate: {format_rate(Rate(7, 50))} against "
        f"{format_rate(Rate(5, 50))} for variant A (two-proportion z-test, p = {p:.2g}); "
        "needs more data"
    )


def test_rates_follow_the_metric() -> None:
    # Impressions over deliveries: A shows 90%, B 50%.
    variants = {"A": counts(1000, 900, 0, 0), "B": counts(1000, 500, 0, 0)}
    assert compare_variants(variants, None, "impressions").startswith(
        "variant A leads on impression rate: 90.0%"
    )
    # Conversions over deliveries (per user reached, as the control group's per user).
    variants = {"A": counts(1000, 900, 0, 90), "B": counts(100, 100, 0, 20)}
    assert compare_variants(variants, None, "conversions").startswith(
        "variant B leads on conversion rate: 20.0%"
    )


def test_the_control_group_competes_on_conversions() -> None:
    variants = {"A": counts(1000, 1000, 50, 20)}
    control = {"users": 1000, "conversions": 60}
    sentence = compare_variants(variants, control, "conversions")
    assert sentence.startswith("the control group leads on conversion rate: 6.0%")
    assert "for variant A; the difference is significant" in sentence
    # Per user reached: 2% of the users the variant reached converted (10% of those
    # shown), against 3% of the control's users.
    variants = {"A": counts(1000, 200, 0, 20)}
    sentence = compare_variants(variants, {"users": 1000, "conversions": 30}, "conversions")
    assert sentence.startswith("not yet significant") or sentence.startswith("the control")
    assert "variant A leads" not in sentence
    # Not on clicks: nothing is shown to it.
    assert "control" not in compare_variants(variants, control, "clicks")


def test_no_data_or_nothing_to_compare() -> None:
    assert compare_variants({}, None, "clicks") == "no data yet on click rate"
    assert compare_variants({"A": counts(10, 0, 0, 0)}, None, "clicks") == (
        "no data yet on click rate"
    )
    assert compare_variants(
        {"A": counts(10, 10, 2, 0), "B": counts(0, 0, 0, 0)}, None, "clicks"
    ) == (
        f"variant A has click rate {format_rate(Rate(2, 10))}; "
        "no other variant has data to compare with yet"
    )


def test_ties_are_not_significant_and_ordered_by_name() -> None:
    variants = {"B": counts(20, 20, 5, 0), "A": counts(20, 20, 5, 0)}
    assert compare_variants(variants, None, "clicks").startswith(
        "not yet significant: variant A leads"
    )
    assert "p = 1)" in compare_variants(variants, None, "clicks")


def test_unknown_metric() -> None:
    with pytest.raises(ValueError, match="metric must be one of"):
        compare_variants({}, None, "views")

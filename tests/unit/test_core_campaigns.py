"""Campaign features across modules: compile errors, stale events, releases, test sends."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from engine.core import test_sends
from engine.core.catalog import Catalog
from engine.core.deliveries import DECLIC_NAMESPACE, delivery_id, new_delivery_state
from engine.core.engagements import compile_engagement
from engine.core.events import custom_event, interaction, session_event
from engine.core.interactions import join_interaction
from engine.core.matcher import MatchPolicy, Outcome, evaluate
from engine.core.pending import PendingDelivery
from engine.core.release import release_pending
from engine.core.state import UserState
from engine.errors import InvalidRecord

NOW = 1_795_442_400_000  # 2026-11-23T14:00:00Z


def _engagement(engagement_id: str = "cart", version: int = 1, **fields: Any) -> Any:
    document = {"id": engagement_id, "status": "active", "trigger": {"event": "session_start"}}
    return compile_engagement(document | fields, version)


@pytest.mark.parametrize(
    ("fields", "mentions"),
    [
        ({"trigger": {"event": "session_start", "delay_seconds": 0}}, "delay_seconds"),
        (
            {"trigger": {"event": "custom", "name": "E", "cancel_on": [{"event": "buy"}]}},
            "cancel_on needs delay_seconds",
        ),
        (
            {"trigger": {"event": "custom", "name": "E", "delay_seconds": 5, "cancel_on": [{}]}},
            "cancel_on event",
        ),
        ({"expires_after_seconds": 1.5}, "expires_after_seconds"),
        ({"ignore_frequency_caps": "yes"}, "ignore_frequency_caps"),
        ({"conversion": {"event": "buy"}}, "window_seconds"),
        ({"conversion": {"event": "", "window_seconds": 5}}, "conversion event"),
        (
            {"elements": [{"element": "b", "metric": "m"}, {"element": "b", "metric": "n"}]},
            "listed twice",
        ),
        ({"elements": [{"element": "b", "metric": "has space"}]}, "metric"),
        ({"audience": {"filters": [{"event": "E", "op": "gte", "count": 1}]}}, "within_seconds"),
    ],
)
def test_bad_campaign_fields_are_refused(fields: dict[str, Any], mentions: str) -> None:
    with pytest.raises(InvalidRecord) as raised:
        _engagement(**fields)
    assert raised.value.reason == "invalid_engagement"
    assert raised.value.detail.startswith("cart: ")
    assert mentions in raised.value.detail


def test_catalog_orders_ties_by_start_and_flags_local_time() -> None:
    catalog = Catalog.build(
        [
            _engagement("b", schedule={"start": "2026-01-01T00:00:00Z"}),
            _engagement("a", schedule={"start": "2026-02-01T00:00:00Z"}),
            _engagement("c"),
            _engagement("d", priority=1, schedule={"local_time": True}),
        ]
    )
    assert [e.id for e in catalog.candidates("session_start")] == ["d", "c", "b", "a"]
    assert catalog.uses_local_time("session_start")
    assert not Catalog.build([_engagement("c")]).uses_local_time("session_start")


def _session(event_id: str, timestamp: int, user_id: str = "user-42") -> Any:
    record = {"event_id": event_id, "user_id": user_id, "type": "session_start"}
    return session_event(record | {"timestamp": timestamp})


def _purchase(event_id: str, timestamp: int) -> Any:
    record = {"event_id": event_id, "user_id": "user-42", "name": "purchase"}
    return custom_event(record | {"timestamp": timestamp})


def test_stale_event_counts_cancels_and_converts_nothing() -> None:
    catalog = Catalog.build(
        [
            _engagement(
                "cart",
                trigger={
                    "event": "session_start",
                    "delay_seconds": 300,
                },
                audience={
                    "filters": [
                        {"event": "purchase", "op": "gte", "count": 0, "within_seconds": 60}
                    ]
                },
            )
        ]
    )
    user = UserState()
    pending = evaluate(_session("evt-1", NOW), user, catalog, NOW).scheduled
    assert len(pending) == 1
    before = user.to_json_dict()
    stale = evaluate(_purchase("evt-2", NOW - 7_200_000), user, catalog, NOW)
    assert stale.user_changed is False and stale.evaluations == []
    assert user.to_json_dict() == before


def test_release_of_a_pending_delivery_no_longer_stored_changes_nothing() -> None:
    catalog = Catalog.build(
        [_engagement("cart", trigger={"event": "session_start", "delay_seconds": 60})]
    )
    user = UserState()
    [pending] = evaluate(_session("evt-1", NOW - 60_000), user, catalog, NOW).scheduled
    released = release_pending(pending, user, catalog, NOW)
    assert released.evaluation is not None
    assert released.evaluation.outcome is Outcome.DELIVERED
    assert released.delivery is not None and released.delivery["delivery_id"] == pending.delivery_id
    before = user.to_json_dict()
    again = release_pending(pending, user, catalog, NOW + 1)
    assert again.evaluation is None and again.delivery is None
    assert user.to_json_dict() == before
    # A replayed trigger after the release is not re-eligible (delivered once per user).
    replay = evaluate(_session("evt-1", NOW - 60_000), user, catalog, NOW + 2)
    assert replay.evaluations[0].outcome is Outcome.NOT_RE_ELIGIBLE and not replay.scheduled


def test_release_of_a_deleted_engagement_reports_the_pending_version() -> None:
    user = UserState()
    pending = PendingDelivery("d-1", "gone", 7, "user-42", "evt-1", NOW - 60_000, NOW, "default")
    user.add_pending(pending)
    released = release_pending(pending, user, Catalog.build([]), NOW, MatchPolicy())
    assert released.evaluation is not None
    assert (released.evaluation.engagement_version, released.evaluation.outcome) == (
        7,
        Outcome.EXPIRED,
    )
    assert user.pending == {}


def test_test_send_ids_are_deterministic_and_never_collide_with_real_ones() -> None:
    engagement = _engagement("cart", message={"title": "Hi"})
    first = test_sends.test_delivery(engagement, "user-42", NOW, request_id="req-1")
    again = test_sends.test_delivery(engagement, "user-42", NOW + 5, request_id="req-1")
    other = test_sends.test_delivery(engagement, "user-42", NOW, request_id="req-2")
    assert first["delivery_id"] == again["delivery_id"] != other["delivery_id"]
    assert first["delivery_id"] == str(
        uuid.uuid5(DECLIC_NAMESPACE, "cart\x1fuser-42\x1ftest\x1freq-1")
    )
    assert first["delivery_id"] != delivery_id("cart", "user-42", "req-1")
    assert first["test"] is True and first["variant"] == "default"
    assert "expires_at" not in first


def test_interactions_of_an_engagement_gone_from_the_catalog_still_join() -> None:
    engagement = _engagement("cart", conversion={"event": "purchase", "window_seconds": 60})
    [delivery] = evaluate(
        _session("evt-1", NOW), UserState(), Catalog.build([engagement]), NOW
    ).deliveries
    state = new_delivery_state(delivery, NOW)
    user = UserState()
    record = {
        "event_id": "int-1",
        "user_id": "user-42",
        "delivery_id": delivery["delivery_id"],
        "kind": "impression",
        "timestamp": NOW + 1_000,
    }
    joined = join_interaction(interaction(record), state, user, Catalog.build([]), NOW + 1_000)
    assert joined.impression["first"] is True and joined.delivery_changed
    assert not joined.user_changed and user.watches == []


def test_impression_from_the_future_starts_its_watch_now() -> None:
    engagement = _engagement("cart", conversion={"event": "purchase", "window_seconds": 60})
    catalog = Catalog.build([engagement])
    [delivery] = evaluate(_session("evt-1", NOW), UserState(), catalog, NOW).deliveries
    user = UserState()
    record = {
        "event_id": "int-1",
        "user_id": "user-42",
        "delivery_id": delivery["delivery_id"],
        "kind": "impression",
        "timestamp": NOW + 3_600_000,  # a device clock an hour ahead
    }
    joined = join_interaction(
        interaction(record), new_delivery_state(delivery, NOW), user, catalog, NOW
    )
    assert joined.user_changed
    assert user.watches[0].started_at_ms == NOW

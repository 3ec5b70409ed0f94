"""Engagement compilation and the catalog index."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from engine.core.catalog import Catalog
from engine.core.engagements import compile_engagement
from engine.core.events import custom_trigger_key
from engine.core.outcomes import Outcome
from engine.errors import InvalidRecord


def _document(engagement_id: str, **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": engagement_id,
        "name": engagement_id.title(),
        "description": "",
        "status": "active",
        "priority": 0,
        "trigger": {"event": "session_start"},
        "schedule": {"start": None, "end": None},
        "audience": {"filters": [], "percent": 100},
        "message": {"title": "Hi", "cta": {"url": "app://home"}},
        "reeligibility": {"after_seconds": None},
    }
    document.update(overrides)
    return document


def test_compile_engagement_fields() -> None:
    engagement = compile_engagement(
        _document(
            "spring-sale",
            priority=5,
            trigger={"event": "custom", "name": "Added to Favorites", "where": []},
            schedule={"start": "2026-11-01T00:00:00Z", "end": 1_798_761_600_000},
            audience={
                "filters": [{"attribute": "country", "op": "eq", "value": "FR"}],
                "percent": 25,
            },
            reeligibility={"after_seconds": 1.5},
        ),
        version=4,
    )
    assert engagement.version == 4
    assert engagement.priority == 5
    assert engagement.trigger_key == custom_trigger_key("Added to Favorites")
    assert engagement.schedule_start_ms == 1_793_491_200_000
    assert engagement.schedule_end_ms == 1_798_761_600_000
    assert engagement.percent == 25
    assert engagement.reeligible_after_seconds == 1.5
    assert engagement.reeligible_after_ms == 1_500
    assert engagement.audience({"country": "FR"})
    assert not engagement.audience({"country": "BE"})
    assert engagement.evaluations[Outcome.DELIVERED].engagement_version == 4


def test_message_is_a_private_copy() -> None:
    document = _document("welcome")
    engagement = compile_engagement(document, 1)
    document["message"]["cta"]["url"] = "app://elsewhere"
    assert engagement.message == {"title": "Hi", "cta": {"url": "app://home"}}


@pytest.mark.parametrize(
    "overrides",
    [
        {"id": ""},
        {"status": "deleted"},
        {"priority": "high"},
        {"trigger": {"event": "page_view"}},
        {"trigger": {"event": "custom"}},
        {"trigger": {"event": "custom", "name": "x", "where": {"property": "p"}}},
        {"trigger": {"event": "custom", "name": "x", "where": [{"property": "p", "op": "??"}]}},
        {"schedule": {"start": "2026-11-02T00:00:00Z", "end": "2026-11-01T00:00:00Z"}},
        {"schedule": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}},
        {"schedule": {"start": "tomorrow", "end": None}},
        {"audience": {"filters": [], "percent": 101}},
        {"audience": {"filters": [], "percent": True}},
        {"audience": {"filters": [{"attribute": "a", "op": "in", "value": 1}], "percent": 100}},
        {"reeligibility": {"after_seconds": -1}},
        {"reeligibility": {"after_seconds": float("inf")}},
        {"message": "hello"},
    ],
)
def test_invalid_documents(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidRecord) as raised:
        compile_engagement(_document("broken", **overrides), 1)
    assert raised.value.reason == "invalid_engagement"


def test_invalid_version() -> None:
    with pytest.raises(InvalidRecord):
        compile_engagement(_document("welcome"), True)


def _catalog() -> Catalog:
    custom = {"event": "custom", "name": "Added to Cart", "where": []}
    return Catalog.build(
        [
            compile_engagement(_document("b-low", priority=1), 1),
            compile_engagement(_document("a-low", priority=1), 1),
            compile_engagement(_document("top", priority=9), 1),
            compile_engagement(_document("old", status="archived"), 1),
            compile_engagement(_document("cart", trigger=custom), 1),
            compile_engagement(_document("ended", trigger={"event": "session_end"}), 1),
        ]
    )


def test_candidates_are_indexed_and_ordered() -> None:
    catalog = _catalog()
    assert [e.id for e in catalog.candidates("session_start")] == ["top", "a-low", "b-low"]
    assert [e.id for e in catalog.candidates(custom_trigger_key("Added to Cart"))] == ["cart"]
    assert catalog.candidates("custom:Unknown") == ()
    assert catalog.candidates("Added to Cart") == ()


def test_archived_is_stored_but_never_a_candidate() -> None:
    catalog = _catalog()
    assert len(catalog) == 6
    archived = catalog.get("old")
    assert archived is not None and archived.status == "archived"
    assert all(e.id != "old" for key in catalog.trigger_keys for e in catalog.candidates(key))
    assert catalog.get("missing") is None


def test_event_name_labels_are_bounded() -> None:
    catalog = _catalog()
    assert catalog.custom_event_names == {"Added to Cart"}
    assert catalog.trigger_keys == {"session_start", "session_end", "custom:Added to Cart"}
    assert catalog.label_for_event_name("Added to Cart") == "Added to Cart"
    assert catalog.label_for_event_name("Some random name") == "other"


def test_highest_version_wins_and_updates_reuse_compiled_engagements() -> None:
    v1 = compile_engagement(_document("welcome"), 1)
    v2 = compile_engagement(_document("welcome", priority=3), 2)
    assert Catalog.build([v2, v1]).get("welcome") is v2
    catalog = Catalog.build([v1])
    updated = catalog.with_engagement(v2)
    assert updated.get("welcome") is v2
    assert catalog.get("welcome") is v1  # snapshots are immutable
    paused = compile_engagement(_document("welcome", status="archived"), 3)
    assert updated.with_engagement(paused).candidates("session_start") == ()
    assert len(updated.without("welcome")) == 0


def test_document_is_kept() -> None:
    document = _document("welcome")
    snapshot = copy.deepcopy(document)
    engagement = compile_engagement(document, 1)
    assert engagement.document == snapshot


def test_event_names_used_only_by_rules_keep_their_metric_label() -> None:
    from engine.core.engagements import compile_engagement

    engagement = compile_engagement(
        {
            "id": "cart",
            "name": "Cart",
            "status": "active",
            "trigger": {
                "event": "custom",
                "name": "Added to Cart",
                "delay_seconds": 60,
                "cancel_on": [{"event": "Purchased"}],
            },
            "audience": {
                "filters": [
                    {"event": "Viewed Item", "op": "gte", "count": 2, "within_seconds": 600}
                ],
                "percent": 100,
            },
            "conversion": {"event": "Checked Out", "window_seconds": 3600},
            "message": {},
        },
        1,
    )
    catalog = Catalog.build([engagement])
    for name in ("Added to Cart", "Purchased", "Viewed Item", "Checked Out"):
        assert catalog.label_for_event_name(name) == name
    assert catalog.label_for_event_name("Something Else") == "other"

"""Test sends: one delivery to one user on demand, bypassing every eligibility rule.

A test delivery ignores status, schedule, audience, percent, caps and re-eligibility, and
never touches user state, so it counts towards nothing. Its variant is the one requested
(it must exist), else the user's sticky assignment; a control user gets the first
variant, since a test must show something.
"""

from __future__ import annotations

from engine.core.deliveries import delivery_id_for_test_send, delivery_record
from engine.core.engagements import Engagement
from engine.core.timestamps import format_timestamp
from engine.core.variants import assign_variant
from engine.errors import InvalidRecord


def test_delivery(
    engagement: Engagement,
    user_id: str,
    now_ms: int,
    *,
    request_id: str,
    variant: str | None = None,
) -> dict[str, object]:
    """Return a ``"test": true`` delivery of ``engagement`` for ``user_id``.

    Raise ``InvalidRecord("unknown_variant", ...)`` when ``variant`` does not exist.
    """
    variants = engagement.variants
    if variant is None:
        chosen = (
            assign_variant(variants, engagement.id, user_id, engagement.hash_version)
            or variants.first
        )
    else:
        found = variants.by_id.get(variant)
        if found is None:
            known = ", ".join(variants.by_id)
            raise InvalidRecord(
                "unknown_variant", f"{engagement.id} has no variant {variant!r} (known: {known})"
            )
        chosen = found
    created_at = format_timestamp(now_ms)
    return delivery_record(
        engagement,
        chosen,
        delivery_id=delivery_id_for_test_send(engagement.id, user_id, request_id),
        user_id=user_id,
        trigger_event_id=request_id,
        triggered_at=created_at,
        created_at=created_at,
        created_at_ms=now_ms,
        test=True,
    )


# Not a pytest test, whatever its name says.
test_delivery.__test__ = False  # type: ignore[attr-defined]

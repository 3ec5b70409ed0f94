"""Measure the memory the delivery gateway holds per user: its index filled with N users of
D deliveries each (a typical message, decoded as from the topic) and one shown mark each.

    python -m engine.bench.gateway_memory --users 100000 --deliveries 3

Prints the resident memory before and after, per user and per million users. No broker.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import orjson

from engine.core.deliveries import delivery_id
from engine.core.timestamps import format_timestamp
from engine.gateway.index import DeliveryIndex
from engine.gateway.records import decode_delivery

MESSAGE = {
    "layout": "modal",
    "title": "Saved to your favorites",
    "body": "Want a price-drop alert?",
    "buttons": [{"id": "yes", "label": "Alert me", "action": "dismiss"}],
}


def resident_bytes() -> int:
    """Return this process's resident memory (Linux)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def record(user_id: str, number: int, created_ms: int) -> bytes:
    """Return a delivery record as a worker writes it."""
    event = f"e-{user_id}-{number}"
    return orjson.dumps(
        {
            "delivery_id": delivery_id("favorites-nudge", user_id, event),
            "engagement_id": "favorites-nudge",
            "engagement_version": 3,
            "variant": "default",
            "user_id": user_id,
            "trigger_event_id": event,
            "message": MESSAGE,
            "triggered_at": format_timestamp(created_ms - 40),
            "created_at": format_timestamp(created_ms),
            "expires_at": format_timestamp(created_ms + 86_400_000),
            "test": False,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--deliveries", type=int, default=3, help="per user")
    args = parser.parse_args()
    now = int(time.time() * 1000)
    index = DeliveryIndex(max_messages=20, max_users=max(args.users, 1))
    gc.collect()
    before = resident_bytes()
    started = time.process_time()
    offset = 0
    for number in range(args.users):
        user_id = f"u-{number:08d}"
        for delivery in range(args.deliveries):
            decoded = decode_delivery(record(user_id, delivery, now + delivery), 0, offset, now)
            assert decoded is not None
            index.add(decoded.user_id, decoded.held)
            offset += 1
        first = delivery_id("favorites-nudge", user_id, f"e-{user_id}-0")
        index.mark_shown(user_id, first)
    cpu = time.process_time() - started
    gc.collect()
    grown = resident_bytes() - before
    per_user = grown / max(args.users, 1)
    print(
        f"{args.users:,} users x {args.deliveries} deliveries "
        f"({len(record('u-00000000', 0, now))} bytes each): resident memory "
        f"{before / 2**20:,.0f} -> {(before + grown) / 2**20:,.0f} MiB, "
        f"{per_user:,.0f} bytes per user, {per_user * 1e6 / 2**30:.2f} GiB per million users; "
        f"{cpu:.1f} s of CPU to decode and index them"
    )


if __name__ == "__main__":
    main()

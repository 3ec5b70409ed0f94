"""The gateway's HTTP API on aiohttp's test server, Kafka replaced at the gateway's seam:
tokens, users, CORS, rate limits, messages, the stream and its resume, interactions."""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from aiohttp import ClientResponse, web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.core.timestamps import format_timestamp
from engine.gateway import sse
from engine.gateway.hub import MAX_STREAMS_PER_USER
from engine.gateway.sse import KEEPALIVE
from engine.gateway.static import DEMO_FILE, SDK_FILE, sdk_dir
from tests.unit.gateway_fakes import (
    NOW_MS,
    SECRET,
    Rig,
    delivery_record,
    gateway_rig,
    hs256_with_header,
)

ORIGIN = "https://shop.example"


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with gateway_rig(origins=(ORIGIN,)) as made:
        yield made


def metric(rig: Rig, name: str, **labels: str) -> float:
    """Return the sum of a metric's samples named `name` with these labels."""
    text = generate_latest(rig.gateway.metrics.registry).decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


# --- tokens and users ---------------------------------------------------------------------------


async def test_messages_need_a_valid_token(rig: Rig) -> None:
    url = "/v1/users/u-1/messages"
    response = await rig.client.get(url)
    assert response.status == 401
    assert await response.json() == {
        "error": "unauthorized",
        "detail": "no token: send Authorization: Bearer <token>",
    }
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for header in ("Bearer not-a-token", "Basic dTpw", f"Bearer {rig.token('u-1')}x"):
        response = await rig.client.get(url, headers={"Authorization": header})
        assert response.status == 401, header
        assert (await response.json())["error"] == "unauthorized"
    # The query token is for the stream only.
    response = await rig.client.get(f"{url}?token={rig.token('u-1')}")
    assert response.status == 401


async def test_another_users_path_is_forbidden(rig: Rig) -> None:
    for path in ("messages", "stream"):
        response = await rig.client.get(f"/v1/users/u-2/{path}", headers=rig.auth("u-1"))
        assert response.status == 403, path
        assert (await response.json())["error"] == "forbidden"


async def test_audience_is_checked_when_set() -> None:
    async with gateway_rig(audience="shop-web") as rig:
        url = "/v1/users/u-1/messages"
        good = {"Authorization": f"Bearer {rig.token('u-1', audience='shop-web')}"}
        assert (await rig.client.get(url, headers=good)).status == 200
        bad = {"Authorization": f"Bearer {rig.token('u-1', audience='admin')}"}
        response = await rig.client.get(url, headers=bad)
        assert response.status == 401
        assert (await response.json())["detail"] == "wrong audience (aud)"


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "HS256", "typ": "JWT", "kid": 123},
        {"alg": "HS256", "typ": "JWT", "crit": ["x-unknown"], "x-unknown": 1},
    ],
    ids=["kid-not-a-string", "unknown-crit"],
)
async def test_crafted_token_headers_are_a_401(rig: Rig, header: dict[str, Any]) -> None:
    now = int(time.time())
    token = hs256_with_header(SECRET, header, {"sub": "u-1", "exp": now + 300})
    for path in ("messages", "stream"):
        response = await rig.client.get(
            f"/v1/users/u-1/{path}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 401, path
        assert await response.json() == {"error": "unauthorized", "detail": "malformed token"}


# --- messages -----------------------------------------------------------------------------------


async def test_messages_are_pending_deliveries_newest_first(rig: Rig) -> None:
    old = delivery_record("u-1", "e-1", created_ms=NOW_MS - 3000)
    shown = delivery_record("u-1", "e-2", created_ms=NOW_MS - 2000)
    expired = delivery_record("u-1", "e-3", created_ms=NOW_MS - 1500, expires_ms=NOW_MS - 1)
    new = delivery_record("u-1", "e-4", created_ms=NOW_MS - 1000, expires_ms=NOW_MS + 60_000)
    other_user = delivery_record("u-2", "e-5")
    for record in (old, shown, expired, new, other_user):
        rig.kafka.deliver(record)
    rig.kafka.impression("u-1", shown["delivery_id"])
    response = await rig.client.get("/v1/users/u-1/messages", headers=rig.auth("u-1"))
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert body == {
        "user_id": "u-1",
        "messages": [{**new, "event_id": "0-3"}, {**old, "event_id": "0-0"}],
        "last_event_id": "0-3",
    }
    limited = await rig.client.get("/v1/users/u-1/messages?limit=1", headers=rig.auth("u-1"))
    assert [m["event_id"] for m in (await limited.json())["messages"]] == ["0-3"]
    # The newest one expires: the clock moves past its expires_at.
    rig.clock.advance(61)
    later = await rig.client.get("/v1/users/u-1/messages", headers=rig.auth("u-1"))
    assert [m["event_id"] for m in (await later.json())["messages"]] == ["0-0"]


async def test_a_user_with_nothing_gets_an_empty_list(rig: Rig) -> None:
    response = await rig.client.get("/v1/users/u-9/messages", headers=rig.auth("u-9"))
    assert await response.json() == {"user_id": "u-9", "messages": [], "last_event_id": None}


@pytest.mark.parametrize("limit", ["0", "-3", "abc", "2.5", ""])
async def test_a_bad_limit_is_a_400(rig: Rig, limit: str) -> None:
    response = await rig.client.get(
        f"/v1/users/u-1/messages?limit={limit}", headers=rig.auth("u-1")
    )
    if limit == "":
        assert response.status == 200
    else:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"


async def test_messages_wait_for_the_history_to_be_read() -> None:
    async with gateway_rig(caught_up=False) as rig:
        response = await rig.client.get("/v1/users/u-1/messages", headers=rig.auth("u-1"))
        assert response.status == 503
        assert response.headers["Retry-After"] == "2"
        assert (await response.json())["error"] == "unavailable"
        health = await rig.client.get("/health")
        assert health.status == 503
        rig.gateway.hub.caught_up.set()
        assert (await rig.client.get("/health")).status == 200


# --- interactions -------------------------------------------------------------------------------


async def test_an_impression_is_published_and_hides_the_message(rig: Rig) -> None:
    record = delivery_record("u-1", "e-1")
    rig.kafka.deliver(record)
    response = await rig.client.post(
        "/v1/interactions",
        json={"delivery_id": record["delivery_id"], "kind": "impression"},
        headers=rig.auth("u-1"),
    )
    assert response.status == 202
    event_id = (await response.json())["event_id"]
    [(topic, key, sent)] = rig.publisher.sent
    assert (topic, key) == ("interactions", "u-1")
    assert sent == {
        "event_id": event_id,
        "user_id": "u-1",
        "delivery_id": record["delivery_id"],
        "kind": "impression",
        "timestamp": format_timestamp(NOW_MS),
    }
    messages = await rig.client.get("/v1/users/u-1/messages", headers=rig.auth("u-1"))
    assert (await messages.json())["messages"] == []
    assert metric(rig, "declic_gateway_interactions_total", result="accepted") == 1


async def test_a_click_keeps_the_given_fields(rig: Rig) -> None:
    record = delivery_record("u-1", "e-1")
    rig.kafka.deliver(record)
    body = {
        "delivery_id": record["delivery_id"],
        "kind": "click",
        "element": "cta",
        "event_id": "i-1",
        "timestamp": 1_796_000_000_123,
    }
    response = await rig.client.post("/v1/interactions", json=body, headers=rig.auth("u-1"))
    assert response.status == 202 and await response.json() == {"event_id": "i-1"}
    assert rig.publisher.sent[0][2] == {**body, "user_id": "u-1"}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"kind": "impression"}', "delivery_id"),
        (b'{"delivery_id": "d"}', "kind"),
        (b'{"delivery_id": "d", "kind": "hover"}', "kind"),
        (b'{"delivery_id": "", "kind": "click"}', "delivery_id"),
        (b'{"delivery_id": 7, "kind": "click"}', "delivery_id"),
        (b'{"delivery_id": "d", "kind": "click", "element": 3}', "element"),
        (b'{"delivery_id": "d", "kind": "click", "timestamp": "yesterday"}', "timestamp"),
        (b'{"delivery_id": "d", "kind": "click", "user_id": "u-2"}', "user_id"),
    ],
)
async def test_invalid_interactions_are_a_400(rig: Rig, body: bytes, detail: str) -> None:
    response = await rig.client.post(
        "/v1/interactions",
        data=body,
        headers={**rig.auth("u-1"), "Content-Type": "application/json"},
    )
    assert response.status == 400
    answer = await response.json()
    assert answer["error"] == "invalid_interaction" and detail in answer["detail"], answer
    assert rig.publisher.sent == []


async def test_an_interaction_for_a_delivery_not_held_is_left_to_the_worker(rig: Rig) -> None:
    # Another user's delivery, or one evicted: published under the token's user, whom the
    # worker checks against the delivery it made (a dead letter, unknown_delivery, if not
    # theirs); the other user's message stays offered.
    record = delivery_record("u-2", "e-1")
    rig.kafka.deliver(record)
    response = await rig.client.post(
        "/v1/interactions",
        json={"delivery_id": record["delivery_id"], "kind": "impression"},
        headers=rig.auth("u-1"),
    )
    assert response.status == 202
    [(_, key, value)] = rig.publisher.sent
    assert key == "u-1" and value["user_id"] == "u-1"
    offered = await rig.client.get("/v1/users/u-2/messages", headers=rig.auth("u-2"))
    assert [m["delivery_id"] for m in (await offered.json())["messages"]] == [record["delivery_id"]]


async def test_kafka_not_acknowledging_is_a_503(rig: Rig) -> None:
    record = delivery_record("u-1", "e-1")
    rig.kafka.deliver(record)
    rig.publisher.failing = True
    response = await rig.client.post(
        "/v1/interactions",
        json={"delivery_id": record["delivery_id"], "kind": "impression"},
        headers=rig.auth("u-1"),
    )
    assert response.status == 503 and response.headers["Retry-After"] == "5"
    # Not marked shown: the app retries.
    messages = await rig.client.get("/v1/users/u-1/messages", headers=rig.auth("u-1"))
    assert len((await messages.json())["messages"]) == 1


async def test_a_body_too_large_is_refused(rig: Rig) -> None:
    response = await rig.client.post(
        "/v1/interactions", data=b"{" + b" " * 70_000 + b"}", headers=rig.auth("u-1")
    )
    assert response.status == 413
    assert (await response.json())["error"] == "too_large"


# --- CORS -------------------------------------------------------------------------------------


async def test_a_preflight_from_an_allowed_origin_is_answered(rig: Rig) -> None:
    response = await rig.client.options(
        "/v1/interactions",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = response.headers["Access-Control-Allow-Headers"]
    for header in ("Authorization", "Content-Type", "Last-Event-ID"):
        assert header in allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    actual = await rig.client.get(
        "/v1/users/u-1/messages", headers={**rig.auth("u-1"), "Origin": ORIGIN}
    )
    assert actual.status == 200
    assert actual.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in actual.headers["Vary"]


async def test_another_origin_is_refused(rig: Rig) -> None:
    evil = "https://evil.example"
    preflight = await rig.client.options(
        "/v1/interactions",
        headers={"Origin": evil, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers
    # A "simple" request (no preflight) from that origin does not act either.
    record = delivery_record("u-1", "e-1")
    rig.kafka.deliver(record)
    response = await rig.client.post(
        "/v1/interactions",
        data=orjson.dumps({"delivery_id": record["delivery_id"], "kind": "impression"}),
        headers={**rig.auth("u-1"), "Origin": evil, "Content-Type": "text/plain"},
    )
    assert response.status == 403
    assert (await response.json())["error"] == "forbidden"
    assert rig.publisher.sent == []


async def test_the_gateways_own_origin_is_allowed() -> None:
    async with gateway_rig() as rig:  # no origin configured
        own = f"http://{rig.client.host}:{rig.client.port}"
        response = await rig.client.get(
            "/v1/users/u-1/messages", headers={**rig.auth("u-1"), "Origin": own}
        )
        assert response.status == 200


# --- rate limits ------------------------------------------------------------------------------


async def test_past_the_rate_per_user_is_a_429_with_retry_after() -> None:
    async with gateway_rig(rate_per_user=2) as rig:
        url = "/v1/users/u-1/messages"
        statuses = [(await rig.client.get(url, headers=rig.auth("u-1"))).status for _ in range(5)]
        assert statuses == [200, 200, 200, 200, 429]  # a burst of 2 s worth
        response = await rig.client.get(url, headers=rig.auth("u-1"))
        assert response.status == 429
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["error"] == "rate_limited"
        # Another user is not held back; time refills the bucket.
        assert (
            await rig.client.get("/v1/users/u-2/messages", headers=rig.auth("u-2"))
        ).status == 200
        rig.clock.advance(1)
        assert (await rig.client.get(url, headers=rig.auth("u-1"))).status == 200


async def test_past_the_rate_per_address_is_a_429() -> None:
    async with gateway_rig(rate_per_address=1) as rig:
        statuses = [
            (await rig.client.get(f"/v1/users/u-{n}/messages", headers=rig.auth(f"u-{n}"))).status
            for n in range(3)
        ]
        assert statuses == [200, 200, 429]
        assert (await rig.client.get("/health")).status == 200  # probes are not limited
        assert metric(rig, "declic_gateway_requests_total", status="429") == 1


# --- the stream -------------------------------------------------------------------------------


async def read_events(response: ClientResponse, count: int) -> list[dict[str, Any]]:
    """Read `count` SSE events (comments skipped) within 5 s."""
    events: list[dict[str, Any]] = []

    async def collect() -> None:
        fields: dict[str, str] = {}
        while len(events) < count:
            line = (await response.content.readline()).decode()
            if line in ("\n", ""):
                if fields:
                    events.append({**fields, "data": orjson.loads(fields["data"])})
                    fields = {}
                if line == "":
                    return
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.rstrip("\n").partition(": ")
            fields[name] = value

    await asyncio.wait_for(collect(), 5)
    return events


async def wait_streams(rig: Rig, user_id: str, count: int) -> None:
    """Wait (up to 5 s) until the user holds ``count`` registered streams: a delivery fed
    from then on is pushed live on each."""
    deadline = time.monotonic() + 5
    while rig.gateway.hub.streams_of(user_id) != count:
        assert time.monotonic() < deadline, f"{user_id} holds {rig.gateway.hub.streams_of(user_id)}"
        await asyncio.sleep(0.005)


async def test_the_stream_pushes_new_deliveries(rig: Rig) -> None:
    before = delivery_record("u-1", "e-0")
    rig.kafka.deliver(before)  # before the stream opened: not pushed (GET /messages has it)
    response = await rig.client.get(f"/v1/users/u-1/stream?token={rig.token('u-1')}")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    record = delivery_record("u-1", "e-1")
    await wait_streams(rig, "u-1", 1)
    rig.kafka.deliver(delivery_record("u-2", "e-2"))  # another user's
    rig.kafka.deliver(record)
    [event] = await read_events(response, 1)
    assert event == {"id": "0-2", "event": "delivery", "data": {**record, "event_id": "0-2"}}
    assert metric(rig, "declic_gateway_messages_pushed_total") == 1
    assert metric(rig, "declic_gateway_streams") == 1
    response.close()


async def test_the_stream_does_not_push_shown_or_expired_deliveries(rig: Rig) -> None:
    response = await rig.client.get("/v1/users/u-1/stream", headers=rig.auth("u-1"))
    await wait_streams(rig, "u-1", 1)
    shown = delivery_record("u-1", "e-1")
    rig.kafka.impression("u-1", shown["delivery_id"])  # read before its delivery
    rig.kafka.deliver(shown)
    rig.kafka.deliver(delivery_record("u-1", "e-2", expires_ms=NOW_MS - 1))
    fresh = delivery_record("u-1", "e-3")
    rig.kafka.deliver(fresh)
    [event] = await read_events(response, 1)
    assert event["data"]["delivery_id"] == fresh["delivery_id"]
    response.close()


async def test_resume_after_last_event_id_misses_nothing_and_repeats_nothing(rig: Rig) -> None:
    records = [delivery_record("u-1", f"e-{n}") for n in range(6)]
    first = await rig.client.get("/v1/users/u-1/stream", headers=rig.auth("u-1"))
    await wait_streams(rig, "u-1", 1)
    for record in records[:2]:
        rig.kafka.deliver(record)
    seen = await read_events(first, 2)
    assert [event["id"] for event in seen] == ["0-0", "0-1"]
    first.close()  # the connection drops; meanwhile two more are committed
    await wait_streams(rig, "u-1", 0)
    for record in records[2:4]:
        rig.kafka.deliver(record)
    second = await rig.client.get(
        "/v1/users/u-1/stream", headers={**rig.auth("u-1"), "Last-Event-ID": seen[-1]["id"]}
    )
    await wait_streams(rig, "u-1", 1)
    for record in records[4:]:
        rig.kafka.deliver(record)
    resumed = await read_events(second, 4)
    assert [event["id"] for event in resumed] == ["0-2", "0-3", "0-4", "0-5"]
    assert [event["data"]["delivery_id"] for event in seen + resumed] == [
        record["delivery_id"] for record in records
    ]
    second.close()
    # The query parameter does the same on a first connection.
    third = await rig.client.get(f"/v1/users/u-1/stream?token={rig.token('u-1')}&last_event_id=0-4")
    assert [event["id"] for event in await read_events(third, 1)] == ["0-5"]
    third.close()


async def test_a_bad_last_event_id_is_a_400(rig: Rig) -> None:
    response = await rig.client.get(
        "/v1/users/u-1/stream", headers={**rig.auth("u-1"), "Last-Event-ID": "yesterday"}
    )
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_request"


async def test_keep_alives() -> None:
    async with gateway_rig(keepalive_seconds=0.05) as rig:
        response = await rig.client.get("/v1/users/u-1/stream", headers=rig.auth("u-1"))
        assert response.status == 200
        line = await asyncio.wait_for(response.content.readline(), 5)
        assert line + await response.content.readline() == KEEPALIVE
        rig.kafka.deliver(delivery_record("u-1", "e-1"))
        [event] = await read_events(response, 1)
        assert event["id"] == "0-0"
        response.close()


async def test_a_stream_opened_while_catching_up_is_a_503() -> None:
    """As /messages: a stream opened then could replay nothing of what is pending (the
    client has no position yet), and the client could not read /messages either."""
    async with gateway_rig(caught_up=False) as rig:
        rig.kafka.deliver(delivery_record("u-1", "e-0"))
        response = await rig.client.get("/v1/users/u-1/stream", headers=rig.auth("u-1"))
        assert response.status == 503
        assert response.headers["Retry-After"] == "2"
        assert (await response.json())["error"] == "unavailable"
        assert rig.gateway.hub.streams_of("u-1") == 0
        rig.gateway.hub.caught_up.set()
        resumed = await rig.client.get(
            "/v1/users/u-1/stream", headers={**rig.auth("u-1"), "Last-Event-ID": "0-0"}
        )
        assert resumed.status == 200
        await wait_streams(rig, "u-1", 1)
        rig.kafka.deliver(delivery_record("u-1", "e-1"))
        [event] = await read_events(resumed, 1)
        assert event["id"] == "0-1"
        resumed.close()


async def test_a_stream_ends_when_its_token_expires(rig: Rig) -> None:
    """The stream ends once the gateway would refuse its token (exp plus the leeway): the
    browser's reconnection with it is refused (401), and the SDK asks getToken."""
    # Expired 8 s ago: accepted for the 1 to 2 s left of the 10 s leeway.
    expiring = jwt.encode({"sub": "u-1", "exp": int(time.time()) - 8}, SECRET)
    response = await rig.client.get(f"/v1/users/u-1/stream?token={expiring}")
    assert response.status == 200
    await wait_streams(rig, "u-1", 1)
    assert await asyncio.wait_for(response.content.read(), 5) == b": token expired\n\n"
    assert rig.gateway.hub.streams_of("u-1") == 0
    again = await rig.client.get(f"/v1/users/u-1/stream?token={expiring}")
    assert again.status == 401
    assert (await again.json())["detail"] == "token expired"


async def test_stopping_ends_every_stream(rig: Rig) -> None:
    response = await rig.client.get("/v1/users/u-1/stream", headers=rig.auth("u-1"))
    await wait_streams(rig, "u-1", 1)
    rig.gateway.hub.close_all()
    assert await asyncio.wait_for(response.content.read(), 5) == b""
    assert rig.gateway.hub.stream_count == 0


# --- files, demo, errors ------------------------------------------------------------------------


async def test_the_sdk_is_served_with_an_etag(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DECLIC_SDK_DIR", str(tmp_path))
    missing = await rig.client.get("/sdk/declic.js")
    assert missing.status == 404
    assert "declic.js" in (await missing.json())["detail"]
    (tmp_path / "declic.js").write_text("export const Declic = {};\n")
    response = await rig.client.get("/sdk/declic.js")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/javascript")
    assert "max-age" in response.headers["Cache-Control"]
    etag = response.headers["ETag"]
    again = await rig.client.get("/sdk/declic.js", headers={"If-None-Match": etag})
    assert again.status == 304


async def test_demo_routes_only_with_demo(rig: Rig) -> None:
    assert (await rig.client.get("/demo/token?user=u-1")).status == 404
    async with gateway_rig(demo=True) as demo:
        token = (await (await demo.client.get("/demo/token?user=u-7")).json())["token"]
        assert demo.gateway.tokens.user_of(token) == "u-7"
        assert (await demo.client.get("/demo/token")).status == 400
        response = await demo.client.post(
            "/demo/events",
            json={"name": "Added to Favorites", "properties": {"price": 120}},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status == 202
        [(topic, key, event)] = demo.publisher.sent
        assert (topic, key, event["user_id"], event["name"]) == (
            "custom-events",
            "u-7",
            "u-7",
            "Added to Favorites",
        )
        assert event["event_id"] == (await response.json())["event_id"]
        bad = await demo.client.post(
            "/demo/events", json={"name": ""}, headers={"Authorization": f"Bearer {token}"}
        )
        assert bad.status == 400 and (await bad.json())["error"] == "invalid_event"


async def test_unknown_paths_and_methods_are_json(rig: Rig) -> None:
    missing = await rig.client.get("/nope")
    assert missing.status == 404 and (await missing.json())["error"] == "not_found"
    wrong = await rig.client.delete("/v1/interactions")
    assert wrong.status == 405 and (await wrong.json())["error"] == "method_not_allowed"
    assert metric(rig, "declic_gateway_requests_total", route="other") == 2


async def test_metrics_and_health(rig: Rig) -> None:
    health = await rig.client.get("/health")
    assert health.status == 200 and (await health.json())["status"] == "ok"
    text = await (await rig.client.get("/metrics")).text()
    for name in (
        "declic_gateway_streams",
        "declic_gateway_messages_pushed_total",
        "declic_gateway_push_latency_seconds_bucket",
        "declic_gateway_requests_total",
    ):
        assert name in text
    assert SECRET not in text


async def test_the_demo_page_is_served_with_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DECLIC_SDK_DIR", str(tmp_path))
    async with gateway_rig(demo=True) as rig:
        missing = await rig.client.get("/demo")
        assert missing.status == 404 and "demo.html" in (await missing.json())["detail"]
        (tmp_path / "demo.html").write_text("<!doctype html><title>Shop</title>")
        page = await rig.client.get("/demo")
        assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")


def test_the_files_are_found_in_a_checkout_and_shipped_in_the_wheel() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert sdk_dir() == repo / "sdk" / "web"  # a checkout; a wheel has engine/_sdk
    included = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"
    ]["wheel"]["force-include"]
    for name in (SDK_FILE, DEMO_FILE):
        assert included[f"sdk/web/{name}"] == f"engine/_sdk/{name}"


async def test_a_user_holds_a_bounded_number_of_streams(rig: Rig) -> None:
    streams = []
    for _ in range(MAX_STREAMS_PER_USER):
        streams.append(await rig.client.get("/v1/users/u-1/stream", headers=rig.auth("u-1")))
    assert all(stream.status == 200 for stream in streams)
    await wait_streams(rig, "u-1", MAX_STREAMS_PER_USER)
    refused = await rig.client.get("/v1/users/u-1/stream", headers=rig.auth("u-1"))
    assert refused.status == 429 and refused.headers["Retry-After"] == "5"
    other = await rig.client.get("/v1/users/u-2/stream", headers=rig.auth("u-2"))
    assert other.status == 200
    for stream in [*streams, other]:
        stream.close()


async def test_streams_opened_at_once_are_bounded_too(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each stream takes its place when admitted, not once its headers are sent: streams
    requested together cannot all pass the count."""

    class SlowStart(web.StreamResponse):
        async def prepare(self, request: web.BaseRequest) -> Any:
            await asyncio.sleep(0.05)  # a client slow to take the headers
            return await super().prepare(request)

    monkeypatch.setattr(sse.web, "StreamResponse", SlowStart)
    requests = [
        rig.client.get("/v1/users/u-1/stream", headers=rig.auth("u-1"))
        for _ in range(MAX_STREAMS_PER_USER + 2)
    ]
    responses = await asyncio.gather(*requests)
    statuses = sorted(response.status for response in responses)
    assert statuses == [200] * MAX_STREAMS_PER_USER + [429] * 2
    await wait_streams(rig, "u-1", MAX_STREAMS_PER_USER)
    for response in responses:
        response.close()
    await wait_streams(rig, "u-1", 0)
    again = await rig.client.get("/v1/users/u-1/stream", headers=rig.auth("u-1"))
    assert again.status == 200
    again.close()

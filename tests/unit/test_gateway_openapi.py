"""schemas/gateway-api.openapi.yaml is a valid OpenAPI 3.1 document, describes exactly the
routes the app registers, and the app's answers match it."""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import ClientResponse
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from engine.gateway.app import build_app
from engine.schemas import load_schema, validator
from tests.unit.gateway_fakes import NOW_MS, Rig, delivery_record, gateway_rig

SPEC_PATH = Path(__file__).resolve().parents[2] / "schemas" / "gateway-api.openapi.yaml"
METHODS = ("get", "put", "post", "delete", "patch")


@cache
def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    return document


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node and node["$ref"].startswith("#/components/responses/"):
        node = spec()["components"]["responses"][node["$ref"].rsplit("/", 1)[1]]
    return node


def response_spec(path: str, method: str, status: int) -> dict[str, Any]:
    """Return the OpenAPI response object of a path, method and status."""
    responses = spec()["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} documents no {status}"
    return _resolve(responses[str(status)])


async def check(path: str, method: str, status: int, response: ClientResponse) -> Any:
    """Assert the answer is the one expected and documented: its status, its JSON body, its
    required headers; return the body."""
    assert response.status == status, (path, method, response.status, await response.text())
    body = orjson.loads(await response.read())
    documented = response_spec(path, method, status)
    schema = documented["content"]["application/json"]["schema"]
    OAS31Validator(
        {"components": spec()["components"], **schema},
        format_checker=OAS31Validator.FORMAT_CHECKER,
    ).validate(body)
    for name in documented.get("headers", {}):
        if name == "Retry-After":
            assert int(response.headers[name]) >= 1, (path, status)
    return body


def validate_component(name: str, instance: Any) -> None:
    OAS31Validator(
        {"components": spec()["components"], "$ref": f"#/components/schemas/{name}"},
        format_checker=OAS31Validator.FORMAT_CHECKER,
    ).validate(instance)


def test_the_document_is_valid_openapi_3_1() -> None:
    assert spec()["openapi"].startswith("3.1")
    validate(spec())


async def test_the_app_registers_exactly_the_documented_routes() -> None:
    async with gateway_rig(demo=True) as rig:
        app = build_app(rig.gateway)
        registered = {
            (route.resource.canonical, route.method.lower())
            for route in app.router.routes()
            if route.resource is not None and route.method not in ("HEAD", "OPTIONS")
        }
    documented = {
        (path, method)
        for path, operations in spec()["paths"].items()
        for method in operations
        if method in METHODS
    }
    assert registered == documented


def test_message_mirrors_the_delivery_schema() -> None:
    delivery = load_schema("delivery")
    message = spec()["components"]["schemas"]["Message"]
    assert set(message["properties"]) == {*delivery["properties"], "event_id"}
    assert set(message["required"]) == {*delivery["required"], "event_id"}
    assert message["additionalProperties"] is delivery["additionalProperties"] is False


async def test_sample_answers_match_the_documented_schemas() -> None:
    async with gateway_rig(demo=True, rate_per_user=1) as rig:
        await _samples(rig)


async def _samples(rig: Rig) -> None:
    messages = "/v1/users/{user_id}/messages"
    plain = delivery_record("u-1", "e-1", message={"title": "Hi"})
    rich = delivery_record(
        "u-1",
        "e-2",
        expires_ms=NOW_MS + 60_000,
        message={
            "layout": "modal",
            "title": "Spring sale",
            "body": "20% off",
            "image_url": "https://cdn.example/sale.png",
            "buttons": [{"id": "cta", "label": "Shop", "action": "https://shop.example/sale"}],
        },
    )
    rig.kafka.deliver(plain)
    rig.kafka.deliver(rich)
    auth = rig.auth("u-1")

    response = await rig.client.get("/v1/users/u-1/messages", headers=auth)
    body = await check(messages, "get", 200, response)
    assert len(body["messages"]) == 2
    for message in body["messages"]:
        validate_component("Message", message)
        validator("delivery").check({k: v for k, v in message.items() if k != "event_id"})

    response = await rig.client.get("/v1/users/u-9/messages")
    await check(messages, "get", 401, response)
    response = await rig.client.get("/v1/users/u-2/messages", headers=auth)
    await check(messages, "get", 403, response)
    rig.clock.advance(10)
    response = await rig.client.get("/v1/users/u-1/messages?limit=x", headers=auth)
    await check(messages, "get", 400, response)
    rig.clock.advance(10)
    for _ in range(3):
        response = await rig.client.get("/v1/users/u-1/messages", headers=auth)
    assert response.status == 429
    await check(messages, "get", 429, response)
    rig.clock.advance(10)

    interactions = "/v1/interactions"
    response = await rig.client.post(
        interactions, json={"delivery_id": plain["delivery_id"], "kind": "impression"}, headers=auth
    )
    await check(interactions, "post", 202, response)
    response = await rig.client.post(interactions, json={"kind": "x"}, headers=auth)
    await check(interactions, "post", 400, response)
    rig.clock.advance(10)
    response = await rig.client.post(
        interactions, json={"delivery_id": "nope", "kind": "click"}, headers=auth
    )
    await check(interactions, "post", 202, response)  # not held: the worker checks it
    rig.publisher.failing = True
    response = await rig.client.post(
        interactions, json={"delivery_id": rich["delivery_id"], "kind": "click"}, headers=auth
    )
    await check(interactions, "post", 503, response)
    rig.publisher.failing = False
    rig.clock.advance(10)

    response = await rig.client.get("/health")
    await check("/health", "get", 200, response)
    rig.health["ready"] = False
    response = await rig.client.get("/health")
    await check("/health", "get", 503, response)

    response = await rig.client.get("/demo/token?user=u-3")
    token = (await check("/demo/token", "get", 200, response))["token"]
    response = await rig.client.post(
        "/demo/events", json={"name": "Opened"}, headers={"Authorization": f"Bearer {token}"}
    )
    await check("/demo/events", "post", 202, response)

    # The stream's events carry Messages.
    stream = await rig.client.get(
        "/v1/users/u-1/stream", headers={**rig.auth("u-1"), "Last-Event-ID": "0-0"}
    )
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert "text/event-stream" in response_spec("/v1/users/{user_id}/stream", "get", 200)["content"]
    lines = [await asyncio.wait_for(stream.content.readline(), 5) for _ in range(4)]
    assert lines[0] == b"id: 0-1\n" and lines[1] == b"event: delivery\n" and lines[3] == b"\n"
    data = orjson.loads(lines[2].removeprefix(b"data: "))
    validate_component("Message", data)
    stream.close()
    # While the gateway reads the topics' history, the stream is refused as /messages is.
    rig.gateway.hub.caught_up.clear()
    response = await rig.client.get("/v1/users/u-1/stream", headers=rig.auth("u-1"))
    await check("/v1/users/{user_id}/stream", "get", 503, response)
    rig.gateway.hub.caught_up.set()


@pytest.mark.parametrize(
    "instance",
    [
        {"error": "unauthorized", "detail": "token expired"},
        {"error": "rate_limited"},
    ],
)
def test_error_bodies(instance: dict[str, Any]) -> None:
    validate_component("Error", instance)

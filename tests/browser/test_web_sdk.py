"""The web SDK end to end in a real headless Chromium: a real broker, worker and gateway.

Each test applies its own engagement (a YAML file, through `declic engagements apply`), opens
a page for users of its own (the gateway's /demo page, or an app page on another origin),
makes the worker deliver, and checks what the page shows and what reaches `interactions`
and `impressions`. The page is instrumented before it loads: it counts every message
element inserted (per delivery), what the gateway pushed on the stream and what the SDK
posted to /v1/interactions, and turns alert() into a counter.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from engine.bench.browser import AppServer, GatewayProcess
from engine.core.deliveries import delivery_id as derive_delivery_id
from engine.settings import Settings
from engine.stream.tail import TopicTail, read_to_end
from engine.stream.topics import partitions_of, topic_specs
from engine.worker_process import SECURITY, settings_environment
from tests.integration.conftest import Harness
from tests.offsets import group_lag

pytestmark = [pytest.mark.integration, pytest.mark.browser]

WAIT_SECONDS = 30.0
# Evaluated in the page before any of its scripts: counts what the test checks.
INSTRUMENT = """
(() => {
  window.__shown = {};        // delivery id -> message elements inserted
  window.__streamed = [];     // delivery ids the gateway pushed on the stream
  window.__streams = 0;       // EventSources opened
  window.__sent = [];         // interactions the SDK posted
  window.__alerts = 0;
  window.alert = () => { window.__alerts += 1; };
  const offset = %(clock_offset_ms)d;
  if (offset) { const now = Date.now.bind(Date); Date.now = () => now() + offset; }
  const counted = new WeakSet();  // an element inserted with its parent is seen twice
  const count = (node) => {
    if (node.nodeType !== 1) return;
    const found = node.matches("[data-declic-delivery]") ? [node]
      : Array.from(node.querySelectorAll("[data-declic-delivery]"));
    for (const element of found) {
      if (counted.has(element)) continue;
      counted.add(element);
      const id = element.getAttribute("data-declic-delivery");
      window.__shown[id] = (window.__shown[id] || 0) + 1;
    }
  };
  new MutationObserver((records) => {
    for (const record of records) record.addedNodes.forEach(count);
  }).observe(document, {childList: true, subtree: true});
  const NativeEventSource = window.EventSource;
  window.EventSource = class extends NativeEventSource {
    constructor(url, init) {
      super(url, init);
      window.__streams += 1;
      this.addEventListener("delivery", (event) => {
        window.__streamed.push(JSON.parse(event.data).delivery_id);
      });
    }
  };
  const nativeFetch = window.fetch.bind(window);
  window.fetch = (input, init) => {
    if (String(input).endsWith("/v1/interactions") && init && init.body) {
      window.__sent.push(JSON.parse(init.body));
    }
    return nativeFetch(input, init);
  };
})();
"""


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _now_text(shift_seconds: float = 0.0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=shift_seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- engagements and records --------------------------------------------------------------


def _engagement(engagement_id: str, trigger: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": engagement_id,
        "name": f"Web SDK {engagement_id}",
        "status": "active",
        "trigger": {"event": "custom", "name": trigger},
        **fields,
    }


async def _apply_yaml(
    harness: Harness, directory: Path, engagement_id: str, trigger: str, **fields: Any
) -> None:
    """Apply one engagement from a YAML file."""
    await _apply_documents(harness, directory, [_engagement(engagement_id, trigger, **fields)])


async def _apply_documents(
    harness: Harness, directory: Path, documents: list[dict[str, Any]]
) -> None:
    """Write engagements to a YAML file (one document each), apply it with `declic
    engagements apply`, and wait until the worker runs them."""
    path = directory / f"{documents[0]['id']}.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
    env = settings_environment(
        harness.settings,
        ("kafka_bootstrap", "app_id", "topic_prefix", "partitions", "author", *SECURITY),
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "engine.cli", "engagements", "apply", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    harness.applied.update(document["id"] for document in documents)
    await harness.wait_for_versions({document["id"]: 1 for document in documents})


def _token(secret: str, user_id: str, expires_s: int) -> str:
    """Return an HS256 JWT for a user, as the app's backend would sign it."""
    return jwt.encode({"sub": user_id, "exp": expires_s}, secret, algorithm="HS256")


def _custom_event(user_id: str, name: str) -> dict[str, Any]:
    return {
        "event_id": _id("ev"),
        "user_id": user_id,
        "name": name,
        "timestamp": int(time.time() * 1000),
    }


def _delivery(user_id: str, title: str, expires_at: str | None) -> dict[str, Any]:
    """Return a delivery record as a worker writes it."""
    engagement_id, event_id = "web-direct", _id("ev")
    record: dict[str, Any] = {
        "delivery_id": derive_delivery_id(engagement_id, user_id, event_id),
        "engagement_id": engagement_id,
        "engagement_version": 1,
        "variant": "default",
        "user_id": user_id,
        "trigger_event_id": event_id,
        "message": {"layout": "toast", "title": title, "body": "published by the test"},
        "triggered_at": _now_text(),
        "created_at": _now_text(),
        "test": False,
    }
    if expires_at is not None:
        record["expires_at"] = expires_at
    return record


async def _publish_deliveries(settings: Settings, records: list[dict[str, Any]]) -> None:
    """Publish delivery records to `deliveries` in one transaction, as a worker does."""
    import orjson

    producer = AIOKafkaProducer(
        **settings.kafka_client_options(), transactional_id=_id("web-test"), linger_ms=2
    )
    await producer.start()
    try:
        async with producer.transaction():
            for record in records:
                await producer.send(
                    settings.topic("deliveries"),
                    orjson.dumps(record),
                    key=record["user_id"].encode(),
                )
    finally:
        await producer.stop()


# --- topics -------------------------------------------------------------------------------


async def _end_offsets(settings: Settings, name: str) -> dict[int, int]:
    topic = settings.topic(name)
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=None, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await partitions_of(settings, topic)]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def _wait_record(
    tail: TopicTail, matches: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Read a topic until a record matches; fail after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        for record in tail.records:
            if matches(record):
                return record
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {what} on {tail.topic} within {WAIT_SECONDS:.0f}s")
        await tail.read(at_least=len(tail.records) + 1, quiet_seconds=0, max_seconds=left)


async def _settled(settings: Settings) -> None:
    """Wait until the worker committed every input record published so far (lag 0)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while (lag := await group_lag(settings)) > 0:
        assert time.monotonic() < deadline, f"worker lag still {lag}"
        await asyncio.sleep(0.1)


async def _committed_since(
    settings: Settings, name: str, start: dict[int, int], delivery_id: str
) -> list[dict[str, Any]]:
    """Return a topic's committed records of a delivery since the given offsets, read up to
    the topic's end offsets."""
    import orjson

    records = await read_to_end(settings, settings.topic(name), start, max_seconds=WAIT_SECONDS)
    values = [orjson.loads(record.value) for record in records]
    return [value for value in values if value.get("delivery_id") == delivery_id]


# --- the page -----------------------------------------------------------------------------


def _instrument(browser: WebDriver, clock_offset_ms: int = 0) -> None:
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {"source": INSTRUMENT % {"clock_offset_ms": clock_offset_ms}},
    )


def _wait_status(browser: WebDriver, accept: Callable[[Any], bool], what: str) -> None:
    WebDriverWait(browser, WAIT_SECONDS, poll_frequency=0.1).until(
        lambda driver: accept(
            driver.execute_script("return window.declic ? window.declic.status : null")
        ),
        message=f"the SDK's status never became {what}",
    )


def _open(browser: WebDriver, url: str) -> None:
    """Load a page and wait until its SDK listens to the stream."""
    browser.get(url)
    _wait_status(browser, lambda status: status == "open", "open")


def _open_demo(
    browser: WebDriver, gateway: GatewayProcess, user_id: str, clock_offset_ms: int = 0
) -> None:
    _instrument(browser, clock_offset_ms)
    _open(browser, f"{gateway.base_url}/demo?user={user_id}")


def _open_app(browser: WebDriver, app: AppServer, user_id: str, **query: str) -> None:
    _instrument(browser)
    _open(browser, app.page_url(user_id, **query))


def _visible(browser: WebDriver, selector: str) -> WebElement:
    """Wait until an element is displayed; return it."""

    def found(driver: WebDriver) -> WebElement | bool:
        for element in driver.find_elements(By.CSS_SELECTOR, selector):
            if element.is_displayed():
                return element
        return False

    element: WebElement = WebDriverWait(browser, WAIT_SECONDS, poll_frequency=0.1).until(
        found, message=f"nothing displayed matches {selector}"
    )
    return element


def _gone(browser: WebDriver, selector: str) -> None:
    WebDriverWait(browser, WAIT_SECONDS, poll_frequency=0.1).until(
        lambda driver: not driver.find_elements(By.CSS_SELECTOR, selector),
        message=f"{selector} is still in the page",
    )


def _page(browser: WebDriver, expression: str) -> Any:
    return browser.execute_script(f"return {expression};")


def _sent(browser: WebDriver, delivery_id: str, kind: str) -> list[dict[str, Any]]:
    """Return the interactions of a kind the SDK posted for a delivery (a retry, with the
    same event_id, counting once)."""
    sent: list[dict[str, Any]] = _page(browser, "window.__sent")
    unique = {item["event_id"]: item for item in sent}
    return [i for i in unique.values() if i["delivery_id"] == delivery_id and i["kind"] == kind]


def _no_alert(browser: WebDriver) -> None:
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    assert _page(browser, "window.__alerts") == 0


# --- the tests ----------------------------------------------------------------------------

BUTTONS = [
    {"id": "yes", "label": "Yes please", "action": "app://settings/alerts"},
    {"id": "no-thanks", "label": "No thanks", "action": "dismiss"},
]


async def test_banner_shown_once_with_one_impression_and_a_click(
    harness: Harness, gateway: GatewayProcess, browser: WebDriver, tmp_path: Path
) -> None:
    engagement_id, trigger = _id("web-banner"), _id("Web banner")
    message = {"layout": "banner", "title": "Hello from the test", "body": "Line one"}
    await _apply_yaml(
        harness, tmp_path, engagement_id, trigger, message=message | {"buttons": BUTTONS}
    )
    user = _id("user-a")
    start = {
        name: await _end_offsets(harness.settings, name) for name in ("impressions", "interactions")
    }
    impressions = await harness.tail("impressions")
    try:
        await asyncio.to_thread(_open_demo, browser, gateway, user)
        token = await asyncio.to_thread(gateway.demo_token, user)
        await asyncio.to_thread(gateway.demo_event, token, trigger, {"price": 120})

        selector = '[data-declic-delivery][data-declic-layout="banner"]'
        banner = await asyncio.to_thread(_visible, browser, selector)
        delivery_id = banner.get_attribute("data-declic-delivery")
        assert delivery_id
        assert banner.get_attribute("role") == "status"
        part = banner.find_element
        assert part(By.CSS_SELECTOR, '[data-declic-element="title"]').text == message["title"]
        assert part(By.CSS_SELECTOR, '[data-declic-element="body"]').text == message["body"]
        buttons = banner.find_elements(By.CSS_SELECTOR, '[data-declic-element="button"]')
        assert [(b.tag_name, b.text, b.get_attribute("data-declic-button")) for b in buttons] == [
            ("button", "Yes please", "yes"),
            ("button", "No thanks", "no-thanks"),
        ]

        first = await _wait_record(
            impressions,
            lambda r: r["delivery_id"] == delivery_id and r["kind"] == "impression",
            "impression",
        )
        assert first["first"] is True
        assert first["user_id"] == user
        assert first["engagement_id"] == engagement_id

        yes = banner.find_element(By.CSS_SELECTOR, '[data-declic-button="yes"]')
        await asyncio.to_thread(yes.click)
        await asyncio.to_thread(_gone, browser, f'[data-declic-delivery="{delivery_id}"]')
        click = await _wait_record(
            impressions,
            lambda r: r["delivery_id"] == delivery_id and r["kind"] == "click",
            "click",
        )
        assert click["element"] == "yes"
        assert click["first"] is True

        # Everything the SDK sent has been joined: no second impression is on its way.
        await _settled(harness.settings)
        joined = await _committed_since(
            harness.settings, "impressions", start["impressions"], delivery_id
        )
        assert sorted((r["kind"], r["first"], r["element"]) for r in joined) == [
            ("click", True, "yes"),
            ("impression", True, None),
        ]
        reported = await _committed_since(
            harness.settings, "interactions", start["interactions"], delivery_id
        )
        assert sorted(r["kind"] for r in reported) == ["click", "impression"]
        assert len(_sent(browser, delivery_id, "impression")) == 1
        assert _page(browser, "window.__shown") == {delivery_id: 1}
    finally:
        await impressions.stop()


async def test_message_data_is_escaped_and_escape_closes_a_modal(
    harness: Harness, gateway: GatewayProcess, browser: WebDriver, tmp_path: Path
) -> None:
    engagement_id, trigger = _id("web-modal"), _id("Web modal")
    hostile = {
        "layout": "modal",
        "title": "<img src=x onerror=alert(1)>",
        "body": "<script>window.__pwned = 1</script><b>not bold</b>",
        "image_url": "javascript:alert(2)",
        "buttons": [
            {
                "id": "<i>cta</i>",
                "label": "<img src=y onerror=alert(3)>",
                "action": "javascript:alert(4)",
            }
        ],
    }
    await _apply_yaml(harness, tmp_path, engagement_id, trigger, message=hostile)
    user = _id("user-x")
    impressions = await harness.tail("impressions")
    try:
        await asyncio.to_thread(_open_demo, browser, gateway, user)
        token = await asyncio.to_thread(gateway.demo_token, user)
        await asyncio.to_thread(gateway.demo_event, token, trigger, {})

        dialog = await asyncio.to_thread(_visible, browser, '[role="dialog"][data-declic-delivery]')
        delivery_id = dialog.get_attribute("data-declic-delivery")
        part = dialog.find_element
        assert part(By.CSS_SELECTOR, '[data-declic-element="title"]').text == hostile["title"]
        assert part(By.CSS_SELECTOR, '[data-declic-element="body"]').text == hostile["body"]
        button = part(By.CSS_SELECTOR, '[data-declic-element="button"]')
        assert button.text == hostile["buttons"][0]["label"]
        assert browser.find_elements(By.CSS_SELECTOR, "[data-declic-root] img") == []
        assert browser.find_elements(By.CSS_SELECTOR, "[data-declic-root] script") == []
        assert _page(browser, "window.__pwned") is None
        _no_alert(browser)
        # Accessible: a modal dialog, named by its title, holding the focus.
        assert dialog.get_attribute("aria-modal") == "true"
        title_id = part(By.CSS_SELECTOR, '[data-declic-element="title"]').get_attribute("id")
        assert dialog.get_attribute("aria-labelledby") == title_id
        assert _page(browser, "document.activeElement.closest('[role=dialog]') !== null")

        await _wait_record(
            impressions,
            lambda r: r["delivery_id"] == delivery_id and r["kind"] == "impression",
            "impression",
        )
        await asyncio.to_thread(ActionChains(browser).send_keys(Keys.ESCAPE).perform)
        await asyncio.to_thread(_gone, browser, f'[data-declic-delivery="{delivery_id}"]')
        dismissal = await _wait_record(
            impressions,
            lambda r: r["delivery_id"] == delivery_id and r["kind"] == "dismiss",
            "dismissal",
        )
        assert dismissal["element"] is None
        _no_alert(browser)
        assert _page(browser, "window.__shown") == {delivery_id: 1}
    finally:
        await impressions.stop()


async def test_expired_delivery_is_never_shown(
    harness: Harness, gateway: GatewayProcess, browser: WebDriver, tmp_path: Path
) -> None:
    engagement_id, trigger = _id("web-after"), _id("Web after")
    await _apply_yaml(
        harness, tmp_path, engagement_id, trigger, message={"layout": "toast", "title": "After"}
    )
    user = _id("user-e")
    impressions = await harness.tail("impressions")
    try:
        await asyncio.to_thread(_open_demo, browser, gateway, user)
        expired = _delivery(user, "Too late", expires_at=_now_text(-60))
        await _publish_deliveries(harness.settings, [expired])
        # A later delivery to the same user (same partition, later offset): once it is
        # shown, the expired one has been through the gateway and the page before it.
        token = await asyncio.to_thread(gateway.demo_token, user)
        await asyncio.to_thread(gateway.demo_event, token, trigger, {})
        later = await asyncio.to_thread(_visible, browser, '[data-declic-layout="toast"]')
        later_id = later.get_attribute("data-declic-delivery")
        assert later_id != expired["delivery_id"]
        assert _page(browser, "window.__shown") == {later_id: 1}
        assert expired["delivery_id"] not in _page(browser, "window.__streamed")
        await _wait_record(
            impressions,
            lambda r: r["delivery_id"] == later_id and r["kind"] == "impression",
            "impression",
        )
    finally:
        await impressions.stop()
    # Nor from /messages: a new page shows nothing (the later one was seen).
    await asyncio.to_thread(_open, browser, f"{gateway.base_url}/demo?user={user}")
    assert _page(browser, "window.__shown") == {}


async def test_sdk_drops_a_delivery_expired_by_the_browser_clock(
    harness: Harness, gateway: GatewayProcess, browser: WebDriver
) -> None:
    """The gateway pushes a delivery due to expire in 10 minutes; the page's clock is an hour
    ahead: the SDK must not show it."""
    user = _id("user-c")
    await asyncio.to_thread(_open_demo, browser, gateway, user, 3_600_000)
    stale = _delivery(user, "Expired for the browser", expires_at=_now_text(600))
    fresh = _delivery(user, "Still valid", expires_at=_now_text(7_200 + 600))
    await _publish_deliveries(harness.settings, [stale, fresh])
    shown = await asyncio.to_thread(_visible, browser, '[data-declic-layout="toast"]')
    assert shown.get_attribute("data-declic-delivery") == fresh["delivery_id"]
    assert stale["delivery_id"] in _page(browser, "window.__streamed")
    assert _page(browser, "window.__shown") == {fresh["delivery_id"]: 1}


async def test_pending_message_shown_on_load_and_not_again_after_reload(
    harness: Harness, gateway: GatewayProcess, browser: WebDriver, tmp_path: Path
) -> None:
    engagement_id, trigger = _id("web-pending"), _id("Web pending")
    await _apply_yaml(
        harness, tmp_path, engagement_id, trigger, message={"title": "Waiting for you"}
    )
    user = _id("user-p")
    deliveries = await harness.tail("deliveries")
    impressions = await harness.tail("impressions")
    try:
        await harness.send("custom-events", _custom_event(user, trigger))
        delivery = await _wait_record(deliveries, lambda r: r["user_id"] == user, "delivery")
        delivery_id = delivery["delivery_id"]
        await asyncio.to_thread(_open_demo, browser, gateway, user)
        await asyncio.to_thread(_visible, browser, f'[data-declic-delivery="{delivery_id}"]')
        await _wait_record(
            impressions,
            lambda r: r["delivery_id"] == delivery_id and r["kind"] == "impression",
            "impression",
        )
        await asyncio.to_thread(_open, browser, f"{gateway.base_url}/demo?user={user}")
        assert _page(browser, "window.__shown") == {}
    finally:
        await deliveries.stop()
        await impressions.stop()


async def test_custom_ui_on_another_origin_refreshes_its_token(
    harness: Harness, gateway: GatewayProcess, app: AppServer, browser: WebDriver, tmp_path: Path
) -> None:
    """An app on its own origin (CORS) with its own rendering, connecting with a token the
    gateway refuses: the SDK asks getToken for another and goes on."""
    engagement_id, trigger = _id("web-custom"), _id("Web custom")
    await _apply_yaml(
        harness, tmp_path, engagement_id, trigger, message={"title": "Drawn by the app"}
    )
    user = _id("user-u")
    impressions = await harness.tail("impressions")
    try:
        await asyncio.to_thread(_open_app, browser, app, user, token="not-a-token", render="custom")
        assert _page(browser, "window.tokenRequests") >= 1
        token = await asyncio.to_thread(gateway.demo_token, user)
        await asyncio.to_thread(gateway.demo_event, token, trigger, {})

        card = await asyncio.to_thread(_visible, browser, "[data-custom-delivery]")
        delivery_id = card.get_attribute("data-custom-delivery")
        assert card.text.startswith("Drawn by the app")
        await _wait_record(
            impressions,
            lambda r: r["delivery_id"] == delivery_id and r["kind"] == "impression",
            "impression",
        )
        await asyncio.to_thread(card.find_element(By.CSS_SELECTOR, "[data-custom-button]").click)
        click = await _wait_record(
            impressions,
            lambda r: r["delivery_id"] == delivery_id and r["kind"] == "click",
            "click",
        )
        assert click["element"] == "custom-cta"
        assert _page(browser, "window.declicErrors") == []
        assert len(_sent(browser, delivery_id, "impression")) == 1  # render called it twice
        assert _page(browser, f"window.declic.logImpression({json.dumps(delivery_id)})") is False
    finally:
        await impressions.stop()


async def test_stream_reconnects_after_a_gateway_restart(
    harness: Harness, gateway: GatewayProcess, browser: WebDriver, tmp_path: Path
) -> None:
    engagement_id, trigger = _id("web-restart"), _id("Web restart")
    await _apply_yaml(
        harness, tmp_path, engagement_id, trigger, message={"title": "While you were away"}
    )
    user = _id("user-r")
    start = await _end_offsets(harness.settings, "impressions")
    deliveries = await harness.tail("deliveries")
    impressions = await harness.tail("impressions")
    try:
        await asyncio.to_thread(_open_demo, browser, gateway, user)
        await asyncio.to_thread(gateway.stop)
        await asyncio.to_thread(_wait_status, browser, lambda s: s != "open", "not open")
        # Committed while the gateway is down.
        await harness.send("custom-events", _custom_event(user, trigger))
        delivery = await _wait_record(deliveries, lambda r: r["user_id"] == user, "delivery")
        delivery_id = delivery["delivery_id"]
        await asyncio.to_thread(gateway.start)
        await asyncio.to_thread(gateway.wait_ready)

        await asyncio.to_thread(_visible, browser, f'[data-declic-delivery="{delivery_id}"]')
        await _wait_record(
            impressions,
            lambda r: r["delivery_id"] == delivery_id and r["kind"] == "impression",
            "impression",
        )
        await _settled(harness.settings)
        joined = await _committed_since(harness.settings, "impressions", start, delivery_id)
        assert [(r["kind"], r["first"]) for r in joined] == [("impression", True)]
        assert len(_sent(browser, delivery_id, "impression")) == 1
        assert _page(browser, "window.__shown") == {delivery_id: 1}
        assert _page(browser, "window.declic.status") == "open"
    finally:
        await deliveries.stop()
        await impressions.stop()
        if not gateway.running:  # the session's other tests need it
            gateway.start()
            gateway.wait_ready()


async def _create_topics(settings: Settings, names: list[str]) -> None:
    """Create these topics of ``settings`` (public names, like "deliveries")."""
    wanted = {settings.topic(name) for name in names}
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        await admin.create_topics([spec for spec in topic_specs(settings) if spec.name in wanted])
    finally:
        await admin.close()


def _health(gateway: GatewayProcess) -> tuple[int, Any]:
    """Return the status and body of the gateway's /health, (0, reason) before it listens."""
    try:
        with urllib.request.urlopen(f"{gateway.base_url}/health", timeout=2) as reply:
            return int(reply.status), json.loads(reply.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())
    except OSError as error:
        return 0, str(error)


async def test_a_page_opened_while_the_gateway_catches_up_shows_what_is_pending(
    settings: Settings, browser: WebDriver, tmp_path: Path
) -> None:
    """A gateway that has not read its topics' history yet answers 503 to /messages and
    /stream: a page loaded meanwhile opens no stream it would miss the pending messages
    on, and shows them once the gateway caught up. The gateway here has topics of its own
    and waits for its `impressions` topic, created once the page has tried (the page posts
    its impression to `interactions`, there from the start)."""
    own = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}late-"})
    user = _id("user-l")
    pending = _delivery(user, "Waiting while the gateway starts", expires_at=None)
    await _create_topics(own, ["deliveries", "interactions"])
    await _publish_deliveries(own, [pending])
    gateway = GatewayProcess(own, tmp_path / "gateway.log", token_secret=secrets.token_hex(32))
    gateway.start()
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while "waiting for the topics" not in str(
            status := await asyncio.to_thread(_health, gateway)
        ):
            assert time.monotonic() < deadline, f"the gateway never waited for its topics: {status}"
            await asyncio.sleep(0.1)
        _instrument(browser)
        await asyncio.to_thread(browser.get, f"{gateway.base_url}/demo?user={user}")
        # The first read of /messages was refused (503): the SDK retries it, no stream yet.
        await asyncio.to_thread(
            _wait_status, browser, lambda s: s == "reconnecting", "reconnecting"
        )
        assert _page(browser, "window.__streams") == 0
        await _create_topics(own, ["impressions"])
        await asyncio.to_thread(
            _visible, browser, f'[data-declic-delivery="{pending["delivery_id"]}"]'
        )
        await asyncio.to_thread(_wait_status, browser, lambda s: s == "open", "open")
        assert _page(browser, "window.__shown") == {pending["delivery_id"]: 1}
    finally:
        await asyncio.to_thread(gateway.stop)


async def test_stream_reconnects_with_a_new_token_and_shows_each_message_once(
    harness: Harness, gateway: GatewayProcess, app: AppServer, browser: WebDriver, tmp_path: Path
) -> None:
    """The page's token expires while the gateway restarts: the browser's own reconnection
    is refused (401), so the SDK reads /messages with a token from getToken and opens a new
    stream. A modal still waiting behind another (not displayed: no impression yet) comes
    back from /messages: it must not be shown twice."""
    suffix = uuid.uuid4().hex[:8]
    first, second, banner = (f"web-exp-{name}-{suffix}" for name in ("m1", "m2", "b"))
    await _apply_documents(
        harness,
        tmp_path,
        [
            _engagement(first, f"Exp M1 {suffix}", message={"layout": "modal", "title": "First"}),
            _engagement(second, f"Exp M2 {suffix}", message={"layout": "modal", "title": "2nd"}),
            _engagement(banner, f"Exp B {suffix}", message={"title": "While you were away"}),
        ],
    )
    user = _id("user-t")
    # Expired 5 s ago: accepted for the few seconds left of the gateway's 10 s leeway.
    expires = int(time.time()) - 5
    token = _token(gateway.token_secret, user, expires)
    deliveries = await harness.tail("deliveries")
    try:
        await asyncio.to_thread(_open_app, browser, app, user, token=token)
        assert _page(browser, "window.tokenRequests") == 0
        await harness.send("custom-events", _custom_event(user, f"Exp M1 {suffix}"))
        await harness.send("custom-events", _custom_event(user, f"Exp M2 {suffix}"))
        dialog = await asyncio.to_thread(_visible, browser, '[role="dialog"]')
        shown_first = dialog.get_attribute("data-declic-delivery")
        await asyncio.to_thread(
            WebDriverWait(browser, WAIT_SECONDS, poll_frequency=0.1).until,
            lambda driver: (
                len(driver.execute_script("return window.__streamed")) == 2
                and _sent(driver, shown_first, "impression")
            ),
            "the second modal was not pushed, or the first one's impression not sent",
        )
        queued = next(i for i in _page(browser, "window.__streamed") if i != shown_first)

        await asyncio.to_thread(gateway.stop)
        await asyncio.to_thread(_wait_status, browser, lambda s: s != "open", "not open")
        await harness.send("custom-events", _custom_event(user, f"Exp B {suffix}"))
        delivery = await _wait_record(
            deliveries, lambda r: r["engagement_id"] == banner, "delivery"
        )
        # A wait on the clock itself: past this, the gateway refuses the token.
        await asyncio.sleep(max(0.0, expires + 11 - time.time()))
        await asyncio.to_thread(gateway.start)
        await asyncio.to_thread(gateway.wait_ready)

        await asyncio.to_thread(
            _visible, browser, f'[data-declic-delivery="{delivery["delivery_id"]}"]'
        )
        assert _page(browser, "window.tokenRequests") >= 1
        assert _page(browser, "window.__streams") >= 2
        assert not [e for e in _page(browser, "window.declicErrors") if "unauthorized" in e]
        # Close the first modal: the one queued behind it shows, once.
        await asyncio.to_thread(ActionChains(browser).send_keys(Keys.ESCAPE).perform)
        await asyncio.to_thread(
            _visible, browser, f'[role="dialog"][data-declic-delivery="{queued}"]'
        )
        await asyncio.to_thread(ActionChains(browser).send_keys(Keys.ESCAPE).perform)
        await asyncio.to_thread(_gone, browser, f'[data-declic-delivery="{queued}"]')
        assert _page(browser, "window.__shown") == {
            shown_first: 1,
            queued: 1,
            delivery["delivery_id"]: 1,
        }
    finally:
        await deliveries.stop()
        if not gateway.running:
            gateway.start()
            gateway.wait_ready()


async def test_impression_waits_until_the_message_is_visible(
    harness: Harness, gateway: GatewayProcess, app: AppServer, browser: WebDriver, tmp_path: Path
) -> None:
    """A message in the page but hidden (its container is display: none) is not displayed:
    its impression is logged only once it can be seen."""
    engagement_id, trigger = _id("web-hidden"), _id("Web hidden")
    await _apply_yaml(harness, tmp_path, engagement_id, trigger, message={"title": "Hidden"})
    user = _id("user-h")
    impressions = await harness.tail("impressions")
    try:
        await asyncio.to_thread(_open_app, browser, app, user, hidden="1")
        await harness.send("custom-events", _custom_event(user, trigger))
        element = await asyncio.to_thread(
            WebDriverWait(browser, WAIT_SECONDS, poll_frequency=0.1).until,
            lambda driver: driver.find_elements(By.CSS_SELECTOR, "[data-declic-delivery]"),
            "the message never reached the page",
        )
        delivery_id = element[0].get_attribute("data-declic-delivery")
        assert not element[0].is_displayed()
        # Two frames: the visibility observer has reported the element at least once.
        browser.execute_async_script(
            "const done = arguments[0];"
            "requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 50)));"
        )
        assert _sent(browser, delivery_id, "impression") == []
        browser.execute_script("document.getElementById('host').style.display = 'block';")
        await asyncio.to_thread(_visible, browser, f'[data-declic-delivery="{delivery_id}"]')
        record = await _wait_record(
            impressions,
            lambda r: r["delivery_id"] == delivery_id and r["kind"] == "impression",
            "impression",
        )
        assert record["first"] is True
        assert len(_sent(browser, delivery_id, "impression")) == 1
    finally:
        await impressions.stop()


async def test_a_page_with_a_token_for_a_cannot_read_b(
    gateway: GatewayProcess, browser: WebDriver
) -> None:
    user_a, user_b = _id("user-a"), _id("user-b")
    await asyncio.to_thread(_open_demo, browser, gateway, user_a)
    token = await asyncio.to_thread(gateway.demo_token, user_a)
    script = """
        const [base, token, own, other, done] = arguments;
        const ask = (user) => fetch(`${base}/v1/users/${user}/messages`, {
            headers: {Authorization: `Bearer ${token}`},
        }).then((answer) => answer.status);
        Promise.all([ask(own), ask(other)]).then(done, (error) => done(String(error)));
    """

    def statuses() -> Any:
        return browser.execute_async_script(script, gateway.base_url, token, user_a, user_b)

    assert await asyncio.to_thread(statuses) == [200, 403]

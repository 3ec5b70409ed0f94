"""Event published to message rendered in a browser, through a worker and the gateway.

`python -m engine.bench.web_latency` runs against a running broker (DECLIC_KAFKA_BOOTSTRAP
or --kafka-bootstrap), on topics of its own (prefix ``webbench-<run>-``, deleted at the
end). It starts a worker and `declic gateway`, opens N headless Chromium pages (one user
each, in a browser of its own) of an app page on its own origin that loads the web SDK
from the gateway, then publishes R custom events per second per user for D seconds. Each
event triggers one delivery (4 engagements take turns, so none waits for re-eligibility;
no frequency caps), which the page renders with the SDK's default UI and dismisses a second
later (an impression and a dismissal reach the gateway, as from a real app).

Measured per delivery: the event's timestamp (taken just before it is published) to the
moment the page inserts the message (Date.now() in the page, the same clock), split at the
delivery's created_at (the worker processing the event). Printed: p50, p99 and max, the
deliveries rendered and missing, and the streams the gateway counts connected
(declic_gateway_streams) once the pages are open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from engine.admin.engagements import apply_engagements
from engine.bench import kafka_io
from engine.bench.browser import (
    AppServer,
    GatewayProcess,
    browser_missing,
    start_chromium,
)
from engine.bench.measure import percentile
from engine.child_process import free_port
from engine.errors import DeclicError
from engine.log_setup import configure_command_logging
from engine.settings import Settings, load_settings
from engine.stream.topics import ensure_topics
from engine.worker_process import WorkerProcess

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

ENGAGEMENTS = 4
# Pages per browser: one, as each user has a browser of their own. Chromium opens at most 6
# HTTP/1.1 connections per host, and each page holds one for its stream: with 4 pages in one
# browser, their interactions queue on the 2 left (and reach the gateway late).
PAGES_PER_BROWSER = 1
PAGE_OPEN_SECONDS = 60.0
# After the last event, how long renders may keep arriving.
DRAIN_SECONDS = 30.0
DISMISS_AFTER_MS = 1000
POLL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Options:
    """What to measure."""

    pages: int = 20
    rate: float = 2.0
    duration: float = 30.0
    pages_per_browser: int = PAGES_PER_BROWSER
    partitions: int = 4
    kafka_bootstrap: str | None = None
    keep_topics: bool = False


@dataclass(slots=True)
class Page:
    """One page: a window of a browser, for one user."""

    driver: WebDriver
    handle: str
    user_id: str
    rendered: list[dict[str, Any]] = field(default_factory=list)


def _note(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def _engagements() -> list[dict[str, Any]]:
    return [
        {
            "id": f"web-bench-{index}",
            "name": f"Web latency bench {index}",
            "status": "active",
            "trigger": {"event": "custom", "name": f"Bench event {index}"},
            "message": {
                "layout": "banner",
                "title": f"Bench message {index}",
                "body": "Measured from the event's timestamp to this banner.",
                "buttons": [{"id": "ok", "label": "OK", "action": "dismiss"}],
            },
            "reeligibility": {"after_seconds": 1},
        }
        for index in range(ENGAGEMENTS)
    ]


async def _prepare(settings: Settings) -> None:
    await ensure_topics(settings)
    await apply_engagements(settings, _engagements(), int(time.time() * 1000))


async def _publish(settings: Settings, users: list[str], rate: float, duration: float) -> int:
    """Publish `rate` events/s per user for `duration` s, evenly spread; return the count.

    Event j goes to user j mod N with engagement (j div N) mod 4: a user gets each
    engagement's event every 4/rate seconds."""
    producer = kafka_io.bulk_producer(settings, kafka_io.PROMPT_LINGER_MS)
    await producer.start()
    topic = settings.topic("custom-events")
    total = int(rate * duration * len(users))
    interval = 1.0 / (rate * len(users))
    futures = []
    try:
        begin = time.monotonic()
        for index in range(total):
            due = begin + index * interval
            pause = due - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            user = users[index % len(users)]
            engagement = (index // len(users)) % ENGAGEMENTS
            event = {
                "event_id": f"e-{uuid.uuid4().hex}",
                "user_id": user,
                "name": f"Bench event {engagement}",
                "timestamp": int(time.time() * 1000),
            }
            futures.append(await producer.send(topic, orjson.dumps(event), key=user.encode()))
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return total


def _open_pages(app: AppServer, users: list[str], per_browser: int) -> list[Page]:
    pages: list[Page] = []
    for start in range(0, len(users), per_browser):
        driver = start_chromium(width=1000, height=700)
        for offset, user in enumerate(users[start : start + per_browser]):
            if offset > 0:
                driver.switch_to.new_window("window")
            driver.get(app.page_url(user, autodismiss=str(DISMISS_AFTER_MS)))
            pages.append(Page(driver, driver.current_window_handle, user))
    return pages


def _in_page(page: Page, script: str) -> Any:
    page.driver.switch_to.window(page.handle)
    return page.driver.execute_script(script)


def _wait_open(pages: list[Page]) -> None:
    deadline = time.monotonic() + PAGE_OPEN_SECONDS
    waiting = list(pages)
    while waiting:
        waiting = [
            page
            for page in waiting
            if _in_page(page, "return window.declic ? window.declic.status : null") != "open"
        ]
        if waiting and time.monotonic() > deadline:
            errors = _in_page(waiting[0], "return window.declicErrors")
            raise DeclicError(
                f"{len(waiting)} pages not connected after {PAGE_OPEN_SECONDS:.0f}s "
                f"(first page's errors: {errors})"
            )
        time.sleep(0.2)


def _collect(pages: list[Page]) -> int:
    for page in pages:
        page.rendered = list(_in_page(page, "return window.rendered"))
    return sum(len({item["id"] for item in page.rendered}) for page in pages)


def _error_kind(text: str) -> str:
    """Return an SDK error's words without its ids, to count errors by kind."""
    return re.sub(r"[0-9a-f-]{36}|[0-9]+", "N", text)[:160]


def _epoch_ms(text: str) -> float:
    return datetime.fromisoformat(text).timestamp() * 1000


def _figures(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50_ms": round(percentile(values, 0.50), 1),
        "p99_ms": round(percentile(values, 0.99), 1),
        "max_ms": round(max(values), 1),
    }


def _settings(options: Options, prefix: str, scratch: Path) -> Settings:
    overrides: dict[str, Any] = {
        "topic_prefix": prefix,
        "partitions": options.partitions,
        "data_dir": scratch / "data",
        "web_port": free_port(),
        "worker_id": prefix.rstrip("-"),
        "frequency_caps": [],
    }
    if options.kafka_bootstrap:
        overrides["kafka_bootstrap"] = options.kafka_bootstrap
    return load_settings(overrides)


def run(options: Options) -> dict[str, Any]:
    """Run the measure; return its figures."""
    problem = browser_missing()
    if problem is not None:
        raise DeclicError(problem)
    run_id = uuid.uuid4().hex[:6]
    prefix = f"webbench-{run_id}-"
    scratch = Path(tempfile.mkdtemp(prefix="declic-web-latency-"))
    settings = _settings(options, prefix, scratch)
    users = [f"webbench-{run_id}-u{index:03d}" for index in range(options.pages)]
    worker = WorkerProcess(settings, scratch / "worker.log")
    app_port = free_port()
    gateway = GatewayProcess(
        settings,
        scratch / "gateway.log",
        token_secret=secrets.token_hex(32),
        allowed_origins=f"http://127.0.0.1:{app_port}",
        demo=True,
        # One address for every page: the per-address limit would throttle the bench.
        variables={"DECLIC_GATEWAY_RATE_PER_ADDRESS": "100000"},
    )
    app = AppServer(gateway, app_port)
    pages: list[Page] = []
    complete = False
    try:
        asyncio.run(_prepare(settings))
        worker.start()
        gateway.start()
        worker.wait_ready()
        gateway.wait_ready()
        app.start()
        _note(f"worker and gateway ready; opening {options.pages} pages")
        pages = _open_pages(app, users, options.pages_per_browser)
        _wait_open(pages)
        streams = gateway.metric("declic_gateway_streams")
        _note(f"{len(pages)} pages connected; publishing for {options.duration:.0f}s")
        sent = asyncio.run(_publish(settings, users, options.rate, options.duration))
        deadline = time.monotonic() + DRAIN_SECONDS
        rendered = _collect(pages)
        while rendered < sent and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            rendered = _collect(pages)
        streams_after = gateway.metric("declic_gateway_streams")
        errors = Counter(
            _error_kind(text)
            for page in pages
            for text in _in_page(page, "return window.declicErrors")
        )
        complete = rendered >= sent
    finally:
        browsers = {id(page.driver): page.driver for page in pages}
        for driver in browsers.values():
            driver.quit()
        app.stop()
        gateway.stop()
        worker.stop()
        if not options.keep_topics:
            asyncio.run(kafka_io.delete_topics_with_prefix(settings, prefix))
        if complete:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            _note(f"kept the worker's and the gateway's logs in {scratch}")

    return {
        "pages": options.pages,
        "browsers": math.ceil(options.pages / options.pages_per_browser),
        "rate_per_page": options.rate,
        "duration_s": options.duration,
        "partitions": options.partitions,
        "events": sent,
        "rendered": rendered,
        "missing": max(0, sent - rendered),
        "sdk_errors": sum(errors.values()),
        "sdk_error_kinds": dict(errors.most_common(5)),
        "streams_connected": streams,
        "streams_at_end": streams_after,
        **_latencies(pages),
        "options": asdict(options),
    }


def _latencies(pages: list[Page]) -> dict[str, dict[str, float]]:
    """Return the figures of every delivery rendered (once each)."""
    total, to_delivery, to_page = [], [], []
    for page in pages:
        seen: set[str] = set()
        for item in page.rendered:
            if item["id"] in seen or not item.get("triggered_at"):
                continue
            seen.add(item["id"])
            triggered, created = _epoch_ms(item["triggered_at"]), _epoch_ms(item["created_at"])
            total.append(item["at"] - triggered)
            to_delivery.append(created - triggered)
            to_page.append(item["at"] - created)
    return {
        "event_to_rendered": _figures(total),
        "event_to_delivery_created": _figures(to_delivery),
        "delivery_created_to_rendered": _figures(to_page),
    }


def render(result: dict[str, Any]) -> str:
    """Return the figures as a few lines of text."""

    def line(name: str, figures: dict[str, float]) -> str:
        if not figures:
            return f"{name:<46} no data"
        return (
            f"{name:<46} p50 {figures['p50_ms']:>7.1f} ms   p99 {figures['p99_ms']:>7.1f} ms"
            f"   max {figures['max_ms']:>7.1f} ms"
        )

    return "\n".join(
        [
            f"pages: {result['pages']} ({result['browsers']} browsers), "
            f"{result['rate_per_page']:g} events/s each for {result['duration_s']:g} s, "
            f"{result['partitions']} partitions",
            f"connected streams (declic_gateway_streams): {result['streams_connected']:g} "
            f"(at the end: {result['streams_at_end']:g})",
            f"deliveries rendered: {result['rendered']} of {result['events']} events "
            f"({result['missing']} missing), SDK errors: {result['sdk_errors']}"
            + "".join(f"\n  {count} x {kind}" for kind, count in result["sdk_error_kinds"].items()),
            line("event -> rendered in the page", result["event_to_rendered"]),
            line("  event -> delivery created (worker)", result["event_to_delivery_created"]),
            line(
                "  created -> rendered (commit, gateway, page)",
                result["delivery_created_to_rendered"],
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, print the figures."""
    parser = argparse.ArgumentParser(
        prog="python -m engine.bench.web_latency",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="example: python -m engine.bench.web_latency --pages 20 --rate 2 --duration 30",
    )
    parser.add_argument("--pages", type=int, default=20, help="browser pages, one user each")
    parser.add_argument(
        "--rate", type=float, default=2.0, help="events per second per page (default 2)"
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds of publishing (default 30)"
    )
    parser.add_argument(
        "--pages-per-browser",
        type=int,
        default=PAGES_PER_BROWSER,
        help=f"windows per Chromium (default {PAGES_PER_BROWSER}; at most 5: a browser opens "
        "6 connections per host, and each page's stream holds one)",
    )
    parser.add_argument(
        "--partitions", type=int, default=4, help="partitions of the topics (default 4)"
    )
    parser.add_argument(
        "--kafka-bootstrap",
        help="the broker (default: DECLIC_KAFKA_BOOTSTRAP, else 127.0.0.1:19092)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep-topics", action="store_true", help="do not delete the topics")
    args = parser.parse_args(argv)
    if args.pages < 1 or args.rate <= 0 or args.duration <= 0 or args.partitions < 1:
        parser.error("--pages, --rate, --duration and --partitions must be positive")
    if not 1 <= args.pages_per_browser <= 5:
        parser.error("--pages-per-browser must be 1 to 5")
    options = Options(
        pages=args.pages,
        rate=args.rate,
        duration=args.duration,
        pages_per_browser=args.pages_per_browser,
        partitions=args.partitions,
        kafka_bootstrap=args.kafka_bootstrap,
        keep_topics=args.keep_topics,
    )
    configure_command_logging("WARNING")
    try:
        result = run(options)
    except DeclicError as error:
        print(f"web_latency: error: {error}", file=sys.stderr)
        return 2
    print(render(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

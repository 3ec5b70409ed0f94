"""The console's pages and forms without a browser: aiohttp's test server, the real
templates, in-memory engagements (tests/unit/console_fakes.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError

from engine.admin.engagements import load_and_validate
from engine.errors import KafkaAccessError
from tests.unit.console_rig import NOW_MS, Rig, console_rig, form_fields

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "deploy" / "examples").glob("*.yaml"))
TWO_VARIANTS = {
    "name": "Spring sale",
    "description": "Tell returning users about the sale",
    "trigger.event": "custom",
    "trigger.name": "checkout",
    "audience.percent": "50",
    "control_percent": "10",
    "experiment": "ab",
    "variants.0.id": "a",
    "variants.0.weight": "1",
    "variants.0.message.title": "Sale!",
    "variants.0.message.body": "20% off",
    "variants.1.id": "b",
    "variants.1.weight": "2",
    "variants.1.message.title": "Spring deals",
    "variants.1.message.body": "Save now",
}
# Applied as `declic engagements apply` would: new, so it gets hash version 2.
HALF_SAMPLE = {
    "id": "old",
    "name": "Old",
    "status": "active",
    "trigger": {"event": "session_start"},
    "audience": {"percent": 50},
    "message": {"title": "Hello"},
}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with console_rig(tmp_path) as made:
        yield made


async def create(rig: Rig, fields: dict[str, str], button: str = "launch") -> int:
    response = await rig.submit("/engagements/new", "/engagements/new", fields, ("action", button))
    return response.status


async def test_every_page_needs_a_login(rig: Rig) -> None:
    for path in ("/engagements", "/engagements/new", "/engagements/x", "/engagements/x/edit"):
        response = await rig.client.get(path, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"].startswith("/login?next=")
    posted = await rig.client.post("/engagements/new", data={"name": "x"}, allow_redirects=False)
    assert posted.status in (303, 403) and rig.data.records == {}


async def test_an_editor_creates_an_experiment_through_the_form_and_is_its_author(
    rig: Rig,
) -> None:
    assert (await rig.log_in("erin")).status == 303
    assert await create(rig, TWO_VARIANTS) == 303
    record = rig.data.records["spring-sale"]
    engagement = record["engagement"]
    assert engagement["status"] == "active"
    assert engagement["control_percent"] == 10
    assert [(v["id"], v["weight"]) for v in engagement["variants"]] == [("a", 1), ("b", 2)]
    assert "message" not in engagement
    assert record["author"] == "erin" and rig.data.history[-1]["author"] == "erin"
    page = await (await rig.client.get("/engagements/spring-sale")).text()
    assert "Spring sale" in page and "erin" in page


async def test_a_bad_value_is_shown_next_to_its_field_and_nothing_is_published(
    rig: Rig,
) -> None:
    await rig.log_in("erin")
    response = await rig.submit(
        "/engagements/new",
        "/engagements/new",
        {**TWO_VARIANTS, "audience.percent": "150"},
        ("action", "launch"),
    )
    assert response.status == 400
    page = await response.text()
    assert 'data-field="audience.percent"' in page
    assert rig.data.records == {}
    # The form keeps what was typed: fixing the field is enough.
    fixed = [(n, v) for n, v in form_fields(page, "/engagements/new") if n != "audience.percent"]
    again = await rig.client.post(
        "/engagements/new",
        data=[*fixed, ("audience.percent", "15"), ("action", "launch")],
        allow_redirects=False,
    )
    assert again.status == 303
    assert rig.data.records["spring-sale"]["engagement"]["audience"]["percent"] == 15


async def test_a_name_in_use_names_its_holder(rig: Rig) -> None:
    await rig.log_in("erin")
    await create(rig, TWO_VARIANTS)
    response = await rig.submit(
        "/engagements/new",
        "/engagements/new",
        {**TWO_VARIANTS, "id": "other"},
        ("action", "draft"),
    )
    assert response.status == 400
    assert "already used by engagement &#39;spring-sale&#39;" in await response.text()


async def test_user_input_is_escaped_on_every_page(rig: Rig) -> None:
    await rig.log_in("erin")
    hostile = "<script>alert(1)</script>"
    await create(
        rig,
        {**TWO_VARIANTS, "id": "hostile", "name": hostile, "variants.0.message.title": hostile},
    )
    for path in ("/engagements", "/engagements/hostile", "/engagements/hostile/edit"):
        page = await (await rig.client.get(path)).text()
        assert hostile not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path


async def test_saving_an_unchanged_edit_form_changes_nothing(rig: Rig) -> None:
    for path in EXAMPLES:
        [document] = load_and_validate([path])
        await rig.data.apply(document, "ops", NOW_MS, None)
    await rig.log_in("erin")
    for engagement_id, record in list(rig.data.records.items()):
        version = record["version"]
        response = await rig.submit(
            f"/engagements/{engagement_id}/edit",
            f"/engagements/{engagement_id}/edit",
            {},
            ("action", "save"),
        )
        assert response.status == 303, (engagement_id, await response.text())
        assert rig.data.records[engagement_id]["version"] == version, engagement_id


async def test_a_viewer_reads_but_gets_403_on_any_change(rig: Rig) -> None:
    await rig.log_in("erin")
    await create(rig, TWO_VARIANTS)
    await rig.log_out()
    await rig.log_in("vic")
    assert (await rig.client.get("/engagements/spring-sale")).status == 200
    token = await rig.csrf("/engagements/spring-sale")
    for path in ("/engagements/spring-sale/pause", "/engagements/spring-sale/archive"):
        response = await rig.client.post(path, data={"csrf_token": token}, allow_redirects=False)
        assert response.status == 403
    assert (await rig.client.get("/engagements/new")).status == 403
    posted = await rig.client.post(
        "/engagements/spring-sale/test-send",
        data={"csrf_token": token, "user_id": "u-1"},
        allow_redirects=False,
    )
    assert posted.status == 403 and rig.data.test_sends == []
    assert rig.data.records["spring-sale"]["engagement"]["status"] == "active"
    page = await (await rig.client.get("/engagements/spring-sale")).text()
    assert ">Pause<" not in page  # no button a viewer cannot use


async def test_a_post_without_the_csrf_token_changes_nothing(rig: Rig) -> None:
    await rig.log_in("ada")
    await create(rig, TWO_VARIANTS)
    for data in ({}, {"csrf_token": "forged"}):
        response = await rig.client.post(
            "/engagements/spring-sale/pause", data=data, allow_redirects=False
        )
        assert response.status == 403
    assert rig.data.records["spring-sale"]["engagement"]["status"] == "active"


async def test_pause_resume_and_archive_by_role_with_the_changelog(rig: Rig) -> None:
    await rig.log_in("erin")
    await create(rig, TWO_VARIANTS)
    token = await rig.csrf("/engagements/spring-sale")
    paused = await rig.client.post(
        "/engagements/spring-sale/pause", data={"csrf_token": token}, allow_redirects=False
    )
    assert paused.status == 303
    page = await (await rig.client.get(paused.headers["Location"])).text()
    assert "Paused." in page
    changelog = page[page.index('id="changelog"') :]
    assert "erin" in changelog and "pause (v2)" in changelog
    assert '<code>status</code>: <span class="old">&#34;active&#34;</span> → ' in changelog
    assert '<span class="new">&#34;paused&#34;</span>' in changelog
    archived = await rig.client.post(
        "/engagements/spring-sale/archive", data={"csrf_token": token}, allow_redirects=False
    )
    assert archived.status == 403  # archiving is an admin's
    await rig.log_out()
    await rig.log_in("ada")
    token = await rig.csrf("/engagements/spring-sale")
    archived = await rig.client.post(
        "/engagements/spring-sale/archive", data={"csrf_token": token}, allow_redirects=False
    )
    assert archived.status == 303
    assert rig.data.records["spring-sale"]["engagement"]["status"] == "archived"
    assert rig.data.history[-1]["author"] == "ada"


async def test_a_test_send_shows_the_delivery_it_produced(rig: Rig) -> None:
    await rig.log_in("erin")
    await create(rig, TWO_VARIANTS)
    response = await rig.submit(
        "/engagements/spring-sale",
        "/engagements/spring-sale/test-send",
        {"user_id": "u-42", "variant": "b"},
        ("go", "send"),
    )
    assert response.status == 200
    page = await response.text()
    assert 'id="test-delivery"' in page and "u-42" in page
    assert rig.data.test_sends == [("spring-sale", "u-42", "b", "erin")]
    rig.data.worker_running = False
    failed = await rig.submit(
        "/engagements/spring-sale",
        "/engagements/spring-sale/test-send",
        {"user_id": "u-43"},
        ("go", "send"),
    )
    assert failed.status == 504 and "no worker produced" in await failed.text()


async def test_exported_yaml_applies_unchanged(rig: Rig, tmp_path: Path) -> None:
    await rig.log_in("vic")
    await rig.data.apply(
        {
            "id": "spring-sale",
            "name": "Spring sale: 20% off",
            "status": "active",
            "trigger": {"event": "custom", "name": "checkout"},
            "schedule": {"start": "2026-12-01T09:00:00Z", "end": None},
            "message": {"title": "yes", "body": "on\nthe 1st", "n": 1.5},
        },
        "ops",
        NOW_MS,
        None,
    )
    response = await rig.client.get("/engagements/spring-sale/export.yaml")
    assert response.status == 200
    assert 'filename="spring-sale.yaml"' in response.headers["Content-Disposition"]
    path = tmp_path / "exported.yaml"
    path.write_text(await response.text())
    [document] = load_and_validate([path])
    change = await rig.data.apply(document, "ops", NOW_MS, 1)
    assert change.action == "unchanged"


async def test_figures_refresh_alone_with_their_time(rig: Rig) -> None:
    await rig.log_in("vic")
    await rig.data.apply(
        {
            "id": "x",
            "name": "X",
            "status": "active",
            "trigger": {"event": "session_start"},
            "message": {"title": "t"},
        },
        "ops",
        NOW_MS,
        None,
    )
    hour = NOW_MS // 3_600_000
    rig.data.stats["x"] = {
        "engagement_id": "x",
        "since_ms": (hour - 2) * 3_600_000,
        "outcomes": {"delivered": 7, "audience_miss": 3},
        "variants": {"default": {"deliveries": 7, "impressions": 5, "clicks": 2, "conversions": 0}},
        "control": {"users": 0, "conversions": 0},
        "trigger_hours": {str(hour - 1): 6, str(hour): 4},
        "segment": {
            "known_users": 40,
            "audience_users": 30,
            "kept_users": 30,
            "computed_at_ms": NOW_MS,
        },
        "unseen_deliveries": {"older_than_seconds": 3600, "count": 0},
        "activity_hours": {str(hour): {"deliveries": 7, "impressions": 5, "clicks": 2}},
    }
    part = await (await rig.client.get("/engagements/x?part=figures")).text()
    assert part.startswith('<p class="as-of">Figures as of') and "<html" not in part
    assert "2026-11-30 10:00:00 UTC" in part
    assert 'id="verdicts"' in part and "<li" in part[part.index('id="verdicts"') :]
    rows = await (await rig.client.get("/engagements?part=rows")).text()
    assert '<td class="num deliveries">7</td>' in rows
    assert '<td class="num clicks">2</td>' in rows


async def test_pages_carry_security_headers_and_own_assets(rig: Rig) -> None:
    await rig.log_in("vic")
    response = await rig.client.get("/engagements")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    page = await response.text()
    assert "http://" not in page and "https://" not in page.replace('placeholder="https://', "")
    for asset in ("/static/console.css", "/static/console.js"):
        assert (await rig.client.get(asset)).status == 200


async def test_a_new_engagement_without_figures_is_not_yet_judged(rig: Rig) -> None:
    await rig.log_in("erin")
    await create(rig, TWO_VARIANTS)
    rig.data.now_ms += 5 * 60_000
    part = await (await rig.client.get("/engagements/spring-sale?part=figures")).text()
    verdicts = part[part.index('id="verdicts"') :]
    assert "not yet judged" in verdicts and "rare trigger" not in verdicts


async def test_kafka_down_is_a_page_saying_so_not_a_traceback(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    await rig.log_in("vic")

    async def unreachable() -> None:
        raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")

    monkeypatch.setattr(rig.data, "snapshot", unreachable)
    response = await rig.client.get("/engagements")
    assert response.status == 503
    page = await response.text()
    assert "Kafka is not answering" in page and "Traceback" not in page
    health = await rig.client.get("/health")
    assert health.status == 503 and (await health.json())["status"] == "unavailable"

    async def refused() -> None:
        raise KafkaAccessError("Kafka refused: no ACL to read topic 'engagements'")

    monkeypatch.setattr(rig.data, "snapshot", refused)
    response = await rig.client.get("/engagements")
    assert response.status == 503 and "no ACL to read topic" in await response.text()


async def test_an_edit_made_from_an_older_version_is_refused(rig: Rig) -> None:
    await rig.log_in("erin")
    await create(rig, TWO_VARIANTS)
    page = await (await rig.client.get("/engagements/spring-sale/edit")).text()
    opened = dict(form_fields(page, "/engagements/spring-sale/edit"))
    # Meanwhile someone applies a change with the CLI.
    engagement = rig.data.records["spring-sale"]["engagement"]
    changed = {**engagement, "audience": {**engagement["audience"], "percent": 1}}
    await rig.data.apply(changed, "bob", NOW_MS, 1)
    response = await rig.client.post(
        "/engagements/spring-sale/edit",
        data=[*{**opened, "variants.0.message.title": "New"}.items(), ("action", "save")],
        allow_redirects=False,
    )
    assert response.status == 409
    assert "changed since version 1 was read: version 2 by bob" in await response.text()
    record = rig.data.records["spring-sale"]
    assert record["version"] == 2 and record["engagement"]["audience"]["percent"] == 1


async def test_an_unchanged_save_keeps_what_the_form_shows_no_input_for(rig: Rig) -> None:
    await rig.data.apply(
        {
            "id": "odd",
            "name": "Odd",
            "status": "paused",
            "trigger": {"event": "custom", "name": "checkout", "where": []},
            "elements": [],
            "message": {
                "title": "Line 1\nLine 2",
                "body": "\nstarts with a line break",
                "image_url": " https://cdn.example/x.png ",
                "buttons": [{"id": "x", "label": "Go", "action": "app://x", "style": "primary"}],
                "count": "1",
                "flags": [1, "1", True],
            },
        },
        "ops",
        NOW_MS,
        None,
    )
    await rig.log_in("erin")
    response = await rig.submit(
        "/engagements/odd/edit", "/engagements/odd/edit", {}, ("action", "save")
    )
    assert response.status == 303, await response.text()
    assert rig.data.records["odd"]["version"] == 1
    assert rig.data.records["odd"]["engagement"]["status"] == "paused"


async def test_an_event_count_filter_can_be_removed(rig: Rig) -> None:
    await rig.data.apply(
        {
            "id": "loyal",
            "name": "Loyal",
            "status": "active",
            "trigger": {"event": "session_start"},
            "audience": {
                "filters": [{"event": "purchase", "op": "gte", "count": 3, "within_seconds": 86400}]
            },
            "message": {"title": "Thanks"},
        },
        "ops",
        NOW_MS,
        None,
    )
    await rig.log_in("erin")
    cleared = {
        "audience.filters.0.event": "",
        "audience.filters.0.op": "",
        "audience.filters.0.count": "",
        "audience.filters.0.within_seconds": "",
    }
    response = await rig.submit(
        "/engagements/loyal/edit", "/engagements/loyal/edit", cleared, ("action", "save")
    )
    assert response.status == 303, await response.text()
    assert rig.data.records["loyal"]["engagement"]["audience"]["filters"] == []


async def test_a_new_engagement_gets_hash_version_2_which_edits_keep(rig: Rig) -> None:
    await rig.log_in("erin")
    page = await (await rig.client.get("/engagements/new")).text()
    assert dict(form_fields(page, "/engagements/new"))["audience.hash_version"] == ""
    await create(rig, TWO_VARIANTS)
    assert rig.data.records["spring-sale"]["engagement"]["audience"]["hash_version"] == 2
    created = {item["field"]: item["new"] for item in rig.data.history[-1]["changes"]}
    assert created["audience"]["hash_version"] == 2  # a create logs whole top-level fields
    edit = "/engagements/spring-sale/edit"
    page = await (await rig.client.get(edit)).text()
    assert dict(form_fields(page, edit))["audience.hash_version"] == "2"
    response = await rig.submit(edit, edit, {}, ("action", "save"))
    assert response.status == 303 and rig.data.records["spring-sale"]["version"] == 1
    response = await rig.submit(edit, edit, {"variants.0.message.title": "New"}, ("action", "save"))
    assert response.status == 303
    record = rig.data.records["spring-sale"]
    assert record["version"] == 2 and record["engagement"]["audience"]["hash_version"] == 2


async def test_an_engagement_from_before_hash_versions_keeps_version_1(rig: Rig) -> None:
    # Stored before hash versions existed: no audience.hash_version, so version 1.
    await rig.data.apply(HALF_SAMPLE, "ops", NOW_MS, None)
    record = rig.data.records["old"]
    del record["engagement"]["audience"]["hash_version"]
    await rig.log_in("erin")
    edit = "/engagements/old/edit"
    response = await rig.submit(edit, edit, {"message.title": "Newer"}, ("action", "save"))
    assert response.status == 303
    record = rig.data.records["old"]
    assert record["version"] == 2 and "hash_version" not in record["engagement"]["audience"]
    assert [item["field"] for item in rig.data.history[-1]["changes"]] == ["message.title"]


async def test_changing_the_hash_version_is_a_logged_change(rig: Rig) -> None:
    await rig.data.apply(HALF_SAMPLE, "ops", NOW_MS, None)
    await rig.log_in("erin")
    edit = "/engagements/old/edit"
    response = await rig.submit(edit, edit, {"audience.hash_version": "1"}, ("action", "save"))
    assert response.status == 303
    assert rig.data.records["old"]["engagement"]["audience"]["hash_version"] == 1
    assert rig.data.history[-1]["author"] == "erin"
    assert rig.data.history[-1]["changes"] == [
        {"field": "audience.hash_version", "old": 2, "new": 1}
    ]

"""The campaign console end to end in a real headless Chromium: a real broker, a running
worker and `declic console`, each a child process (tests/browser/console_harness.py).

One flow, in order, as the issue tells it: log in; create an A/B test with a 10% control
through the form, see a field error and fix it, launch; publish events and see deliveries
and the funnel appear without reloading; pause and see the changelog with the user's name;
test-send; export YAML and apply it unchanged with the CLI; as a viewer, get 403 on pause;
a POST without the CSRF token is refused. Each page is saved as docs/console/<name>.png,
the screenshots the README shows.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from engine.bench.browser import browser_missing, start_chromium
from tests.browser.console_harness import (
    PASSWORD,
    ConsoleStack,
    browser_cookies,
    http,
    poll,
    screenshot,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser]

WAIT_SECONDS = 30.0
# The page refreshes its figures every 5 s; the worker publishes them every second.
FIGURES_SECONDS = 90.0
NAME = "Spring sale"
ENGAGEMENT = "spring-sale"  # the id the form makes from the name
TRIGGER = "checkout"
USERS = [f"shopper-{number:02d}" for number in range(20)]


@pytest.fixture(scope="module")
def stack(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    """Topics of this module's own, a worker and a console; stopped whatever happens."""
    with ConsoleStack(bootstrap, tmp_path_factory.mktemp("console-e2e")).running() as running:
        yield running


@pytest.fixture(scope="module")
def chromium() -> Iterator[WebDriver]:
    """Return a headless Chromium, 1280 px wide, quit at the end of the module."""
    reason = browser_missing()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    driver = start_chromium(1280, 1000)
    try:
        yield driver
    finally:
        driver.quit()


# --- page helpers ---------------------------------------------------------------------------


def _wait(driver: WebDriver, what: str, condition: object, seconds: float = WAIT_SECONDS) -> None:
    WebDriverWait(driver, seconds, poll_frequency=0.2).until(condition, message=what)


def _at(driver: WebDriver, path: str) -> None:
    """Wait until the browser shows this path (a form posted, a redirect followed)."""
    _wait(
        driver,
        f"the browser at {path}",
        lambda d: (
            d.execute_script("return location.pathname") == path
            and d.execute_script("return document.readyState") == "complete"
        ),
    )


def _fill(driver: WebDriver, name: str, value: str) -> None:
    field = driver.find_element(By.NAME, name)
    field.clear()
    field.send_keys(value)


def _press(driver: WebDriver, text: str, *, loads_a_page: bool = True) -> None:
    """Click the visible button with this text; wait for the page it loads, if any.

    A form may answer at the very path it was posted from (Pause, a test send): waiting
    for the path would look at the old page while the new one loads. The old page's
    window carries a mark a new document does not.
    """
    buttons = [
        button
        for button in driver.find_elements(By.TAG_NAME, "button")
        if button.is_displayed() and button.text.strip() == text
    ]
    assert len(buttons) == 1, f"{len(buttons)} visible buttons {text!r}"
    if loads_a_page:
        driver.execute_script("window.__pageBeforePress = true;")
    buttons[0].click()
    if loads_a_page:
        _wait(
            driver,
            f"the page {text!r} loads",
            lambda d: d.execute_script(
                "return window.__pageBeforePress !== true && document.readyState === 'complete'"
            ),
        )


def _buttons(driver: WebDriver) -> set[str]:
    return {button.text.strip() for button in driver.find_elements(By.TAG_NAME, "button")}


def _log_in(driver: WebDriver, url: str, user: str) -> None:
    driver.get(f"{url}/login")
    _fill(driver, "username", user)
    _fill(driver, "password", PASSWORD)
    _press(driver, "Log in")
    _at(driver, "/engagements")
    assert driver.find_element(By.ID, "user").text == user


def _log_out(driver: WebDriver) -> None:
    _press(driver, "Log out")
    _at(driver, "/login")


def _status(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "status").text)


def _figures(driver: WebDriver) -> dict[str, int]:
    """Return what the detail page's figures show now: deliveries per variant, control
    users, the funnel's delivered count."""
    shown: dict[str, str] = driver.execute_script(
        """
        const found = {};
        for (const row of document.querySelectorAll("#variants tr[data-variant]")) {
          const cell = row.querySelector("td:nth-child(2)");
          found[row.getAttribute("data-variant")] = cell ? cell.textContent : "";
        }
        const step = document.querySelector("#funnel .step .step-count");
        found["delivered"] = step ? step.textContent : "";
        return found;
        """
    )
    numbers = {}
    for key, text in shown.items():
        match = re.match(r"\s*([\d,]+)", text)
        numbers[key] = int(match.group(1).replace(",", "")) if match else 0
    return numbers


def _deliveries(figures: dict[str, int]) -> int:
    return sum(count for key, count in figures.items() if key not in ("control", "delivered"))


# --- the flow -------------------------------------------------------------------------------


def test_an_experiment_from_the_form_to_its_figures_by_role(
    stack: ConsoleStack, chromium: WebDriver, tmp_path: Path
) -> None:
    driver, url = chromium, stack.url
    shots: list[Path] = []

    # Log in: any page sends an unknown visitor to the login form.
    driver.get(f"{url}/engagements")
    _at(driver, "/login")
    _fill(driver, "username", "erin")
    _fill(driver, "password", PASSWORD)
    shots.append(screenshot(driver, "login"))
    _press(driver, "Log in")
    _at(driver, "/engagements")
    assert driver.find_element(By.ID, "user").text == "erin"

    # Create an A/B test, two variants and a 10% control, with a bad percentage first.
    driver.find_element(By.LINK_TEXT, "New engagement").click()
    _at(driver, "/engagements/new")
    _fill(driver, "name", NAME)
    driver.find_element(By.CSS_SELECTOR, "input[name=experiment][value=ab]").click()
    _wait(
        driver,
        "the variant rows shown",
        lambda d: d.find_element(By.NAME, "variants.1.id").is_displayed(),
    )
    for number, (variant, weight, title, body) in enumerate(
        [
            ("a", "1", "Spring sale: 20% off", "Everything in the spring collection."),
            ("b", "1", "Your spring deals are here", "Up to 20% off until Sunday."),
        ]
    ):
        _fill(driver, f"variants.{number}.id", variant)
        _fill(driver, f"variants.{number}.weight", weight)
        _fill(driver, f"variants.{number}.message.title", title)
        _fill(driver, f"variants.{number}.message.body", body)
    # Rows are added in place, nested ones too (left blank, they are not sent as rows).
    blank_variant = max(
        int(field.get_attribute("name").split(".")[1])
        for field in driver.find_elements(By.CSS_SELECTOR, "[name^='variants.'][name$='.id']")
    )
    _press(driver, "Add a variant", loads_a_page=False)
    added = f"variants.{blank_variant + 1}"
    _wait(driver, "a variant added", lambda d: d.find_elements(By.NAME, f"{added}.id"))
    driver.find_element(
        By.CSS_SELECTOR, f".rows[data-prefix='{added}.message.buttons'] .add-row"
    ).click()
    _wait(
        driver,
        "a button row added in the new variant",
        lambda d: d.find_elements(By.NAME, f"{added}.message.buttons.1.label"),
    )
    _fill(driver, "control_percent", "10")
    Select(driver.find_element(By.NAME, "trigger.event")).select_by_value("custom")
    _fill(driver, "trigger.name", TRIGGER)
    _fill(driver, "audience.percent", "150")
    _press(driver, "Launch")
    _wait(
        driver,
        "the error next to audience.percent",
        lambda d: d.find_elements(By.CSS_SELECTOR, '.field-error[data-field="audience.percent"]'),
    )
    error = driver.find_element(By.CSS_SELECTOR, '.field-error[data-field="audience.percent"]')
    assert error.is_displayed() and error.text
    assert driver.find_element(By.ID, "form-errors").is_displayed()
    assert ENGAGEMENT not in stack.engagements()  # nothing published
    # What was typed is kept: only the bad field needs fixing.
    assert driver.find_element(By.NAME, "variants.1.message.title").get_attribute("value") == (
        "Your spring deals are here"
    )
    audience = "section:has(#f-audience\\.percent)"  # the form is long: its section
    shots.append(screenshot(driver, "new-engagement-field-error", around=audience))
    _fill(driver, "audience.percent", "100")
    _press(driver, "Launch")
    _at(driver, f"/engagements/{ENGAGEMENT}")
    assert _status(driver) == "active"
    assert "Launched" in driver.find_element(By.CSS_SELECTOR, ".notice").text
    record = stack.engagements()[ENGAGEMENT]
    engagement = record["engagement"]
    assert record["author"] == "erin"
    assert engagement["control_percent"] == 10 and engagement["audience"]["percent"] == 100
    assert [variant["id"] for variant in engagement["variants"]] == ["a", "b"]
    assert engagement["trigger"] == {"event": "custom", "name": TRIGGER}

    # Publish events once the worker runs the engagement; the page shows the figures by
    # itself (its refresh), not by a reload: a mark set on the page now must stay.
    poll(
        "the worker running the engagement",
        lambda: stack.worker_versions().get(ENGAGEMENT) == record["version"],
        WAIT_SECONDS,
    )
    driver.execute_script("window.__notReloaded = true;")
    stack.publish_custom_events(TRIGGER, USERS)
    _wait(
        driver,
        "deliveries and the funnel shown for every user",
        lambda d: (
            (figures := _figures(d))["delivered"] > 0
            and _deliveries(figures) > 0
            and _deliveries(figures) + figures.get("control", 0) == len(USERS)
        ),
        FIGURES_SECONDS,
    )
    assert driver.execute_script("return window.__notReloaded === true;")
    figures = _figures(driver)
    assert figures["delivered"] == _deliveries(figures)
    shots.append(screenshot(driver, "engagement-figures"))

    # Pause: the changelog names the editor.
    _press(driver, "Pause")
    _at(driver, f"/engagements/{ENGAGEMENT}")
    assert _status(driver) == "paused"
    assert "Pause" not in _buttons(driver) and "Resume" in _buttons(driver)
    rows = driver.find_elements(By.CSS_SELECTOR, "#changelog tbody tr")
    latest = rows[0].find_elements(By.TAG_NAME, "td")
    assert latest[1].text == "erin" and latest[2].text.startswith("pause")
    assert any(row.find_elements(By.TAG_NAME, "td")[2].text.startswith("create") for row in rows)
    shots.append(screenshot(driver, "engagement-paused"))

    # Test send: the worker's test delivery to that user is shown.
    _fill(driver, "user_id", "qa-phone-1")
    _press(driver, "Send a test")
    _wait(driver, "the test delivery", lambda d: d.find_elements(By.ID, "test-delivery"), 60)
    delivery = driver.find_element(By.ID, "test-delivery").text
    assert "qa-phone-1" in delivery and '"test":true' in delivery.replace(" ", "")
    shots.append(screenshot(driver, "test-send"))

    # Export YAML with the browser's session, apply it with the CLI: nothing changes.
    exported = http(f"{url}/engagements/{ENGAGEMENT}/export.yaml", cookies=browser_cookies(driver))
    assert exported.status == 200, exported.text
    assert exported.headers["Content-Type"].startswith("application/yaml")
    path = tmp_path / f"{ENGAGEMENT}.yaml"
    path.write_text(exported.text, encoding="utf-8")
    applied = stack.declic("engagements", "apply", str(path)).stdout
    assert f"{ENGAGEMENT}: unchanged" in applied, applied
    version = stack.engagements()[ENGAGEMENT]["version"]

    # The list, with the engagement's deliveries of the last 24 hours.
    driver.find_element(By.LINK_TEXT, "Engagements").click()
    _at(driver, "/engagements")
    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-engagement="{ENGAGEMENT}"]')
    assert "paused" in row.text
    assert int(row.find_element(By.CSS_SELECTOR, "td.deliveries").text.replace(",", "")) > 0
    # The trend is drawn: a line with a stroke, not an invisible one.
    stroke = driver.execute_script(
        "return getComputedStyle(arguments[0].querySelector('polyline')).stroke;", row
    )
    assert stroke not in ("", "none"), stroke
    shots.append(screenshot(driver, "list"))

    # A viewer reads the page, has no button to change it, and gets 403 posting anyway.
    _log_out(driver)
    _log_in(driver, url, "vic")
    driver.get(f"{url}/engagements/{ENGAGEMENT}")
    assert _status(driver) == "paused"
    assert _buttons(driver) == {"Log out"}  # no Pause, Resume, Archive or test send
    token = driver.find_element(By.CSS_SELECTOR, "input[name=csrf_token]").get_attribute("value")
    assert token
    for action in ("pause", "resume"):
        refused = http(
            f"{url}/engagements/{ENGAGEMENT}/{action}",
            cookies=browser_cookies(driver),
            form=[("csrf_token", token)],
        )
        assert refused.status == 403, (action, refused.status, refused.text)
        assert "vic (viewer) may not" in refused.text
    assert stack.engagements()[ENGAGEMENT]["version"] == version

    # A forged POST by a user who may resume, without the CSRF token: refused, in the
    # browser (a form a hostile page would submit) and by a client with the cookie.
    _log_out(driver)
    _log_in(driver, url, "erin")
    driver.get(f"{url}/engagements/{ENGAGEMENT}")
    assert "Resume" in _buttons(driver)
    driver.execute_script(
        """
        const form = document.createElement("form");
        form.method = "post";
        form.action = arguments[0];
        document.body.append(form);
        form.submit();
        """,
        f"/engagements/{ENGAGEMENT}/resume",
    )
    _at(driver, f"/engagements/{ENGAGEMENT}/resume")
    assert "CSRF" in driver.find_element(By.CSS_SELECTOR, "p.error").text
    shots.append(screenshot(driver, "forged-post-refused"))
    forged = http(
        f"{url}/engagements/{ENGAGEMENT}/resume",
        cookies=browser_cookies(driver),
        form=[("go", "resume")],
    )
    assert forged.status == 403 and "CSRF" in forged.text
    after = stack.engagements()[ENGAGEMENT]
    assert after["version"] == version and after["engagement"]["status"] == "paused"
    driver.get(f"{url}/engagements/{ENGAGEMENT}")
    assert _status(driver) == "paused"

    for shot in shots:
        assert shot.stat().st_size > 10_000, shot  # a page, not a blank

"""Every alert has a runbook section in deploy/prometheus/RUNBOOK.md, and every section an alert.

An alert's `runbook_url` annotation names `deploy/prometheus/RUNBOOK.md#<anchor>`; the
anchor is the GitHub anchor of a `## ` heading of RUNBOOK.md. Each section tells the
on-call engineer the three things they need: what it means for users, what to look at
first, what to do.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.unit.readme_markdown import parse

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "rules" / "alerts.yml"
RUNBOOK = REPO / "deploy" / "prometheus" / "RUNBOOK.md"
RUNBOOK_PATH = "deploy/prometheus/RUNBOOK.md"
PARTS = ("**For users:**", "**Look first:**", "**What to do:**")


def anchor(title: str) -> str:
    """Return GitHub's anchor of a heading: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def alerts() -> list[dict[str, object]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def sections() -> dict[str, str]:
    """Return each `## ` section of RUNBOOK.md by anchor, with its text."""
    text = RUNBOOK.read_text(encoding="utf-8")
    code_lines = {
        line for block in parse(text).blocks for line, _ in block.numbered_lines()
    }  # a `## ` inside a code block is no heading
    result: dict[str, str] = {}
    current: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("## ") and number not in code_lines:
            current = anchor(line[3:])
            assert current not in result, f"two RUNBOOK.md sections have the anchor #{current}"
            result[current] = ""
        elif current is not None:
            result[current] += line + "\n"
    return result


def test_anchor_follows_github() -> None:
    assert anchor("DeclicWorkerDown") == "declicworkerdown"
    assert anchor("What to do, first!") == "what-to-do-first"


def test_every_alert_points_to_its_own_runbook_section() -> None:
    found = sections()
    problems = []
    for rule in alerts():
        name = str(rule["alert"])
        url = rule.get("annotations", {}).get("runbook_url")  # type: ignore[union-attr]
        if url is None:
            problems.append(f"{name}: no runbook_url annotation")
            continue
        path, _, target = str(url).partition("#")
        if path != RUNBOOK_PATH:
            problems.append(f"{name}: runbook_url {url!r} is not in {RUNBOOK_PATH}")
        elif target not in found:
            problems.append(f"{name}: RUNBOOK.md has no section #{target}")
        elif target != anchor(name):
            problems.append(f"{name}: runbook_url points to #{target}, another alert's section")
    assert problems == []


def test_every_runbook_section_is_an_alert() -> None:
    names = {anchor(str(rule["alert"])) for rule in alerts()}
    assert sorted(set(sections()) - names) == []


def test_every_section_says_what_it_means_what_to_look_at_and_what_to_do() -> None:
    problems = [
        f"#{name}: no {part}"
        for name, text in sections().items()
        for part in PARTS
        if part not in text
    ]
    assert problems == []


def test_links_inside_the_runbook_lead_to_sections() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(#([^)]+)\)", text)
    assert targets, "the runbook links its related sections"
    assert sorted(set(targets) - set(sections())) == []

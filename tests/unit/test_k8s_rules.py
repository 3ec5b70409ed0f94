"""The PrometheusRule in deploy/k8s is the rule files of deploy/prometheus, and nothing else.

deploy/prometheus/rules/*.yml is the one source of the rules: promtool tests them there, and
deploy/k8s/rules.py wraps their groups for the Prometheus Operator. A rule edited on one
side only fails here.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import yaml

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"
COMMITTED = REPO / "deploy" / "k8s" / "base" / "prometheus-rule.yaml"


def load(name: str) -> ModuleType:
    """Import deploy/k8s/NAME.py (a script, not a package)."""
    spec = importlib.util.spec_from_file_location(f"k8s_{name}", REPO / "deploy/k8s" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rule_files_groups() -> list[object]:
    return [
        group
        for path in sorted(RULES_DIR.glob("*.yml"))
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    ]


def test_committed_prometheus_rule_is_what_the_rule_files_give() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == load("rules").render(), (
        "deploy/k8s/base/prometheus-rule.yaml is stale: run `python deploy/k8s/rules.py`"
    )


def test_committed_prometheus_rule_holds_every_group_and_rule_unchanged() -> None:
    rule = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"]["groups"] == rule_files_groups()
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and all("runbook_url" in alert["annotations"] for alert in alerts)


def test_an_edited_rule_file_changes_the_generated_rule(tmp_path: Path) -> None:
    rules = load("rules")
    for path in RULES_DIR.glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    alerts = tmp_path / "alerts.yml"
    alerts.write_text(
        alerts.read_text(encoding="utf-8").replace("for: 2m", "for: 3m", 1), encoding="utf-8"
    )
    edited = yaml.safe_load(rules.render(tmp_path))
    worker_down = next(
        rule
        for group in edited["spec"]["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "DeclicWorkerDown"
    )
    assert worker_down["for"] == "3m"
    assert rules.render(tmp_path) != COMMITTED.read_text(encoding="utf-8")


def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    rules = load("rules")
    stale = tmp_path / "prometheus-rule.yaml"
    stale.write_text(COMMITTED.read_text(encoding="utf-8").replace("for: 2m", "for: 9m"))
    rules.OUTPUT = stale  # a module of its own (load), so no other test sees this
    assert rules.main(["--check"]) == 1
    assert rules.main([]) == 0  # writes it again
    assert rules.main(["--check"]) == 0
    assert stale.read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8")

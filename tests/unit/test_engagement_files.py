"""`declic engagements apply --dry-run FILE...` answers for the real apply, broker aside.

Every mistake in an engagement file is refused before anything connects, with exit
status 2 and one line per problem: ``declic: error: FILE:LINE: FIELD.PATH: reason``, the
line being where the field is written, the path in the author's own names, the reason in
plain words (no validator wording, no internal reason code). No broker runs here: the
tests call what the command calls (``load_and_validate``), and the command itself.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from engine.admin.engagements import (
    MAX_RECORD_BYTES,
    EngagementRejected,
    _publish,
    _version_records,
    load_and_validate,
    with_hash_version,
)
from engine.cli import main
from engine.core.engagements import compile_engagement
from engine.core.fields import MAX_INTEGER, MIN_INTEGER, FieldProblem, number_problems
from engine.core.timestamps import format_timestamp
from engine.core.variants import MAX_WEIGHT
from engine.schemas import apply_engagement_defaults, load_schema, validator
from engine.settings import load_settings

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "deploy" / "examples").glob("*.yaml"))
AUTHOR = "tester"
HUGE = 100_000_000_000_000_000_000  # 10**20: past 64 bits

# A valid engagement; line 5 is `trigger:`, line 7 `message:`.
GOOD = textwrap.dedent("""\
    id: welcome
    name: Welcome
    status: active
    priority: 1
    trigger:
      event: session_start
    message:
      title: Hi
    """)
# Wording of the validator or of the engine's internals, never shown to an author.
INTERNAL_WORDING = (
    "invalid_engagement",
    "schema_violation",
    "is not valid under any of the",
    "is a required property",
    "Additional properties",
    "is greater than the maximum",
    "is less than the minimum",
    "is not of type",
    "jsonschema",
    "Traceback",
)


def _write(tmp_path: Path, text: str, name: str = "engagement.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _problems(*paths: Path) -> list[str]:
    """Return the problem lines of apply: what follows `declic: error: `."""
    with pytest.raises(EngagementRejected) as refused:
        load_and_validate(paths, AUTHOR)
    lines = str(refused.value).splitlines()
    assert lines == refused.value.problems
    assert len(set(lines)) == len(lines), f"a problem said twice: {lines}"
    for line in lines:
        for words in INTERNAL_WORDING:
            assert words not in line, line
    return lines


def _one_problem(path: Path) -> str:
    [line] = _problems(path)
    return line


def _dry_run(*paths: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DECLIC_")}
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "engagements", "apply", "--dry-run", *map(str, paths)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- numbers a record cannot carry ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        (GOOD.replace("priority: 1", f"priority: {HUGE}"), 4, "priority"),
        (GOOD.replace("priority: 1", f"priority: -{HUGE}"), 4, "priority"),
        (GOOD + f"  count: {HUGE}\n", 9, "message.count"),
        (GOOD.replace("event: session_start", f"event: session_start\n  delay_seconds: {HUGE}"),
         7, "trigger.delay_seconds"),
        (GOOD + f"audience:\n  filters:\n    - {{attribute: age, op: gt, value: {HUGE}}}\n",
         11, "audience.filters.0.value"),
        (GOOD + f"audience:\n  filters:\n    - {{attribute: id, op: in, value: [1, {HUGE}]}}\n",
         11, "audience.filters.0.value.1"),
        (GOOD.replace("message:\n  title: Hi\n", "")
         + f"variants:\n  - id: a\n    weight: {HUGE}\n    message: {{title: A}}\n",
         9, "variants.0.weight"),
        (GOOD + "  ratio: .inf\n", 9, "message.ratio"),
        (GOOD + "  ratio: .nan\n", 9, "message.ratio"),
    ],
    ids=["priority", "negative priority", "message", "delay", "value", "in item", "weight",
         "infinity", "nan"],
)  # fmt: skip
def test_a_number_no_record_can_carry_is_refused_at_its_line(
    tmp_path: Path, text: str, line: int, field: str
) -> None:
    path = _write(tmp_path, text)
    problem = _one_problem(path)
    assert problem.startswith(f"{path}:{line}: {field}: must be "), problem


def test_integers_at_the_64_bit_bounds_pass(tmp_path: Path) -> None:
    text = GOOD.replace("priority: 1", f"priority: {MAX_INTEGER}") + f"  low: {MIN_INTEGER}\n"
    [engagement] = load_and_validate([_write(tmp_path, text)], AUTHOR)
    assert engagement["priority"] == MAX_INTEGER
    past = GOOD.replace("priority: 1", f"priority: {MAX_INTEGER + 1}")
    assert "between" in _one_problem(_write(tmp_path, past))


def test_number_problems_looks_everywhere_but_leaves_floats_and_booleans() -> None:
    document = {"a": [1, {"b": 2**64}], "c": 1e300, "d": True, "e": float("-inf")}
    assert [problem.path for problem in number_problems(document)] == [("a", 1, "b"), ("e",)]


def test_the_schema_states_the_core_bounds() -> None:
    schema = load_schema("engagement")
    priority = schema["properties"]["priority"]
    assert (priority["minimum"], priority["maximum"]) == (MIN_INTEGER, MAX_INTEGER)
    assert schema["$defs"]["variant"]["properties"]["weight"]["maximum"] == MAX_WEIGHT


def test_a_weight_past_the_bound_is_refused_by_the_core_too() -> None:
    document = apply_engagement_defaults(
        {
            "id": "w",
            "name": "W",
            "status": "active",
            "trigger": {"event": "session_start"},
            "variants": [{"id": "a", "weight": MAX_WEIGHT + 1, "message": {}}],
        }
    )
    with pytest.raises(Exception, match=str(MAX_WEIGHT)):
        compile_engagement(document, 1)


# --- the size of the records published ------------------------------------------------------


def _long_list_engagement(count: int, length: int) -> dict[str, Any]:
    return {
        "id": "big",
        "name": "Big",
        "status": "active",
        "trigger": {"event": "session_start"},
        "audience": {
            "filters": [
                {
                    "attribute": "email",
                    "op": "in",
                    "value": [f"{index:06d}" + "x" * (length - 6) for index in range(count)],
                }
            ]
        },
        "message": {"title": "Hi"},
    }


def test_a_record_over_the_producer_limit_is_refused_naming_file_engagement_and_sizes(
    tmp_path: Path,
) -> None:
    # 9,000 values, within every count limit, but over 1 MB once published.
    path = _write(tmp_path, json.dumps(_long_list_engagement(9_000, 120), indent=2), "big.json")
    problems = _problems(path)
    assert problems, "refused"
    for topic, problem in zip(("engagements", "engagement-changelog"), problems, strict=True):
        assert problem.startswith(f"{path}:1: engagement 'big': its record on the {topic} topic")
        assert f"more than the {MAX_RECORD_BYTES}" in problem
        size = int(problem.split("would take ")[1].split()[0])
        assert size > MAX_RECORD_BYTES


def _changelog_size(engagement: dict[str, Any]) -> int:
    # As a create publishes it: with the hash version a new engagement gets.
    _, change = _version_records(
        None,
        with_hash_version(apply_engagement_defaults(engagement), None),
        "create",
        version=1,
        author=AUTHOR,
        at=format_timestamp(0),
    )
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(
        engagement["id"].encode(), json.dumps(change, separators=(",", ":")).encode(), []
    )


def test_the_limit_is_exact(tmp_path: Path) -> None:
    # The changelog record of a new engagement is its larger record: fill it to the limit.
    engagement = _long_list_engagement(8_000, 120)
    values = engagement["audience"]["filters"][0]["value"]
    values[-1] += "y" * (MAX_RECORD_BYTES - _changelog_size(engagement))
    assert _changelog_size(engagement) == MAX_RECORD_BYTES
    at_limit = _write(tmp_path, json.dumps(engagement), "at-limit.json")
    assert [e["id"] for e in load_and_validate([at_limit], AUTHOR)] == ["big"]
    values[-1] += "y"
    past = _write(tmp_path, json.dumps(engagement), "past.json")
    assert f"would take {MAX_RECORD_BYTES + 1} bytes" in _one_problem(past)


def test_the_limit_is_the_producer_default_and_below_the_topics() -> None:
    default = inspect.signature(AIOKafkaProducer).parameters["max_request_size"].default
    assert MAX_RECORD_BYTES == default == 1_048_576
    assert MAX_RECORD_BYTES <= 1_048_588  # Kafka's default max.message.bytes


def test_an_update_too_large_to_log_is_refused_before_connecting() -> None:
    # An update's changelog record holds the old and the new values: it can be refused
    # where the new version alone fits. Nothing listens at the address: a refusal that
    # came after connecting would be a Kafka error instead.
    settings = load_settings({"kafka_bootstrap": "127.0.0.1:1", "author": AUTHOR})
    old = apply_engagement_defaults(_long_list_engagement(4_500, 120))
    new = apply_engagement_defaults(_long_list_engagement(4_500, 121))
    existing = {"engagement": old, "version": 3}
    record, change = _version_records(
        existing, new, "update", version=4, author=AUTHOR, at=format_timestamp(0)
    )
    with pytest.raises(EngagementRejected) as refused:
        asyncio.run(_publish(settings, [("big", record, change)]))
    [problem] = refused.value.problems
    assert problem.startswith("engagement 'big': its record on the engagement-changelog topic")


# --- cross-field rules ------------------------------------------------------------------------


def test_message_beside_variants_is_refused(tmp_path: Path) -> None:
    text = GOOD + "variants:\n  - {id: a, weight: 1, message: {title: A}}\n"
    problem = _one_problem(_write(tmp_path, text))
    assert problem.startswith(f"{tmp_path / 'engagement.yaml'}:7: message: is never delivered")
    assert "variants" in problem


def test_message_beside_variants_is_reported_with_the_other_problems(tmp_path: Path) -> None:
    text = GOOD.replace("status: active", "status: live") + "variants: []\n"
    problems = _problems(_write(tmp_path, text))
    assert [line.split(": ")[1] for line in problems] == ["status", "message", "variants"]


def test_published_engagements_with_message_and_variants_stay_readable() -> None:
    # Workers keep compiling what an older apply published: the rule is for new files.
    document = {
        "id": "old",
        "name": "Old",
        "status": "active",
        "trigger": {"event": "session_start"},
        "message": {"title": "unused"},
        "variants": [{"id": "a", "weight": 1, "message": {"title": "A"}}],
    }
    assert validator("engagement").errors(document) == []
    compile_engagement(apply_engagement_defaults(document), 1)


@pytest.mark.parametrize(
    ("addition", "line", "starts"),
    [
        ("schedule:\n  start: 2026-06-01T00:00:00Z\n  end: 2026-01-01T00:00:00Z\n", 10,
         "schedule.start: must be before end (2026-06-01T00:00:00Z is not before"),
        ("schedule:\n  hours: {from: '09:00', to: '09:00'}\n", 10,
         "schedule.hours.to: from and to must differ"),
        ("schedule:\n  local_time: true\n  start: 2026-13-01T09:00:00\n", 11,
         "schedule.start: not a valid schedule start: month must be in 1..12: "
         "'2026-13-01T09:00:00'"),
        ("elements:\n  - {element: buy, metric: m1}\n  - {element: buy, metric: m2}\n", 11,
         "elements.1.element: element 'buy' is listed twice"),
        ("audience:\n  filters:\n    - {attribute: plan, op: eq, value: null}\n", 11,
         "audience.filters.0.value: must be a single scalar other than null"),
        ("audience:\n  filters:\n    - {attribute: age, op: gte, value: true}\n", 11,
         "audience.filters.0.value: must be a single scalar that is a number or a string"),
    ],
    ids=["end before start", "hours", "local date", "elements", "eq null", "gte boolean"],
)  # fmt: skip
def test_cross_field_rules_name_the_field_without_internal_prefix(
    tmp_path: Path, addition: str, line: int, starts: str
) -> None:
    path = _write(tmp_path, GOOD + addition)
    assert _one_problem(path).startswith(f"{path}:{line}: {starts}")


def test_duplicate_variant_ids_name_the_second(tmp_path: Path) -> None:
    text = GOOD.replace("message:\n  title: Hi\n", "") + textwrap.dedent("""\
        variants:
          - {id: A, weight: 1, message: {title: A}}
          - {id: A, weight: 1, message: {title: B}}
        """)
    path = _write(tmp_path, text)
    assert _one_problem(path) == f"{path}:9: variants.1.id: duplicate variant id 'A'"


def test_a_message_too_large_to_deliver_is_located(tmp_path: Path) -> None:
    document = json.loads(json.dumps(_long_list_engagement(1, 10)))
    del document["message"]
    document["variants"] = [
        {"id": "a", "weight": 1, "message": {"title": "A"}},
        {"id": "b", "weight": 1, "message": {"body": "x" * 50_000}},
    ]
    path = _write(tmp_path, json.dumps(document, indent=2), "e.json")
    problem = _one_problem(path)
    lines = path.read_text().splitlines()
    variant = next(n for n, text in enumerate(lines, 1) if '"b"' in text)
    line = next(n for n, text in enumerate(lines, 1) if n > variant and '"message"' in text)
    assert problem.startswith(f"{path}:{line}: variants.1.message: the message of variant 'b'")


# --- duplicate keys ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ('{"id": "j", "name": "J",\n "status": "active",\n "status": "draft"}', 3, "status"),
        ('[{"id": "a"},\n {"id": "b", "message": {"t": 1,\n  "t": 2}}]', 3, "t"),
    ],
    ids=["top level", "nested in a list"],
)
def test_json_duplicate_keys_are_refused_at_their_line(
    tmp_path: Path, text: str, line: int, key: str
) -> None:
    path = _write(tmp_path, text, "dup.json")
    assert _one_problem(path) == f"{path}:{line}: invalid JSON: duplicate key {key!r}"


def test_yaml_and_json_duplicates_read_alike(tmp_path: Path) -> None:
    yaml_problem = _one_problem(_write(tmp_path, GOOD + "priority: 2\n"))
    assert "duplicate key 'priority'" in yaml_problem
    assert yaml_problem.startswith(f"{tmp_path / 'engagement.yaml'}:9: invalid YAML")


# --- the style of every problem --------------------------------------------------------------


def test_schema_problems_in_plain_words_at_their_lines(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        id: welcome
        name: ""
        stauts: active
        priority: high
        trigger:
          event: click
        audience:
          percent: 120
          filters:
            - {attribute: a, op: in, value: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}
            - {event: Buy, op: gte, count: 5000, within_seconds: 60}
            - just a string
        schedule:
          start: tomorrow
        elements:
          - {element: buy, metric: "two words"}
        message: {title: Hi}
        """).replace("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]", json.dumps(list(range(10_001))))
    path = _write(tmp_path, text)
    problems = [line.removeprefix(f"{path}:") for line in _problems(path)]
    assert problems == [
        "1: status: required field missing",
        "2: name: must not be empty",
        "3: stauts: unknown field 'stauts' (did you mean 'status'?)",
        "4: priority: must be an integer between -9223372036854775808 and "
        '9223372036854775807 (64 bits), got "high"',
        '6: trigger.event: must be one of "session_start", "session_end" or "custom", got "click"',
        "8: audience.percent: must be at most 100, got 120",
        "10: audience.filters.0.value: must be a non-empty array of at most 10000 scalars "
        "for ops in and not_in, got [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, "
        "16, …",
        "11: audience.filters.1.count: must be at most 1000, got 5000",
        '12: audience.filters.2: expected an object, got "just a string"',
        "14: schedule.start: must be null or an RFC 3339 date-time with an offset or Z, e.g. "
        '2026-11-01T00:00:00Z, got "tomorrow"',
        '16: elements.0.metric: must match the pattern ^[A-Za-z0-9_-]{1,64}$, got "two words"',
    ]


def test_json_problems_are_located_at_their_fields(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        [
          {
            "id": "one",
            "name": "One",
            "status": "active",
            "trigger": {"event": "custom"},
            "message": {"title": "Hi"}
          },
          {
            "id": "two", "name": "Two", "status": "active",
            "trigger": {"event": "session_start"},
            "reeligibility": {
              "after_seconds": -1
            }
          }
        ]
        """)
    path = _write(tmp_path, text, "list.json")
    assert _problems(path) == [
        f"{path}:6: trigger.name: required field missing (a custom trigger needs the name of "
        "the custom event to match)",
        f"{path}:9: message: required field missing (an engagement without variants needs a "
        "message)",
        f"{path}:13: reeligibility.after_seconds: must be null (once per user) or an integer "
        "number of seconds >= 1 and <= 315360000 (10 years), got -1",
    ]


def test_every_file_and_every_engagement_is_reported(tmp_path: Path) -> None:
    first = _write(tmp_path, GOOD.replace("status: active", "status: live"), "a.yaml")
    second = _write(
        tmp_path, f"{GOOD}---\n{GOOD.replace('name: Welcome', 'name: Other')}", "b.yaml"
    )
    broken = _write(tmp_path, "id: x\nname: [unclosed\n", "c.yaml")
    problems = _problems(first, second, broken)
    assert problems[0].startswith(f"{first}:3: status: must be one of")
    assert problems[1] == f"{second}:10: id: 'welcome' is also defined at {second}:1"
    assert problems[2].startswith(f"{broken}:3: invalid YAML")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("id: t\nmessage: &m {a: *m}\n", 2, "an alias refers to a value that contains it"),
        ("id: t\nmessage: {200: OK}\n", 2, "found key '200', which is not a string"),
        (f"id: t\npriority: {'9' * 5000}\n", 2, "found an integer of 5000 characters"),
    ],
    ids=["recursive alias", "integer key", "endless integer"],
)
def test_yaml_that_no_record_can_hold_is_refused(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = _write(tmp_path, text)
    problem = _one_problem(path)
    assert problem.startswith(f"{path}:{line}: invalid YAML: ")
    assert words in problem


# --- the command --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("huge.yaml", GOOD.replace("priority: 1", f"priority: {HUGE}"), ":4: priority: must be"),
        ("both.yaml", GOOD + "variants:\n  - {id: a, weight: 1, message: {t: 1}}\n",
         ":7: message: is never delivered"),
        ("dup.json", '{"id": "j",\n "id": "k"}', ":2: invalid JSON: duplicate key 'id'"),
        ("end.yaml",
         GOOD + "schedule: {start: '2026-02-01T00:00:00Z',\n  end: '2026-01-01T00:00:00Z'}\n",
         ":9: schedule.start: must be before end"),
    ],
    ids=["huge integer", "message and variants", "JSON duplicate key", "end before start"],
)  # fmt: skip
def test_the_command_exits_2_with_one_error_line_per_problem(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = _write(tmp_path, text, name)
    run = _dry_run(path)
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert lines and all(line.startswith("declic: error: ") for line in lines), run.stderr
    assert lines[0].startswith(f"declic: error: {path}{expected}"), run.stderr
    for words in INTERNAL_WORDING:
        assert words not in run.stderr


def test_the_command_prints_each_problem_as_an_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.replace("status: active", "status: live").replace("priority: 1", "priority: x")
    path = _write(tmp_path, text)
    assert main(["engagements", "apply", "--dry-run", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"declic: error: {path}:3: status: must be one of "
        '"draft", "active", "paused" or "archived", got "live"',
        f"declic: error: {path}:4: priority: must be an integer between "
        f'{MIN_INTEGER} and {MAX_INTEGER} (64 bits), got "x"',
    ]


def test_valid_files_pass_the_command(tmp_path: Path) -> None:
    run = _dry_run(*EXAMPLES)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [f"{path.stem}: valid" for path in EXAMPLES]


def test_problems_are_data_too() -> None:
    problem = FieldProblem(("variants", 0, "weight"), "must be a number > 0")
    assert str(problem) == "variants.0.weight: must be a number > 0"
    assert str(FieldProblem((), "whole")) == "whole"


# --- hash versions ----------------------------------------------------------------------------


def _audience(engagement: dict[str, Any]) -> dict[str, Any]:
    audience: dict[str, Any] = engagement["audience"]
    return audience


def test_new_engagements_get_hash_version_2_and_existing_ones_keep_theirs(
    tmp_path: Path,
) -> None:
    [document] = load_and_validate([_write(tmp_path, GOOD)], AUTHOR)
    assert "hash_version" not in _audience(document)  # no default: stored ones stay 1
    created = with_hash_version(document, None)
    assert _audience(created)["hash_version"] == 2
    # Applying the same file again never reshuffles: version 2 stays 2...
    assert with_hash_version(document, {"engagement": created}) == created
    # ...and an engagement stored before hash versions stays without one, so 1.
    assert with_hash_version(document, {"engagement": document}) == document
    # Only a file that names a version changes it.
    named = {**document, "audience": {**_audience(document), "hash_version": 1}}
    assert with_hash_version(named, {"engagement": created}) == named
    assert with_hash_version(named, None) == named
    assert "hash_version" not in _audience(document)  # the document itself is left alone


@pytest.mark.parametrize("value", ["3", "0", "'2'", "true", "2.5"])
def test_an_unknown_hash_version_is_refused(tmp_path: Path, value: str) -> None:
    text = GOOD + f"audience:\n  hash_version: {value}\n"
    [problem] = _problems(_write(tmp_path, text))
    assert "audience.hash_version" in problem, problem

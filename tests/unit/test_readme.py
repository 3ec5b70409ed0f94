"""README.md cannot drift from the code: every example in it is run through the code.

Each check is a function taking Markdown text and returning its problems, one line each
(``line N: ...``); the tests run every check on README.md (no problem allowed) and on a
deliberately broken snippet (the problem must be reported):

* engagement examples (```yaml, and ```json engagements) pass the validation of
  ``declic engagements apply --dry-run``;
* record examples (```json, NDJSON) match the schema their fields name (``RECORD_KINDS``);
* command lines (```sh, ```console, ``$ `` lines) parse with the real argument parser, and
  name existing ``make`` targets and ``kafka.sh`` commands;
* every ``DECLIC_*`` variable named is a setting or a variable the scripts or the engine
  read, every ``--flag`` belongs to a ``declic`` command (or to the tool named before it);
* every setting is in the Configuration table, every subcommand and metric in the README,
  and the topics table says which topics ``declic topics`` creates, with how many partitions.

No broker is needed. Flags, settings, metrics and topics come from the code at test time.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import redirect_stderr, redirect_stdout
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from engine.admin.engagements import load_and_validate
from engine.cli import build_parser
from engine.errors import DeclicError
from engine.schemas import SCHEMA_NAMES, load_schema, validator
from tests.unit.readme_markdown import (
    CodeBlock,
    Markdown,
    parse,
    section_text,
    table_rows,
)

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
MAKEFILE = REPO / "Makefile"
KAFKA_SH = REPO / "deploy" / "local" / "kafka.sh"
# Files whose DECLIC_* variables a user may set besides the settings: the scripts.
SCRIPTS = (MAKEFILE, *sorted((REPO / "deploy" / "local").glob("*.sh")), *(REPO / ".ci").iterdir())
BENCH = REPO / "engine" / "bench"

SHELL_BLOCKS = frozenset({"sh", "bash", "shell", "zsh"})
# Blocks whose command lines start with "$ " (the rest is output); unlabelled blocks too.
SESSION_BLOCKS = frozenset({"console", "shell-session", ""})
ENGAGEMENT_BLOCKS = frozenset({"yaml", "yml"})
JSON_BLOCKS = frozenset({"json", "ndjson", "jsonl"})

# Which schema a JSON record of the README follows: the first kind whose fields it has.
RECORD_KINDS: tuple[tuple[str, frozenset[str]], ...] = (
    ("engagement", frozenset({"id", "status", "trigger"})),
    ("engagement-record", frozenset({"engagement", "version", "updated_at"})),
    ("engagement-change", frozenset({"engagement_id", "action", "changes"})),
    ("user-audit", frozenset({"request_id", "done_at", "removed"})),
    ("user-request", frozenset({"request_id", "action", "user_id"})),
    ("test-send", frozenset({"request_id", "requested_at"})),
    ("dead-letter", frozenset({"source_topic", "reason"})),
    ("delivery", frozenset({"delivery_id", "message"})),
    ("conversion", frozenset({"delivery_id", "seconds_to_convert"})),
    ("impression", frozenset({"delivery_id", "first"})),
    ("interaction", frozenset({"delivery_id", "kind"})),
    ("session-event", frozenset({"event_id", "type"})),
    ("custom-event", frozenset({"event_id", "name"})),
    ("profile-update", frozenset({"user_id", "attributes", "timestamp"})),
)

# Commands of other tools the README shows: their flags are theirs, not declic's. kafka.sh
# passes its arguments to Kafka's own tools (`kafka.sh topics --list`).
FOREIGN_COMMANDS = frozenset({"kafka-acls.sh", "kafka.sh", "curl", "kubectl"})
# `python -m engine.bench.X` (hot_path, gateway_memory, ...) has a parser of its own.
BENCH_MODULE = "engine.bench."

_VARIABLE = re.compile(r"\bDECLIC_[A-Z0-9][A-Z0-9_]*")
_SUFFIX = re.compile(r"_[A-Z][A-Z0-9_]*")
_FLAG = re.compile(r"(?<![\w/.-])(--[a-z][a-z0-9-]*)(…|\.\.\.)?")
_METRIC = re.compile(r"\bdeclic_[a-z0-9_]+")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_OPERATORS = frozenset({";", "&", "&&", "|", "||"})


# --- what the code defines ------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_paths(parser: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    """Return every subcommand, as words: ("worker",), ("engagements", "apply"), ..."""
    paths: list[tuple[str, ...]] = []
    for name, sub in _subcommands(parser).items():
        paths.append((name,))
        paths += [(name, *rest) for rest in command_paths(sub)]
    return paths


def all_flags(parser: argparse.ArgumentParser) -> set[str]:
    """Return the option strings of a parser and of all its subcommands."""
    flags = set(parser._option_string_actions)
    for sub in _subcommands(parser).values():
        flags |= all_flags(sub)
    return flags


@cache
def declic_parser() -> argparse.ArgumentParser:
    return build_parser()


def settings_variables() -> set[str]:
    """Return the DECLIC_* variable of every setting."""
    from engine.settings import Settings

    return {"DECLIC_" + name.upper() for name in Settings.model_fields}


def other_variables() -> set[str]:
    """Return the DECLIC_* variables that the scripts name, and that the engine reads from
    its environment itself (not settings)."""
    names = {name for path in SCRIPTS for name in _VARIABLE.findall(path.read_text())}
    read = re.compile(r"environ(?:\.get\(|\[)\s*[\"'](DECLIC_[A-Z0-9_]+)[\"']")
    for path in (REPO / "engine").rglob("*.py"):
        names |= set(read.findall(path.read_text(encoding="utf-8")))
    return names


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", MAKEFILE.read_text(), re.M))


def kafka_sh_commands() -> set[str]:
    """Return the commands of deploy/local/kafka.sh: the cases of its main()."""
    text = KAFKA_SH.read_text()
    body = text[text.index("case $cmd in") : text.index("esac", text.index("case $cmd in"))]
    patterns = re.findall(r"^\s*([\w-]+(?:\s*\|\s*[\w-]+)*)\)", body, re.M)
    return {word.strip() for pattern in patterns for word in pattern.split("|")}


def bench_flags(module: str) -> set[str]:
    """Return the flags `python -m engine.bench.X` defines (read from its source: its
    parser may be built inside its main()); none for a module that does not exist."""
    path = BENCH / f"{module.removeprefix(BENCH_MODULE)}.py"
    if not path.is_file():
        return set()
    calls = re.findall(r"add_argument\(\s*((?:\"-[^\"]*\",\s*)+)", path.read_text())
    flags = {flag for call in calls for flag in re.findall(r"\"(-[^\"]*)\"", call)}
    return flags | {"-h", "--help"}  # argparse's own


def code_metrics() -> dict[str, str]:
    """Return every metric the engine exports, by the name the README gives it (counters
    with their ``_total`` sample), with its type."""
    from prometheus_client import CollectorRegistry

    from engine.metrics import EngineMetrics

    def shown(name: str, kind: str) -> str:
        return f"{name}_total" if kind == "counter" else name

    metrics = {
        shown(family.name, family.type): family.type
        for family in EngineMetrics(CollectorRegistry()).registry.collect()
    }
    # Metrics built anywhere else in the engine, by the class of their constructor.
    built = re.compile(r"\b([A-Z]\w*)\(\s*\"(declic_[a-z0-9_]+)\"")
    for path in (REPO / "engine").rglob("*.py"):
        for constructor, name in built.findall(path.read_text(encoding="utf-8")):
            kind = "counter" if "Count" in constructor else constructor.lower()
            metrics.setdefault(shown(name.removesuffix("_total"), kind), kind)
    return metrics


def metric_sample_names(metrics: Mapping[str, str]) -> set[str]:
    """Return every name a metric may be written with: its family and its samples."""
    names: set[str] = set()
    for name, kind in metrics.items():
        family = name.removesuffix("_total") if kind == "counter" else name
        names |= {family, name, f"{family}_created"}
        if kind in ("histogram", "summary"):
            names |= {f"{family}_{suffix}" for suffix in ("bucket", "sum", "count")}
    return names


# --- reading the README -----------------------------------------------------------------


def classify(record: object) -> str | None:
    """Return the schema a JSON record of the README follows, by its fields."""
    if not isinstance(record, dict):
        return None
    for kind, fields in RECORD_KINDS:
        if fields <= record.keys():
            return kind
    return None


def json_records(block: CodeBlock) -> tuple[list[tuple[int, object]], list[str]]:
    """Return the records of a JSON block (one value, or one per line), with their line,
    and the problems of the lines that are no JSON."""
    try:
        value = json.loads(block.text)
    except json.JSONDecodeError:
        pass
    else:
        items = value if isinstance(value, list) else [value]
        return [(block.line + 1, item) for item in items], []
    records: list[tuple[int, object]] = []
    problems = []
    for line, text in block.numbered_lines():
        if not text.strip():
            continue
        try:
            records.append((line, json.loads(text)))
        except json.JSONDecodeError as error:
            problems.append(f"line {line}: not JSON, nor one JSON record per line: {error}")
    return records, problems


def engagement_blocks(document: Markdown) -> list[CodeBlock]:
    """Return the engagement examples: YAML blocks, and JSON blocks of engagements."""
    found = []
    for block in document.blocks:
        if block.info in ENGAGEMENT_BLOCKS:
            found.append(block)
        elif block.info in JSON_BLOCKS:
            records, _ = json_records(block)
            if records and all(classify(record) == "engagement" for _, record in records):
                found.append(block)
    return found


def write_engagement_files(blocks: list[CodeBlock], directory: Path) -> list[Path]:
    paths = []
    for block in blocks:
        suffix = ".json" if block.info in JSON_BLOCKS else ".yaml"
        path = directory / f"README-line-{block.line}{suffix}"
        path.write_text(block.text + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def shell_commands(document: Markdown) -> Iterator[tuple[int, str]]:
    """Yield the command lines of the code blocks, continuation lines joined."""
    for block in document.blocks:
        if block.info not in SHELL_BLOCKS | SESSION_BLOCKS:
            continue
        pending: tuple[int, str] | None = None
        for number, raw in block.numbered_lines():
            line, text = number, raw
            if pending is not None:
                line, text = pending[0], pending[1] + " " + raw.strip()
            elif block.info in SESSION_BLOCKS:
                if not raw.startswith("$ "):
                    continue
                text = raw[2:]
            if text.rstrip().endswith("\\"):
                pending = (line, text.rstrip()[:-1])
                continue
            pending = None
            if text.strip() and not text.lstrip().startswith("#"):
                yield line, text


def simple_commands(line: str) -> list[list[str]]:
    """Split a shell line into its simple commands (on ; & && | ||), comments and leading
    variable assignments dropped. Raise ValueError when it does not split (quotes)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in _OPERATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    result = []
    for words in commands:
        start = 0
        while start < len(words) and _ASSIGNMENT.match(words[start]):
            start += 1
        if start < len(words):
            result.append(words[start:])
    return result


def declic_arguments(words: list[str]) -> list[str] | None:
    """Return the arguments of a `declic` command line, or None if it runs something else."""
    if not words:
        return None
    if Path(words[0]).name == "declic":
        return words[1:]
    if Path(words[0]).name.startswith("python") and words[1:3] == ["-m", "engine.cli"]:
        return words[3:]
    return None


def kafka_sh_command(words: list[str]) -> str | None:
    """Return the command of a kafka.sh line ("help" when none), or None for another line."""
    for index, word in enumerate(words[:2]):
        if Path(word).name == "kafka.sh":
            return words[index + 1] if index + 1 < len(words) else "help"
    return None


def parse_error(parser: argparse.ArgumentParser, arguments: list[str]) -> str | None:
    """Return argparse's complaint about these arguments, or None when they parse."""
    errors = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(errors):
        try:
            parser.parse_args(arguments)
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                lines = errors.getvalue().strip().splitlines()
                return lines[-1] if lines else f"exit status {exit_.code}"
    return None


def synopsis_problems(arguments: list[str]) -> list[str]:
    """Check a `declic ...` synopsis (placeholders and [optional] parts allowed): its
    subcommands exist and every flag belongs to the subcommand it follows."""
    parser = declic_parser()
    path = ["declic"]
    problems = []
    for raw in arguments:
        word = raw.strip("[]|")
        if not word:
            continue
        if word.startswith("-"):
            flag = word.split("=", 1)[0]
            if flag not in parser._option_string_actions:
                problems.append(f"`{' '.join(path)}` has no flag {flag}")
            continue
        choices = _subcommands(parser)
        if word in choices:
            parser = choices[word]
            path.append(word)
        elif choices:
            problems.append(f"`{' '.join(path)}` has no subcommand {word!r}")
            break
    return problems


def variables_named(document: Markdown, text: str) -> list[tuple[int, str]]:
    """Return every DECLIC_* variable named, with its line; in a code span list like
    `DECLIC_KAFKA_SASL_MECHANISM`, `_USERNAME`, `_PASSWORD` the suffixes stand for
    DECLIC_KAFKA_SASL_USERNAME and DECLIC_KAFKA_SASL_PASSWORD."""
    named = [
        (text.count("\n", 0, match.start()) + 1, match.group())
        for match in _VARIABLE.finditer(text)
    ]
    base: tuple[int, str] | None = None
    for span in document.spans:
        if _VARIABLE.fullmatch(span.text):
            base = (span.group, span.text)
        elif _SUFFIX.fullmatch(span.text) and base is not None and base[0] == span.group:
            named.append((span.line, base[1].rsplit("_", 1)[0] + span.text))
    return named


# --- the checks --------------------------------------------------------------------------


def check_engagements(markdown: str) -> list[str]:
    """Every engagement example passes `declic engagements apply --dry-run`'s validation."""
    problems = []
    with tempfile.TemporaryDirectory() as directory:
        blocks = engagement_blocks(parse(markdown))
        for block, path in zip(
            blocks, write_engagement_files(blocks, Path(directory)), strict=True
        ):
            try:
                load_and_validate([path])
            except DeclicError as error:
                message = str(error).replace(str(path), path.name)
                problems.append(f"line {block.line}: engagement example refused: {message}")
    return problems


def check_records(markdown: str) -> list[str]:
    """Every JSON record example matches its schema; a delivery's id is the one the engine
    derives; a JSON block that is no known record is a problem too."""
    from engine.core.deliveries import delivery_id

    problems = []
    for block in parse(markdown).blocks:
        if block.info not in JSON_BLOCKS:
            continue
        records, not_json = json_records(block)
        problems += not_json
        for line, record in records:
            kind = classify(record)
            if kind is None:
                problems.append(
                    f"line {line}: JSON example of no known record kind (add its kind to "
                    f"RECORD_KINDS in {Path(__file__).name}): {json.dumps(record)[:80]}"
                )
                continue
            if kind == "engagement":
                continue  # check_engagements runs the whole validation on it
            problems += [
                f"line {line}: {kind} example: {error}" for error in validator(kind).errors(record)
            ]
            if kind == "delivery" and isinstance(record, dict) and not record.get("test"):
                expected = delivery_id(
                    str(record.get("engagement_id")),
                    str(record.get("user_id")),
                    str(record.get("trigger_event_id")),
                )
                if record.get("delivery_id") != expected:
                    problems.append(
                        f"line {line}: delivery example: delivery_id should be {expected}"
                    )
    return problems


def check_commands(markdown: str) -> list[str]:
    """Every command line of a code block runs: `declic` lines parse with the real parser,
    `make` lines name Makefile targets, kafka.sh lines name commands of the script."""
    targets = make_targets()
    kafka_commands = kafka_sh_commands()
    problems = []
    for line, text in shell_commands(parse(markdown)):
        try:
            commands = simple_commands(text)
        except ValueError as error:
            problems.append(f"line {line}: cannot split {text!r}: {error}")
            continue
        for words in commands:
            arguments = declic_arguments(words)
            kafka_command = kafka_sh_command(words)
            if arguments is not None:
                complaint = parse_error(declic_parser(), arguments)
                if complaint is not None:
                    problems.append(f"line {line}: `{' '.join(words)}`: {complaint}")
            elif words[0] == "make":
                for target in words[1:]:
                    if not target.startswith("-") and "=" not in target and target not in targets:
                        problems.append(f"line {line}: no make target {target!r}")
            elif kafka_command is not None and kafka_command not in kafka_commands:
                problems.append(f"line {line}: kafka.sh has no command {kafka_command!r}")
    return problems


def check_inline_commands(markdown: str) -> list[str]:
    """Commands in code spans: `declic ...` synopses name real subcommands and their
    flags, `make X` real targets, `kafka.sh X` real commands."""
    targets = make_targets()
    kafka_commands = kafka_sh_commands()
    problems = []
    for span in parse(markdown).spans:
        words = span.text.split()
        arguments = declic_arguments(words)
        kafka_command = kafka_sh_command(words)
        if arguments is not None:
            problems += [f"line {span.line}: {problem}" for problem in synopsis_problems(arguments)]
        elif words[:1] == ["make"] and len(words) == 2 and words[1] not in targets:
            problems.append(f"line {span.line}: no make target {words[1]!r}")
        elif kafka_command is not None and kafka_command not in kafka_commands:
            problems.append(f"line {span.line}: kafka.sh has no command {kafka_command!r}")
    return problems


def check_flags(markdown: str) -> list[str]:
    """Every --flag named is a flag of declic (of the subcommand it follows, when one is
    named), or of the other tool its command line or code span runs."""
    document = parse(markdown)
    declic_flags = all_flags(declic_parser())
    # (line, text, whether the text is a command whose first word owns its flags)
    contexts: list[tuple[int, str, bool]] = [
        (span.line, span.text, True) for span in document.spans
    ]
    contexts += [(line, text, False) for line, text in document.plain]
    for line, text in shell_commands(document):
        try:
            commands = simple_commands(text)
        except ValueError:
            continue  # check_commands reports it
        contexts += [(line, shlex.join(words), True) for words in commands]
    problems = []
    for line, text, is_command in contexts:
        flags = list(_FLAG.finditer(text))
        words = [word for word in text.split() if not _ASSIGNMENT.match(word)] if is_command else []
        if not flags or declic_arguments(words) is not None:
            continue  # declic commands: check_commands and check_inline_commands parse them
        if words and Path(words[0]).name in FOREIGN_COMMANDS:
            continue
        owner, known = "declic", declic_flags
        bench = next((word for word in words[:3] if word.startswith(BENCH_MODULE)), None)
        if bench is not None:
            owner, known = bench, bench_flags(bench)
        for match in flags:
            flag, ellipsis = match.groups()
            if flag in known if not ellipsis else any(name.startswith(flag) for name in known):
                continue
            problems.append(f"line {line}: {flag}{ellipsis or ''} is no flag of {owner}")
    return problems


def check_variables(markdown: str) -> list[str]:
    """Every DECLIC_* variable named is a setting's or one the scripts or engine read."""
    known = settings_variables() | other_variables()
    return [
        f"line {line}: {name} is neither a setting nor read by a script"
        for line, name in variables_named(parse(markdown), markdown)
        if name not in known
    ]


def check_settings_documented(markdown: str) -> list[str]:
    """Every setting's DECLIC_* variable is in the Configuration section."""
    section = section_text(markdown, "Configuration")
    if section is None:
        return ["no ## Configuration section"]
    documented = {name for _, name in variables_named(parse(section), section)}
    return [
        f"setting {name} is missing from ## Configuration"
        for name in sorted(settings_variables() - documented)
    ]


def check_subcommands_documented(markdown: str) -> list[str]:
    """Every subcommand appears as `declic <subcommand>`."""
    text = " ".join(markdown.split())
    return [
        f"`declic {' '.join(path)}` is not in the README"
        for path in command_paths(declic_parser())
        if not re.search(rf"\bdeclic {re.escape(' '.join(path))}(?![\w-])", text)
    ]


def check_metrics_documented(markdown: str) -> list[str]:
    """Every metric the engine exports is in the Metrics section; every declic_* name in
    the README is a metric the engine exports."""
    metrics = code_metrics()
    section = section_text(markdown, "Metrics")
    if section is None:
        return ["no ## Metrics section"]
    listed = {span.text for span in parse(section).spans}
    problems = [
        f"metric {name} is missing from ## Metrics"
        for name in sorted(metrics)
        if name not in listed
    ]
    samples = metric_sample_names(metrics)
    for number, line in enumerate(markdown.splitlines(), start=1):
        problems += [
            f"line {number}: {name} is no metric the engine exports"
            for name in _METRIC.findall(line)
            if name not in samples
        ]
    return problems


def expected_topics(partitions: int) -> dict[str, str]:
    """Return the topics `declic topics` creates, as the README names them (the internal
    state changelog as <app_id>-state-changelog), with their partition count as the README
    gives it: `DECLIC_PARTITIONS`, or a fixed number."""
    from engine.settings import load_settings
    from engine.stream.topics import topic_specs

    settings = load_settings({"partitions": partitions, "topic_prefix": "", "app_id": "declic"})
    topics = {}
    for spec in topic_specs(settings):
        name = re.sub(rf"^{settings.app_id}-", "<app_id>-", spec.name)
        count = spec.num_partitions
        topics[name] = "`DECLIC_PARTITIONS`" if count == settings.partitions else str(count)
    return topics


def check_topics(markdown: str) -> list[str]:
    """The topics table lists exactly the topics `declic topics` creates, each with its
    partition count; "the N topics" counts them right."""
    probe = 7  # no fixed count equals it: a topic created with it follows DECLIC_PARTITIONS
    expected = expected_topics(probe)
    section = section_text(markdown, "Topics and records")
    if section is None:
        return ["no ## Topics and records section"]
    rows = table_rows(section)
    header = next((cells for _, cells in rows if cells[:1] == ["topic"]), None)
    if header is None or "partitions" not in header:
        return ["## Topics and records: no table with columns `topic` and `partitions`"]
    column = header.index("partitions")
    documented: dict[str, str] = {}
    for _, cells in rows:
        name = re.fullmatch(r"`([^`]+)`", cells[0])
        if name is not None and len(cells) > column:
            documented[name.group(1)] = cells[column]
    problems = [
        f"topic {name}: `declic topics` creates it, the topics table lacks it"
        for name in expected
        if name not in documented
    ]
    problems += [
        f"topic {name}: in the topics table, `declic topics` does not create it"
        for name in documented
        if name not in expected
    ]
    problems += [
        f"topic {name}: the table says {documented[name]} partitions, the code {count}"
        for name, count in expected.items()
        if name in documented and documented[name] != count
    ]
    for number, line in enumerate(markdown.splitlines(), start=1):
        for count in re.findall(r"\b(?:the|these|all|its) (\d+) topics\b", line):
            if int(count) != len(expected):
                problems.append(f"line {number}: {count} topics, the code creates {len(expected)}")
    return problems


CHECKS = (
    check_engagements,
    check_records,
    check_commands,
    check_inline_commands,
    check_flags,
    check_variables,
    check_settings_documented,
    check_subcommands_documented,
    check_metrics_documented,
    check_topics,
)


# --- on the README ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text(encoding="utf-8")


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_readme(check: Callable[[str], list[str]], readme: str) -> None:
    problems = check(readme)
    assert problems == [], "README.md:\n" + "\n".join(problems)


def test_readme_has_examples_of_each_kind(readme: str) -> None:
    """The checks above are not vacuous: the README holds what they check."""
    document = parse(readme)
    assert engagement_blocks(document)
    assert any(block.info in JSON_BLOCKS for block in document.blocks)
    commands = [simple_commands(text) for _, text in shell_commands(document)]
    assert any(declic_arguments(words) is not None for line in commands for words in line)
    assert any(words[0] == "make" for line in commands for words in line)
    assert variables_named(document, readme)


def records_of_kind(document: Markdown, kind: str) -> list[dict[str, Any]]:
    found = []
    for block in document.blocks:
        if block.info in JSON_BLOCKS:
            records, _ = json_records(block)
            found += [r for _, r in records if isinstance(r, dict) and classify(r) == kind]
    return found


def test_example_deliveries_are_what_the_engine_gives_for_the_example_events(
    readme: str, tmp_path: Path
) -> None:
    """Each example delivery is the one the matching core produces for the example custom
    event it names, with the example engagement it names, at its created_at."""
    from engine.core.catalog import Catalog
    from engine.core.engagements import compile_engagement
    from engine.core.events import custom_event
    from engine.core.matcher import evaluate
    from engine.core.state import UserState
    from engine.core.timestamps import parse_timestamp

    document = parse(readme)
    paths = write_engagement_files(engagement_blocks(document), tmp_path)
    engagements = {document["id"]: document for document in load_and_validate(paths)}
    events = {event["event_id"]: event for event in records_of_kind(document, "custom-event")}
    deliveries = records_of_kind(document, "delivery")
    assert deliveries
    for delivery in deliveries:
        engagement = engagements[delivery["engagement_id"]]
        event = events[delivery["trigger_event_id"]]
        catalog = Catalog.build([compile_engagement(engagement, delivery["engagement_version"])])
        result = evaluate(
            custom_event(event), UserState(), catalog, parse_timestamp(delivery["created_at"])
        )
        assert result.deliveries == [delivery]


def test_engagement_examples_pass_the_dry_run_command(readme: str, tmp_path: Path) -> None:
    paths = write_engagement_files(engagement_blocks(parse(readme)), tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "engagements", "apply", "--dry-run", *map(str, paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --- the checks fail on broken examples ------------------------------------------------------


def _reported(problems: list[str], *fragments: str) -> bool:
    return any(all(fragment in problem for fragment in fragments) for problem in problems)


BROKEN_ENGAGEMENT = """\
## Engagements

```yaml
id: broken
name: Broken
status: active
trigger: {event: session_start}
message: {title: Hello, body: Want an alert?}
```
"""


def test_an_engagement_that_does_not_parse_is_reported() -> None:
    assert _reported(check_engagements(BROKEN_ENGAGEMENT), "line 3", "refused")


def test_an_invalid_engagement_is_reported() -> None:
    invalid = BROKEN_ENGAGEMENT.replace("Want an alert?", '"Want an alert?"').replace(
        "session_start", "app_open"
    )
    assert check_engagements(invalid.replace("app_open", "session_start")) == []
    assert _reported(check_engagements(invalid), "line 3", "refused")


def test_a_json_engagement_is_checked_as_an_engagement() -> None:
    engagement = {
        "id": "UPPER",
        "name": "x",
        "status": "active",
        "trigger": {"event": "session_start"},
        "message": {},
    }
    markdown = f"```json\n{json.dumps(engagement)}\n```\n"
    assert _reported(check_engagements(markdown), "line 1", "refused")
    assert check_records(markdown) == []  # not a record: checked as an engagement only
    engagement["id"] = "lower"
    assert check_engagements(f"```json\n{json.dumps(engagement)}\n```\n") == []


DELIVERY = {
    "delivery_id": "b1d1ceff-c04e-5c06-81d1-b4ac28766cf4",
    "engagement_id": "favorites-nudge",
    "engagement_version": 1,
    "variant": "default",
    "user_id": "u-42",
    "trigger_event_id": "e-1001",
    "message": {"title": "Saved"},
    "triggered_at": "2026-03-02T09:15:00.000Z",
    "created_at": "2026-03-02T09:15:00.041Z",
    "test": False,
}


def test_an_invalid_record_is_reported() -> None:
    assert check_records(f"```json\n{json.dumps(DELIVERY)}\n```\n") == []
    invalid = {**DELIVERY, "engagement_version": "one"}
    assert _reported(check_records(f"```json\n{json.dumps(invalid)}\n```\n"), "delivery")
    missing = {key: value for key, value in DELIVERY.items() if key != "created_at"}
    assert _reported(check_records(f"```json\n{json.dumps(missing)}\n```\n"), "created_at")


def test_a_delivery_with_another_id_than_the_engine_derives_is_reported() -> None:
    other = {**DELIVERY, "user_id": "u-43"}
    assert _reported(check_records(f"```json\n{json.dumps(other)}\n```\n"), "delivery_id")


def test_ndjson_records_are_checked_line_by_line() -> None:
    event = {"event_id": "e-1", "user_id": "u-1", "name": "Opened", "timestamp": 0}
    lines = f"{json.dumps(event)}\n{json.dumps({**event, 'timestamp': 'yesterday'})}\n"
    assert _reported(check_records(f"text\n\n```json\n{lines}```\n"), "line 5", "custom-event")
    assert _reported(check_records("```json\n{not json}\n```\n"), "line 2", "not JSON")


def test_a_json_block_of_no_known_kind_is_reported() -> None:
    assert _reported(check_records('```json\n{"status": "ok"}\n```\n'), "no known record kind")


def test_every_record_kind_names_fields_of_its_schema() -> None:
    assert {kind for kind, _ in RECORD_KINDS} == set(SCHEMA_NAMES)
    for kind, fields in RECORD_KINDS:
        assert fields <= load_schema(kind)["properties"].keys(), kind


def test_valid_record_fixtures_are_classified_as_their_schema() -> None:
    fixtures = sorted((Path(__file__).parent / "fixtures" / "records" / "valid").glob("*.json"))
    assert fixtures
    for path in fixtures:
        expected = path.name.split("--", 1)[0]
        assert classify(json.loads(path.read_text(encoding="utf-8"))) == expected, path.name


def test_a_command_that_does_not_parse_is_reported() -> None:
    good = "```sh\n.venv/bin/declic worker --worker-id w-1 &  # a worker\n```\n"
    assert check_commands(good) == []
    unknown_flag = good.replace("--worker-id", "--worker-name")
    assert _reported(check_commands(unknown_flag), "line 2", "--worker-name")
    unknown_command = "```console\n$ declic engagement apply x.yaml\n```\n"
    assert _reported(check_commands(unknown_command), "line 2", "engagement")
    missing_argument = "```sh\nDECLIC_APP_ID=x python -m engine.cli publish sessions\n```\n"
    assert _reported(check_commands(missing_argument), "line 2")
    continued = "```sh\ndeclic diagnose \\\n  --sinse 7d x\n```\n"
    assert _reported(check_commands(continued), "line 2", "--sinse")


def test_a_bracketed_optional_part_in_a_command_block_is_reported() -> None:
    # Pasted into a shell, [--variant B] is two arguments, not an option.
    block = "```sh\ndeclic engagements test-send x --user u [--variant B]\n```\n"
    assert _reported(check_commands(block), "line 2")


def test_an_unknown_make_target_or_kafka_sh_command_is_reported() -> None:
    block = "```sh\nmake demo\nmake tset\nbash deploy/local/kafka.sh strat\n```\n"
    problems = check_commands(block)
    assert _reported(problems, "line 3", "tset")
    assert _reported(problems, "line 4", "strat")
    assert not _reported(problems, "line 2")
    spans = "Run `make chaos`, `make chaso` and `deploy/local/kafka.sh cluster-strat`.\n"
    assert _reported(check_inline_commands(spans), "chaso")
    assert _reported(check_inline_commands(spans), "cluster-strat")
    assert not _reported(check_inline_commands(spans), "chaos'")


def test_an_unknown_flag_is_reported() -> None:
    assert _reported(check_flags("Use `--no-such-flag` to go faster.\n"), "--no-such-flag")
    assert _reported(check_flags("| x | `--no-such-flag N` |\n"), "--no-such-flag")
    assert _reported(check_flags("Use --no-such-flag to go faster.\n"), "--no-such-flag")
    assert check_flags("Each has its `--help`, `--dry-run` and `--kafka-…` flags.\n") == []
    assert _reported(check_flags("Each has its `--kafak-…` flag.\n"), "--kafak-…")
    # The flags of other tools are theirs; a bench module's come from its own parser.
    assert check_flags("`kafka-acls.sh --add --operation Write`\n") == []
    assert check_flags("`python -m\nengine.bench.hot_path --engagements N --profile`\n") == []
    assert _reported(check_flags("`engine.bench.hot_path --profiel`\n"), "--profiel")
    assert check_flags("`python -m engine.bench.gateway_streams --streams 10`\n") == []
    assert check_flags("`python -m engine.bench.gateway_streams --help`\n") == []
    assert _reported(
        check_flags("`python -m engine.bench.gateway_memory --streams`\n"), "--streams"
    )
    assert _reported(check_flags("`python -m engine.bench.no_such --users 1`\n"), "--users")
    assert _reported(
        check_flags("```sh\ncurl -s x | python -m engine.bench.hot_path --x\n```"), "--x"
    )


def test_a_flag_of_another_subcommand_is_reported() -> None:
    assert check_inline_commands("`declic engagements list [--json]`\n") == []
    problems = check_inline_commands("`declic engagements apply FILE [--json]`\n")
    assert _reported(problems, "declic engagements apply", "--json")
    assert _reported(check_inline_commands("`declic engagement list`\n"), "'engagement'")


def test_an_unknown_variable_is_reported() -> None:
    assert check_variables("Set `DECLIC_KAFKA_BOOTSTRAP` or `DECLIC_KAFKA_PORT`.\n") == []
    assert _reported(check_variables("Set `DECLIC_KAFKA_BOOTSTRAPS`.\n"), "DECLIC_KAFKA_BOOTSTRAPS")
    assert _reported(check_variables("```sh\nexport DECLIC_NOPE=1\n```\n"), "line 2", "DECLIC_NOPE")
    shorthand = "| `DECLIC_KAFKA_SASL_MECHANISM`, `_USERNAME`, `_PASSWORD` | x |\n"
    assert check_variables(shorthand) == []
    assert _reported(
        check_variables(shorthand.replace("_USERNAME", "_USER")), "DECLIC_KAFKA_SASL_USER"
    )


def test_a_setting_missing_from_the_configuration_is_reported() -> None:
    complete = "## Configuration\n\n" + "".join(
        f"| `{name}` | x |\n" for name in sorted(settings_variables())
    )
    assert check_settings_documented(complete) == []
    missing = complete.replace("`DECLIC_DATA_DIR`", "`DATA_DIR`")
    assert check_settings_documented(missing) == [
        "setting DECLIC_DATA_DIR is missing from ## Configuration"
    ]
    elsewhere = "`DECLIC_DATA_DIR`\n\n" + missing + "\n## Limits\n"
    assert _reported(check_settings_documented(elsewhere), "DECLIC_DATA_DIR")


def test_a_subcommand_missing_from_the_readme_is_reported() -> None:
    every = "\n".join(f"`declic {' '.join(path)}`" for path in command_paths(declic_parser()))
    assert check_subcommands_documented(every) == []
    assert ("engagements", "test-send") in command_paths(declic_parser())
    without = every.replace("`declic engagements test-send`", "`declic engagements test`")
    assert check_subcommands_documented(without) == [
        "`declic engagements test-send` is not in the README"
    ]


def test_a_metric_missing_or_unknown_is_reported() -> None:
    metrics = code_metrics()
    assert "declic_evaluations_total" in metrics  # a custom collector's family
    table = "## Metrics\n\n" + "".join(f"| `{name}` | x |\n" for name in metrics)
    assert check_metrics_documented(table) == []
    missing = table.replace("| `declic_checkpoint_seconds` | x |\n", "")
    assert check_metrics_documented(missing) == [
        "metric declic_checkpoint_seconds is missing from ## Metrics"
    ]
    unknown = table + "\nScrape `declic_checkpoints_seconds_total`.\n"
    assert _reported(check_metrics_documented(unknown), "declic_checkpoints_seconds_total")
    assert check_metrics_documented(table + "\n`declic_checkpoint_seconds_bucket`\n") == []


def test_topics_table_that_differs_from_the_code_is_reported() -> None:
    expected = expected_topics(7)
    table = "## Topics and records\n\n| topic | partitions |\n|---|---|\n" + "".join(
        f"| `{name}` | {count} |\n" for name, count in expected.items()
    )
    assert check_topics(table) == []
    assert "1" in expected.values()  # some topics do not follow DECLIC_PARTITIONS
    one = next(name for name, count in expected.items() if count == "1")
    wrong = table.replace(f"| `{one}` | 1 |", f"| `{one}` | `DECLIC_PARTITIONS` |")
    assert _reported(check_topics(wrong), one, "the code 1")
    assert _reported(check_topics(table.replace(f"| `{one}` | 1 |\n", "")), one, "lacks it")
    assert _reported(check_topics(table + "| `extra` | 1 |\n"), "extra")
    assert _reported(check_topics(table + "\nEach of the 12 topics.\n"), "12 topics")
    assert _reported(check_topics("## Topics and records\n\n| topic | key |\n"), "partitions")


def test_markdown_reader_finds_blocks_spans_and_sections() -> None:
    markdown = (
        "# Title\n\nSome `code` and `` a`b ``,\nspan `over\na line`.\n\n"
        "| a | `x \\| y` |\n|---|---|\n\n~~~~ YAML extra\n```\n~~~~\n\n## Next\n"
    )
    document = parse(markdown)
    assert [(span.text, span.line) for span in document.spans] == [
        ("code", 3),
        ("a`b", 3),
        ("over a line", 4),
        ("x | y", 7),
    ]
    assert [(block.info, block.text, block.line) for block in document.blocks] == [
        ("yaml", "```", 10)
    ]
    assert section_text(markdown, "Title") == markdown.rstrip("\n")
    assert section_text(markdown, "Next") == "## Next"
    assert section_text(markdown, "Missing") is None
    assert table_rows(markdown) == [(7, ["a", "`x | y`"])]

"""Read a Markdown document the way the README tests need it.

A small subset of CommonMark and GitHub tables, enough for README.md: fenced code blocks
(three or more backticks or tildes), inline code spans (matching backtick runs, across
the lines of one paragraph), ATX headings and table rows, each with its line number.
No Markdown parser is a dependency of the project; this one is tested by test_readme.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
_HEADING = re.compile(r"^ {0,3}(?P<level>#{1,6})\s+(?P<title>.*?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")
_BACKTICKS = re.compile(r"`+")
_CELL_SEPARATOR = re.compile(r"(?<!\\)\|")


@dataclass(frozen=True)
class CodeBlock:
    """A fenced code block."""

    info: str  # the first word of the info string, lower case ("" for none)
    text: str  # the content, without the fences
    line: int  # line number of the opening fence (1-based)
    section: str  # title of the closest heading above

    def numbered_lines(self) -> list[tuple[int, str]]:
        """Return the content lines with their line numbers in the document."""
        return [(self.line + 1 + index, text) for index, text in enumerate(self.text.splitlines())]


@dataclass(frozen=True)
class CodeSpan:
    """An inline code span, its content as rendered (a line break becomes a space)."""

    text: str
    line: int
    section: str
    group: int  # spans of one paragraph, list item or table cell share a group


@dataclass(frozen=True)
class Markdown:
    """The parts of a document: code blocks, code spans, and the text outside both."""

    blocks: tuple[CodeBlock, ...]
    spans: tuple[CodeSpan, ...]
    plain: tuple[tuple[int, str], ...]  # (line, text) outside code blocks and code spans


def parse(text: str) -> Markdown:
    """Return the code blocks, code spans and plain text of a Markdown document."""
    blocks: list[CodeBlock] = []
    prose: list[tuple[int, str, str]] = []  # (line, text, section) outside code blocks
    section = ""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if fence is None:
            heading = _HEADING.match(line)
            if heading is not None:
                section = heading["title"]
            prose.append((index + 1, line, section))
            index += 1
            continue
        marker = fence["fence"]
        closing = re.compile(rf"^ {{0,3}}{marker[0]}{{{len(marker)},}}\s*$")
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        info = fence["info"].split()[0].lower() if fence["info"].strip() else ""
        blocks.append(CodeBlock(info, "\n".join(lines[index + 1 : end]), index + 1, section))
        prose.append((index + 1, "", section))  # a code block ends a paragraph
        index = end + 1
    spans: list[CodeSpan] = []
    plain: list[tuple[int, str]] = []
    for group, chunk in enumerate(_chunks(prose)):
        for number, content, rest in _code_spans(chunk):
            if content is not None:
                spans.append(CodeSpan(content, number, chunk[0][2], group))
            if rest.strip():
                plain.append((number, rest))
    return Markdown(tuple(blocks), tuple(spans), tuple(plain))


def _chunks(
    prose: list[tuple[int, str, str]],
) -> Iterator[list[tuple[int, str, str]]]:
    """Yield paragraphs, list items, headings and table cells: where a code span can lie."""
    current: list[tuple[int, str, str]] = []
    for line, text, section in prose:
        stripped = text.strip()
        is_table_row = stripped.startswith("|")
        if not stripped or is_table_row or _HEADING.match(text) or _LIST_ITEM.match(text):
            if current:
                yield current
            current = []
        if is_table_row:
            # GitHub tables: cells split on unescaped pipes, then "\|" stands for "|".
            for cell in _CELL_SEPARATOR.split(stripped.strip("|")):
                yield [(line, cell.replace("\\|", "|"), section)]
        elif _HEADING.match(text):
            yield [(line, text, section)]
        elif stripped:
            current.append((line, text, section))
    if current:
        yield current


def _code_spans(chunk: list[tuple[int, str, str]]) -> Iterator[tuple[int, str | None, str]]:
    """Yield (line, code span content or None, plain text before it) over one chunk."""
    text = "\n".join(part for _, part, _ in chunk)
    first_line = chunk[0][0]

    def line_at(offset: int) -> int:
        return first_line + text.count("\n", 0, offset)

    position = 0
    while True:
        opening = _BACKTICKS.search(text, position)
        if opening is None:
            break
        run = opening.group()
        closing = re.compile(rf"(?<!`){run}(?!`)").search(text, opening.end())
        if closing is None:  # an unmatched run is literal text
            yield line_at(position), None, text[position : opening.end()]
            position = opening.end()
            continue
        content = text[opening.end() : closing.start()].replace("\n", " ")
        if content.startswith(" ") and content.endswith(" ") and content.strip():
            content = content[1:-1]
        yield line_at(opening.start()), content, text[position : opening.start()]
        position = closing.end()
    yield line_at(position), None, text[position:]


def section_text(text: str, title: str) -> str | None:
    """Return a section (its heading line to the next heading of its level or higher), or
    None when the document has no heading with that title."""
    lines = text.splitlines()
    start: int | None = None
    level = 0
    in_fence: str | None = None
    for index, line in enumerate(lines):
        fence = _FENCE.match(line)
        if in_fence is not None:
            if fence is not None and fence["fence"][0] == in_fence and not fence["info"]:
                in_fence = None
            continue
        if fence is not None:
            in_fence = fence["fence"][0]
            continue
        heading = _HEADING.match(line)
        if heading is None:
            continue
        if start is None and heading["title"] == title:
            start, level = index, len(heading["level"])
        elif start is not None and len(heading["level"]) <= level:
            return "\n".join(lines[start:index])
    return None if start is None else "\n".join(lines[start:])


def table_rows(text: str) -> list[tuple[int, list[str]]]:
    """Return the rows of the tables in ``text`` (not their separator lines) as raw cells,
    with their line numbers; "\\|" in a cell stands for "|"."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped.startswith("|"):
            continue
        cells = [
            cell.strip().replace("\\|", "|") for cell in _CELL_SEPARATOR.split(stripped.strip("|"))
        ]
        if all(re.fullmatch(r":?-+:?", cell) for cell in cells):
            continue
        rows.append((number, cells))
    return rows

"""The format header of stored state values: encoding, telling formats apart, migrating."""

from __future__ import annotations

import orjson
import pytest

from engine.errors import DeclicError, StateFormatError
from engine.state import format as state_format
from engine.state.format import (
    COPY_LIMIT,
    CURRENT_FORMAT,
    MARKER,
    MIGRATIONS,
    Payload,
    decode,
    encode,
    format_of,
)


def test_current_format_is_1_with_a_two_byte_header() -> None:
    assert CURRENT_FORMAT == 1
    assert encode(b'{"a":1}') == b'\xdc\x01{"a":1}'
    assert MARKER == 0xDC


@pytest.mark.parametrize(
    "payload", [b"{}", b'{"a":{"x":[1,2]},"t":{"x":3}}', b"[]", b'"text"', b"0", b""]
)
def test_round_trip(payload: bytes) -> None:
    raw = encode(payload)
    assert format_of(raw) == CURRENT_FORMAT
    assert decode(raw) == payload


def test_a_large_payload_is_returned_as_a_view_not_a_copy() -> None:
    payload = orjson.dumps({"blob": "x" * COPY_LIMIT})
    raw = encode(payload)
    decoded = decode(raw)
    assert isinstance(decoded, memoryview) and decoded.obj is raw
    assert orjson.loads(decoded) == {"blob": "x" * COPY_LIMIT}
    assert isinstance(decode(encode(b"{}")), bytes)  # a small one is sliced


@pytest.mark.parametrize(
    "legacy",
    [b"{}", b"[1]", b'"s"', b"12", b"-1", b"true", b"false", b"null", b" {}", b"\t[]", b"\n{}"],
)
def test_plain_json_is_format_0_and_read_as_is(legacy: bytes) -> None:
    assert legacy[0] != MARKER
    assert format_of(legacy) == 0
    assert decode(legacy) == legacy


def test_the_marker_never_starts_a_json_text() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(bytes((MARKER,)) + b"{}")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(encode(b"{}"))  # so a worker from before versioning cannot misread it


def test_a_newer_format_is_refused_naming_both_versions() -> None:
    newer = bytes((MARKER, CURRENT_FORMAT + 1)) + b"{}"
    for read in (format_of, decode):
        with pytest.raises(StateFormatError) as raised:
            read(newer)
        assert str(raised.value) == (
            f"stored state format {CURRENT_FORMAT + 1} is newer than format {CURRENT_FORMAT}, "
            "the newest this worker reads: upgrade the worker (a downgrade cannot read state "
            "written by a newer version)"
        )
        assert isinstance(raised.value, DeclicError)
        assert (raised.value.found, raised.value.newest) == (CURRENT_FORMAT + 1, CURRENT_FORMAT)


@pytest.mark.parametrize("raw", [b"\xdc", b"\xdc\x00{}"])
def test_a_malformed_header_is_refused(raw: bytes) -> None:
    with pytest.raises(StateFormatError, match="malformed") as raised:
        decode(raw)
    assert raised.value.found is None


def test_every_older_format_has_a_migration_step() -> None:
    assert sorted(MIGRATIONS) == list(range(CURRENT_FORMAT))


def test_migration_steps_run_in_order_up_to_the_current_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps: list[tuple[int, bytes, bytes]] = []

    def step(version: int) -> state_format.Migration:
        def migrate(key: bytes, payload: Payload) -> Payload:
            steps.append((version, key, bytes(payload)))
            return bytes(payload) + b" "

        return migrate

    monkeypatch.setattr(state_format, "CURRENT_FORMAT", 3)
    monkeypatch.setitem(MIGRATIONS, 0, step(0))
    monkeypatch.setitem(MIGRATIONS, 1, step(1))
    monkeypatch.setitem(MIGRATIONS, 2, step(2))
    assert encode(b"{}") == b"\xdc\x03{}"
    assert decode(b"{}", b"u:ann") == b"{}   "
    assert steps == [(0, b"u:ann", b"{}"), (1, b"u:ann", b"{} "), (2, b"u:ann", b"{}  ")]
    steps.clear()
    assert decode(b"\xdc\x02{}") == b"{} "
    assert steps == [(2, b"", b"{}")]
    assert decode(b"\xdc\x03{}") == b"{}" and len(steps) == 1

"""State of one partition: RocksDB on local disk, made durable by a Kafka changelog partition.

Writes are staged in memory and reach RocksDB only after the checkpoint that
carried them to the changelog has committed, so local state is never ahead of
Kafka. The changelog offset reached is stored in the same RocksDB write batch,
so recovery replays only what the local copy lacks. A checkpoint freezes the
staged writes it carries; processing goes on meanwhile, staging new writes,
and reads see both.

Every state value is stored with a format header (``engine.state.format``): ``put``
encodes, ``get`` and ``items`` decode (migrating older formats), and ``write`` refuses a
batch holding a value of a newer format than this worker reads. The changelog record of a
key is exactly its stored value, header included.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch, WriteBufferManager

from engine.errors import StateFormatError
from engine.state.format import HEADER_SIZE, Payload, decode, encode, format_of

OFFSET_KEY = b"\x00meta:changelog-offset"
# RocksDB's memtables, per store and for all the stores of a process. By default each store
# fills two of 64 MiB: 512 MiB for four partitions once millions of users are written, the
# most of a worker's memory. Capped, they are flushed to disk sooner, and that is all.
MEMTABLE_BYTES = 16 << 20
MEMTABLES_PER_PROCESS_BYTES = 64 << 20


@functools.cache
def _memtable_budget() -> WriteBufferManager:
    """Return the one budget every store of this process shares."""
    return WriteBufferManager(MEMTABLES_PER_PROCESS_BYTES, False)


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(MEMTABLE_BYTES)
    options.set_write_buffer_manager(_memtable_budget())
    return options


class PartitionStore:
    """Bytes key-value store of one partition with staged writes.

    Values given to ``put`` and returned by ``get`` and ``items`` are payloads in the
    current format (bytes, or a memoryview for a large one: both are bytes-like, as
    orjson.loads reads them); staged, frozen and written values carry the format header.
    """

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._options = _options()
        self.path = path
        self._db = Rdict(str(path), self._options)
        self._staged: dict[bytes, bytes | None] = {}
        # Writes of the checkpoint under way: frozen, not yet on disk.
        self._frozen: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> Payload | None:
        """Return the payload of key, staged and frozen writes included.

        Raise StateFormatError if the stored value is of a newer format than this worker's.
        """
        # Staged and frozen values were encoded by put, in the current format.
        if key in self._staged:
            value = self._staged[key]
            return None if value is None else value[HEADER_SIZE:]
        if key in self._frozen:
            value = self._frozen[key]
            return None if value is None else value[HEADER_SIZE:]
        value = self._db.get(key)
        if value is None:
            return None
        try:
            return decode(value, key)
        except StateFormatError as error:
            error.add_note(f"key {key!r} in the store at {self.path}")
            raise

    def put(self, key: bytes, value: bytes) -> None:
        """Stage a write of payload value (current format); it lands at the next checkpoint."""
        self._staged[key] = encode(value)

    def delete(self, key: bytes) -> None:
        """Stage a deletion; it lands at the next checkpoint."""
        self._staged[key] = None

    def freeze_staged(self) -> dict[bytes, bytes | None]:
        """Hand the writes staged so far to a checkpoint; stage later writes apart.

        The values are encoded (format header included): they are the changelog records.
        """
        if self._frozen:
            raise RuntimeError("a checkpoint is already under way")
        self._frozen, self._staged = self._staged, {}
        return self._frozen

    def discard_staged(self) -> None:
        """Forget staged and frozen writes (a checkpoint was aborted)."""
        self._staged = {}
        self._frozen = {}

    @property
    def changelog_offset(self) -> int | None:
        """Return the offset of the last changelog record reflected locally."""
        raw = self._db.get(OFFSET_KEY)
        return None if raw is None else int(bytes(raw))

    def commit_frozen(self, changelog_offset: int | None) -> None:
        """Write the frozen values to disk once their changelog records are committed."""
        self.write(self._frozen.items(), changelog_offset)
        self._frozen = {}

    def write(
        self, items: Iterable[tuple[bytes, bytes | None]], changelog_offset: int | None
    ) -> None:
        """Write encoded key/values (None deletes) and the changelog offset in one batch.

        Values are stored as given (older formats are migrated on read). Raise
        StateFormatError, writing nothing of the batch, if a value is of a newer format
        than this worker reads (or has a malformed header).
        """
        batch = WriteBatch(raw_mode=True)
        for key, value in items:
            if value is None:
                batch.delete(key)
                continue
            try:
                format_of(value)
            except StateFormatError as error:
                error.add_note(f"key {key!r}, written towards changelog offset {changelog_offset}")
                raise
            batch.put(key, value)
        if changelog_offset is not None:
            batch.put(OFFSET_KEY, str(changelog_offset).encode())
        self._db.write(batch)

    def estimate_keys(self) -> int:
        """Return RocksDB's estimate of the number of committed keys."""
        estimate = self._db.property_int_value("rocksdb.estimate-num-keys")
        return int(estimate or 0)

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, Payload]]:
        """Iterate over committed entries whose key starts with prefix, payloads decoded.

        Raise StateFormatError on a value of a newer format than this worker's.
        """
        iterator = self._db.iter()
        iterator.seek(prefix)
        while iterator.valid():
            key = bytes(iterator.key())
            if not key.startswith(prefix):
                break
            if key != OFFSET_KEY:
                try:
                    payload = decode(iterator.value(), key)
                except StateFormatError as error:
                    error.add_note(f"key {key!r} in the store at {self.path}")
                    raise
                yield key, payload
            iterator.next()

    def live_items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, Payload]]:
        """Iterate over the entries whose key starts with prefix as ``get`` sees them:
        committed, then frozen, then staged writes (a staged deletion hides the key).

        One entry at a time: a prefix may hold millions. Stage nothing while iterating.
        """
        overlay = {
            key: value
            for writes in (self._frozen, self._staged)
            for key, value in writes.items()
            if key.startswith(prefix)
        }
        for key, payload in self.items(prefix):
            if key not in overlay:
                yield key, payload
        for key, value in overlay.items():
            if value is not None:
                yield key, value[HEADER_SIZE:]

    def reset(self) -> None:
        """Delete everything stored, the changelog offset included (state is rebuilt)."""
        self.close()
        Rdict.destroy(str(self.path), self._options)
        self._db = Rdict(str(self.path), self._options)

    def close(self) -> None:
        """Close the database; staged and frozen writes are dropped."""
        self._staged = {}
        self._frozen = {}
        self._db.close()

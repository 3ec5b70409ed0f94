"""State of one partition: RocksDB on local disk, made durable by a Kafka changelog partition.

Writes are staged in memory and reach RocksDB only after the checkpoint that
carried them to the changelog has committed, so local state is never ahead of
Kafka. The changelog offset reached is stored in the same RocksDB write batch,
so recovery replays only what the local copy lacks. A checkpoint freezes the
staged writes it carries; processing goes on meanwhile, staging new writes,
and reads see both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch

OFFSET_KEY = b"\x00meta:changelog-offset"


class PartitionStore:
    """Bytes key-value store of one partition with staged writes."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self.path = path
        self._db = Rdict(str(path), options)
        self._staged: dict[bytes, bytes | None] = {}
        # Writes of the checkpoint under way: frozen, not yet on disk.
        self._frozen: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        """Return the value of key, staged and frozen writes included."""
        if key in self._staged:
            return self._staged[key]
        if key in self._frozen:
            return self._frozen[key]
        value = self._db.get(key)
        return value if value is None else bytes(value)

    def put(self, key: bytes, value: bytes) -> None:
        """Stage a write; it lands at the next checkpoint."""
        self._staged[key] = value

    def delete(self, key: bytes) -> None:
        """Stage a deletion; it lands at the next checkpoint."""
        self._staged[key] = None

    def freeze_staged(self) -> dict[bytes, bytes | None]:
        """Hand the writes staged so far to a checkpoint; stage later writes apart."""
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
        """Write key/values (None deletes) and the changelog offset in one batch."""
        batch = WriteBatch(raw_mode=True)
        for key, value in items:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if changelog_offset is not None:
            batch.put(OFFSET_KEY, str(changelog_offset).encode())
        self._db.write(batch)

    def estimate_keys(self) -> int:
        """Return RocksDB's estimate of the number of committed keys."""
        estimate = self._db.property_int_value("rocksdb.estimate-num-keys")
        return int(estimate or 0)

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Iterate over committed entries whose key starts with prefix."""
        iterator = self._db.iter()
        iterator.seek(prefix)
        while iterator.valid():
            key = bytes(iterator.key())
            if not key.startswith(prefix):
                break
            if key != OFFSET_KEY:
                yield key, bytes(iterator.value())
            iterator.next()

    def close(self) -> None:
        """Close the database; staged and frozen writes are dropped."""
        self._staged = {}
        self._frozen = {}
        self._db.close()

"""A worker's RocksDB memtables stay within one budget, however many users it writes."""

from __future__ import annotations

from pathlib import Path

from engine.state.store import MEMTABLES_PER_PROCESS_BYTES, PartitionStore

VALUE = b"x" * 1_000


def test_the_memtables_of_all_stores_stay_within_the_process_budget(tmp_path: Path) -> None:
    stores = [PartitionStore(tmp_path / f"partition-{number}") for number in range(4)]
    try:
        # 120 MB written, 30 MB per store: RocksDB's defaults (64 MiB per memtable) would
        # keep all of it in memory.
        for batch in range(40):
            for number, store in enumerate(stores):
                keys = range(batch * 750, (batch + 1) * 750)
                store.write([(b"u:%d-%d" % (number, key), VALUE) for key in keys], None)
        in_memory = sum(
            store._db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0 for store in stores
        )
        assert in_memory <= MEMTABLES_PER_PROCESS_BYTES
    finally:
        for store in stores:
            store.close()

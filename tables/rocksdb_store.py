"""Faust's RocksDB table store, made to accept the batch writes of our agents: ``rocksdb://``.

faust-streaming's RocksDB store keeps one database per partition and picks the database
of a write from the event being processed (``current_event().message.partition``); with
no current event it fails an ``assert``. Our agents process ``stream.take_events``
batches, where there is no current event, and :class:`tables.exact.ExactTable` names the
changelog partition of every write explicitly (``put`` / ``writing_to``). This store
writes to that partition's database when the table names one, and otherwise behaves as
Faust's (reads and deletes outside an event already search the databases by key).

Registered under Faust's own ``rocksdb`` scheme, so ``PERSONA_TABLE_STORE=rocksdb://``
selects it; everything else (options, recovery, persisted offsets, rebalances) is Faust's.
"""

from __future__ import annotations

from faust.stores import STORES
from faust.stores.rocksdb import Store as FaustRocksDBStore


class RocksDBStore(FaustRocksDBStore):
    """Faust's RocksDB store; a write goes to the partition the table names, else the current event's."""

    def _set(self, key: bytes, value: bytes | None) -> None:
        partition = getattr(self.table, "writing_partition", None)
        if partition is None:
            super()._set(key, value)
            return
        self._key_index[key] = partition
        self._db_for_partition(partition).put(key, value)


STORES.aliases["rocksdb"] = f"{__name__}:RocksDBStore"

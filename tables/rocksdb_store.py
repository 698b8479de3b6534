"""Faust's RocksDB table store, made to accept the batch writes of our agents: ``rocksdb://``.

faust-streaming's RocksDB store keeps one database per partition and picks the database
of a write from the event being processed (``current_event().message.partition``); with
no current event it fails an ``assert``. Our agents process ``stream.take_events``
batches, where there is no current event, and :class:`tables.exact.ExactTable` names the
changelog partition of every write explicitly (``put`` / ``writing_to``). This store
writes to that partition's database when the table names one, and otherwise behaves as
Faust's (reads and deletes outside an event already search the databases by key).

Registered under Faust's own ``rocksdb`` scheme, so ``PERSONA_TABLE_STORE=rocksdb://``
selects it; it also hands out a partition's tick index in due order (:meth:`RocksDBStore.due_keys`);
everything else (options, recovery, persisted offsets, rebalances) is Faust's.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import orjson
from faust.stores import STORES
from faust.stores.rocksdb import Store as FaustRocksDBStore

from tables.due_index import raw_partition_prefix, sorted_due_keys


class RocksDBStore(FaustRocksDBStore):
    """Faust's RocksDB store; a write goes to the partition the table names, else the current event's."""

    def _set(self, key: bytes, value: bytes | None) -> None:
        partition = getattr(self.table, "writing_partition", None)
        if partition is None:
            super()._set(key, value)
            return
        self._key_index[key] = partition
        self._db_for_partition(partition).put(key, value)

    def due_keys(self, partition: int) -> Iterator[str]:
        """The tick index of ``partition`` (tables/due_index.py), earliest due first: RocksDB keeps keys
        sorted, so a tick reads only the keys it visits, whatever the size of the table."""
        db = self._db_for_partition(partition)
        return sorted_due_keys(db.keys(from_key=raw_partition_prefix(partition)), partition)

    def partition_items(self, partition: int) -> Iterator[tuple[Any, Any]]:
        """Every (key, value) of one partition's database, decoded (the table is JSON both ways)."""
        for key, value in self._db_for_partition(partition).items():
            yield orjson.loads(key), orjson.loads(value)

    def raw_chunks(self, partition: int, size: int) -> Iterator[list[tuple[bytes, bytes]]]:
        """One partition's raw (key, value) pairs, ``size`` at a time, in key order (Faust's offset key left out).

        Each chunk comes from an iterator opened when the chunk is asked for, just past the last
        key of the chunk before: its values are the database's at that moment, not those of a
        snapshot taken when the walk began, and no iterator stays open while the caller waits.
        """
        db = self._db_for_partition(partition)
        after: bytes | None = None
        while True:
            items = db.items() if after is None else db.items(from_key=after)
            window = list(itertools.islice(items, size + 1))
            skip = 1 if after is not None and window and window[0][0] == after else 0  # the last key read
            window = window[skip : skip + size]
            if not window:
                return
            after = window[-1][0]
            yield [(key, value) for key, value in window if key != self.offset_key]


STORES.aliases["rocksdb"] = f"{__name__}:RocksDBStore"

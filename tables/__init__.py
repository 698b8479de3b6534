"""The state layer: table stores, exact and bulk recovery, the store protocol and the merge/erase hooks.

:mod:`tables.types`
    Typed protocols of state views (:class:`~tables.types.KeyValueStore`): what pure state logic
    reads and writes through; a ``dict`` and a ``faust.Table`` both fit.
:mod:`tables.hooks`
    The merge/split/erase hook protocol of per-profile tables and its registry.
:mod:`tables.exact`
    Exact recovery: :class:`~tables.exact.ExactTable` and its per-partition watermark
    (:mod:`tables.watermark` has the key layout); :mod:`tables.bulk_recovery` reads changelogs in bulk.
:mod:`tables.compact_store`, :mod:`tables.rocksdb_store`
    The ``compact://`` and ``rocksdb://`` stores; :mod:`tables.due_index` is the tick index's key
    layout they keep ordered.
:mod:`tables.metrics`
    The recovery metrics (exported by app/runtime/metrics.py too).

Imports nothing from ``app/`` or ``agents/`` (pyproject.toml ``[tool.importlinter]``). The
tables themselves are bound to the Faust app in app/runtime/tables.py; the pure state logic
behind each is in the domain packages (app.ingest, app.identity, app.profiles, ...).
"""

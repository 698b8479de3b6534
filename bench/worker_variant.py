"""``persona worker`` with in-process patches, for the tuning experiments of ``persona bench --tuning``.

Nothing in agents/ or app/ changes: the patches named in ``BENCH_PATCHES`` (comma
separated) are applied in this process before the worker imports its components,
then the ordinary ``persona worker`` command runs. Faust settings need no patch: Faust
reads them from the environment (``PRODUCER_LINGER``, ``STREAM_BUFFER_MAXSIZE``, ...).

Patches
-------
``labels_cache``    ``metric.labels(...)`` returns a cached child per label tuple (prometheus_client
                    otherwise validates and looks the labels up under a lock on every call).
``histograms_off``  the two per-event histograms (``persona_stage_seconds``,
                    ``persona_event_lag_seconds``) do nothing; the counters stay, so the harness
                    still sees completion, but no latency can be read.
``fetch_max_wait``  Faust hard-codes ``fetch_max_wait_ms=1500`` for its aiokafka consumer; this
                    replaces it with ``BENCH_FETCH_MAX_WAIT_MS`` (default 50).
"""

from __future__ import annotations

import os
import sys
from typing import Any

PATCHES = ("labels_cache", "histograms_off", "fetch_max_wait")


class _NoopChild:
    def observe(self, amount: float) -> None:
        pass


def apply(patches: list[str]) -> None:
    from prometheus_client.metrics import MetricWrapperBase

    from app.runtime import metrics

    unknown = set(patches) - set(PATCHES)
    if unknown:
        raise SystemExit(f"unknown BENCH_PATCHES: {sorted(unknown)}")
    if "labels_cache" in patches:
        original = MetricWrapperBase.labels

        def labels(self: Any, *values: Any, **kw: Any) -> Any:
            if kw:
                return original(self, *values, **kw)
            cache = self.__dict__.setdefault("_bench_children", {})
            child = cache.get(values)
            if child is None:
                child = cache[values] = original(self, *values)
            return child

        MetricWrapperBase.labels = labels  # type: ignore[method-assign]
    if "fetch_max_wait" in patches:
        import aiokafka

        wait_ms = int(os.environ.get("BENCH_FETCH_MAX_WAIT_MS", "50"))
        original_init = aiokafka.AIOKafkaConsumer.__init__

        def init(self: Any, *topics: Any, **kwargs: Any) -> None:
            if "fetch_max_wait_ms" in kwargs:
                kwargs["fetch_max_wait_ms"] = wait_ms
            original_init(self, *topics, **kwargs)

        aiokafka.AIOKafkaConsumer.__init__ = init
    if "histograms_off" in patches:
        noop = _NoopChild()
        for histogram in (metrics.STAGE_SECONDS, metrics.EVENT_LAG_SECONDS):
            histogram.labels = lambda *values, **kw: noop  # type: ignore[method-assign,assignment]


def main() -> None:
    apply([p for p in os.environ.get("BENCH_PATCHES", "").split(",") if p])
    from app.cli import cli

    cli(["worker", *sys.argv[1:]], prog_name="persona")


if __name__ == "__main__":
    main()

"""bench.loop_stalls cuts a py-spy timeline into the event loop's busy stretches and names what held them."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import bench.loop_stalls as loop_stalls


def test_doctests() -> None:
    assert doctest.testmod(loop_stalls).failed == 0


def test_the_longest_stretch_of_the_main_thread_is_reported_with_its_callbacks(tmp_path: Path) -> None:
    frames = [
        {"name": "BaseEventLoop._run_once", "file": "/py/asyncio/base_events.py"},
        {"name": "EpollSelector.select", "file": "/py/selectors.py"},
        {"name": "Handle._run", "file": "/py/asyncio/events.py"},
        {"name": "Task.__step", "file": "/py/asyncio/tasks.py"},
        {"name": "export_quality", "file": "/repo/agents/clusters.py"},
        {"name": "quality", "file": "/repo/tables/cluster_model.py"},
        {"name": "apply_batch", "file": "/repo/agents/profiles.py"},
    ]
    idle, quality, batch = [0, 1], [0, 2, 3, 4, 5], [0, 2, 3, 6]
    main = [idle, *[quality] * 30, *[batch] * 10, idle, *[batch] * 5, idle]
    other = [[0, 2, 3, 6]] * 100  # another thread, busier: not the event loop that matters
    document = {
        "shared": {"frames": frames},
        "profiles": [
            {"name": 'Thread 2 "ConsumerThread"', "samples": other, "weights": [0.01] * len(other)},
            {"name": 'Thread 1 "MainThread"', "samples": main, "weights": [0.01] * len(main)},
        ],
    }
    path = tmp_path / "probe.speedscope.json"
    path.write_text(json.dumps(document))
    summary = loop_stalls.report(path, top=5, min_ms=100)
    assert summary["busy_runs"] == 2 and summary["runs_over_100_ms"] == 1
    [longest] = summary["longest"]
    assert longest["ms"] == 400
    assert longest["callbacks"] == [
        ("export_quality (agents/clusters.py)", 0.75), ("apply_batch (agents/profiles.py)", 0.25)
    ]
    assert longest["own"][0] == ("quality (tables/cluster_model.py)", 0.75)

"""docs/benchmarks.md stays a short record, and every result file it cites exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
RECORD = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results"

#: A cited result file: ``bench/results/<name>``.
RESULT_PATH = re.compile(r"bench/results/([\w.-]+\w)")
#: A result file cited by its UTC stamp alone (``20261203T153751Z``, ``20261123T2250Z``).
STAMP = re.compile(r"\b(\d{8}T\d{4}(?:\d{2})?Z)")


def test_the_record_is_at_most_300_lines() -> None:
    lines = RECORD.read_text().splitlines()
    assert len(lines) <= 300, (
        f"docs/benchmarks.md has {len(lines)} lines: keep one row per target there and the history in git (issue 21)"
    )


def test_every_cited_result_file_exists() -> None:
    text = RECORD.read_text()
    cited = set(RESULT_PATH.findall(text))
    assert cited, "docs/benchmarks.md cites no result file"
    missing = sorted(name for name in cited if not (RESULTS / name).is_file())
    assert not missing, f"docs/benchmarks.md cites result files that do not exist: {missing}"


def test_every_cited_stamp_names_a_result_file() -> None:
    names = [path.name for path in RESULTS.iterdir()]
    stamps = set(STAMP.findall(RECORD.read_text()))
    missing = sorted(s for s in stamps if not any(name.startswith(s) for name in names))
    assert not missing, f"docs/benchmarks.md cites runs with no file in bench/results/: {missing}"

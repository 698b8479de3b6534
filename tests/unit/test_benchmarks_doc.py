"""docs/benchmarks.md stays a short record, and every result file a doc cites exists and is in git.

``bench/results/`` is gitignored: a run's files stay on disk, and the ones a doc cites are
force-added (``git add -f``). "A doc" is ``docs/*.md``, ``README.md`` and ``bench/*.py``.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
RECORD = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results"

#: A cited result file: ``bench/results/<name>``.
RESULT_PATH = re.compile(r"bench/results/([\w.-]+\w)")
#: A result file cited by its UTC stamp alone (``20261203T153751Z``, ``20261123T2250Z``).
STAMP = re.compile(r"\b(\d{8}T\d{4}(?:\d{2})?Z)")
#: A result file cited anywhere by its name, with or without ``bench/results/`` in front:
#: ``reliability-20261207T183850Z.json``, ``20261206T141339Z.json``, or a stamp alone
#: (``20261203T154440Z``: every file of that run). Not a path into another folder
#: (``/work/wt-perf/bench/results/…``).
CITED_NAME = re.compile(r"(?<![\w/.-])(?:bench/results/)?((?:reliability-)?\d{8}T\d{4}(?:\d{2})?Z(?:[\w.-]*\w)?)")
#: Result files cited by a pattern in code quotes: ```*-ca7f542.json``` (the runs of one commit).
CITED_PATTERN = re.compile(r"`(\*[\w.-]*\.(?:json|png|txt))`")


def _citing_files() -> list[Path]:
    return [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", *sorted((ROOT / "bench").glob("*.py"))]


def _files_named(cited: str, names: list[str]) -> list[str]:
    """The result files *cited* names: itself, or every file of a run cited by its stamp alone.

    >>> _files_named("20261206T141339Z", ["20261206T141339Z.json", "20261206T141339Z.png", "20261206T1413Z.json"])
    ['20261206T141339Z.json', '20261206T141339Z.png']
    >>> _files_named("20261206T141339Z.json", ["20261206T141339Z.json", "20261206T141339Z.png"])
    ['20261206T141339Z.json']
    >>> _files_named("*-ca7f542.json", ["20261123T2030Z-burst-ca7f542.json", "20261123T2015Z-burst.json"])
    ['20261123T2030Z-burst-ca7f542.json']
    """
    if cited in names:
        return [cited]
    if cited.startswith("*"):
        return fnmatch.filter(names, cited)
    return [name for name in names if name.startswith(cited) and name[len(cited)] in ".-"]


def cited_result_files() -> dict[str, list[str]]:
    """Each name a doc cites (``docs/*.md``, ``README.md``, ``bench/*.py``) -> the result files it names."""
    names = sorted(path.name for path in RESULTS.iterdir())
    cited: dict[str, list[str]] = {}
    for doc in _citing_files():
        text = doc.read_text()
        for name in [*CITED_NAME.findall(text), *CITED_PATTERN.findall(text)]:
            cited[f"{doc.relative_to(ROOT)}: {name}"] = _files_named(name, names)
    return cited


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


def test_every_result_file_a_doc_cites_exists() -> None:
    missing = sorted(citation for citation, files in cited_result_files().items() if not files)
    assert not missing, f"docs cite result files that are not in bench/results/: {missing}"


def test_every_result_file_a_doc_cites_is_in_git() -> None:
    """bench/results/ is gitignored; a cited file must be force-added (``git add -f``) or a clone loses it."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (or no git): cannot tell which result files are tracked")
    listed = subprocess.run(
        [git, "ls-files", "--", "bench/results"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        pytest.skip(f"git ls-files failed, cannot tell which result files are tracked: {listed.stderr.strip()}")
    tracked = {Path(line).name for line in listed.stdout.splitlines()}
    untracked = sorted(
        f"{citation} -> {name}"
        for citation, files in cited_result_files().items()
        for name in files
        if name not in tracked
    )
    assert not untracked, f"docs cite result files git does not track (git add -f them): {untracked}"

"""The dependency contracts of pyproject.toml ``[tool.importlinter]`` hold (docs/architecture.md, "Layout").

``lint-imports`` (import-linter) builds the import graph of app/, agents/ and tables/ without
importing them and checks every contract; a broken one fails here with import-linter's report,
which names the import chain that breaks it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_dependency_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    run = subprocess.run(
        [str(lint_imports), "--no-cache", "pyproject.toml"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 0 broken" in run.stdout, run.stdout

"""The dependency contracts of pyproject.toml ``[tool.importlinter]`` hold (docs/architecture.md, "Layout").

``lint-imports`` (import-linter) builds the import graph of app/, agents/ and tables/ without
importing them and checks every contract; a broken one fails here with import-linter's report,
which names the import chain that breaks it.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: The contracts docs/architecture.md describes; dropping one from pyproject.toml fails here.
CONTRACTS = {"state-layer", "pure-domain", "layers"}

DOMAIN = ("app.events", "app.identity", "app.ingest", "app.sessions", "app.profiles", "app.segments",
          "app.clusters", "app.serving")


def test_dependency_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    run = subprocess.run(
        [str(lint_imports), "--no-cache", "pyproject.toml"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 0 broken" in run.stdout, run.stdout


def test_every_documented_contract_is_configured() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert {contract["id"] for contract in config["contracts"]} >= CONTRACTS


def test_importing_the_domain_builds_no_faust_app_and_loads_no_io_library() -> None:
    """What the static graph says, at run time too: ``app/__init__.py`` stays light."""
    code = (
        "import importlib, sys\n"
        f"for name in {DOMAIN!r}: importlib.import_module(name)\n"
        "import app.ingest.fold, app.profiles.fold, app.clusters.state, app.serving.keys\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'faust', 'aiokafka', 'redis', 'rocksdict',"
        " 'prometheus_client', 'aiohttp', 'mode'})\n"
        "assert not loaded and 'app.runtime.faust_app' not in sys.modules, loaded\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr

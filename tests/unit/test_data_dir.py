"""The worker's data directory is created with its parents (a fresh clone has no ``.persona/``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.runtime.faust_app import PersonaApp


def test_first_start_creates_the_data_directory_and_its_missing_parents(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh-clone" / ".persona" / "data"
    app = PersonaApp(
        "data-dir-test", datadir=str(data_dir), autodiscover=False,
        fetch_max_wait_ms=50, fetch_min_bytes=1, recovery_bulk_min_records=0,
    )

    asyncio.run(app.on_first_start())  # where Faust creates its directories

    assert app.conf.tabledir.is_dir()
    assert app.conf.tabledir.is_relative_to(data_dir)

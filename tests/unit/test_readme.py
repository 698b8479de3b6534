"""The README's configuration table is generated from the settings, so it cannot drift."""

from __future__ import annotations

from pathlib import Path

from app.runtime.settings import settings_table

README = Path(__file__).parents[2] / "README.md"


def test_readme_configuration_table_matches_the_settings() -> None:
    text = README.read_text()
    start = text.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end].strip() == settings_table().strip(), (
        "README configuration table is stale: regenerate it from app.runtime.settings.settings_table()"
    )


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text

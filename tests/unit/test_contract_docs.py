"""docs/events.md documents every topic, shows every example and is up to date with the schemas."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import fields
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from app.runtime.settings import Topics

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
EVENTS_MD = ROOT / "docs" / "events.md"

Json = dict[str, Any]


@cache
def builder() -> ModuleType:
    """docs/build_events_md.py, imported from its path (docs/ is not a package)."""
    name = "persona_docs_build_events_md"
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "build_events_md.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def doc() -> str:
    return EVENTS_MD.read_text(encoding="utf-8")


def all_topics() -> list[str]:
    defaults = Topics()
    return [getattr(defaults, f.name) for f in fields(Topics)]


#: Schemas of a second kind of record on a topic (documented in that topic's section).
RECORD_KINDS = {"clickstream-batch": "clickstream"}


def schema(topic: str) -> Json:
    data: Json = json.loads((SCHEMAS / f"{topic}.v1.json").read_text())
    return data


def section(text: str, topic: str) -> str:
    """The text of the ``### <topic>`` section, up to the next heading of level 1 to 3."""
    match = re.search(rf"^### {re.escape(topic)}\n(.*?)(?=^#{{1,3}} )", text, re.S | re.M)
    assert match, f"docs/events.md has no '### {topic}' section"
    return match.group(1)


# --- topics -------------------------------------------------------------------------------------


def test_topics_partition_into_inputs_and_outputs() -> None:
    t = Topics()
    assert sorted(t.inputs() + t.outputs()) == sorted(all_topics())


@pytest.mark.parametrize("topic", all_topics())
def test_every_topic_has_a_v1_schema(topic: str) -> None:
    assert (SCHEMAS / f"{topic}.v1.json").is_file(), f"schemas/{topic}.v1.json is missing"


def test_no_schema_without_a_topic() -> None:
    files = {p.name.removesuffix(".v1.json") for p in SCHEMAS.glob("*.v1.json")}
    assert files == set(all_topics()) | set(RECORD_KINDS)
    assert set(RECORD_KINDS.values()) <= set(all_topics())


@pytest.mark.parametrize("kind", sorted(RECORD_KINDS))
def test_every_record_kind_is_documented_in_its_topic_s_section(kind: str) -> None:
    body = section(doc(), RECORD_KINDS[kind])
    assert f"<!-- generated: summary {kind} -->" in body and f"<!-- generated: fields {kind} " in body
    for path in sorted((EXAMPLES / kind).glob("*.json")):
        assert f"<!-- generated: example {kind}/{path.stem} -->" in body
    root = schema(kind)
    assert set(_schema_paths(root, root)) == _documented_paths().get(kind, set())


@pytest.mark.parametrize("topic", all_topics())
def test_every_topic_has_a_section_with_its_schema_and_examples(topic: str) -> None:
    text = doc()
    body = section(text, topic)
    assert f"<!-- generated: summary {topic} -->" in body
    assert "**Purpose:**" in body and "**Key:**" in body
    assert f"<!-- generated: fields {topic} " in body
    for path in sorted((EXAMPLES / topic).glob("*.json")):
        assert f"<!-- generated: example {topic}/{path.stem} -->" in body, (
            f"example {topic}/{path.stem} is not shown in the {topic} section"
        )
    assert f"| `{topic}` |" in text, f"{topic} is missing from the topics table"


# --- generated blocks ---------------------------------------------------------------------------


def test_events_md_is_up_to_date() -> None:
    text = doc()
    assert builder().render(text) == text, "run: python docs/build_events_md.py"


def test_check_mode_agrees() -> None:
    assert builder().main(["--check"]) == 0


def test_every_example_is_shown_once_and_every_shown_example_exists() -> None:
    shown = [s.split()[1] for s in builder().specs(doc()) if s.startswith("example ")]
    files = sorted(f"{p.parent.name}/{p.stem}" for p in EXAMPLES.glob("*/*.json"))
    assert sorted(shown) == files


def test_every_clickstream_type_has_a_section_table_and_example() -> None:
    text = doc()
    specs = builder().specs(text)
    for t in builder().clickstream_types():
        assert f"#### `{t}`" in text
        assert f"type {t}" in specs
        assert f"example clickstream/{t}" in specs


def _schema_paths(root: Json, node: Json, prefix: str = "") -> Iterator[str]:
    """Every property path of ``node``, found independently of the doc builder."""

    def deref(n: Json) -> Json:
        while "$ref" in n:
            target: Any = root
            for token in n["$ref"].removeprefix("#/").split("/"):
                target = target[token]
            n = target
        return n

    node = deref(node)
    for name, child in node.get("properties", {}).items():
        child = deref(child)
        yield prefix + name
        if "properties" in child:
            yield from _schema_paths(root, child, f"{prefix}{name}.")
        items = child.get("items")
        if isinstance(items, dict) and "properties" in deref(items):
            yield from _schema_paths(root, items, f"{prefix}{name}[].")


def _documented_paths() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for spec in builder().specs(doc()):
        if spec.split()[0] in ("fields", "type"):
            topic, rows = builder().field_rows(spec)
            out.setdefault(topic, set()).update(r.path for r in rows)
    return out


@pytest.mark.parametrize("topic", all_topics())
def test_every_schema_field_is_in_a_field_table(topic: str) -> None:
    root = schema(topic)
    if topic == "clickstream":
        expected = set(_schema_paths(root, root["$defs"]["envelope"]))
        for t in root["$defs"]["envelope"]["properties"]["type"]["enum"]:
            props = root["$defs"][t]
            while "$ref" in props:
                props = root["$defs"][props["$ref"].split("/")[-1]]
            inner = props.get("properties", {}).get("properties", {})
            expected |= set(_schema_paths(root, inner, "properties."))
    else:
        expected = set(_schema_paths(root, root))
    assert expected, topic
    assert expected == _documented_paths().get(topic, set())


def test_no_stale_field_meanings() -> None:
    b = builder()
    b.USED_MEANINGS.clear()
    b.render(doc())
    declared = {(topic, path) for topic, paths in b.MEANINGS.items() for path in paths}
    assert declared - b.USED_MEANINGS == set(), "MEANINGS entries for fields no schema has"


def test_field_table_fails_without_a_meaning() -> None:
    b = builder()
    with pytest.raises(KeyError, match="no meaning"):
        b.meaning("clickstream", "properties.not_a_field", {"type": "string"})


# --- prose that must follow the schemas ---------------------------------------------------------


def test_every_dead_letter_code_is_explained() -> None:
    codes = schema("dead-letters")["properties"]["reason"]["properties"]["code"]["enum"]
    text = doc()
    table = text.split("## Dead-letter reason codes", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([a-z_]+)` \|", table, re.M)
    assert listed == codes


def test_output_topics_not_produced_yet_say_so() -> None:
    text = doc()
    topics = Topics()
    produced_now = {topics.dead_letters, topics.identity_changes, topics.session_summaries, topics.segment_changes}
    for topic in Topics().outputs():
        if topic not in produced_now:
            assert "contract defined; produced from" in section(text, topic), topic
        else:
            assert "**Status:** produced by" in section(text, topic), topic


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("name", ["events.md", "operations.md"])
def test_links_resolve(name: str) -> None:
    page = EVENTS_MD.parent / name
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # no links inside code blocks
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        assert linked.exists(), f"{name}: broken link {target}"
        if anchor:
            assert anchor in _anchors(linked), f"{name}: no heading for #{anchor} in {linked.name}"

"""``persona link`` and ``persona identity estimate`` end to end through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from app.cli.identity import identity, link
from app.identity import MatchModel

from .conftest import SECRET, crm, population

ENV = {"PERSONA_HMAC_SECRET": SECRET}


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_link_writes_the_final_profile_of_every_record(tmp_path: Path) -> None:
    records = [
        crm("a", email="ann@example.com"),
        crm("b", source="pos", phone="07911 123456"),
        crm("c", email="ANN@example.com", phone="07911123456"),  # bridges a and b
        crm("d", email="zed@example.com"),
    ]
    src = _write(tmp_path / "in.jsonl", [json.dumps(r) for r in records])
    out, changes = tmp_path / "out.jsonl", tmp_path / "changes.jsonl"
    result = CliRunner().invoke(link, ["--input", str(src), "--output", str(out), "--changes", str(changes)], env=ENV)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["record_id"] for r in rows] == ["a", "b", "c", "d"]
    by_id = {r["record_id"]: r["profile_id"] for r in rows}
    # a's profile was absorbed or survived: either way all three end in one profile
    assert by_id["a"] == by_id["b"] == by_id["c"] != by_id["d"]
    kinds = [json.loads(line)["change"] for line in changes.read_text().splitlines()]
    assert kinds == ["merged"]
    assert "linked 4 record(s) into 2 profile(s)" in result.stderr


def test_bad_lines_are_reported_with_their_numbers_and_skipped(tmp_path: Path) -> None:
    lines = [
        json.dumps(crm("a", email="ann@example.com")),
        "{not json",
        json.dumps({"schema_version": 1, "record_id": "b", "traits": {"email": "x@example.com"}}),
        "",
        json.dumps({**crm("c", email="ann@example.com"), "traits": {"shoe_size": "9"}}),
        "[1, 2]",
        json.dumps(crm("d", email="ann@example.com")),
    ]
    src = _write(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(link, ["--input", str(src), "--output", str(out)], env=ENV)
    assert result.exit_code == 0
    assert "Traceback" not in result.output
    err = result.stderr
    assert "line 2: not valid JSON" in err
    assert "line 3: not a crm-profiles.v1 record" in err and "source" in err
    assert "line 5: not a crm-profiles.v1 record" in err
    assert "line 6: expected a JSON object" in err
    assert "skipped 4 bad line(s) of 6" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["record_id"] for r in rows] == ["a", "d"]
    assert rows[0]["profile_id"] == rows[1]["profile_id"]


def test_estimate_writes_a_weights_file_that_link_reads(tmp_path: Path) -> None:
    people = population(seed=3, people=80)
    src = _write(tmp_path / "in.jsonl", [json.dumps(r) for _, r in people])
    weights = tmp_path / "weights.json"
    labels = _write(
        tmp_path / "labels.jsonl",
        [
            json.dumps(
                {
                    "record_id_a": people[0][1]["record_id"],
                    "record_id_b": people[1][1]["record_id"],
                    "match": people[0][0] == people[1][0],
                }
            ),
            "{broken",
        ],
    )
    result = CliRunner().invoke(
        identity,
        ["estimate", "--input", str(src), "--output", str(weights), "--labels", str(labels)],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    assert "line 2: not valid JSON" in result.stderr
    model = MatchModel.load(weights)
    assert model.weights["date_of_birth"][0] > 0 > model.weights["date_of_birth"][-1]
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(link, ["--input", str(src), "--output", str(out), "--weights", str(weights)], env=ENV)
    assert result.exit_code == 0, result.output
    by_id = {json.loads(x)["record_id"]: json.loads(x)["profile_id"] for x in out.read_text().splitlines()}
    truth = {r["record_id"]: person for person, r in people}
    predicted = {(truth[a], truth[b]) for a in by_id for b in by_id if a < b and by_id[a] == by_id[b]}
    assert all(x == y for x, y in predicted)


def test_invalid_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.jsonl", [json.dumps(crm("a", email="ann@example.com"))])
    bad = _write(tmp_path / "weights.json", ['{"format": "something-else"}'])
    result = CliRunner().invoke(
        link, ["--input", str(src), "--output", str(tmp_path / "o"), "--weights", str(bad)], env=ENV
    )
    assert result.exit_code != 0
    assert "weights: not a persona-identity-weights document" in result.output

"""Inputs: folders, stdin, compression by magic bytes, hostile files and paths."""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path

import duckdb
import pytest

from podmortem.audit.sources import load
from podmortem.audit.sources.framing import iter_lines, iter_values, iter_yaml
from podmortem.errors import InputError


def test_stdin_is_read(fixtures: Path) -> None:
    con = duckdb.connect()
    data = gzip.compress((fixtures / "native-clean.jsonl").read_bytes())
    result = load(con, ["-"], stdin=io.BytesIO(data))
    assert result.events_read == 5
    assert result.files == ["-"]
    rows = con.execute("SELECT DISTINCT source_file FROM audit_events").fetchall()
    assert rows == [("-",)]


def test_gzip_recognised_by_magic_not_name(read, fixtures: Path, tmp_path: Path) -> None:
    plain_named_gz = tmp_path / "looks.gz"
    plain_named_gz.write_bytes((fixtures / "native-clean.jsonl").read_bytes())
    gz_named_txt = tmp_path / "looks.txt"
    gz_named_txt.write_bytes(gzip.compress((fixtures / "native-clean.jsonl").read_bytes()))
    for p in (plain_named_gz, gz_named_txt):
        result, _ = read(p)
        assert result.events_read == 5


def test_missing_input_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load(duckdb.connect(), [tmp_path / "nope.json"])


def test_table_name_must_be_an_identifier(fixtures: Path) -> None:
    with pytest.raises(InputError):
        load(duckdb.connect(), [fixtures / "native-clean.jsonl"], table='x"; DROP TABLE y; --')


def test_symlinks_in_folders_are_not_followed(read, fixtures: Path, tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "a.jsonl").write_bytes((fixtures / "native-clean.jsonl").read_bytes())
    os.symlink(fixtures / "aks-records.json", evidence / "link.json")
    os.symlink(fixtures, evidence / "linkdir")
    result, _ = read(evidence)
    assert result.events_by_source == {"native/jsonl": 5}
    skipped = [c for c in result.caveats if c.kind == "input-skipped"]
    assert len(skipped) == 2


def test_corrupt_gzip_keeps_what_was_read(read, tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {
                "kind": "Event",
                "auditID": f"id-{i}",
                "stage": "ResponseComplete",
                "verb": "get",
                "requestURI": f"/api/v1/namespaces/n{i}/pods",
                "pad": i * 7,
            }
        )
        for i in range(20000)
    ]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    p = tmp_path / "cut.gz"
    p.write_bytes(data[: len(data) // 2])
    result, rows = read(p)
    assert any(c.kind == "unreadable" for c in result.caveats)
    # the Python route kept the events before the break (the fast route refused the file)
    assert 1000 < len(rows) < 20000
    assert [r["source_line"] for r in rows] == list(range(1, len(rows) + 1))


def test_empty_and_unknown_files(read, tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "binary").write_bytes(bytes(range(256)) * 4)
    result, rows = read(tmp_path)
    assert rows == []
    assert result.skipped == {"empty file": 1, "file not recognised as an audit log": 1}


def test_oversized_line_is_skipped_and_reported() -> None:
    data = b'{"a":1}\n' + b"x" * 5000 + b"\n" + b'{"b":2}\n'
    lines = list(iter_lines(io.BytesIO(data), max_line=1000))
    assert [ln.data for ln in lines] == [b'{"a":1}', None, b'{"b":2}']
    assert [ln.physical for ln in lines] == [1, 2, 3]


def test_value_stream_array_and_concatenated() -> None:
    vals = list(iter_values(io.BytesIO(b'[{"a":1},\n {"b":2}]')))
    assert [v.value for v in vals] == [{"a": 1}, {"b": 2}] and all(v.in_array for v in vals)
    vals = list(iter_values(io.BytesIO(b'{"a":1}{"b":2} {"c":3}')))
    assert [v.value for v in vals] == [{"a": 1}, {"b": 2}, {"c": 3}]
    vals = list(iter_values(io.BytesIO(b'{"a":1}{"b":')))
    assert vals[0].value == {"a": 1} and vals[1].error is not None
    # a broken value in the middle: reported, and the values after it are still read
    vals = list(iter_values(io.BytesIO(b'{"a":1}{"b":2,,}{"c":3}\n{"d":4}')))
    assert [v.value for v in vals] == [{"a": 1}, None, {"c": 3}, {"d": 4}]
    vals = list(iter_values(io.BytesIO(b'[{"a":1},{"b":x},{"c":3}]')))
    assert [v.value for v in vals] == [{"a": 1}, None, {"c": 3}]


def test_broken_firehose_object_does_not_lose_the_rest(
    read, fixtures: Path, tmp_path: Path
) -> None:
    payload = (fixtures / "eks-subscription.concat.json").read_bytes()
    cut = payload.index(b'{"messageType"', 10)
    bad = b'{"messageType":"DATA_MESSAGE","logEvents":[{"id":1,,"message":"x"}]}'
    broken = payload[:cut] + bad + payload[cut:]
    p = tmp_path / "firehose"
    p.write_bytes(gzip.compress(broken))
    result, _ = read(p)
    assert result.events_read == 3
    assert [c.kind for c in result.caveats].count("malformed-document") == 1


def test_value_stream_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from podmortem.audit.sources import framing

    monkeypatch.setattr(framing, "CHUNK", 7)
    doc = json.dumps([{"k": "v" * 30, "n": i} for i in range(20)]).encode()
    vals = list(iter_values(io.BytesIO(doc)))
    assert [v.value["n"] for v in vals] == list(range(20))


def test_yaml_aliases_and_tags_refused() -> None:
    bomb = b"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    (v,) = list(iter_yaml(io.BytesIO(bomb)))
    assert v.error is not None
    (v,) = list(iter_yaml(io.BytesIO(b"x: !!python/object/apply:os.system [id]\n")))
    assert v.error is not None
    (v,) = list(iter_yaml(io.BytesIO(b"timestamp: 2024-01-01T00:00:00Z\n")))
    assert v.value == {"timestamp": "2024-01-01T00:00:00Z"}  # kept as text


def test_reading_twice_into_one_table_dedups_against_earlier_load(fixtures: Path) -> None:
    con = duckdb.connect()
    first = load(con, [fixtures / "native-clean.jsonl"])
    second = load(con, [fixtures / "native-clean.jsonl"])
    assert first.events_read == 5
    assert second.events_read == 0 and second.duplicates == 5
    assert con.execute("SELECT count(*) FROM audit_events").fetchone() == (5,)


def test_parquet_dataset_written_before_a_column_was_added(fixtures: Path, tmp_path: Path) -> None:
    """A dataset `audit export-parquet` wrote before `log_name` existed still loads: the
    column reads as NULL, every other column as written."""
    import duckdb

    from podmortem.audit.model import create_table
    from podmortem.audit.parquet import export, load_parquet
    from podmortem.audit.sources import load

    con = duckdb.connect()
    loaded = load(con, [fixtures / "gke-entries.jsonl"])
    out = tmp_path / "new"
    export(con, out, loaded)
    old = tmp_path / "old"
    old.mkdir()
    for i, f in enumerate(sorted(out.rglob("*.parquet"))):
        con.execute(
            f"COPY (SELECT * EXCLUDE (log_name) FROM read_parquet('{f}'))"  # noqa: S608 - test paths
            f" TO '{old / f'part{i}.parquet'}' (FORMAT PARQUET)"
        )
    target = duckdb.connect()
    create_table(target)
    counts = load_parquet(target, sorted(old.glob("*.parquet")))
    assert sum(counts.values()) == loaded.events_read
    rows = target.execute("SELECT count(*), count(log_name), count(audit_id) FROM audit_events")
    assert rows.fetchone() == (loaded.events_read, 0, loaded.events_read)

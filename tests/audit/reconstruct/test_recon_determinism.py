"""A report reads the same however the log's rows happen to be ordered: capped lists (the
first N user agents, addresses, credentials, objects of an actor) and ties in time are
settled by value, not by the order DuckDB happened to see the rows in."""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pytest

from conftest import fixture_path
from podmortem.audit import engine, ruleset
from podmortem.audit.model import TABLE
from podmortem.audit.reconstruct import reconstruct
from podmortem.audit.sources import load


def _report(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, Any]:
    findings = engine.run(con, ruleset.load_builtin(), table=table).findings
    rec = reconstruct(con, findings, table=table).to_dict()
    rec.pop("seconds")
    doc = {"findings": [f.to_dict() for f in findings], "reconstruction": rec}
    return dict(json.loads(json.dumps(doc, default=str)))


@pytest.mark.parametrize("story", ["attack", "benign"])
def test_row_order_does_not_change_the_report(story: str) -> None:
    con = duckdb.connect()
    load(con, [fixture_path(story, "native")])
    # the same rows, every value kept (file and line included), stored in another order
    con.execute(f"CREATE TABLE shuffled AS SELECT * FROM {TABLE} ORDER BY hash(event_key)")  # noqa: S608 - our table name
    want = _report(con, TABLE)
    got = _report(con, "shuffled")
    assert got["findings"] == want["findings"]
    for section, value in want["reconstruction"].items():
        assert got["reconstruction"][section] == value, section


def test_capped_lists_keep_the_first_values_in_sort_order(tmp_path: Any) -> None:
    """An actor with more user agents and addresses than an actor entry lists: the entry
    names the first ones in sort order, whatever order the log had them in (the cut is
    said: the counts are given beside it)."""
    from podmortem.audit.reconstruct import identity, requests

    n = identity.MAX_LIST + 15
    lines = []
    for i in reversed(range(n)):
        ts = f"2026-11-20T10:{i // 60:02d}:{i % 60:02d}.000000Z"
        lines.append(
            json.dumps(
                {
                    "kind": "Event",
                    "apiVersion": "audit.k8s.io/v1",
                    "level": "Metadata",
                    "auditID": f"00000000-0000-4000-8000-{i:012d}",
                    "stage": "ResponseComplete",
                    "requestURI": "/api/v1/namespaces/default/pods",
                    "verb": "list",
                    "user": {"username": "mallory@example.com", "groups": ["dev"]},
                    "sourceIPs": [f"203.0.113.{i}"],
                    "userAgent": f"agent-{i:03d}",
                    "objectRef": {"resource": "pods", "namespace": "default", "apiVersion": "v1"},
                    "responseStatus": {"code": 200},
                    "requestReceivedTimestamp": ts,
                    "stageTimestamp": ts,
                }
            )
        )
    log = tmp_path / "audit.jsonl"
    log.write_text("\n".join(lines) + "\n")
    con = duckdb.connect()
    load(con, [log])
    requests.materialize(con)
    found, _ = identity.actors(con)
    (actor,) = found
    assert actor.user_agents == [f"agent-{i:03d}" for i in range(identity.MAX_LIST)]
    assert actor.client_ips == sorted(f"203.0.113.{i}" for i in range(n))[: identity.MAX_LIST]

"""Sessions split at pauses, per actor and address."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from conftest import scenarios
from podmortem.audit.reconstruct import requests
from podmortem.audit.reconstruct.sessions import sessions
from podmortem.audit.sources import load

ALICE = {"username": "alice", "groups": ["system:authenticated"]}


def _con(
    tmp_path: Path, offsets_min: list[int], ip: str = "192.0.2.10"
) -> duckdb.DuckDBPyConnection:
    s = scenarios.Story("native", "sessions")
    for m in offsets_min:
        s.request(
            scenarios.T0 + timedelta(minutes=m),
            "list",
            ALICE,
            ip,
            "kubectl",
            resource="pods",
            namespace="a",
        )
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in s.events), encoding="utf-8")
    con = duckdb.connect()
    load(con, [path])
    requests.materialize(con)
    return con


@pytest.mark.parametrize(("gap_min", "expected"), [(30, [3, 2]), (5, [2, 1, 2]), (120, [5])])
def test_sessions_split_at_gaps(tmp_path: Path, gap_min: int, expected: list[int]) -> None:
    con = _con(tmp_path, [0, 4, 10, 50, 55])
    found, total = sessions(con, gap_s=gap_min * 60)
    assert [x.requests for x in found] == expected
    assert total == len(expected)


def test_gap_must_be_positive(tmp_path: Path) -> None:
    con = _con(tmp_path, [0])
    with pytest.raises(ValueError, match="positive"):
        sessions(con, gap_s=0)


def test_system_actors_left_out_unless_named(tmp_path: Path) -> None:
    con = _con(tmp_path, [0])
    con.execute(
        "UPDATE recon_requests SET actor = 'system:kube-scheduler', actor_class = 'control-plane'"
    )
    assert sessions(con)[0] == []
    assert len(sessions(con, actors=["system:kube-scheduler"])[0]) == 1

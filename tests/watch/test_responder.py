"""Responses: only for findings at or above the threshold that name a pod; one per pod per
cooldown; at most N per rate window; dry run touches nothing; each step in the custody log;
an interrupted response is resumed without repeating what was done."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from fake_actions import RecordingActions

from podmortem.case import Case
from podmortem.case.custody import read_lines
from podmortem.findings import Finding, Severity
from podmortem.watch.detector import WatchFinding
from podmortem.watch.responder import Responder, ResponsePolicy


class Clock:
    def __init__(self) -> None:
        self.t = 1_795_000_000.0

    def __call__(self) -> float:
        return self.t


def wf(fid: str, pod: str | None, sev: Severity = Severity.HIGH) -> WatchFinding:
    f = Finding("k8s_exec_shell_or_tool", "shell", sev, subject="alice", extra={"object": "x"})
    return WatchFinding(fid, f, tuple(pod.split("/")) if pod else None)  # type: ignore[arg-type]


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute(f"ATTACH '{tmp_path / 'st.duckdb'}' AS st")
    return c


def responder(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, clock: Clock, **kw: object
) -> tuple[Responder, RecordingActions]:
    actions = RecordingActions()
    policy = ResponsePolicy(**kw)  # type: ignore[arg-type]
    return Responder(con, policy, actions, tmp_path / "cases", clock=clock), actions


def test_threshold_and_pod_required(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    r, actions = responder(con, tmp_path, Clock(), min_severity=Severity.HIGH)
    d = r.decide(
        [wf("a", "default/web-1", Severity.MEDIUM), wf("b", None), wf("c", "default/web-2")]
    )
    assert [x["finding_id"] for x in d] == ["c"]
    r.carry_out()
    assert actions.calls == [("acquire", "default/web-2"), ("preserve", "default/web-2")]


def test_cooldown_per_pod_and_rate_limit(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    clock = Clock()
    r, _ = responder(con, tmp_path, clock, cooldown_s=600, max_responses=2, rate_window_s=60)
    d = r.decide(
        [
            wf("a", "default/web-1"),
            wf("b", "default/web-1"),
            wf("c", "default/web-2"),
            wf("d", "default/web-3"),
        ]
    )
    assert [x["status"] for x in d] == ["pending", "cooldown", "pending", "rate-limited"]
    clock.t += 61  # rate window over, cooldown of web-1 not
    d = r.decide([wf("e", "default/web-1"), wf("f", "default/web-4")])
    assert [x["status"] for x in d] == ["cooldown", "pending"]
    clock.t += 600
    assert [x["status"] for x in r.decide([wf("g", "default/web-1")])] == ["pending"]
    # The same finding again (a replay) decides nothing.
    assert r.decide([wf("g", "default/web-1")]) == []


def test_dry_run_touches_nothing(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    r, actions = responder(con, tmp_path, Clock(), dry_run=True, mode="acquire+contain")
    d = r.decide([wf("a", "default/web-1")])
    assert d[0]["status"] == "dry-run"
    assert "isolate it (contain)" in d[0]["would"]
    assert r.carry_out() == []
    assert actions.calls == []
    assert not (tmp_path / "cases").exists()


def test_contain_only_with_acquire_contain(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    r, actions = responder(con, tmp_path, Clock(), mode="acquire+contain")
    r.decide([wf("a", "default/web-1")])
    [res] = r.carry_out()
    assert [s for s, _ in actions.calls] == ["acquire", "preserve", "contain"]
    recs = [
        p.record.action
        for p in read_lines((Path(res["case"]) / "custody.jsonl").read_bytes())
        if p.record
    ]
    assert "watch_trigger" in recs
    assert recs.count("watch_step_done") == 3 and recs[-1] == "watch_response_done"


def test_interrupted_response_resumes_without_repeating(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    r, actions = responder(con, tmp_path, Clock(), mode="acquire+contain")
    r.decide([wf("a", "default/web-1")])
    # Simulate a crash after the acquisition was sealed and preserve done, before contain.
    row = con.execute("SELECT case_dir FROM st.watch_actions").fetchone()
    assert row is not None
    case = Case.init(tmp_path / "cases" / row[0], case_id="x", examiner="t")
    case.log_action("watch_trigger", {"finding_id": "a"})
    RecordingActions().acquire(case, "default", "web-1")
    case.log_action("watch_step_done", {"step": "acquire"})
    case.log_action("watch_step_done", {"step": "preserve"})
    con.execute("UPDATE st.watch_actions SET status = 'running', attempts = 1")
    [res] = r.carry_out()
    assert actions.calls == [("contain", "default/web-1")]
    assert res["status"] == "done" and res["case"] == str(case.root)


def test_interrupted_acquisition_is_redone_in_a_fresh_case(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    r, actions = responder(con, tmp_path, Clock())
    r.decide([wf("a", "default/web-1")])
    row = con.execute("SELECT case_dir FROM st.watch_actions").fetchone()
    assert row is not None
    case = Case.init(tmp_path / "cases" / row[0], case_id="x", examiner="t")
    case.log_action("acquisition_started", {})  # killed before the seal
    con.execute("UPDATE st.watch_actions SET status = 'running', attempts = 1")
    [res] = r.carry_out()
    assert res["case"].endswith("-a2")
    assert actions.calls[0] == ("acquire", "default/web-1")

"""kill -9 in the middle of a burst, restart, repeat: the findings, their request counts,
the events kept for correlations and the responses are exactly those of a run that was
never interrupted (nothing lost, nothing twice)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from burst import burst, lines

from podmortem.case.custody import read_lines

CHILD = Path(__file__).parent / "child_watch.py"


def run_child(
    file: Path, state: Path, cases: Path, *, chunk: int, delay: float
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(file), str(state), str(cases), str(chunk), str(delay)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def close(proc: subprocess.Popen[bytes]) -> None:
    if proc.stderr is not None:
        proc.stderr.close()


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    """Wait for a run to end by itself; its exit code and the end of its error output. The
    pipe is closed before anything is asserted: left open by a failed assertion, it was
    reported (unclosed file) in whichever test the garbage collector ran in next."""
    try:
        code = proc.wait(timeout=300)
        err = proc.stderr.read().decode(errors="replace")[-3000:] if proc.stderr else ""
    finally:
        close(proc)
    return code, err


def chunks_logged(log: Path) -> int:
    try:
        return log.read_bytes().count(b'"event":"chunk"')
    except FileNotFoundError:
        return 0


def outcome(state: Path, cases: Path) -> dict[str, object]:
    con = duckdb.connect(str(state / "watch.duckdb"), read_only=True)
    try:
        findings = sorted(
            con.execute("SELECT finding_id, fkey, requests FROM watch_findings").fetchall()
        )
        idents = [r[0] for r in con.execute("SELECT ident FROM watch_window").fetchall()]
        hits = con.execute("SELECT ident, rule_key FROM watch_window_hits").fetchall()
        actions = sorted(con.execute("SELECT action_id, pod, status FROM watch_actions").fetchall())
    finally:
        con.close()
    sealed: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    for folder in sorted(cases.iterdir()) if cases.exists() else []:
        if folder.name.startswith("."):
            continue
        recs = [p.record for p in read_lines((folder / "custody.jsonl").read_bytes()) if p.record]
        for r in recs:
            if r.action == "acquisition_sealed":
                sealed[folder.name.split("-a")[0]] += 1
            if r.action == "watch_step_done":
                steps[f"{folder.name.split('-a')[0]}:{r.details['step']}"] += 1
    return {
        "findings": findings,
        "idents_dup": [k for k, v in Counter(idents).items() if v > 1],
        "idents": set(idents),
        "hits": sorted(set(hits)),
        "hits_dup": len(hits) - len(set(hits)),
        "actions": actions,
        "sealed": dict(sealed),
        "steps": dict(steps),
    }


@pytest.mark.slow
def test_kill_9_mid_burst_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    events = burst(3000, pods=20)
    data = lines(events)
    chunk = 64 << 10  # many chunks, so the kills land inside the burst

    ref_file = tmp_path / "ref" / "audit.log"
    ref_file.parent.mkdir()
    ref_file.write_bytes(data)
    p = run_child(
        ref_file, tmp_path / "ref" / "state", tmp_path / "ref" / "cases", chunk=chunk, delay=0.05
    )
    code, err = finish(p)
    assert code == 0, err
    ref = outcome(tmp_path / "ref" / "state", tmp_path / "ref" / "cases")
    assert len(ref["findings"]) >= 21  # 20 pods exec'd into + the forbidden burst
    assert len(ref["actions"]) == 20

    # The file grows while the watcher runs and is killed several times.
    rng = random.Random(9)
    live = tmp_path / "live" / "audit.log"
    live.parent.mkdir()
    state, cases = tmp_path / "live" / "state", tmp_path / "live" / "cases"
    third = len(data) // 3
    cut1 = data.rfind(b"\n", 0, third) + 1
    cut2 = data.rfind(b"\n", 0, 2 * third) + 1
    live.write_bytes(data[:cut1])
    kills = 0
    appended = [data[cut1:cut2], data[cut2:]]
    log_path = state / "log.jsonl"
    for _ in range(40):  # bounded: a run that ends by itself below still makes progress
        if kills >= 4:
            break
        seen = chunks_logged(log_path)
        proc = run_child(live, state, cases, chunk=chunk, delay=0.05)
        # Kill only once this run has handled a chunk: then it is inside the burst.
        deadline = time.monotonic() + 120
        while chunks_logged(log_path) == seen and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.2))
        if appended and kills % 2 == 1:
            with live.open("ab") as fh:
                fh.write(appended.pop(0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
        close(proc)
        if proc.returncode == 0:
            if not appended:
                break
            # It read everything before the kill (a fast run): give it more to read, or
            # the next run would find nothing new and end at once, forever.
            with live.open("ab") as fh:
                fh.write(appended.pop(0))
    for rest in appended:
        with live.open("ab") as fh:
            fh.write(rest)
    proc = run_child(live, state, cases, chunk=chunk, delay=0.05)
    code, err = finish(proc)
    assert code == 0, err
    got = outcome(state, cases)
    assert kills >= 2, "the kills did not land while the watcher was running"

    assert got["idents_dup"] == [] and got["hits_dup"] == 0
    assert got["idents"] == ref["idents"]
    assert got["hits"] == ref["hits"]
    assert got["findings"] == ref["findings"]  # same ids, same request counts
    assert [(a, p, s) for a, p, s in got["actions"]] == ref["actions"]
    assert all(s == "done" for _, _, s in got["actions"])
    # One sealed acquisition per response (a response cut mid-acquisition is redone in a
    # fresh -a2 case; its partial case has no seal), and each step done once.
    assert sorted(got["sealed"].values()) == [1] * 20
    assert got["steps"] and set(got["steps"].values()) == {1}
    log = [json.loads(x) for x in (state / "log.jsonl").read_text().splitlines() if x.strip()]
    assert sum(1 for x in log if x["event"] == "watch_started") == kills + 1

"""End to end on the test Docker engine: ``podmortem watch`` (the command, as a user runs
it) sees an exec with a shell into pod P in the audit log, and seals a case holding P's
acquisition, with the finding and every step in the verified custody log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from burst import T0, event

from podmortem.case import Case, verify_case
from podmortem.case.custody import read_lines

pytestmark = pytest.mark.integration
PODMORTEM = str(Path(sys.executable).parent / "podmortem")


def run_watch(args: list[str], docker_host: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": docker_host}
    return subprocess.run(
        [PODMORTEM, "watch", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_exec_into_pod_seals_a_case(
    tmp_path: Path, make_docker_container: Any, engine_endpoints: Any
) -> None:
    c = make_docker_container()
    pod = c.name
    log = tmp_path / "audit.log"
    evs = [
        event(1, T0, name=pod),  # a plain read: nothing
        event(2, T0, verb="create", name=pod, subresource="exec", code=101, command="sh -c id"),
    ]
    log.write_text("".join(json.dumps(e) + "\n" for e in evs))
    cases = tmp_path / "cases"
    args = [
        str(log),
        "--case-root",
        str(cases),
        "--target",
        "docker://{pod}",
        "--once",
        "--budget",
        "20",
    ]
    r = run_watch(args, engine_endpoints.docker_host)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    [resp] = [x for x in lines if x["event"] == "response"]
    assert resp["status"] == "done" and resp["complete"] is True
    case = Case.open(Path(resp["case"]))
    assert verify_case(case.root).ok
    actions = [
        p.record.action for p in read_lines((case.root / "custody.jsonl").read_bytes()) if p.record
    ]
    assert actions.index("watch_trigger") < actions.index("acquisition_started")
    assert actions.index("acquisition_sealed") < actions.index("watch_response_done")
    assert "watch_step_skipped" in actions  # no cloud configured: said so, not silently
    assert any(a.path.startswith("containers/") or "proc" in a.path for a in case.artifacts)

    # Run again: the saved position means nothing is read again, nothing is done again.
    again = run_watch(args, engine_endpoints.docker_host)
    assert again.returncode == 0, again.stderr[-3000:]
    assert '"event":"response"' not in again.stderr
    assert len([p for p in cases.iterdir() if not p.name.startswith(".")]) == 1


def test_dry_run_says_what_it_would_do(tmp_path: Path, engine_endpoints: Any) -> None:
    log = tmp_path / "audit.log"
    log.write_text(
        json.dumps(
            event(
                2, T0, verb="create", name="web-9", subresource="exec", code=101, command="sh -c id"
            )
        )
        + "\n"
    )
    r = run_watch(
        [
            str(log),
            "--case-root",
            str(tmp_path / "cases"),
            "--once",
            "--dry-run",
            "--respond",
            "acquire+contain",
        ],
        engine_endpoints.docker_host,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    [d] = [json.loads(x) for x in r.stderr.splitlines() if '"response_decided"' in x]
    assert d["status"] == "dry-run" and "isolate it (contain)" in d["would"]
    assert [p for p in (tmp_path / "cases").iterdir() if not p.name.startswith(".")] == []

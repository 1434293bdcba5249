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


def test_exec_into_pod_with_kube_access_protects_it(
    tmp_path: Path, make_docker_container: Any, engine_endpoints: Any
) -> None:
    """The command with --kubeconfig and no --provider: the pod is acquired on the engine
    and, through the Kubernetes API (the fake of tests/cloud), its node and itself get the
    autoscaler protection annotations, each step in the same case's custody log."""
    from cloud.k8s_server import FakeKube, kubeconfig

    c = make_docker_container()
    kube = FakeKube()
    url = kube.start()
    try:
        kube.add_node("worker-1", "kind://docker/kind/worker-1")
        kube.add_pod("default", c.name, "worker-1", {"app": "web"})
        config = kubeconfig(tmp_path / "kubeconfig", url)
        log = tmp_path / "audit.log"
        ev = event(2, T0, verb="create", name=c.name, subresource="exec", code=101, command="sh")
        log.write_text(json.dumps(ev) + "\n")
        r = run_watch(
            [str(log), "--case-root", str(tmp_path / "cases"), "--target", "docker://{pod}",
             "--kubeconfig", str(config), "--once", "--budget", "20"],
            engine_endpoints.docker_host,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        [resp] = [json.loads(x) for x in r.stderr.splitlines() if '"event":"response"' in x]
        assert resp["status"] == "done" and resp["complete"] is True, resp
        annotations = kube.node("worker-1")["metadata"]["annotations"]
        assert annotations["cluster-autoscaler.kubernetes.io/scale-down-disabled"] == "true"
        pod_ann = kube.pod("default", c.name)["metadata"]["annotations"]
        assert pod_ann["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
        assert "unschedulable" not in kube.node("worker-1")["spec"]
        recs = [
            p.record
            for p in read_lines((Path(resp["case"]) / "custody.jsonl").read_bytes())
            if p.record
        ]
        steps = [x.details["step"] for x in recs if x.action == "cloud_step"]
        assert steps == ["k8s.mark-pod", "k8s.mark-node", "k8s.autoscaler-protection"]
        assert "watch_step_skipped" not in [x.action for x in recs]
        assert verify_case(Path(resp["case"])).ok
    finally:
        kube.stop()


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

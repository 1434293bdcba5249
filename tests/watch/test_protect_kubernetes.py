"""Watch with only the Kubernetes API (no --provider): a detection naming a pod still
protects it and its node from autoscalers, through the same procedure as ``cloud preserve``,
against the fake API server of tests/cloud; a second detection within the cooldown patches
nothing; containment only with ``acquire+contain``."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from burst import T0, event

# tests/cloud is a package on the tests folder's path (pytest's rootdir conftest puts it there).
from cloud.k8s_server import FakeKube, kube_clients, kubeconfig
from podmortem.audit.analyze import load_rules
from podmortem.case import Case, verify_case
from podmortem.case.custody import read_lines
from podmortem.cloud.executor import STEP_ACTION, Procedure
from podmortem.cloud.kubernetes import KubernetesContainment
from podmortem.cloud.labels import k8s_label_value
from podmortem.errors import CapabilityUnavailable, InputError
from podmortem.findings import Severity
from podmortem.watch.actions import LibraryActions
from podmortem.watch.jsonlog import JsonLog
from podmortem.watch.loop import Watcher
from podmortem.watch.responder import ResponsePolicy
from podmortem.watch.sources.tail import TailSource

POD = "/api/v1/namespaces/shop/pods/web-1"
NODE = "/api/v1/nodes/worker-1"
PROTECT_NODE = {
    "cluster-autoscaler.kubernetes.io/scale-down-disabled": "true",
    "karpenter.sh/do-not-disrupt": "true",
}
PROTECT_POD = {
    "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
    "karpenter.sh/do-not-disrupt": "true",
}


class MarkerAcquire(LibraryActions):
    """The real protection path; the acquisition (tested on real engines elsewhere) leaves
    the same custody records and one artifact."""

    def acquire(self, case: Case, namespace: str, pod: str) -> dict[str, Any]:
        case.log_action("acquisition_started", {"targets": [f"k8s://{namespace}/{pod}"]})
        case.add_bytes("evidence/pod.txt", f"{namespace}/{pod}\n".encode(), source="api")
        case.log_action("acquisition_sealed", {"complete": True})
        return {"complete": True}


@pytest.fixture
def kube() -> Any:
    server = FakeKube()
    server.url = server.start()  # type: ignore[attr-defined]
    server.add_node("worker-1", "kind://docker/kind/worker-1")
    server.add_replicaset("shop", "web", {"app": "web"})
    server.add_pod("shop", "web-1", "worker-1", {"app": "web"}, owner=("ReplicaSet", "web"))
    yield server
    server.stop()


def _exec(i: int, user: str = "alice@example.com") -> dict[str, Any]:
    return event(
        i, T0, user=user, verb="create", namespace="shop", name="web-1", subresource="exec",
        code=101, command="sh -c id",
    )  # fmt: skip


def _watch(tmp_path: Path, kube: FakeKube, mode: str, log: Path) -> list[dict[str, Any]]:
    def procedure(case: Case) -> Procedure:
        return Procedure(None, KubernetesContainment(*kube_clients(kube.url)), case=case)  # type: ignore[attr-defined]

    out = (tmp_path / "log.jsonl").open("a")
    try:
        Watcher(
            [TailSource(log)],
            state_dir=tmp_path / "state",
            rules=load_rules(),
            policy=ResponsePolicy(mode=mode, min_severity=Severity.HIGH, cooldown_s=900),  # type: ignore[arg-type]
            actions=MarkerAcquire(
                lambda ref: None,  # type: ignore[arg-type,return-value]
                options=None,  # type: ignore[arg-type]
                procedure=procedure,
            ),
            case_root=tmp_path / "cases",
            log=JsonLog(out),
            poll_interval=0.05,
        ).run(threading.Event(), exit_when_idle=True)
    finally:
        out.close()
    return [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]


def _records(case_dir: Path) -> list[dict[str, Any]]:
    data = (case_dir / "custody.jsonl").read_bytes()
    return [{"action": p.record.action, **p.record.details} for p in read_lines(data) if p.record]


def test_detection_protects_pod_and_node_once(tmp_path: Path, kube: FakeKube) -> None:
    log = tmp_path / "audit.log"
    log.write_text(json.dumps(_exec(1)) + "\n")
    lines = _watch(tmp_path, kube, "acquire", log)
    [resp] = [x for x in lines if x["event"] == "response"]
    assert resp["status"] == "done", resp
    writes = [(r.method, r.path, r.body) for r in kube.writes()]
    case_id = Path(resp["case"]).name
    marks = {
        "metadata": {
            "labels": {"podmortem.io/case": k8s_label_value(case_id)},
            "annotations": {"podmortem.io/case": case_id},
        }
    }
    assert [(m, p) for m, p, _ in writes] == [
        ("PATCH", POD),
        ("PATCH", NODE),
        ("PATCH", NODE),
        ("PATCH", POD),
    ]
    assert writes[0][2] == marks and writes[1][2] == marks
    assert writes[2][2] == {"metadata": {"annotations": PROTECT_NODE}}
    assert writes[3][2] == {"metadata": {"annotations": PROTECT_POD}}
    # Never contained without acquire+contain: schedulable node, no quarantine policy.
    assert "unschedulable" not in kube.node("worker-1")["spec"]
    assert kube.policy("shop", f"podmortem-quarantine-{case_id.lower()}") is None

    recs = _records(Path(resp["case"]))
    actions = [r["action"] for r in recs]
    assert actions.index("acquisition_sealed") < actions.index(STEP_ACTION)
    steps = [r for r in recs if r["action"] == STEP_ACTION]
    assert [(s["step"], s["status"]) for s in steps] == [
        ("k8s.mark-pod", "changed"),
        ("k8s.mark-node", "changed"),
        ("k8s.autoscaler-protection", "changed"),
    ]
    assert all(s["execute"] and s["target"]["provider"] == "kubernetes" for s in steps)
    patched = [c for s in steps for c in s["calls"] if c["write"]]
    assert [(c["method"], c["params"]["body"]) for c in patched] == [
        ("patch_namespaced_pod", writes[0][2]),
        ("patch_node", writes[1][2]),
        ("patch_node", writes[2][2]),
        ("patch_namespaced_pod", writes[3][2]),
    ]
    [done] = [r for r in recs if r["action"] == "watch_step_done" and r["step"] == "preserve"]
    assert [s["step"] for s in done["result"]] == [s["step"] for s in steps]
    assert verify_case(Path(resp["case"])).ok

    # A second detection about the same pod within the cooldown (another actor's exec: a
    # new finding, not the same episode): decided as cooldown; no response, no case, no patch.
    kube.clear()
    with log.open("a") as f:
        f.write(json.dumps(_exec(2, user="mallory@example.com")) + "\n")
    lines = _watch(tmp_path, kube, "acquire", log)
    decided = [x for x in lines if x["event"] == "response_decided"]
    assert [d["status"] for d in decided] == ["pending", "cooldown"]
    assert len([x for x in lines if x["event"] == "response"]) == 1
    assert kube.writes() == []
    assert len([p for p in (tmp_path / "cases").iterdir() if not p.name.startswith(".")]) == 1


def test_acquire_contain_also_isolates(tmp_path: Path, kube: FakeKube) -> None:
    log = tmp_path / "audit.log"
    log.write_text(json.dumps(_exec(1)) + "\n")
    [resp] = [x for x in _watch(tmp_path, kube, "acquire+contain", log) if x["event"] == "response"]
    steps = [r for r in _records(Path(resp["case"])) if r["action"] == STEP_ACTION]
    assert [s["step"] for s in steps][3:] == [
        "k8s.detach-from-controller",
        "k8s.quarantine-network-policy",
        "k8s.cordon-node",
    ]
    assert kube.node("worker-1")["spec"]["unschedulable"] is True

    # The responder's containment is undone from the response's case, as `cloud contain`'s.
    from typer.testing import CliRunner

    from podmortem.cli.main import app

    config = kubeconfig(tmp_path / "kc", kube.url)  # type: ignore[attr-defined]
    res = CliRunner().invoke(
        app,
        ["cloud", "release", "kubernetes", "--cluster", "", "--pod", "shop/web-1",
         "--case", resp["case"], "--kubeconfig", str(config), "--execute"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "release: 3 changed" in res.output
    assert "unschedulable" not in kube.node("worker-1")["spec"]
    assert kube.pod("shop", "web-1")["metadata"]["labels"]["app"] == "web"
    assert verify_case(Path(resp["case"])).ok


def test_vanished_pod_is_recorded_not_fatal(tmp_path: Path, kube: FakeKube) -> None:
    """The pod is gone before protection: the response says so and the watcher goes on."""
    del kube.objects[POD]
    log = tmp_path / "audit.log"
    log.write_text(json.dumps(_exec(1)) + "\n")
    [resp] = [x for x in _watch(tmp_path, kube, "acquire", log) if x["event"] == "response"]
    assert resp["status"] == "failed"
    assert resp["errors"][0].startswith("preserve: cannot resolve the target")
    recs = _records(Path(resp["case"]))
    assert [r["action"] for r in recs if r["action"] == "cloud_target_resolved"]
    assert kube.writes() == []


def test_hostile_pod_name_reaches_no_api(tmp_path: Path, kube: FakeKube) -> None:
    """The pod's names come from the audit log: anything but Kubernetes names is refused
    before a client is built or a request is sent, and the refusal is recorded."""
    built: list[Case] = []

    def procedure(case: Case) -> Procedure:
        built.append(case)
        return Procedure(None, KubernetesContainment(*kube_clients(kube.url)), case=case)  # type: ignore[attr-defined]

    actions = MarkerAcquire(
        lambda ref: None,  # type: ignore[arg-type,return-value]
        options=None,  # type: ignore[arg-type]
        procedure=procedure,
    )
    case = Case.init(tmp_path / "c", case_id="c", examiner="t")
    with pytest.raises(InputError, match="expected k8s://NAMESPACE/POD"):
        actions.preserve(case, "shop", "../../nodes/worker-1")
    assert built == [] and kube.requests == []


def test_protection_is_built_when_there_is_a_cluster(tmp_path: Path) -> None:
    from podmortem.cli.watch import _protection, _provider
    from podmortem.cloud.clients import CloudConfig

    none = CloudConfig()
    assert _protection(None, none, None, "docker://{pod}") is None
    assert _protection(None, none, None, "k8s://{namespace}/{pod}") is not None
    assert _protection(None, none, str(tmp_path / "kc"), "docker://{pod}") is not None
    assert _provider("eks") == "eks" and _provider(None) is None
    with pytest.raises(InputError, match="--provider is one of"):
        _provider("openstack")
    # Without any usable configuration the response's preserve step fails, recorded.
    build = _protection(None, none, str(tmp_path / "missing"), "docker://{pod}")
    assert build is not None
    with pytest.raises(CapabilityUnavailable, match="no usable Kubernetes configuration"):
        build(Case.init(tmp_path / "c", case_id="c", examiner="t"))

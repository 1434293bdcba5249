"""The procedure without a cloud provider (``watch`` with only the Kubernetes API): the
``k8s.*`` steps alone, run by the same executor, against the fake API server through the
official client, asserting the exact requests; idempotent; never containment in preserve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from podmortem.case import Case, verify_case
from podmortem.case.custody import read_lines
from podmortem.cloud.executor import STEP_ACTION, Procedure
from podmortem.cloud.kubernetes import KubernetesContainment
from podmortem.cloud.model import KUBERNETES, Status, Target
from podmortem.cloud.playbook import procedure
from podmortem.errors import AcquisitionError, InputError

from .k8s_server import FakeKube, kube_clients, kubeconfig

POD = "/api/v1/namespaces/shop/pods/web-7d9-abcde"
NODE = "/api/v1/nodes/worker-1"


def _proc(case: Case | None, kube: FakeKube) -> Procedure:
    return Procedure(None, KubernetesContainment(*kube_clients(kube.url)), case=case)  # type: ignore[attr-defined]


def _cluster(kube: FakeKube, provider_id: str = "kind://docker/kind/worker-1") -> None:
    # A self-managed cluster's providerID follows no cloud's shape: never parsed here.
    kube.add_node("worker-1", provider_id)
    kube.add_pod("shop", "web-7d9-abcde", "worker-1", {"app": "web"}, owner=("ReplicaSet", "rs"))
    kube.add_replicaset("shop", "rs", {"app": "web"})


def _custody(case: Case) -> list[dict[str, Any]]:
    data = (case.root / "custody.jsonl").read_bytes()
    return [{"action": p.record.action, **p.record.details} for p in read_lines(data) if p.record]


def test_procedure_is_the_kubernetes_steps_alone() -> None:
    ids = [s.id for s in procedure(KUBERNETES)]
    assert ids == [
        "k8s.mark-pod",
        "k8s.mark-node",
        "k8s.autoscaler-protection",
        "k8s.detach-from-controller",
        "k8s.quarantine-network-policy",
        "k8s.cordon-node",
    ]
    assert all(s.id.startswith("k8s.") for s in procedure(KUBERNETES))


def test_preserve_sends_exactly_the_annotation_patches(kube: FakeKube, case: Case) -> None:
    _cluster(kube)
    proc = _proc(case, kube)
    target = proc.resolve(Target(KUBERNETES, "", pod="shop/web-7d9-abcde"))
    assert target.node == "worker-1" and target.instance is None
    reports = proc.run(target, ["preserve"], execute=True)
    assert [(r.step_id, r.outcome.status) for r in reports] == [
        ("k8s.mark-pod", Status.CHANGED),
        ("k8s.mark-node", Status.CHANGED),
        ("k8s.autoscaler-protection", Status.CHANGED),
    ]
    sent = [(r.method, r.path, r.body) for r in kube.writes()]
    marks = {
        "metadata": {
            "labels": {"podmortem.io/case": "IR-2026-042"},
            "annotations": {"podmortem.io/case": "IR-2026-042"},
        }
    }
    assert sent == [
        ("PATCH", POD, marks),
        ("PATCH", NODE, marks),
        (
            "PATCH",
            NODE,
            {
                "metadata": {
                    "annotations": {
                        "cluster-autoscaler.kubernetes.io/scale-down-disabled": "true",
                        "karpenter.sh/do-not-disrupt": "true",
                    }
                }
            },
        ),
        (
            "PATCH",
            POD,
            {
                "metadata": {
                    "annotations": {
                        "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
                        "karpenter.sh/do-not-disrupt": "true",
                    }
                }
            },
        ),
    ]
    # The client's patch type for a dict body; on metadata maps it merges key by key, so the
    # body means exactly what the custody log shows.
    assert {r.headers["content-type"] for r in kube.writes()} == {
        "application/strategic-merge-patch+json"
    }
    # Preservation never contains: the node stays schedulable, the pod keeps its labels.
    assert "unschedulable" not in kube.node("worker-1")["spec"]
    assert kube.pod("shop", "web-7d9-abcde")["metadata"]["labels"]["app"] == "web"

    steps = [d for d in _custody(case) if d["action"] == STEP_ACTION]
    assert [d["step"] for d in steps] == [r.step_id for r in reports]
    for d, r in zip(steps, reports, strict=True):
        assert d["execute"] is True and d["status"] == "changed"
        assert d["target"]["provider"] == KUBERNETES and d["target"]["node"] == "worker-1"
        assert [c["method"] for c in d["calls"] if c["write"]] == [
            c.method for c in r.calls if c.write
        ]
    assert verify_case(case.root).ok

    # Again: everything is in place, nothing is patched, and the log says so.
    kube.clear()
    again = _proc(Case.open(case.root), kube)
    target2 = again.resolve(Target(KUBERNETES, "", pod="shop/web-7d9-abcde"))
    reports = again.run(target2, ["preserve"], execute=True)
    assert {r.outcome.status for r in reports} == {Status.UNCHANGED}
    assert kube.writes() == []


def test_dry_run_patches_nothing(kube: FakeKube) -> None:
    _cluster(kube)
    proc = _proc(None, kube)
    target = proc.resolve(Target(KUBERNETES, "", pod="shop/web-7d9-abcde"))
    reports = proc.run(target, ["preserve", "contain"], execute=False)
    assert {r.outcome.status for r in reports} == {Status.WOULD_CHANGE}
    assert kube.writes() == []


def test_contain_only_when_asked(kube: FakeKube, case: Case) -> None:
    _cluster(kube)
    proc = _proc(case, kube)
    target = proc.resolve(Target(KUBERNETES, "", pod="shop/web-7d9-abcde"))
    reports = proc.run(target, ["contain"], execute=True)
    assert [r.step_id for r in reports] == [
        "k8s.detach-from-controller",
        "k8s.quarantine-network-policy",
        "k8s.cordon-node",
    ]
    assert kube.node("worker-1")["spec"]["unschedulable"] is True


def test_cloud_steps_without_a_provider_are_not_applicable(kube: FakeKube) -> None:
    """An EKS target with no cloud step set: the cloud steps are recorded, not run."""
    _cluster(kube, "aws:///us-east-1a/i-0123456789abcdef0")
    proc = _proc(None, kube)
    target = proc.resolve(Target("eks", "prod", pod="shop/web-7d9-abcde"))
    assert target.instance == "i-0123456789abcdef0"
    reports = proc.run(target, ["preserve"], execute=False)
    cloud = [r for r in reports if not r.step_id.startswith("k8s.")]
    assert cloud and {r.outcome.status for r in cloud} == {Status.NOT_APPLICABLE}
    assert {r.outcome.reason for r in cloud} == {"no cloud provider configured"}


def test_a_vanished_pod_is_recorded_and_stops_the_procedure(kube: FakeKube, case: Case) -> None:
    proc = _proc(case, kube)
    with pytest.raises(AcquisitionError, match="cannot resolve the target"):
        proc.resolve(Target(KUBERNETES, "", pod="shop/gone"))
    [rec] = [d for d in _custody(case) if d["action"] == "cloud_target_resolved"]
    assert "404" in rec["error"] and rec["calls"][0]["method"] == "read_namespaced_pod"
    assert kube.writes() == []


def _bare(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without empty maps (a merge patch that removed every key leaves one)."""
    return {k: _bare(v) if isinstance(v, dict) else v for k, v in obj.items() if v != {}}


def test_cli_kubernetes_preserve_contain_release(
    kube: FakeKube, case: Case, tmp_path: Path
) -> None:
    """``podmortem cloud ... kubernetes``: the same steps for any cluster from the command
    line, and ``release`` puts the pod and node back from the custody log."""
    from typer.testing import CliRunner

    from podmortem.cli.main import app

    _cluster(kube)
    kube.add_policy("shop", "allow-web", {"matchLabels": {"app": "web"}}, ingress=[{}])
    before_pod = json.loads(json.dumps(kube.pod("shop", "web-7d9-abcde")))
    before_node = json.loads(json.dumps(kube.node("worker-1")))
    sel = ["kubernetes", "--cluster", "lab", "--pod", "shop/web-7d9-abcde", "--case",
           str(case.root), "--kubeconfig", str(kubeconfig(tmp_path / "kc", kube.url))]  # type: ignore[attr-defined]  # fmt: skip
    run = CliRunner().invoke
    res = run(app, ["cloud", "plan", *sel])
    assert res.exit_code == 0, res.output
    assert "eks." not in res.output and "k8s.cordon-node" in res.output and not kube.writes()
    for phase in ("preserve", "contain"):
        res = run(app, ["cloud", phase, *sel, "--execute"])
        assert res.exit_code == 0, res.output
    assert kube.node("worker-1")["spec"]["unschedulable"] is True
    assert kube.policy("shop", "podmortem-quarantine-ir-2026-042") is not None
    res = run(app, ["cloud", "release", *sel, "--include-preserve", "--execute"])
    assert res.exit_code == 0, res.output
    assert _bare(kube.pod("shop", "web-7d9-abcde")) == _bare(before_pod)
    assert _bare(kube.node("worker-1")) == _bare(before_node)
    assert kube.policy("shop", "podmortem-quarantine-ir-2026-042") is None
    assert kube.policy("shop", "allow-web")["spec"]["podSelector"] == {  # type: ignore[index]
        "matchLabels": {"app": "web"}
    }
    assert verify_case(case.root).ok
    # kubernetes has no machine and needs the API.
    for bad, why in (
        (["--instance-id", "i-0123456789abcdef0"], "acts on no machine"),
        (["--node", "worker-1", "--no-kube"], "needs the Kubernetes API"),
    ):
        res = run(app, ["cloud", "plan", "kubernetes", "--cluster", "lab", *bad])
        assert isinstance(res.exception, InputError) and why in str(res.exception)

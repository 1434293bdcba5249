"""EKS against moto's real server (no boto3 mocks) plus the Kubernetes fake: the issue's
first Done-when item, then containment and release."""

from __future__ import annotations

from typing import Any

import pytest

from podmortem.case import Case, verify_case
from podmortem.cloud.executor import Procedure
from podmortem.cloud.kubernetes import KubernetesContainment
from podmortem.cloud.model import Status, Target
from podmortem.cloud.playbook import procedure
from podmortem.cloud.providers.aws import EksSteps, session_factory

from . import aws_world
from .k8s_server import FakeKube, kube_clients

QUIET = {Status.UNCHANGED, Status.NOT_APPLICABLE, Status.NOT_PERMITTED}


def _procedure(case: Case | None, kube: FakeKube | None) -> Procedure:
    k8s = KubernetesContainment(*kube_clients(kube.url)) if kube else None  # type: ignore[attr-defined]
    return Procedure(EksSteps(session_factory()), k8s, case=case)


def _world(kube: FakeKube) -> aws_world.EksWorld:
    world = aws_world.build()
    kube.add_node("ip-10-0-1-5.ec2.internal", f"aws:///us-east-1a/{world.instance}")
    kube.add_replicaset("shop", "web-7d9", {"app": "web", "pod-template-hash": "7d9"})
    kube.add_pod(
        "shop",
        "web-7d9-abcde",
        "ip-10-0-1-5.ec2.internal",
        {"app": "web", "pod-template-hash": "7d9", "tier": "frontend"},
        owner=("ReplicaSet", "web-7d9"),
    )
    kube.add_daemonset("kube-system", "aws-node", ["aws-node", "aws-network-policy-agent"])
    # Selects on a label the detach step keeps: it must be patched to exclude the pod.
    kube.add_policy(
        "shop",
        "allow-web",
        {"matchLabels": {"tier": "frontend"}},
        ingress=[{"from": [{"podSelector": {}}]}],
    )
    return world


def _assert_documented(reports: Any) -> None:
    specs = {s.id: set(s.api_calls) for s in procedure("eks")}
    for r in reports:
        made = {f"{c.service}.{c.method}" for c in r.calls}
        assert made <= specs[r.step_id], (r.step_id, made - specs[r.step_id])


def test_plan_then_preserve_then_nothing_to_do(aws_env: str, kube: FakeKube, case: Case) -> None:
    world = _world(kube)
    before = aws_world.state(world)
    proc = _procedure(case, kube)
    target = proc.resolve(Target("eks", world.cluster, pod="shop/web-7d9-abcde"))
    assert target.node == "ip-10-0-1-5.ec2.internal"
    assert target.instance == world.instance

    # plan: a dry run reads but never writes, in moto or in the API server.
    plan = proc.run(target, ("preserve", "contain"), execute=False)
    assert aws_world.state(world) == before
    assert not kube.writes()
    assert not [c for r in plan for c in r.calls if c.write]
    by_id = {r.step_id: r.outcome.status for r in plan}
    assert by_id["eks.termination-protection"] == Status.WOULD_CHANGE
    assert by_id["eks.scale-in-protection"] == Status.WOULD_CHANGE
    assert by_id["eks.snapshot-volumes"] == Status.WOULD_CHANGE
    assert by_id["k8s.cordon-node"] == Status.WOULD_CHANGE

    # preserve --execute
    reports = proc.run(target, ("preserve",), execute=True)
    _assert_documented(reports)
    after = aws_world.state(world)
    assert after["termination_protected"] is True
    assert after["scale_in_protected"] is True
    assert after["shutdown"] == "stop"
    assert after["suspended"] == ["AZRebalance", "ReplaceUnhealthy"]
    assert after["snapshots"] == sorted((v, case.case_id) for v in world.volumes)
    # contain steps were not run: the node is still schedulable and in service
    assert after["lifecycle"] == "InService"
    assert not kube.node("ip-10-0-1-5.ec2.internal")["spec"].get("unschedulable")
    status = {r.step_id: r.outcome.status for r in reports}
    # moto has no snapshot lock API: refused and recorded, as an account forbidding it
    assert status["eks.lock-snapshots"] == Status.NOT_PERMITTED
    assert status["eks.snapshot-volumes"] == Status.CHANGED
    pod = kube.pod("shop", "web-7d9-abcde")
    assert pod["metadata"]["labels"]["podmortem.io/case"] == "IR-2026-042"
    assert pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == (
        "false"
    )
    node = kube.node("ip-10-0-1-5.ec2.internal")
    assert node["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"

    # every step is in the custody log, with its calls, and the case verifies
    log = (case.root / "custody.jsonl").read_text()
    for r in reports:
        assert r.custody_hash
        assert f'"step":"{r.step_id}"' in log
    assert '"method":"create_snapshots"' in log
    assert verify_case(case.root).ok

    # second run: nothing to do, nothing written
    kube.clear()
    again = _procedure(Case.open(case.root), kube).run(target, ("preserve",), execute=True)
    assert {r.outcome.status for r in again} <= QUIET, [
        (r.step_id, r.outcome.status) for r in again if r.outcome.status not in QUIET
    ]
    assert not [c for r in again for c in r.calls if c.write and c.error is None]
    assert not kube.writes()
    assert aws_world.state(world)["snapshots"] == after["snapshots"]
    assert verify_case(case.root).ok


def test_contain_then_release_restores(aws_env: str, kube: FakeKube, case: Case) -> None:
    import boto3

    world = _world(kube)
    proc = _procedure(case, kube)
    target = proc.resolve(Target("eks", world.cluster, pod="shop/web-7d9-abcde"))
    reports = proc.run(target, ("contain",), execute=True)
    _assert_documented(reports)
    status = {r.step_id: r.outcome.status for r in reports}
    assert status == {
        "k8s.detach-from-controller": Status.CHANGED,
        "k8s.quarantine-network-policy": Status.CHANGED,
        "k8s.cordon-node": Status.CHANGED,
        "eks.scaling-standby": Status.CHANGED,
        "eks.isolation-security-group": Status.CHANGED,
        "eks.revoke-role-sessions": Status.CHANGED,
    }
    st = aws_world.state(world)
    assert st["lifecycle"] == "Standby"
    iso = next(r for r in reports if r.step_id == "eks.isolation-security-group")
    assert st["groups"] == [[iso.outcome.result["isolation_group"]]]
    # the swap went through the allow-all group first (to untrack flows), then isolation
    swaps = [
        c.params["Groups"] for c in iso.calls if c.method == "modify_network_interface_attribute"
    ]
    assert len(swaps) == 2 and swaps[1] == [iso.outcome.result["isolation_group"]]
    iam = boto3.client("iam")
    pol = iam.get_role_policy(RoleName="eks-node", PolicyName="podmortem-revoke-IR-2026-042")
    stmt = pol["PolicyDocument"]["Statement"][0]
    assert stmt["Effect"] == "Deny" and "aws:TokenIssueTime" in stmt["Condition"]["DateLessThan"]
    # Kubernetes: relabelled out of the ReplicaSet, quarantined, other policy excludes it
    pod = kube.pod("shop", "web-7d9-abcde")
    assert "app" not in pod["metadata"]["labels"]
    assert pod["metadata"]["labels"]["podmortem.io/quarantine"] == "IR-2026-042"
    np = kube.policy("shop", "podmortem-quarantine-ir-2026-042")
    assert np is not None
    assert np["spec"] == {
        "podSelector": {"matchLabels": {"podmortem.io/quarantine": "IR-2026-042"}},
        "policyTypes": ["Ingress", "Egress"],
    }
    allow = kube.policy("shop", "allow-web")
    assert allow is not None
    assert allow["spec"]["podSelector"]["matchExpressions"] == [
        {"key": "podmortem.io/quarantine", "operator": "DoesNotExist"}
    ]
    assert kube.node("ip-10-0-1-5.ec2.internal")["spec"]["unschedulable"] is True
    quarantine = next(r for r in reports if r.step_id == "k8s.quarantine-network-policy")
    assert quarantine.outcome.result["enforcer"] == "enforced by AWS VPC CNI network policy agent"

    # release from the custody log: everything contained is put back, newest first
    released = proc.release(target, execute=True)
    assert [r.outcome.status for r in released] == [Status.CHANGED] * 6
    assert released[0].step_id == "eks.revoke-role-sessions"
    st = aws_world.state(world)
    assert st["lifecycle"] == "InService"
    assert st["groups"] == [world.original_groups]
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role_policy(RoleName="eks-node", PolicyName="podmortem-revoke-IR-2026-042")
    pod = kube.pod("shop", "web-7d9-abcde")
    assert pod["metadata"]["labels"] == {
        "app": "web",
        "pod-template-hash": "7d9",
        "tier": "frontend",
    }
    assert kube.policy("shop", "podmortem-quarantine-ir-2026-042") is None
    assert "matchExpressions" not in kube.policy("shop", "allow-web")["spec"]["podSelector"]  # type: ignore[index]
    assert not kube.node("ip-10-0-1-5.ec2.internal")["spec"].get("unschedulable")
    # a second release has nothing left to undo
    assert proc.release(target, execute=True) == []
    assert verify_case(case.root).ok


def test_instance_of_another_cluster_is_refused(aws_env: str, case: Case) -> None:
    from podmortem.errors import InputError

    world = aws_world.build(cluster="prod")
    import boto3

    boto3.client("eks").create_cluster(
        name="other",
        roleArn="arn:aws:iam::123456789012:role/x",
        resourcesVpcConfig={"subnetIds": []},
    )
    proc = _procedure(case, None)
    with pytest.raises(InputError, match="no tag of EKS cluster"):
        proc.resolve(Target("eks", "other", instance=world.instance))


def test_auto_mode_refuses_eni_and_role_steps(aws_env: str, case: Case) -> None:
    world = aws_world.build()
    proc = _procedure(case, None)
    target = proc.resolve(Target("eks", world.cluster, instance=world.instance))
    target.extra["auto_mode"] = True  # moto's EKS has no computeConfig: set what AWS reports
    reports = {r.step_id: r for r in proc.run(target, ("contain",), execute=True)}
    for sid in ("eks.isolation-security-group", "eks.revoke-role-sessions"):
        assert reports[sid].outcome.status == Status.NOT_PERMITTED
        assert "Auto Mode" in reports[sid].outcome.reason
        assert reports[sid].calls == []
    # Kubernetes steps without API access are recorded as such, not silently skipped
    assert reports["k8s.cordon-node"].outcome.status == Status.NOT_APPLICABLE
    assert aws_world.state(world)["groups"] == [world.original_groups]

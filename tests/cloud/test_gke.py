"""GKE with the official google-cloud clients against a local REST server: the exact
requests each step sends, idempotency, Autopilot refusal, release."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from podmortem.case import Case, verify_case
from podmortem.cloud.executor import Procedure
from podmortem.cloud.kubernetes import KubernetesContainment
from podmortem.cloud.model import Status, Target
from podmortem.cloud.playbook import procedure

pytest.importorskip("google.cloud.compute_v1")
pytest.importorskip("google.cloud.container_v1")

from podmortem.cloud.providers.gcp import GkeSteps

from .gcp_server import CLUSTER, IGM, INSTANCE, LOC, ZONE, C, FakeGcp, K, P, clients
from .k8s_server import FakeKube, kube_clients

NODE = INSTANCE


@pytest.fixture
def gcp() -> Iterator[FakeGcp]:
    server = FakeGcp()
    server.url = server.start()  # type: ignore[attr-defined]
    yield server
    server.stop()


def _proc(gcp: FakeGcp, case: Case, kube: FakeKube | None = None) -> Procedure:
    steps = GkeSteps(clients(gcp.url), project=P, location=LOC)  # type: ignore[attr-defined]
    k8s = KubernetesContainment(*kube_clients(kube.url)) if kube else None  # type: ignore[attr-defined]
    return Procedure(steps, k8s, case=case)


def _writes(server: Any) -> list[tuple[str, str, Any]]:
    # listManagedInstances and entries:list are reads that the REST API spells as POST.
    return [
        (r.method, r.path, r.body)
        for r in server.writes()
        if not r.path.startswith("/v2/entries") and not r.path.endswith("ManagedInstances")
    ]


def _documented(reports: Any) -> None:
    specs = {s.id: set(s.api_calls) for s in procedure("gke")}
    for r in reports:
        made = {f"{c.service}.{c.method}" for c in r.calls}
        assert made <= specs[r.step_id], (r.step_id, made - specs[r.step_id])


def test_preserve_sends_exactly_the_documented_requests(
    gcp: FakeGcp, kube: FakeKube, case: Case
) -> None:
    kube.add_node(NODE, f"gce://{P}/{ZONE}/{INSTANCE}")
    proc = _proc(gcp, case, kube)
    target = proc.resolve(Target("gke", CLUSTER, node=NODE))
    assert (target.instance, target.zone) == (INSTANCE, ZONE)

    gcp.clear()
    plan = proc.run(target, ("preserve", "contain"), execute=False)
    assert _writes(gcp) == [] and not kube.writes()
    assert {r.step_id: r.outcome.status for r in plan}["gke.snapshot-disks"] == Status.WOULD_CHANGE

    gcp.clear()
    reports = proc.run(target, ("preserve",), execute=True)
    _documented(reports)
    assert all(r.outcome.status in (Status.CHANGED, Status.NOT_APPLICABLE) for r in reports), [
        (r.step_id, r.outcome.status, r.outcome.reason) for r in reports
    ]
    inst = f"{C}/zones/{ZONE}/instances/{INSTANCE}"
    snap_label = {"podmortem-case": "ir-2026-042"}
    writes = _writes(gcp)
    assert writes == [
        ("POST", inst + "/setDeletionProtection", None),
        (
            "POST",
            f"{C}/zones/{ZONE}/instanceGroupManagers/{IGM}/abandonInstances",
            {"instances": [gcp.instance["selfLink"]]},
        ),
        (
            "POST",
            K + "/nodePools/pool-1:setManagement",
            {"management": {"autoUpgrade": True}},
        ),  # autoRepair false: omitted as default
        (
            "POST",
            f"{C}/zones/{ZONE}/disks/{INSTANCE}/createSnapshot",
            {
                "name": f"pm-ir-2026-042-{INSTANCE}",
                "labels": snap_label,
                "description": f"podmortem case IR-2026-042 instance {INSTANCE}",
            },
        ),
        (
            "POST",
            f"{C}/zones/{ZONE}/disks/pvc-data-1/createSnapshot",
            {
                "name": "pm-ir-2026-042-pvc-data-1",
                "labels": snap_label,
                "description": f"podmortem case IR-2026-042 instance {INSTANCE}",
            },
        ),
    ]
    dp = next(r for r in gcp.requests if r.path.endswith("/setDeletionProtection"))
    assert dp.query["deletionProtection"] == ["true"]
    assert gcp.instance["deletionProtection"] is True and gcp.managed == []
    assert gcp.pool["management"].get("autoRepair", False) is False
    assert verify_case(case.root).ok

    gcp.clear()
    kube.clear()
    again = proc.run(target, ("preserve",), execute=True)
    assert {r.outcome.status for r in again} <= {Status.UNCHANGED, Status.NOT_APPLICABLE}
    assert _writes(gcp) == [] and not kube.writes()


def test_contain_firewall_keeps_control_plane_path_and_releases(gcp: FakeGcp, case: Case) -> None:
    proc = _proc(gcp, case)
    target = proc.resolve(Target("gke", CLUSTER, instance=INSTANCE, zone=ZONE))
    gcp.clear()
    reports = proc.run(target, ("contain",), execute=True)
    _documented(reports)
    fw = {r.step_id: r for r in reports}["gke.firewall-isolation"]
    assert fw.outcome.status == Status.CHANGED
    inserted = [r.body for r in gcp.writes() if r.path == f"{C}/global/firewalls"]
    net = f"projects/{P}/global/networks/default"
    common = {
        "network": net,
        "targetTags": ["pm-quarantine-ir-2026-042"],
        "description": "podmortem case IR-2026-042",
    }
    assert inserted == [
        {
            **common,
            "name": "pm-cp-out-ir-2026-042",
            "direction": "EGRESS",
            "priority": 5,
            "destinationRanges": ["172.16.0.0/28", "34.76.10.20/32"],
            "allowed": [{"IPProtocol": "tcp", "ports": ["443"]}],
        },
        {
            **common,
            "name": "pm-cp-in-ir-2026-042",
            "direction": "INGRESS",
            "priority": 5,
            "sourceRanges": ["172.16.0.0/28"],
            "allowed": [{"IPProtocol": "tcp", "ports": ["443", "10250"]}],
        },
        {
            **common,
            "name": "pm-deny-in-ir-2026-042",
            "direction": "INGRESS",
            "priority": 10,
            "sourceRanges": ["0.0.0.0/0"],
            "denied": [{"IPProtocol": "all"}],
        },
        {
            **common,
            "name": "pm-deny-out-ir-2026-042",
            "direction": "EGRESS",
            "priority": 10,
            "destinationRanges": ["0.0.0.0/0"],
            "denied": [{"IPProtocol": "all"}],
        },
    ]
    tags = next(r for r in gcp.writes() if r.path.endswith("/setTags"))
    assert tags.body == {
        "items": ["gke-prod-node", "pm-quarantine-ir-2026-042"],
        "fingerprint": "fp-1",
    }
    gcp.clear()
    assert {r.outcome.status for r in proc.run(target, ("contain",), execute=True)} <= {
        Status.UNCHANGED,
        Status.NOT_APPLICABLE,
    }
    assert _writes(gcp) == []

    released = proc.release(target, execute=True)
    assert [r.outcome.status for r in released] == [Status.CHANGED]
    assert gcp.instance["tags"]["items"] == ["gke-prod-node"]
    assert gcp.firewalls == {}
    assert proc.release(target, execute=True) == []
    assert verify_case(case.root).ok


def test_autopilot_refuses_auto_repair_change(case: Case) -> None:
    server = FakeGcp(autopilot=True)
    server.url = server.start()  # type: ignore[attr-defined]
    try:
        proc = _proc(server, case)
        target = proc.resolve(Target("gke", CLUSTER, instance=INSTANCE, zone=ZONE))
        reports = {r.step_id: r for r in proc.run(target, ("preserve",), execute=True)}
        assert reports["gke.auto-repair-off"].outcome.status == Status.NOT_PERMITTED
        assert "Autopilot" in reports["gke.auto-repair-off"].outcome.reason
        # the other steps still ran
        assert reports["gke.snapshot-disks"].outcome.status == Status.CHANGED
        # and when the API itself refuses (a cluster we did not know was Autopilot)
        target.extra["autopilot"] = False
        server.pool["management"]["autoRepair"] = True
        again = {r.step_id: r for r in proc.run(target, ("preserve",), execute=True)}
        assert again["gke.auto-repair-off"].outcome.status == Status.NOT_PERMITTED
        assert "FAILED_PRECONDITION" in again["gke.auto-repair-off"].outcome.reason
    finally:
        server.stop()


def test_instance_of_another_cluster_is_refused(gcp: FakeGcp, case: Case) -> None:
    from podmortem.errors import InputError

    gcp.instance["labels"]["goog-k8s-cluster-name"] = "other"
    with pytest.raises(InputError, match="no label of GKE cluster"):
        _proc(gcp, case).resolve(Target("gke", CLUSTER, instance=INSTANCE, zone=ZONE))


def test_collect_logs_pages_cloud_logging_into_the_case(case: Case) -> None:
    from datetime import UTC, datetime

    from podmortem.cloud.logs import collect

    server = FakeGcp(log_entries=120)
    server.url = server.start()  # type: ignore[attr-defined]
    try:
        steps = GkeSteps(clients(server.url), project=P, location=LOC)  # type: ignore[attr-defined]
        since = datetime(2026, 11, 26, 9, tzinfo=UTC)
        until = datetime(2026, 11, 26, 11, tzinfo=UTC)
        got = collect(
            case,
            provider="gke",
            cluster=CLUSTER,
            source="gke-logentry-array",
            pages=lambda calls: steps.audit_log_pages(calls, CLUSTER, since, until, 50),
            since=since,
            until=until,
        )
        assert (got.pages, got.records) == (3, 120)
        lists = [r for r in server.requests if r.path == "/v2/entries:list"]
        assert [r.body.get("pageToken") for r in lists] == [None, "50", "100"]
        assert lists[0].body["resourceNames"] == [f"projects/{P}"]
        assert 'resource.type="k8s_cluster"' in lists[0].body["filter"]
        assert 'resource.labels.cluster_name="prod"' in lists[0].body["filter"]
        assert 'timestamp>="2026-11-26T09:00:00Z"' in lists[0].body["filter"]
        import json

        ids = []
        for a in Case.open(case.root).artifacts:
            ids += [e["insertId"] for e in json.loads((case.root / a.path).read_text())]
        assert ids == [f"id-{i}" for i in range(120)]
        assert verify_case(case.root).ok
    finally:
        server.stop()


def test_logging_filter_refuses_a_hostile_cluster_name(gcp: FakeGcp) -> None:
    from datetime import UTC, datetime

    from podmortem.cloud.calls import CallLog
    from podmortem.errors import InputError

    steps = GkeSteps(clients(gcp.url), project=P, location=LOC)  # type: ignore[attr-defined]
    t = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InputError):
        next(iter(steps.audit_log_pages(CallLog(execute=False), 'x" OR true OR "', t, t)))

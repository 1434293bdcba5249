"""AKS with the official azure-mgmt-* clients against a local ARM server: the exact
requests, idempotency, a locked node resource group, release."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from podmortem.case import Case, verify_case
from podmortem.cloud.executor import Procedure
from podmortem.cloud.kubernetes import KubernetesContainment
from podmortem.cloud.model import Status, Target
from podmortem.cloud.playbook import procedure

pytest.importorskip("azure.mgmt.compute")

from podmortem.cloud.providers.azure import AksSteps

from .azure_server import (
    AKS_NSG,
    CLUSTER,
    DATA_DISK,
    NODE_RG,
    NRG,
    OS_DISK,
    RG,
    SUB,
    VM,
    VM_ID,
    VMSS,
    FakeAzure,
    clients,
)
from .k8s_server import FakeKube, kube_clients

NODE = f"{VMSS}00000{VM_ID}"
PROVIDER_ID = (
    f"azure:///subscriptions/{SUB}/resourceGroups/{NODE_RG.lower()}/providers/"
    f"Microsoft.Compute/virtualMachineScaleSets/{VMSS}/virtualMachines/{VM_ID}"
)


@pytest.fixture
def azure() -> Iterator[FakeAzure]:
    server = FakeAzure()
    server.url = server.start()  # type: ignore[attr-defined]
    yield server
    server.stop()


def _proc(server: FakeAzure, case: Case, kube: FakeKube | None = None) -> Procedure:
    k8s = KubernetesContainment(*kube_clients(kube.url)) if kube else None  # type: ignore[attr-defined]
    return Procedure(AksSteps(clients(server.url), resource_group=RG), k8s, case=case)  # type: ignore[attr-defined]


def _writes(server: Any) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in server.writes() if "/query" not in r.path]


def _documented(reports: Any) -> None:
    specs = {s.id: set(s.api_calls) for s in procedure("aks")}
    for r in reports:
        made = {f"{c.service}.{c.method}" for c in r.calls}
        assert made <= specs[r.step_id], (r.step_id, made - specs[r.step_id])


def test_preserve_sends_exactly_the_documented_requests(
    azure: FakeAzure, kube: FakeKube, case: Case
) -> None:
    kube.add_node(NODE, PROVIDER_ID)
    proc = _proc(azure, case, kube)
    target = proc.resolve(Target("aks", CLUSTER, node=NODE))
    assert target.instance == f"{VMSS}/{VM_ID}"

    azure.clear()
    proc.run(target, ("preserve", "contain"), execute=False)
    assert _writes(azure) == [] and not kube.writes()

    azure.clear()
    reports = proc.run(target, ("preserve",), execute=True)
    _documented(reports)
    snaps = f"{NRG}/providers/Microsoft.Compute/snapshots"
    assert _writes(azure) == [
        ("PUT", VM),
        ("PUT", f"{snaps}/pm-IR-2026-042-{VMSS}_{VM_ID}_osdisk"),
        ("PUT", f"{snaps}/pm-IR-2026-042-pvc-data-3"),
    ]
    put_vm, put_os, put_data = azure.writes()
    assert all("api-version" in r.query for r in azure.writes())
    assert put_vm.body["properties"]["protectionPolicy"] == {
        "protectFromScaleIn": True,
        "protectFromScaleSetActions": True,
    }
    # the rest of the instance model went back unchanged (GET, modify, PUT)
    assert put_vm.body["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"] == OS_DISK
    assert put_os.body == {
        "location": "westeurope",
        "tags": {"podmortem-case": "IR-2026-042", "podmortem-source": f"{VMSS}/{VM_ID}"},
        "properties": {
            "creationData": {"createOption": "Copy", "sourceResourceId": OS_DISK},
            "incremental": False,
        },
    }
    assert put_data.body["properties"]["creationData"]["sourceResourceId"] == DATA_DISK
    assert verify_case(case.root).ok

    azure.clear()
    kube.clear()
    again = proc.run(target, ("preserve",), execute=True)
    assert {r.outcome.status for r in again} <= {Status.UNCHANGED, Status.NOT_APPLICABLE}
    assert _writes(azure) == [] and not kube.writes()


def test_nsg_isolation_keeps_control_plane_and_releases(azure: FakeAzure, case: Case) -> None:
    proc = _proc(azure, case)
    target = proc.resolve(Target("aks", CLUSTER, instance=f"{VMSS}/{VM_ID}"))
    azure.clear()
    reports = proc.run(target, ("contain",), execute=True)
    _documented(reports)
    nsg_path = f"{NRG}/providers/Microsoft.Network/networkSecurityGroups/pm-isolate-IR-2026-042"
    assert _writes(azure) == [("PUT", nsg_path), ("PUT", VM)]
    put_nsg, put_vm = azure.writes()
    rules = {r["name"]: r["properties"] for r in put_nsg.body["properties"]["securityRules"]}
    assert rules["pm-allow-control-plane-tcp"] == {
        "protocol": "Tcp",
        "sourcePortRange": "*",
        "destinationPortRanges": ["443", "9000"],
        "sourceAddressPrefix": "*",
        "destinationAddressPrefix": "AzureCloud.westeurope",
        "access": "Allow",
        "priority": 100,
        "direction": "Outbound",
    }
    assert rules["pm-deny-all-in"]["access"] == "Deny"
    assert rules["pm-deny-all-out"]["priority"] == 4000
    nic = put_vm.body["properties"]["networkProfileConfiguration"][
        "networkInterfaceConfigurations"
    ][0]
    assert nic["properties"]["networkSecurityGroup"] == {"id": nsg_path}

    azure.clear()
    assert {r.outcome.status for r in proc.run(target, ("contain",), execute=True)} <= {
        Status.UNCHANGED,
        Status.NOT_APPLICABLE,
    }
    assert _writes(azure) == []

    released = proc.release(target, execute=True)
    assert [r.outcome.status for r in released] == [Status.CHANGED]
    nic = azure.vm["properties"]["networkProfileConfiguration"]["networkInterfaceConfigurations"][0]
    assert nic["properties"]["networkSecurityGroup"] == {"id": AKS_NSG}
    assert verify_case(case.root).ok


def test_locked_node_resource_group_is_recorded_and_the_rest_continue(case: Case) -> None:
    server = FakeAzure(locked=True)
    server.url = server.start()  # type: ignore[attr-defined]
    try:
        proc = _proc(server, case)
        target = proc.resolve(Target("aks", CLUSTER, instance=f"{VMSS}/{VM_ID}"))
        assert target.extra["automatic"] is True
        reports = {r.step_id: r for r in proc.run(target, ("preserve",), execute=True)}
        protect = reports["aks.scale-set-protection"]
        assert protect.outcome.status == Status.NOT_PERMITTED
        assert "DenyAssignmentAuthorizationFailed" in protect.outcome.reason
        snap = reports["aks.snapshot-disks"]
        assert snap.outcome.status == Status.NOT_PERMITTED  # ScopeLocked, after being tried
        assert [c.method for c in snap.calls][-1] == "snapshots.begin_create_or_update"
        log = (case.root / "custody.jsonl").read_text()
        assert "DenyAssignmentAuthorizationFailed" in log and "ScopeLocked" in log
    finally:
        server.stop()


def test_node_of_another_cluster_is_refused(azure: FakeAzure, kube: FakeKube, case: Case) -> None:
    from podmortem.errors import InputError

    kube.add_node(NODE, PROVIDER_ID.replace(NODE_RG.lower(), "mc_other_rg"))
    with pytest.raises(InputError, match="not in prod's node resource group"):
        _proc(azure, case, kube).resolve(Target("aks", CLUSTER, node=NODE))


def test_collect_logs_pages_log_analytics_into_the_case(case: Case) -> None:
    import json
    from datetime import UTC, datetime

    from podmortem.cloud.logs import collect

    from .azure_server import MC, WORKSPACE

    server = FakeAzure(audit_rows=25)
    url = server.start()
    try:
        steps = AksSteps(clients(url), resource_group=RG)
        since = datetime(2026, 11, 26, 9, tzinfo=UTC)
        until = datetime(2026, 11, 26, 11, tzinfo=UTC)

        def pages(calls: Any) -> Any:
            return steps.audit_log_pages(
                calls,
                workspace_id=WORKSPACE,
                cluster_id=MC,
                table="AKSAudit",
                since=since,
                until=until,
                page_size=10,
            )

        got = collect(
            case,
            provider="aks",
            cluster=CLUSTER,
            source="aks-log-analytics-AKSAudit",
            pages=pages,
            since=since,
            until=until,
        )
        assert (got.pages, got.records) == (3, 25)
        queries = [r.body for r in server.requests if r.path.endswith("/query")]
        assert len(queries) == 3
        assert queries[0]["query"] == (
            "AKSAudit | where TimeGenerated >= datetime(2026-11-26T09:00:00.000000Z) and "
            "TimeGenerated < datetime(2026-11-26T11:00:00.000000Z) | where _ResourceId =~ "
            f"'{MC}' | order by TimeGenerated asc, AuditId asc, Stage asc | serialize "
            "PodmortemRow = row_number() | where PodmortemRow > 0 and PodmortemRow <= 10"
        )
        assert queries[0]["timespan"].startswith("2026-11-26T09:00:00")
        ids = []
        for a in Case.open(case.root).artifacts:
            ids += [r["AuditId"] for r in json.loads((case.root / a.path).read_text())]
        assert ids == [f"audit-{i:05d}" for i in range(25)]
    finally:
        server.stop()

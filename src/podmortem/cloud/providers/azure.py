"""Azure Kubernetes Service through azure-mgmt-compute, azure-mgmt-network,
azure-mgmt-containerservice and azure-monitor-query.

The node is a Virtual Machine Scale Set instance in the cluster's node resource group.
Clients are injected (:class:`AzureClients`); :func:`default_clients` builds them with
``DefaultAzureCredential`` (environment, managed identity, Azure CLI login...) against the
public ARM endpoint over verified TLS.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from podmortem.cloud import labels as names
from podmortem.cloud.calls import CallLog
from podmortem.cloud.executor import StepContext, StepFn, UndoFn
from podmortem.cloud.model import Outcome, Status, Target
from podmortem.cloud.readiness import kubernetes_minor
from podmortem.errors import CapabilityUnavailable, InputError

# Log Analytics tables that hold the API server audit log, and the columns that order a
# page deterministically (ties on TimeGenerated are common: one request, three stages).
AUDIT_TABLES = {
    "AKSAudit": ("_ResourceId", "TimeGenerated asc, AuditId asc, Stage asc"),
    "AKSAuditAdmin": ("_ResourceId", "TimeGenerated asc, AuditId asc, Stage asc"),
    "AzureDiagnostics": ("ResourceId", "TimeGenerated asc, _ItemId asc"),
}


@dataclass
class AzureClients:
    compute: Any  # ComputeManagementClient
    network: Any  # NetworkManagementClient
    containers: Any  # ContainerServiceClient
    logs: Any | None = None  # LogsQueryClient


def default_clients(subscription: str) -> AzureClients:
    try:
        from azure.identity import DefaultAzureCredential
        from azure.mgmt.compute import ComputeManagementClient
        from azure.mgmt.containerservice import ContainerServiceClient
        from azure.mgmt.network import NetworkManagementClient
        from azure.monitor.query import LogsQueryClient
    except ImportError as exc:  # pragma: no cover - optional SDKs
        raise CapabilityUnavailable(
            "the azure-mgmt-* / azure-monitor-query SDKs are missing"
        ) from exc
    cred = DefaultAzureCredential()
    return AzureClients(
        compute=ComputeManagementClient(cred, subscription),
        network=NetworkManagementClient(cred, subscription),
        containers=ContainerServiceClient(cred, subscription),
        logs=LogsQueryClient(cred),
    )


def _not_found(exc: Exception) -> bool:
    return type(exc).__name__ == "ResourceNotFoundError" or getattr(exc, "status_code", 0) == 404


def _automatic(mc: Any) -> bool:
    """An AKS Automatic cluster (its SKU name), whose node resource group is locked."""
    sku = getattr(mc.sku.name, "value", mc.sku.name) if mc.sku else None
    return str(sku).lower() == "automatic"


def _last(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


class AksSteps:
    """The ``aks.*`` steps for one cluster (``subscription``, ``resource_group``)."""

    def __init__(self, clients: AzureClients, *, resource_group: str | None):
        self.c = clients
        self.resource_group = resource_group
        self.steps: dict[str, StepFn] = {
            "aks.scale-set-protection": self.scale_set_protection,
            "aks.snapshot-disks": self.snapshot_disks,
            "aks.nsg-isolation": self.nsg_isolation,
        }
        self.undos: dict[str, UndoFn] = {
            "aks.scale-set-protection": self.undo_scale_set_protection,
            "aks.nsg-isolation": self.undo_nsg_isolation,
        }

    def _operation(self, service: str, method: str) -> Any:
        """``self.c.<service>.<group>.<operation>`` for a method named ``group.operation``."""
        op = getattr(self.c, service)
        for part in method.split("."):
            op = getattr(op, part)
        return op

    def _read(self, calls: CallLog, service: str, method: str, **params: Any) -> Any:
        return calls.read(service, method, self._operation(service, method), **params)

    def _write(self, calls: CallLog, service: str, method: str, **params: Any) -> Any:
        return calls.write(service, method, self._operation(service, method), **params)

    def _find(self, calls: CallLog, service: str, method: str, **params: Any) -> Any:
        """The resource, or None when ARM answers 404."""
        op = self._operation(service, method)
        return calls.find(service, method, op, missing=_not_found, **params)

    def managed_cluster(self, calls: CallLog, cluster: str) -> Any:
        if not self.resource_group:
            raise InputError("AKS needs --resource-group (the cluster's resource group)")
        return self._read(
            calls,
            "containers",
            "managed_clusters.get",
            resource_group_name=self.resource_group,
            resource_name=cluster,
        )

    # ------------------------------------------------------------------ resolve

    def resolve(self, target: Target, calls: CallLog) -> None:
        mc = self.managed_cluster(calls, target.cluster)
        node_rg = str(mc.node_resource_group)
        target.extra["cluster_id"] = mc.id
        target.extra["location"] = mc.location
        # AKS Automatic locks the node resource group: writes there will be refused.
        target.extra["automatic"] = _automatic(mc)
        recorded = target.extra.get("node_resource_group")
        if recorded and str(recorded).lower() != node_rg.lower():
            raise InputError(
                f"node {target.node} is in resource group {recorded}, not in {target.cluster}'s"
                f" node resource group {node_rg}"
            )
        target.extra["node_resource_group"] = node_rg
        if target.instance is not None and (
            target.instance.count("/") != 1 or not target.instance.split("/")[1].isdigit()
        ):
            raise InputError(
                "AKS --instance-id is <scale set name>/<instance id>, e.g. aks-x-vmss/3"
            )

    def _vm_ref(self, ctx: StepContext) -> dict[str, str]:
        vmss, instance_id = str(ctx.target.instance).split("/", 1)
        return {
            "resource_group_name": str(ctx.target.extra["node_resource_group"]),
            "vm_scale_set_name": vmss,
            "instance_id": instance_id,
        }

    def _vm(self, ctx: StepContext) -> Any:
        return self._read(
            ctx.calls,
            "compute",
            "virtual_machine_scale_set_vms.get",
            **self._vm_ref(ctx),
        )

    def _update_vm(self, ctx: StepContext, vm: Any) -> Any:
        # The documented pattern: GET the instance model, change it, PUT it back whole.
        return self._write(
            ctx.calls,
            "compute",
            "virtual_machine_scale_set_vms.begin_update",
            **self._vm_ref(ctx),
            parameters=vm,
        )

    # --------------------------------------------------------------- protection

    def scale_set_protection(self, ctx: StepContext) -> Outcome:
        from azure.mgmt.compute.models import VirtualMachineScaleSetVMProtectionPolicy

        vm = self._vm(ctx)
        pp = vm.protection_policy
        have = (
            bool(pp and pp.protect_from_scale_in),
            bool(pp and pp.protect_from_scale_set_actions),
        )
        if have == (True, True):
            return Outcome(
                Status.UNCHANGED, "already protected from scale-in and scale-set actions"
            )
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, "would protect from scale-in and scale-set actions")
        vm.protection_policy = VirtualMachineScaleSetVMProtectionPolicy(
            protect_from_scale_in=True, protect_from_scale_set_actions=True
        )
        self._update_vm(ctx, vm)
        return Outcome(
            Status.CHANGED,
            "instance protected",
            undo={"scale_in": have[0], "scale_set_actions": have[1]},
        )

    def undo_scale_set_protection(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        from azure.mgmt.compute.models import VirtualMachineScaleSetVMProtectionPolicy

        vm = self._vm(ctx)
        vm.protection_policy = VirtualMachineScaleSetVMProtectionPolicy(
            protect_from_scale_in=bool(saved.get("scale_in")),
            protect_from_scale_set_actions=bool(saved.get("scale_set_actions")),
        )
        self._update_vm(ctx, vm)
        return Outcome(Status.CHANGED, "protection policy restored")

    # ---------------------------------------------------------------- snapshots

    def snapshot_disks(self, ctx: StepContext) -> Outcome:
        from azure.mgmt.compute.models import CreationData, Snapshot, SnapshotProperties

        vm = self._vm(ctx)
        sp = vm.storage_profile
        disks: list[str] = []
        if sp and sp.os_disk and sp.os_disk.managed_disk and sp.os_disk.managed_disk.id:
            disks.append(str(sp.os_disk.managed_disk.id))
        for d in (sp.data_disks if sp else None) or []:
            if d.managed_disk and d.managed_disk.id:
                disks.append(str(d.managed_disk.id))
        if not disks:
            return Outcome(Status.NOT_APPLICABLE, "the instance has no managed disks")
        rg = str(ctx.target.extra["node_resource_group"])
        missing: list[tuple[str, str]] = []
        for disk_id in disks:
            snap = names.azure_name("pm", f"{ctx.case_id}-{_last(disk_id)}")
            found = self._find(
                ctx.calls, "compute", "snapshots.get", resource_group_name=rg, snapshot_name=snap
            )
            if found is None:
                missing.append((disk_id, snap))
        if not missing:
            return Outcome(Status.UNCHANGED, f"{len(disks)} disk(s) already snapshotted")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would snapshot {[_last(d) for d, _ in missing]}")
        for disk_id, snap in missing:
            self._write(
                ctx.calls,
                "compute",
                "snapshots.begin_create_or_update",
                resource_group_name=rg,
                snapshot_name=snap,
                snapshot=Snapshot(
                    location=vm.location,
                    properties=SnapshotProperties(
                        creation_data=CreationData(
                            create_option="Copy", source_resource_id=disk_id
                        ),
                        incremental=False,
                    ),
                    tags={
                        "podmortem-case": ctx.case_id[:256],
                        "podmortem-source": str(ctx.target.instance),
                    },
                ),
            )
        return Outcome(
            Status.CHANGED,
            f"snapshotted {[_last(d) for d, _ in missing]}",
            result={"snapshots": [s for _, s in missing]},
        )

    # ---------------------------------------------------------------------- NSG

    def nsg_rules(self, location: str) -> list[dict[str, Any]]:
        """Deny everything at priority 4000 (the defaults, 65000+, allow the VNet and the
        load balancer); above it, keep the node's outbound control-plane path: HTTPS and
        the tunnel ports (konnectivity/tunnelfront 9000/TCP, legacy 1194/UDP) to Azure."""
        tag = f"AzureCloud.{location}" if location else "AzureCloud"
        common = {
            "source_port_range": "*",
            "source_address_prefix": "*",
            "destination_address_prefix": "*",
        }
        return [
            {
                **common,
                "name": "pm-allow-control-plane-tcp",
                "priority": 100,
                "direction": "Outbound",
                "access": "Allow",
                "protocol": "Tcp",
                "destination_address_prefix": tag,
                "destination_port_ranges": ["443", "9000"],
            },
            {
                **common,
                "name": "pm-allow-control-plane-udp",
                "priority": 110,
                "direction": "Outbound",
                "access": "Allow",
                "protocol": "Udp",
                "destination_address_prefix": tag,
                "destination_port_range": "1194",
            },
            {
                **common,
                "name": "pm-deny-all-out",
                "priority": 4000,
                "direction": "Outbound",
                "access": "Deny",
                "protocol": "*",
                "destination_port_range": "*",
            },
            {
                **common,
                "name": "pm-deny-all-in",
                "priority": 4000,
                "direction": "Inbound",
                "access": "Deny",
                "protocol": "*",
                "destination_port_range": "*",
            },
        ]

    def nsg_isolation(self, ctx: StepContext) -> Outcome:
        from azure.mgmt.compute.models import SubResource

        rg = str(ctx.target.extra["node_resource_group"])
        name = names.azure_name("pm-isolate", ctx.case_id)
        vm = self._vm(ctx)
        nics = list(
            (vm.network_profile_configuration.network_interface_configurations or [])
            if vm.network_profile_configuration
            else []
        )
        if not nics:
            return Outcome(Status.NOT_APPLICABLE, "the instance model has no NIC configuration")
        nsg = self._find(
            ctx.calls,
            "network",
            "network_security_groups.get",
            resource_group_name=rg,
            network_security_group_name=name,
        )
        nsg_id: str | None = None if nsg is None else str(nsg.id)
        current = {
            n.name: (n.network_security_group.id if n.network_security_group else None)
            for n in nics
        }
        if nsg_id and all(v and v.lower() == nsg_id.lower() for v in current.values()):
            return Outcome(Status.UNCHANGED, f"already behind {name}")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would put {sorted(current)} behind {name}")
        if nsg_id is None:
            from azure.mgmt.network.models import (
                NetworkSecurityGroup,
                NetworkSecurityGroupPropertiesFormat,
                SecurityRule,
            )

            created = self._write(
                ctx.calls,
                "network",
                "network_security_groups.begin_create_or_update",
                resource_group_name=rg,
                network_security_group_name=name,
                parameters=NetworkSecurityGroup(
                    location=vm.location,
                    tags={"podmortem-case": ctx.case_id[:256]},
                    properties=NetworkSecurityGroupPropertiesFormat(
                        security_rules=[SecurityRule(**r) for r in self.nsg_rules(vm.location)]
                    ),
                ),
            )
            nsg_id = str(created.id)
        for n in nics:
            n.network_security_group = SubResource(id=nsg_id)
        self._update_vm(ctx, vm)
        return Outcome(
            Status.CHANGED,
            f"{len(nics)} NIC configuration(s) behind {name}",
            undo={"nics": current},
            result={"nsg": nsg_id},
        )

    def undo_nsg_isolation(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        from azure.mgmt.compute.models import SubResource

        before = dict(saved.get("nics") or {})
        vm = self._vm(ctx)
        for n in vm.network_profile_configuration.network_interface_configurations or []:
            if n.name in before:
                prev = before[n.name]
                n.network_security_group = SubResource(id=prev) if prev else None
        self._update_vm(ctx, vm)
        return Outcome(Status.CHANGED, "previous security groups restored (isolation NSG kept)")

    # --------------------------------------------------------------------- logs

    def audit_query(
        self,
        *,
        table: str,
        cluster_id: str,
        since: datetime,
        until: datetime,
        offset: int,
        size: int,
    ) -> str:
        if table not in AUDIT_TABLES:
            raise InputError(f"table must be one of {sorted(AUDIT_TABLES)}")
        if "'" in cluster_id or "\\" in cluster_id:
            raise InputError("cluster resource id cannot be quoted in a query")
        rid, order = AUDIT_TABLES[table]

        def kql(t: datetime) -> str:
            return t.astimezone(UTC).strftime("datetime(%Y-%m-%dT%H:%M:%S.%fZ)")

        cat = (
            " | where Category in ('kube-audit', 'kube-audit-admin')"
            if table == "AzureDiagnostics"
            else ""
        )
        # Pages by row number over a total order: stable across calls, no duplicates or
        # gaps when many rows share a timestamp (keyset paging on time alone loses them).
        return (
            f"{table} | where TimeGenerated >= {kql(since)} and TimeGenerated < {kql(until)}"
            f" | where {rid} =~ '{cluster_id}'{cat} | order by {order}"
            f" | serialize PodmortemRow = row_number()"
            f" | where PodmortemRow > {offset} and PodmortemRow <= {offset + size}"
        )

    def audit_log_pages(
        self,
        calls: CallLog,
        *,
        workspace_id: str,
        cluster_id: str,
        table: str,
        since: datetime,
        until: datetime,
        page_size: int = 5000,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of rows (column name -> value) from the workspace."""
        if self.c.logs is None:
            raise CapabilityUnavailable("no Log Analytics client configured")
        offset = 0
        while True:
            query = self.audit_query(
                table=table,
                cluster_id=cluster_id,
                since=since,
                until=until,
                offset=offset,
                size=page_size,
            )
            resp = self._read(
                calls,
                "logs",
                "query_workspace",
                workspace_id=workspace_id,
                query=query,
                timespan=(since, until),
            )
            if getattr(resp, "status", None) is not None and str(resp.status).endswith("PARTIAL"):
                raise InputError(f"partial Log Analytics result: {resp.partial_error}")
            rows: list[dict[str, Any]] = []
            for tbl in resp.tables:
                cols = [str(c) for c in tbl.columns]
                rows += [dict(zip(cols, list(r), strict=False)) for r in tbl.rows]
            yield rows
            if len(rows) < page_size:
                return
            offset += page_size


def readiness_facts(
    steps: AksSteps, calls: CallLog, target: Target
) -> tuple[dict[str, Any], dict[str, str]]:
    facts: dict[str, Any] = {}
    notes: dict[str, str] = {}
    mc = steps.managed_cluster(calls, target.cluster)
    np = mc.network_profile.network_policy if mc.network_profile else None
    facts["network_policy_enforced"] = str(getattr(np, "value", np) or "none").lower() in (
        "calico",
        "azure",
        "cilium",
    )
    automatic = _automatic(mc)
    facts["containment_permitted"] = not automatic
    if automatic:
        notes["containment_permitted"] = "AKS Automatic locks the node resource group"
    facts["node_repair_controllable"] = False
    notes["node_repair_controllable"] = "AKS node auto-repair is always on and cannot be paused"
    facts["kubernetes_minor"] = kubernetes_minor(
        str(mc.current_kubernetes_version or mc.kubernetes_version or "")
    )
    try:
        enabled = _diagnostic_categories(steps, calls, str(mc.id))
        facts["audit_logging"] = bool(enabled & {"kube-audit", "kube-audit-admin"})
        facts["audit_reads_logged"] = "kube-audit" in enabled
    except Exception as exc:
        notes["audit_logging"] = f"diagnostic settings not readable: {exc}"[:300]
    return facts, notes


DIAGNOSTIC_API = "2021-05-01-preview"


def _diagnostic_categories(steps: AksSteps, calls: CallLog, resource_id: str) -> set[str]:
    """Enabled log categories of the cluster's diagnostic settings. azure-mgmt-monitor 7
    dropped the diagnostic-settings operations, so the documented REST call goes through
    the container service client's own pipeline (same credential, retries, TLS)."""
    from azure.core.rest import HttpRequest

    if not resource_id.startswith("/subscriptions/") or "?" in resource_id:
        raise InputError(f"unexpected cluster resource id {resource_id[:200]!r}")
    url = f"{resource_id}/providers/Microsoft.Insights/diagnosticSettings"

    def send(url: str, api_version: str) -> Any:
        resp = steps.c.containers.send_request(
            HttpRequest("GET", url, params={"api-version": api_version})
        )
        resp.raise_for_status()
        return resp.json()

    body = calls.read(
        "monitor", "diagnostic_settings.list", send, url=url, api_version=DIAGNOSTIC_API
    )
    enabled: set[str] = set()
    for setting in (body or {}).get("value") or []:
        for log in (setting.get("properties") or {}).get("logs") or []:
            if log.get("enabled") and log.get("category"):
                enabled.add(str(log["category"]))
            if log.get("enabled") and log.get("categoryGroup") in ("audit", "allLogs"):
                enabled.update({"kube-audit", "kube-audit-admin"})
    return enabled

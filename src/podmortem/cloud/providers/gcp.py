"""Google Kubernetes Engine through google-cloud-compute, google-cloud-container and
google-cloud-logging.

Clients are injected through :class:`GcpClients`; :func:`default_clients` builds them the
way their users expect (Application Default Credentials, the project from the environment,
TLS-verified Google endpoints). Compute and Container use their REST transports.
"""

from __future__ import annotations

import re
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

AUTOPILOT_REASON = "GKE Autopilot manages node pools: auto-repair cannot be turned off"
CASE_LABEL = "podmortem-case"


@dataclass
class GcpClients:
    """The clients the GKE steps use (any object with the same methods will do)."""

    instances: Any
    instance_group_managers: Any
    disks: Any
    snapshots: Any
    firewalls: Any
    cluster_manager: Any
    logging: Any | None = None


def default_clients(project: str | None = None) -> GcpClients:
    try:
        from google.cloud import compute_v1, container_v1
        from google.cloud import logging as gcl
    except ImportError as exc:  # pragma: no cover - optional SDKs
        raise CapabilityUnavailable(
            "google-cloud-compute/-container/-logging are not installed"
        ) from exc
    return GcpClients(
        instances=compute_v1.InstancesClient(),
        instance_group_managers=compute_v1.InstanceGroupManagersClient(),
        disks=compute_v1.DisksClient(),
        snapshots=compute_v1.SnapshotsClient(),
        firewalls=compute_v1.FirewallsClient(),
        cluster_manager=container_v1.ClusterManagerClient(transport="rest"),
        logging=gcl.Client(project=project, _use_grpc=False),  # type: ignore[no-untyped-call]
    )


def _not_found(exc: Exception) -> bool:
    return type(exc).__name__ == "NotFound" or getattr(exc, "code", None) == 404


def _last(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _zone(url: str, default: str | None) -> str | None:
    """The zone a zonal resource URL names (``.../zones/<zone>/...``), else ``default``."""
    return url.split("/zones/", 1)[1].split("/", 1)[0] if "/zones/" in url else default


def _tags(inst: Any) -> tuple[list[str], str | None]:
    """An instance's network tags and the fingerprint ``set_tags`` must send back."""
    return (list(inst.tags.items), inst.tags.fingerprint) if inst.tags else ([], None)


class GkeSteps:
    """The ``gke.*`` steps for one cluster (``project``, ``location``)."""

    def __init__(self, clients: GcpClients, *, project: str | None, location: str | None):
        self.c = clients
        self.project = project
        self.location = location
        self.steps: dict[str, StepFn] = {
            "gke.deletion-protection": self.deletion_protection,
            "gke.abandon-instance": self.abandon_instance,
            "gke.auto-repair-off": self.auto_repair_off,
            "gke.snapshot-disks": self.snapshot_disks,
            "gke.firewall-isolation": self.firewall_isolation,
        }
        self.undos: dict[str, UndoFn] = {
            "gke.deletion-protection": self.undo_deletion_protection,
            "gke.auto-repair-off": self.undo_auto_repair_off,
            "gke.firewall-isolation": self.undo_firewall_isolation,
        }

    # ------------------------------------------------------------------ resolve

    def _cluster_name(self, target: Target) -> str:
        loc = target.extra.get("location") or self.location
        if not (self.project and loc):
            raise InputError("GKE needs --project and --location (the cluster's region/zone)")
        return f"projects/{self.project}/locations/{loc}/clusters/{target.cluster}"

    def cluster(self, calls: CallLog, target: Target) -> Any:
        return calls.read(
            "container",
            "get_cluster",
            self.c.cluster_manager.get_cluster,
            name=self._cluster_name(target),
        )

    def resolve(self, target: Target, calls: CallLog) -> None:
        self.project = self.project or target.extra.get("project")
        cluster = self.cluster(calls, target)
        target.extra["autopilot"] = bool(cluster.autopilot and cluster.autopilot.enabled)
        target.extra["endpoint"] = cluster.endpoint or None
        pcc = cluster.private_cluster_config
        target.extra["master_cidr"] = (pcc.master_ipv4_cidr_block if pcc else "") or None
        target.extra["network"] = cluster.network or "default"
        if target.instance is None:
            return
        if target.zone is None:
            raise InputError("GKE --instance-id needs --zone (or select the node or pod)")
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", target.instance) or not (
            re.fullmatch(r"[a-z]+-[a-z]+[0-9]+-[a-z]", target.zone)
        ):
            raise InputError(f"{target.instance[:80]!r} in {target.zone[:40]!r} is not a GCE name")
        inst = self._instance(calls, target)
        labels = dict(inst.labels or {})
        if labels.get("goog-k8s-cluster-name") != target.cluster:
            raise InputError(
                f"instance {target.instance} carries no label of GKE cluster {target.cluster!r}"
            )
        target.extra["node_pool"] = labels.get("goog-k8s-node-pool-name")

    def _instance(self, calls: CallLog, target: Target) -> Any:
        return calls.read(
            "compute",
            "instances.get",
            self.c.instances.get,
            project=self.project,
            zone=target.zone,
            instance=target.instance,
        )

    def _exists(self, calls: CallLog, method: str, fn: Any, **params: Any) -> bool:
        """Whether the project's global Compute resource exists (a 404 says it does not)."""
        found = calls.find(
            "compute", method, fn, missing=_not_found, project=self.project, **params
        )
        return found is not None

    def _where(self, ctx: StepContext) -> dict[str, Any]:
        return {"project": self.project, "zone": ctx.target.zone}

    # -------------------------------------------------------- deletion protect

    def deletion_protection(self, ctx: StepContext) -> Outcome:
        inst = self._instance(ctx.calls, ctx.target)
        if inst.deletion_protection:
            return Outcome(Status.UNCHANGED, "deletion protection already on")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, "would turn deletion protection on")
        self._set_protection(ctx, True)
        return Outcome(Status.CHANGED, "deletion protection on", undo={"value": False})

    def _set_protection(self, ctx: StepContext, value: bool) -> None:
        from google.cloud import compute_v1

        # deletion_protection is a query parameter that only the request object carries.
        ctx.calls.write(
            "compute",
            "instances.set_deletion_protection",
            self.c.instances.set_deletion_protection,
            request=compute_v1.SetDeletionProtectionInstanceRequest(
                **self._where(ctx), resource=ctx.target.instance, deletion_protection=value
            ),
        )

    def undo_deletion_protection(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        self._set_protection(ctx, bool(saved.get("value")))
        return Outcome(Status.CHANGED, "deletion protection restored")

    # ------------------------------------------------------------------ abandon

    def abandon_instance(self, ctx: StepContext) -> Outcome:
        inst = self._instance(ctx.calls, ctx.target)
        items = {i.key: i.value for i in (inst.metadata.items if inst.metadata else [])}
        created_by = items.get("created-by", "")
        if "/instanceGroupManagers/" not in created_by:
            return Outcome(Status.NOT_APPLICABLE, "the instance was not created by a group")
        igm = _last(created_by)
        zone = _zone(created_by, ctx.target.zone)
        managed = ctx.calls.read(
            "compute",
            "instance_group_managers.list_managed_instances",
            self.c.instance_group_managers.list_managed_instances,
            project=self.project,
            zone=zone,
            instance_group_manager=igm,
        )
        members = {_last(m.instance) for m in managed}
        if ctx.target.instance not in members:
            return Outcome(Status.UNCHANGED, f"not (or no longer) managed by {igm}")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would abandon it from {igm}")
        from google.cloud import compute_v1

        req = compute_v1.InstanceGroupManagersAbandonInstancesRequest(instances=[inst.self_link])
        ctx.calls.write(
            "compute",
            "instance_group_managers.abandon_instances",
            self.c.instance_group_managers.abandon_instances,
            project=self.project,
            zone=zone,
            instance_group_manager=igm,
            instance_group_managers_abandon_instances_request_resource=req,
        )
        return Outcome(Status.CHANGED, f"abandoned from {igm}", result={"group": igm})

    # -------------------------------------------------------------- auto-repair

    def _pool_name(self, ctx: StepContext) -> str | None:
        pool = ctx.target.extra.get("node_pool")
        return f"{self._cluster_name(ctx.target)}/nodePools/{pool}" if pool else None

    def auto_repair_off(self, ctx: StepContext) -> Outcome:
        if ctx.target.extra.get("autopilot"):
            return Outcome(Status.NOT_PERMITTED, AUTOPILOT_REASON)
        name = self._pool_name(ctx)
        if name is None:
            inst = self._instance(ctx.calls, ctx.target)
            ctx.target.extra["node_pool"] = (inst.labels or {}).get("goog-k8s-node-pool-name")
            name = self._pool_name(ctx)
            if name is None:
                return Outcome(Status.NOT_APPLICABLE, "the instance names no node pool")
        pool = ctx.calls.read(
            "container", "get_node_pool", self.c.cluster_manager.get_node_pool, name=name
        )
        mgmt = pool.management
        if not (mgmt and mgmt.auto_repair):
            return Outcome(Status.UNCHANGED, "auto-repair already off")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would turn auto-repair off on {_last(name)}")
        self._set_management(ctx, name, False, bool(mgmt.auto_upgrade))
        return Outcome(
            Status.CHANGED,
            f"auto-repair off on {_last(name)}",
            undo={"pool": name, "auto_upgrade": bool(mgmt.auto_upgrade)},
        )

    def _set_management(self, ctx: StepContext, name: str, repair: bool, upgrade: bool) -> None:
        from google.cloud import container_v1

        ctx.calls.write(
            "container",
            "set_node_pool_management",
            self.c.cluster_manager.set_node_pool_management,
            request=container_v1.SetNodePoolManagementRequest(
                name=name,
                management=container_v1.NodeManagement(auto_repair=repair, auto_upgrade=upgrade),
            ),
        )

    def undo_auto_repair_off(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        name = str(saved["pool"])
        if not name.startswith(self._cluster_name(ctx.target) + "/nodePools/"):
            raise InputError(f"recorded node pool {name!r} is not in this cluster")
        self._set_management(ctx, name, True, bool(saved.get("auto_upgrade")))
        return Outcome(Status.CHANGED, "auto-repair back on")

    # ---------------------------------------------------------------- snapshots

    def _snapshot_name(self, ctx: StepContext, disk: str) -> str:
        return names.gcp_name("pm", f"{ctx.case_id}-{disk}")

    def snapshot_disks(self, ctx: StepContext) -> Outcome:
        inst = self._instance(ctx.calls, ctx.target)
        disks = [d.source for d in inst.disks if d.source]
        if not disks:
            return Outcome(Status.NOT_APPLICABLE, "the instance has no persistent disks")
        missing: list[tuple[str, str, str]] = []
        for src in disks:
            disk = _last(src)
            zone = _zone(src, ctx.target.zone)
            snap = self._snapshot_name(ctx, disk)
            if not self._exists(ctx.calls, "snapshots.get", self.c.snapshots.get, snapshot=snap):
                missing.append((disk, str(zone), snap))
        if not missing:
            return Outcome(Status.UNCHANGED, f"{len(disks)} disk(s) already snapshotted")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would snapshot {[m[0] for m in missing]}")
        from google.cloud import compute_v1

        for disk, zone, snap in missing:
            ctx.calls.write(
                "compute",
                "disks.create_snapshot",
                self.c.disks.create_snapshot,
                project=self.project,
                zone=zone,
                disk=disk,
                snapshot_resource=compute_v1.Snapshot(
                    name=snap,
                    description=f"podmortem case {ctx.case_id} instance {ctx.target.instance}",
                    labels={CASE_LABEL: names.gcp_label_value(ctx.case_id)},
                ),
            )
        return Outcome(
            Status.CHANGED,
            f"snapshotted {[m[0] for m in missing]}",
            result={"snapshots": [m[2] for m in missing]},
        )

    # ----------------------------------------------------------------- firewall

    def _rules(self, ctx: StepContext, tag: str) -> list[dict[str, Any]]:
        """The rules, lowest priority number (strongest) first. GKE's own allow rules sit
        at 1000, so the case's denies at 10 win over them and the control-plane allows at 5
        win over the denies."""
        ex = ctx.target.extra
        network = f"projects/{self.project}/global/networks/{_last(str(ex.get('network')))}"
        base = {
            "network": network,
            "target_tags": [tag],
            "description": f"podmortem case {ctx.case_id}",
        }
        rules: list[dict[str, Any]] = []
        cidrs = [c for c in (ex.get("master_cidr"),) if c]
        if ex.get("endpoint"):
            cidrs.append(f"{ex['endpoint']}/32")
        if cidrs:
            rules.append(
                {
                    **base,
                    "name": names.gcp_name("pm-cp-out", ctx.case_id),
                    "direction": "EGRESS",
                    "priority": 5,
                    "destination_ranges": cidrs,
                    "allowed": [{"I_p_protocol": "tcp", "ports": ["443"]}],
                }
            )
        if ex.get("master_cidr"):
            rules.append(
                {
                    **base,
                    "name": names.gcp_name("pm-cp-in", ctx.case_id),
                    "direction": "INGRESS",
                    "priority": 5,
                    "source_ranges": [ex["master_cidr"]],
                    "allowed": [{"I_p_protocol": "tcp", "ports": ["443", "10250"]}],
                }
            )
        rules.append(
            {
                **base,
                "name": names.gcp_name("pm-deny-in", ctx.case_id),
                "direction": "INGRESS",
                "priority": 10,
                "source_ranges": ["0.0.0.0/0"],
                "denied": [{"I_p_protocol": "all"}],
            }
        )
        rules.append(
            {
                **base,
                "name": names.gcp_name("pm-deny-out", ctx.case_id),
                "direction": "EGRESS",
                "priority": 10,
                "destination_ranges": ["0.0.0.0/0"],
                "denied": [{"I_p_protocol": "all"}],
            }
        )
        return rules

    def firewall_isolation(self, ctx: StepContext) -> Outcome:
        tag = names.gcp_name("pm-quarantine", ctx.case_id)
        rules = self._rules(ctx, tag)
        missing = []
        for rule in rules:
            if not self._exists(
                ctx.calls, "firewalls.get", self.c.firewalls.get, firewall=rule["name"]
            ):
                missing.append(rule)
        inst = self._instance(ctx.calls, ctx.target)
        tags, fingerprint = _tags(inst)
        if not missing and tag in tags:
            return Outcome(Status.UNCHANGED, f"already isolated by tag {tag}")
        if not ctx.execute:
            return Outcome(
                Status.WOULD_CHANGE,
                f"would create {len(missing)} rule(s) and tag the instance {tag}",
            )
        from google.cloud import compute_v1

        for rule in missing:
            ctx.calls.write(
                "compute",
                "firewalls.insert",
                self.c.firewalls.insert,
                project=self.project,
                firewall_resource=compute_v1.Firewall(**rule),
            )
        if tag not in tags:
            self._set_tags(ctx, [*tags, tag], fingerprint)
        return Outcome(
            Status.CHANGED,
            f"isolated with tag {tag}",
            undo={"tag": tag, "rules": [r["name"] for r in missing]},
        )

    def _set_tags(self, ctx: StepContext, items: list[str], fingerprint: str | None) -> None:
        from google.cloud import compute_v1

        ctx.calls.write(
            "compute",
            "instances.set_tags",
            self.c.instances.set_tags,
            **self._where(ctx),
            instance=ctx.target.instance,
            tags_resource=compute_v1.Tags(items=items, fingerprint=fingerprint),
        )

    def undo_firewall_isolation(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        tags, fingerprint = _tags(self._instance(ctx.calls, ctx.target))
        tag = str(saved["tag"])
        if tag in tags:
            self._set_tags(ctx, [t for t in tags if t != tag], fingerprint)
        for name in saved.get("rules") or []:
            if not str(name).startswith("pm-"):
                raise InputError(f"recorded firewall rule {name!r} is not podmortem's")
            ctx.calls.write(
                "compute",
                "firewalls.delete",
                self.c.firewalls.delete,
                project=self.project,
                firewall=str(name),
            )
        return Outcome(Status.CHANGED, "tag removed and the case's rules deleted")

    # --------------------------------------------------------------------- logs

    def audit_log_filter(self, cluster: str, since: datetime, until: datetime) -> str:
        def ts(t: datetime) -> str:
            return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        project = self.project
        return (
            f'resource.type="k8s_cluster" AND resource.labels.cluster_name="{cluster}" AND '
            f'(logName="projects/{project}/logs/cloudaudit.googleapis.com%2Factivity" OR '
            f'logName="projects/{project}/logs/cloudaudit.googleapis.com%2Fdata_access") AND '
            f'timestamp>="{ts(since)}" AND timestamp<"{ts(until)}"'
        )

    def audit_log_pages(
        self, calls: CallLog, cluster: str, since: datetime, until: datetime, page_size: int = 1000
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of LogEntry JSON (the shape ``gcloud logging read --format=json`` prints)."""
        if self.c.logging is None:
            raise CapabilityUnavailable("no Cloud Logging client configured")
        if '"' in cluster or "\\" in cluster:
            raise InputError(f"cluster name {cluster!r} cannot appear in a logging filter")
        # google-cloud-logging's list_entries hides page tokens behind a generator and
        # rebuilds entries as objects; the client's own JSON connection (credentials,
        # endpoint, retries as configured) returns each entries:list page verbatim, which
        # is what the evidence should hold.
        connection = self.c.logging._connection
        body: dict[str, Any] = {
            "resourceNames": [f"projects/{self.project}"],
            "filter": self.audit_log_filter(cluster, since, until),
            "orderBy": "timestamp asc",
            "pageSize": page_size,
        }
        seen: set[str] = set()
        while True:
            page = calls.read(
                "logging",
                "entries.list",
                connection.api_request,
                method="POST",
                path="/entries:list",
                data=dict(body),
            )
            yield list(page.get("entries") or [])
            token = page.get("nextPageToken")
            if not token or token in seen:
                return
            seen.add(token)
            body["pageToken"] = token


def readiness_facts(
    steps: GkeSteps, calls: CallLog, target: Target
) -> tuple[dict[str, Any], dict[str, str]]:
    """The facts the readiness checks read, and a note for each fact left unknown."""
    facts: dict[str, Any] = {}
    notes: dict[str, str] = {}
    c = steps.cluster(calls, target)
    facts["audit_logging"] = True
    notes["audit_logging"] = "GKE Admin Activity audit logs are always on"
    notes["audit_reads_logged"] = (
        "Data Access (read) logging is a project IAM audit setting podmortem does not read; "
        "check `gcloud projects get-iam-policy` auditConfigs for container.googleapis.com"
    )
    comps: list[str] = []
    if c.logging_config and c.logging_config.component_config:
        comps = [
            getattr(x, "name", str(x)) for x in c.logging_config.component_config.enable_components
        ]
    facts["apiserver_logs"] = "APISERVER" in comps
    dp = getattr(c.network_config.datapath_provider, "name", "") if c.network_config else ""
    facts["network_policy_enforced"] = bool(
        (c.network_policy and c.network_policy.enabled) or dp == "ADVANCED_DATAPATH"
    )
    autopilot = bool(c.autopilot and c.autopilot.enabled)
    facts["node_repair_controllable"] = not autopilot
    if autopilot:
        notes["node_repair_controllable"] = AUTOPILOT_REASON
    facts["kubernetes_minor"] = kubernetes_minor(
        c.current_master_version or c.initial_cluster_version
    )
    notes["kubernetes_minor"] = "COS node images lack CRIU: checkpoints need Ubuntu node images"
    return facts, notes

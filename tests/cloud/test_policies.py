"""Least privilege: every permission a command's API calls need is granted by the shipped
policy for that command, and nothing else is (beyond what the provider implies, listed
here with the reason). The playbooks' api_calls are the source of truth."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from podmortem.cloud.playbook import load

from .k8s_rbac import K8S, Grant, grants, role

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
READS = ("describe", "get", "list", "read")


def _is_read(call: str) -> bool:
    return call.rsplit(".", 1)[-1].startswith(READS) or call.endswith("list_managed_instances")


def _calls(provider: str, phase: str | None) -> set[str]:
    steps = load(provider)
    if phase is None:  # plan: the reads of every step
        return {c for s in steps for c in s.api_calls if _is_read(c)}
    return {c for s in steps if s.phase == phase for c in s.api_calls}


# --------------------------------------------------------------------------- AWS IAM


def _iam_action(call: str) -> str:
    service, method = call.split(".", 1)
    return f"{service}:{''.join(p.capitalize() for p in method.split('_'))}"


def _iam_granted(name: str) -> set[str]:
    doc = json.loads((DEPLOY / "iam" / f"{name}.json").read_text())
    out: set[str] = set()
    for st in doc["Statement"]:
        assert st["Effect"] == "Allow"
        acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert not any("*" in a for a in acts), f"wildcard action in {name}"
        out |= set(acts)
    return out


# Tagging on create (TagSpecifications) needs ec2:CreateTags on the new resource.
IAM_IMPLIED = {"ec2:CreateTags"}


@pytest.mark.parametrize("phase", ["preserve", "contain", None])
def test_iam_policy_matches_the_playbook(phase: str | None) -> None:
    need = {_iam_action(c) for c in _calls("eks", phase)}
    granted = _iam_granted(f"podmortem-{phase or 'plan'}")
    assert need <= granted, need - granted
    assert granted <= need | IAM_IMPLIED, granted - need


def test_iam_logs_and_readiness() -> None:
    assert _iam_granted("podmortem-collect-logs") == {"logs:FilterLogEvents"}
    assert _iam_granted("podmortem-readiness") == {
        "eks:DescribeCluster",
        "eks:DescribeAddon",
        "logs:DescribeLogGroups",
        "ec2:DescribeInstances",
    }


# ------------------------------------------------------------------------- Azure roles

AZ = {
    "compute.virtual_machine_scale_set_vms.get": {
        "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read"
    },
    "compute.virtual_machine_scale_set_vms.begin_update": {
        "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/write"
    },
    "compute.snapshots.get": {"Microsoft.Compute/snapshots/read"},
    # a copy snapshot reads its source disk
    "compute.snapshots.begin_create_or_update": {
        "Microsoft.Compute/snapshots/write",
        "Microsoft.Compute/disks/read",
    },
    "network.network_security_groups.get": {"Microsoft.Network/networkSecurityGroups/read"},
    # associating the NSG with a NIC configuration needs join on the NSG
    "network.network_security_groups.begin_create_or_update": {
        "Microsoft.Network/networkSecurityGroups/write",
        "Microsoft.Network/networkSecurityGroups/join/action",
    },
}
AZ_RESOLVE = {"Microsoft.ContainerService/managedClusters/read"}


@pytest.mark.parametrize("phase", ["preserve", "contain", None])
def test_azure_role_matches_the_playbook(phase: str | None) -> None:
    need = set(AZ_RESOLVE)
    for c in _calls("aks", phase):
        need |= AZ[c]
    if phase is None:  # plan reads, never joins
        need.discard("Microsoft.Network/networkSecurityGroups/join/action")
        need.discard("Microsoft.Compute/disks/read")
    role = json.loads((DEPLOY / "azure" / f"podmortem-{phase or 'plan'}.json").read_text())
    assert set(role["Actions"]) == need
    assert not any("*" in a for a in role["Actions"])


# --------------------------------------------------------------------------- GCP roles

GCP = {
    "compute.instances.get": {"compute.instances.get"},
    "compute.instances.set_deletion_protection": {"compute.instances.setDeletionProtection"},
    "compute.instance_group_managers.list_managed_instances": {"compute.instanceGroupManagers.get"},
    "compute.instance_group_managers.abandon_instances": {"compute.instanceGroupManagers.update"},
    "container.get_cluster": {"container.clusters.get"},
    "container.get_node_pool": {"container.clusters.get"},
    "container.set_node_pool_management": {"container.clusters.update"},
    "compute.snapshots.get": {"compute.snapshots.get"},
    "compute.disks.create_snapshot": {
        "compute.disks.createSnapshot",
        "compute.snapshots.create",
        "compute.snapshots.setLabels",
    },
    "compute.firewalls.get": {"compute.firewalls.get"},
    "compute.firewalls.insert": {"compute.firewalls.create", "compute.networks.updatePolicy"},
    "compute.firewalls.delete": {"compute.firewalls.delete", "compute.networks.updatePolicy"},
    "compute.instances.set_tags": {"compute.instances.setTags"},
}
# Resolution reads the cluster; compute writes return operations the client polls.
GCP_IMPLIED = {"container.clusters.get"}
GCP_OPERATIONS = {"compute.zoneOperations.get", "compute.globalOperations.get"}


@pytest.mark.parametrize("phase", ["preserve", "contain", None])
def test_gcp_role_matches_the_playbook(phase: str | None) -> None:
    need = set(GCP_IMPLIED)
    for c in _calls("gke", phase):
        need |= GCP[c]
    doc = yaml.safe_load((DEPLOY / "gcp" / f"podmortem-{phase or 'plan'}.yaml").read_text())
    granted = set(doc["includedPermissions"])
    if phase is not None:
        need |= GCP_OPERATIONS
    assert granted == need


# ------------------------------------------------------------------------ Kubernetes


def _rbac(name: str) -> set[Grant]:
    return grants(role(DEPLOY / "rbac" / "podmortem-responder.yaml", name))


def test_rbac_matches_the_playbook() -> None:
    every = {c for s in load("kubernetes") for c in s.api_calls}
    assert _rbac("podmortem-responder") == {K8S[c] for c in every}
    reads = {c for c in every if _is_read(c)}
    assert _rbac("podmortem-planner") == {K8S[c] for c in reads}
    assert not any(
        v in ("delete", "deletecollection") and r == "pods"
        for _, r, v in _rbac("podmortem-responder")
    )


def test_policy_names_are_placeholders_not_real_accounts() -> None:
    text = "".join(p.read_text() for p in DEPLOY.rglob("*") if p.is_file())
    assert not re.search(r"\b\d{12}\b", text)  # no AWS account ids

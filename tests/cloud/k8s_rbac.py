"""Kubernetes RBAC as the least-privilege tests read it: the grant each client call needs,
and the (apiGroup, resource, verb) triples a shipped ClusterRole gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

Grant = tuple[str, str, str]

# The official client's method -> the RBAC grant the API server checks for it.
K8S: dict[str, Grant] = {
    "core.read_namespaced_pod": ("", "pods", "get"),
    "core.patch_namespaced_pod": ("", "pods", "patch"),
    "core.read_node": ("", "nodes", "get"),
    "core.patch_node": ("", "nodes", "patch"),
    "apps.read_namespaced_replica_set": ("apps", "replicasets", "get"),
    "apps.read_namespaced_daemon_set": ("apps", "daemonsets", "get"),
    "apps.list_namespaced_daemon_set": ("apps", "daemonsets", "list"),
    "networking.list_namespaced_network_policy": ("networking.k8s.io", "networkpolicies", "list"),
    "networking.read_namespaced_network_policy": ("networking.k8s.io", "networkpolicies", "get"),
    "networking.create_namespaced_network_policy": (
        "networking.k8s.io",
        "networkpolicies",
        "create",
    ),
    "networking.patch_namespaced_network_policy": ("networking.k8s.io", "networkpolicies", "patch"),
    "networking.delete_namespaced_network_policy": (
        "networking.k8s.io",
        "networkpolicies",
        "delete",
    ),
}


def role(path: Path, name: str, kind: str = "ClusterRole") -> dict[str, Any]:
    """The role ``name`` among the documents of the manifest at ``path``."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def grants(doc: dict[str, Any]) -> set[Grant]:
    return {
        (g, r, v)
        for rule in doc["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }

"""A Kubernetes API server stand-in that stores pods, nodes, ReplicaSets and
NetworkPolicies as JSON and applies merge patches, for the official Python client."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from .fakeserver import RecordingServer, Request, merge_patch


class FakeKube(RecordingServer):
    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, dict[str, Any]] = {}
        core = "/api/v1"
        apps = "/apis/apps/v1"
        net = "/apis/networking.k8s.io/v1"

        def get(req: Request, m: Any) -> tuple[int, Any]:
            obj = self.objects.get(req.path)
            if obj is None:
                return 404, status(404, "NotFound", req.path)
            return 200, obj

        def patch(req: Request, m: Any) -> tuple[int, Any]:
            obj = self.objects.get(req.path)
            if obj is None:
                return 404, status(404, "NotFound", req.path)
            self.objects[req.path] = merge_patch(obj, req.body)
            return 200, self.objects[req.path]

        def delete(req: Request, m: Any) -> tuple[int, Any]:
            obj = self.objects.pop(req.path, None)
            if obj is None:
                return 404, status(404, "NotFound", req.path)
            return 200, status(200, "Success", "deleted")

        for prefix in (
            f"{core}/namespaces/[^/]+/pods/[^/]+",
            f"{core}/nodes/[^/]+",
            f"{apps}/namespaces/[^/]+/replicasets/[^/]+",
            f"{apps}/namespaces/[^/]+/daemonsets/[^/]+",
            f"{net}/namespaces/[^/]+/networkpolicies/[^/]+",
        ):
            self.route("GET", prefix)(get)
            self.route("PATCH", prefix)(patch)
            self.route("DELETE", prefix)(delete)

        @self.route("GET", f"{net}/namespaces/(?P<ns>[^/]+)/networkpolicies")
        def list_np(req: Request, m: Any) -> tuple[int, Any]:
            base = f"{net}/namespaces/{m['ns']}/networkpolicies/"
            items = [v for k, v in sorted(self.objects.items()) if k.startswith(base)]
            return 200, {
                "kind": "NetworkPolicyList",
                "apiVersion": "networking.k8s.io/v1",
                "metadata": {},
                "items": items,
            }

        @self.route("GET", f"{apps}/namespaces/(?P<ns>[^/]+)/daemonsets")
        def list_ds(req: Request, m: Any) -> tuple[int, Any]:
            base = f"{apps}/namespaces/{m['ns']}/daemonsets/"
            items = [v for k, v in sorted(self.objects.items()) if k.startswith(base)]
            return 200, {
                "kind": "DaemonSetList",
                "apiVersion": "apps/v1",
                "metadata": {},
                "items": items,
            }

        @self.route("POST", f"{net}/namespaces/(?P<ns>[^/]+)/networkpolicies")
        def create_np(req: Request, m: Any) -> tuple[int, Any]:
            path = f"{net}/namespaces/{m['ns']}/networkpolicies/{req.body['metadata']['name']}"
            if path in self.objects:
                return 409, status(409, "AlreadyExists", path)
            obj = copy.deepcopy(req.body)
            obj["metadata"]["namespace"] = m["ns"]
            self.objects[path] = obj
            return 201, obj

        # Legacy (unaggregated) discovery, enough for kubectl to find pods and nodes: the
        # benchmark's peer is `kubectl annotate`.
        discovery = {
            "/version": {"major": "1", "minor": "31", "gitVersion": "v1.31.0"},
            "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
            "/apis": {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                        "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"},
                    }
                    for g in ("apps", "networking.k8s.io")
                ],
            },
            core: _resources("v1", [("pods", "Pod", True), ("nodes", "Node", False)]),
            apps: _resources(
                "apps/v1", [("replicasets", "ReplicaSet", True), ("daemonsets", "DaemonSet", True)]
            ),
            net: _resources("networking.k8s.io/v1", [("networkpolicies", "NetworkPolicy", True)]),
        }
        for path, doc in discovery.items():
            self.route("GET", path)(lambda req, m, doc=doc: (200, doc))

    def add_pod(
        self,
        ns: str,
        name: str,
        node: str,
        labels: dict[str, str],
        owner: tuple[str, str] | None = None,
    ) -> None:
        meta: dict[str, Any] = {
            "name": name,
            "namespace": ns,
            "uid": f"uid-{name}",
            "labels": dict(labels),
        }
        if owner:
            meta["ownerReferences"] = [
                {
                    "apiVersion": "apps/v1",
                    "kind": owner[0],
                    "name": owner[1],
                    "uid": "uid-owner",
                    "controller": True,
                }
            ]
        self.objects[f"/api/v1/namespaces/{ns}/pods/{name}"] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
        }

    def add_node(self, name: str, provider_id: str) -> None:
        self.objects[f"/api/v1/nodes/{name}"] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {}},
            "spec": {"providerID": provider_id},
        }

    def add_replicaset(self, ns: str, name: str, match: dict[str, str]) -> None:
        self.objects[f"/apis/apps/v1/namespaces/{ns}/replicasets/{name}"] = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "selector": {"matchLabels": dict(match)},
                "template": {
                    "metadata": {"labels": dict(match)},
                    "spec": {"containers": [{"name": "c", "image": "x"}]},
                },
            },
        }

    def add_policy(
        self, ns: str, name: str, selector: dict[str, Any], ingress: list[Any] | None = None
    ) -> None:
        spec: dict[str, Any] = {"podSelector": selector, "policyTypes": ["Ingress"]}
        if ingress is not None:
            spec["ingress"] = ingress
        self.objects[f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}"] = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }

    def add_daemonset(self, ns: str, name: str, containers: list[str]) -> None:
        self.objects[f"/apis/apps/v1/namespaces/{ns}/daemonsets/{name}"] = {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "selector": {"matchLabels": {"k8s-app": name}},
                "template": {
                    "metadata": {"labels": {"k8s-app": name}},
                    "spec": {"containers": [{"name": c, "image": "x"} for c in containers]},
                },
            },
        }

    def pod(self, ns: str, name: str) -> dict[str, Any]:
        return self.objects[f"/api/v1/namespaces/{ns}/pods/{name}"]

    def node(self, name: str) -> dict[str, Any]:
        return self.objects[f"/api/v1/nodes/{name}"]

    def policy(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(
            f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}"
        )


def _resources(group_version: str, kinds: list[tuple[str, str, bool]]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {
                "name": name,
                "singularName": kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": ["get", "list", "patch", "create", "delete"],
            }
            for name, kind, namespaced in kinds
        ],
    }


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure" if code >= 400 else "Success",
        "reason": reason,
        "message": message,
        "code": code,
    }


def kube_clients(url: str) -> tuple[Any, Any, Any]:
    """The official client's APIs pointed at the fake (plain HTTP on loopback, tests only)."""
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = url
    api = client.ApiClient(cfg)
    return client.CoreV1Api(api), client.AppsV1Api(api), client.NetworkingV1Api(api)


def kubeconfig(path: Path, url: str) -> Path:
    """A kubeconfig at ``path`` whose current context is the fake at ``url``."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "fake", "cluster": {"server": url}}],
                "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )
    return path

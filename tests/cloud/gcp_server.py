"""Compute Engine, GKE and Cloud Logging REST paths, answered from a small world held in
memory so that a second run sees the first run's changes."""

from __future__ import annotations

import copy
from typing import Any

from .fakeserver import RecordingServer, Request

P, LOC, ZONE, CLUSTER = "forensics-p", "europe-west1", "europe-west1-b", "prod"
INSTANCE = "gke-prod-pool-1-abcd-x1y2"
IGM = "gke-prod-pool-1-abcd-grp"
C = f"/compute/v1/projects/{P}"
K = f"/v1/projects/{P}/locations/{LOC}/clusters/{CLUSTER}"


def _op(name: str) -> dict[str, Any]:
    return {
        "kind": "compute#operation",
        "name": name,
        "status": "DONE",
        "progress": 100,
        "zone": f"https://compute.googleapis.com{C}/zones/{ZONE}",
    }


class FakeGcp(RecordingServer):
    def __init__(self, autopilot: bool = False, log_entries: int = 0) -> None:
        super().__init__()
        self_link = f"https://www.googleapis.com{C}/zones/{ZONE}/instances/{INSTANCE}"
        self.instance: dict[str, Any] = {
            "name": INSTANCE,
            "id": "7001",
            "selfLink": self_link,
            "zone": ZONE,
            "deletionProtection": False,
            "labels": {"goog-k8s-cluster-name": CLUSTER, "goog-k8s-node-pool-name": "pool-1"},
            "metadata": {
                "items": [
                    {
                        "key": "created-by",
                        "value": f"projects/123/zones/{ZONE}/instanceGroupManagers/{IGM}",
                    }
                ]
            },
            "tags": {"items": ["gke-prod-node"], "fingerprint": "fp-1"},
            "disks": [
                {
                    "boot": True,
                    "source": f"https://www.googleapis.com{C}/zones/{ZONE}/disks/{INSTANCE}",
                },
                {"source": f"https://www.googleapis.com{C}/zones/{ZONE}/disks/pvc-data-1"},
            ],
        }
        self.managed = [self_link]
        self.snapshots: dict[str, Any] = {}
        self.firewalls: dict[str, Any] = {}
        self.pool = {"name": "pool-1", "management": {"autoRepair": True, "autoUpgrade": True}}
        self.cluster = {
            "name": CLUSTER,
            "endpoint": "34.76.10.20",
            "currentMasterVersion": "1.29.8-gke.1211000",
            "network": "default",
            "privateClusterConfig": {"masterIpv4CidrBlock": "172.16.0.0/28"},
            "autopilot": {"enabled": autopilot},
            "loggingConfig": {"componentConfig": {"enableComponents": ["SYSTEM_COMPONENTS"]}},
            "networkPolicy": {"enabled": False},
            "addonsConfig": {"networkPolicyConfig": {"disabled": True}},
        }
        self.entries = [
            {
                "logName": f"projects/{P}/logs/cloudaudit.googleapis.com%2Factivity",
                "insertId": f"id-{i}",
                "timestamp": f"2026-11-26T10:{i // 60:02d}:{i % 60:02d}Z",
                "resource": {"type": "k8s_cluster", "labels": {"cluster_name": CLUSTER}},
                "jsonPayload": {"methodName": "io.k8s.core.v1.pods.create", "n": i},
            }
            for i in range(log_entries)
        ]
        inst = f"{C}/zones/{ZONE}/instances/{INSTANCE}"

        @self.route("GET", inst)
        def get_instance(req: Request, m: Any) -> tuple[int, Any]:
            return 200, self.instance

        @self.route("POST", inst + "/setDeletionProtection")
        def set_dp(req: Request, m: Any) -> tuple[int, Any]:
            self.instance["deletionProtection"] = req.query.get("deletionProtection") == ["true"]
            return 200, _op("op-dp")

        @self.route("POST", inst + "/setTags")
        def set_tags(req: Request, m: Any) -> tuple[int, Any]:
            if req.body.get("fingerprint") != self.instance["tags"]["fingerprint"]:
                return 412, {
                    "error": {
                        "code": 412,
                        "message": "fingerprint",
                        "status": "FAILED_PRECONDITION",
                    }
                }
            n = int(self.instance["tags"]["fingerprint"].split("-")[1]) + 1
            self.instance["tags"] = {"items": req.body.get("items", []), "fingerprint": f"fp-{n}"}
            return 200, _op("op-tags")

        @self.route("POST", f"{C}/zones/{ZONE}/instanceGroupManagers/{IGM}/listManagedInstances")
        def list_managed(req: Request, m: Any) -> tuple[int, Any]:
            return 200, {
                "managedInstances": [
                    {"instance": u, "instanceStatus": "RUNNING"} for u in self.managed
                ]
            }

        @self.route("POST", f"{C}/zones/{ZONE}/instanceGroupManagers/{IGM}/abandonInstances")
        def abandon(req: Request, m: Any) -> tuple[int, Any]:
            self.managed = [u for u in self.managed if u not in req.body["instances"]]
            return 200, _op("op-abandon")

        @self.route("GET", f"{C}/global/snapshots/(?P<n>[^/]+)")
        def get_snap(req: Request, m: Any) -> tuple[int, Any]:
            if m["n"] not in self.snapshots:
                return 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
            return 200, self.snapshots[m["n"]]

        @self.route("POST", f"{C}/zones/{ZONE}/disks/(?P<d>[^/]+)/createSnapshot")
        def create_snap(req: Request, m: Any) -> tuple[int, Any]:
            self.snapshots[req.body["name"]] = {**req.body, "sourceDisk": m["d"]}
            return 200, _op("op-snap")

        @self.route("GET", f"{C}/global/firewalls/(?P<n>[^/]+)")
        def get_fw(req: Request, m: Any) -> tuple[int, Any]:
            if m["n"] not in self.firewalls:
                return 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
            return 200, self.firewalls[m["n"]]

        @self.route("POST", f"{C}/global/firewalls")
        def insert_fw(req: Request, m: Any) -> tuple[int, Any]:
            self.firewalls[req.body["name"]] = copy.deepcopy(req.body)
            return 200, {**_op("op-fw"), "zone": None}

        @self.route("DELETE", f"{C}/global/firewalls/(?P<n>[^/]+)")
        def delete_fw(req: Request, m: Any) -> tuple[int, Any]:
            self.firewalls.pop(m["n"], None)
            return 200, {**_op("op-fw-del"), "zone": None}

        @self.route("GET", K)
        def get_cluster(req: Request, m: Any) -> tuple[int, Any]:
            return 200, self.cluster

        @self.route("GET", K + "/nodePools/pool-1")
        def get_pool(req: Request, m: Any) -> tuple[int, Any]:
            return 200, self.pool

        @self.route("POST", K + "/nodePools/pool-1:setManagement")
        def set_mgmt(req: Request, m: Any) -> tuple[int, Any]:
            if self.cluster["autopilot"]["enabled"]:
                return 400, {
                    "error": {
                        "code": 400,
                        "status": "FAILED_PRECONDITION",
                        "message": "Autopilot clusters do not support this",
                    }
                }
            self.pool["management"] = req.body["management"]
            return 200, {"name": "op-mgmt", "status": "DONE"}

        @self.route("POST", "/v2/entries:list")
        def list_entries(req: Request, m: Any) -> tuple[int, Any]:
            size = int(req.body.get("pageSize") or 50)
            start = int(req.body.get("pageToken") or 0)
            out: dict[str, Any] = {"entries": self.entries[start : start + size]}
            if start + size < len(self.entries):
                out["nextPageToken"] = str(start + size)
            return 200, out


def clients(url: str) -> Any:
    """The official clients pointed at the fake. Plain HTTP to 127.0.0.1 with anonymous
    credentials is for tests only; production uses ADC and TLS-verified Google endpoints."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import compute_v1, container_v1
    from google.cloud import logging as gcl

    from podmortem.cloud.providers.gcp import GcpClients

    opts = {"api_endpoint": url}
    creds = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return GcpClients(
        instances=compute_v1.InstancesClient(credentials=creds, client_options=opts),
        instance_group_managers=compute_v1.InstanceGroupManagersClient(
            credentials=creds, client_options=opts
        ),
        disks=compute_v1.DisksClient(credentials=creds, client_options=opts),
        snapshots=compute_v1.SnapshotsClient(credentials=creds, client_options=opts),
        firewalls=compute_v1.FirewallsClient(credentials=creds, client_options=opts),
        cluster_manager=container_v1.ClusterManagerClient(
            credentials=creds, client_options=opts, transport="rest"
        ),
        logging=gcl.Client(project=P, credentials=creds, client_options=opts, _use_grpc=False),
    )

"""ARM and Log Analytics REST paths for an AKS node, answered from memory so a second
run sees the first run's changes; records every request for exact assertions."""

from __future__ import annotations

import copy
import re
from typing import Any

from .fakeserver import RecordingServer, Request

SUB, RG, CLUSTER = "00000000-0000-0000-0000-000000000001", "rg-prod", "prod"
NODE_RG = "MC_rg-prod_prod_westeurope"
VMSS, VM_ID = "aks-nodepool1-12345678-vmss", "3"
S = f"/subscriptions/{SUB}"
MC = f"{S}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/{CLUSTER}"
NRG = f"{S}/resourceGroups/{NODE_RG}"
VM = f"{NRG}/providers/Microsoft.Compute/virtualMachineScaleSets/{VMSS}/virtualMachines/{VM_ID}"
OS_DISK = f"{NRG}/providers/Microsoft.Compute/disks/{VMSS}_{VM_ID}_osdisk"
DATA_DISK = f"{NRG}/providers/Microsoft.Compute/disks/pvc-data-3"
AKS_NSG = f"{NRG}/providers/Microsoft.Network/networkSecurityGroups/aks-agentpool-1234-nsg"
SUBNET = f"{NRG}/providers/Microsoft.Network/virtualNetworks/v/subnets/s"
WORKSPACE = "11111111-2222-3333-4444-555555555555"


def _arm_error(status: int, code: str, message: str) -> tuple[int, Any]:
    return status, {"error": {"code": code, "message": message}}


class FakeAzure(RecordingServer):
    def __init__(
        self,
        locked: bool = False,
        audit_rows: int = 0,
        categories: tuple[str, ...] = ("kube-audit-admin",),
    ) -> None:
        super().__init__()
        self.locked = locked
        self.categories = categories
        self.vm: dict[str, Any] = {
            "id": VM,
            "name": f"{VMSS}_{VM_ID}",
            "location": "westeurope",
            "instanceId": VM_ID,
            "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
            "properties": {
                "provisioningState": "Succeeded",
                "storageProfile": {
                    "osDisk": {
                        "name": f"{VMSS}_{VM_ID}_osdisk",
                        "createOption": "FromImage",
                        "managedDisk": {"id": OS_DISK},
                    },
                    "dataDisks": [
                        {"lun": 0, "createOption": "Attach", "managedDisk": {"id": DATA_DISK}}
                    ],
                },
                "networkProfileConfiguration": {
                    "networkInterfaceConfigurations": [
                        {
                            "name": VMSS,
                            "properties": {
                                "primary": True,
                                "networkSecurityGroup": {"id": AKS_NSG},
                                "ipConfigurations": [
                                    {
                                        "name": "ipconfig1",
                                        "properties": {"subnet": {"id": SUBNET}},
                                    }
                                ],
                            },
                        },
                    ]
                },
            },
        }
        self.snapshots: dict[str, Any] = {}
        self.nsgs: dict[str, Any] = {}
        self.rows = [
            [
                f"2026-11-26T10:00:{i % 60:02d}Z",
                f"audit-{i:05d}",
                "ResponseComplete",
                "get",
                MC.upper(),
            ]
            for i in range(audit_rows)
        ]

        @self.route("GET", MC)
        def get_mc(req: Request, m: Any) -> tuple[int, Any]:
            return 200, {
                "id": MC,
                "name": CLUSTER,
                "location": "westeurope",
                "sku": {"name": "Automatic" if locked else "Base", "tier": "Standard"},
                "properties": {
                    "nodeResourceGroup": NODE_RG,
                    "kubernetesVersion": "1.30.5",
                    "networkProfile": {"networkPlugin": "azure", "networkPolicy": "calico"},
                },
            }

        @self.route("GET", VM)
        def get_vm(req: Request, m: Any) -> tuple[int, Any]:
            return 200, self.vm

        @self.route("PUT", VM)
        def put_vm(req: Request, m: Any) -> tuple[int, Any]:
            if self.locked:
                return _arm_error(
                    403,
                    "DenyAssignmentAuthorizationFailed",
                    "The node resource group is locked by a deny assignment",
                )
            body = copy.deepcopy(req.body)
            body["properties"]["provisioningState"] = "Succeeded"
            self.vm = {**self.vm, **body}
            return 200, self.vm

        @self.route("GET", "/*" + MC + "/providers/Microsoft.Insights/diagnosticSettings")
        def diag(req: Request, m: Any) -> tuple[int, Any]:
            return 200, {
                "value": [
                    {
                        "id": MC + "/providers/Microsoft.Insights/diagnosticSettings/audit",
                        "name": "audit",
                        "properties": {
                            "workspaceId": "/subscriptions/x/workspaces/w",
                            "logs": [{"category": c, "enabled": True} for c in self.categories]
                            + [{"category": "guard", "enabled": False}],
                        },
                    }
                ]
            }

        snap = f"{NRG}/providers/Microsoft.Compute/snapshots/(?P<n>[^/]+)"

        @self.route("GET", snap)
        def get_snap(req: Request, m: Any) -> tuple[int, Any]:
            if m["n"] not in self.snapshots:
                return _arm_error(404, "ResourceNotFound", "not found")
            return 200, self.snapshots[m["n"]]

        @self.route("PUT", snap)
        def put_snap(req: Request, m: Any) -> tuple[int, Any]:
            if self.locked:
                return _arm_error(409, "ScopeLocked", "The scope is locked")
            body = copy.deepcopy(req.body)
            body["id"] = req.path
            body["name"] = m["n"]
            body["properties"]["provisioningState"] = "Succeeded"
            self.snapshots[m["n"]] = body
            return 200, body

        nsg = f"{NRG}/providers/Microsoft.Network/networkSecurityGroups/(?P<n>[^/]+)"

        @self.route("GET", nsg)
        def get_nsg(req: Request, m: Any) -> tuple[int, Any]:
            if m["n"] not in self.nsgs:
                return _arm_error(404, "ResourceNotFound", "not found")
            return 200, self.nsgs[m["n"]]

        @self.route("PUT", nsg)
        def put_nsg(req: Request, m: Any) -> tuple[int, Any]:
            body = copy.deepcopy(req.body)
            body["id"] = req.path
            body["name"] = m["n"]
            body.setdefault("properties", {})["provisioningState"] = "Succeeded"
            self.nsgs[m["n"]] = body
            return 200, body

        @self.route("POST", f"/v1/workspaces/{WORKSPACE}/query")
        def query(req: Request, m: Any) -> tuple[int, Any]:
            page = re.search(r"PodmortemRow > (\d+) and PodmortemRow <= (\d+)", req.body["query"])
            assert page is not None
            lo, hi = int(page[1]), int(page[2])
            return 200, {
                "tables": [
                    {
                        "name": "PrimaryResult",
                        "columns": [
                            {"name": "TimeGenerated", "type": "datetime"},
                            {"name": "AuditId", "type": "string"},
                            {"name": "Stage", "type": "string"},
                            {"name": "Verb", "type": "string"},
                            {"name": "_ResourceId", "type": "string"},
                        ],
                        "rows": self.rows[lo:hi],
                    }
                ]
            }


def clients(url: str) -> Any:
    """The official clients pointed at the fake. Azure's bearer-token policy refuses plain
    HTTP, as it should; the tests swap in a policy that sets a static token, so http is
    allowed here and only here (production uses DefaultAzureCredential over TLS)."""
    from azure.core.credentials import AccessToken
    from azure.core.pipeline.policies import SansIOHTTPPolicy
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.containerservice import ContainerServiceClient
    from azure.mgmt.network import NetworkManagementClient
    from azure.monitor.query import LogsQueryClient

    from podmortem.cloud.providers.azure import AzureClients

    class StaticToken(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def on_request(self, request: Any) -> None:
            request.http_request.headers["Authorization"] = "Bearer test-token"

    class Cred:
        def get_token(self, *scopes: str, **kw: Any) -> AccessToken:
            return AccessToken("test-token", 2**31)

    kw: dict[str, Any] = {
        "base_url": url,
        "authentication_policy": StaticToken(),
        "polling_interval": 0,
    }
    return AzureClients(
        compute=ComputeManagementClient(Cred(), SUB, **kw),  # type: ignore[arg-type]
        network=NetworkManagementClient(Cred(), SUB, **kw),  # type: ignore[arg-type]
        containers=ContainerServiceClient(Cred(), SUB, **kw),  # type: ignore[arg-type]
        logs=LogsQueryClient(Cred(), endpoint=url, authentication_policy=StaticToken()),  # type: ignore[arg-type]
    )

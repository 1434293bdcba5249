"""A busy, benign cluster must not drown the report: what controllers, kubelets and the
providers' system identities do all day is counted as suppressed, not reported."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from audit_rows import make_table

from podmortem.audit import engine
from podmortem.audit.ruleset import load_builtin
from podmortem.findings import Severity

T0 = datetime(2026, 11, 20, 0, 0, 0)
NODES = [f"system:node:ip-10-0-{i}-{j}.ec2.internal" for i in range(3) for j in (11, 42)]
KS = "kube-system"


def _ev(
    n: int,
    user: str,
    verb: str,
    resource: str,
    *,
    groups: tuple[str, ...] = (),
    ns: str | None = None,
    name: str | None = None,
    sub: str | None = None,
    body: dict[str, Any] | None = None,
    code: int = 200,
    group: str = "",
    seconds: float = 0.0,
) -> dict[str, Any]:
    ts = (T0 + timedelta(seconds=seconds)).isoformat() + "Z"
    obj = {"resource": resource, "apiGroup": group}
    obj.update({k: v for k, v in (("namespace", ns), ("name", name), ("subresource", sub)) if v})
    e: dict[str, Any] = {
        "auditID": f"{n:08x}-0000-4000-8000-000000000000",
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": user, "groups": list(groups)},
        "sourceIPs": ["10.0.0.10"],
        "objectRef": obj,
        "responseStatus": {"code": code},
        "stageTimestamp": ts,
        "requestReceivedTimestamp": ts,
    }
    if body is not None:
        e["requestObject"] = body
    return e


def _daemonset_pod() -> dict[str, Any]:
    # CNI/kube-proxy style: privileged, host network, host paths (expected in kube-system)
    return {
        "kind": "Pod",
        "spec": {
            "hostNetwork": True,
            "containers": [
                {
                    "name": "cni",
                    "image": "cni:1",
                    "securityContext": {"privileged": True, "capabilities": {"add": ["NET_ADMIN"]}},
                }
            ],
            "volumes": [
                {"name": "h", "hostPath": {"path": "/var/run"}},
                {"name": "e", "hostPath": {"path": "/etc/cni/net.d"}},
            ],
        },
    }


def busy_day(n_events: int = 6000, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for n in range(n_events):
        t = n * 14.4  # one day
        kind = rng.randrange(12)
        node = rng.choice(NODES)
        if kind == 0:
            out.append(
                _ev(
                    n,
                    "system:serviceaccount:kube-system:daemon-set-controller",
                    "create",
                    "pods",
                    ns=KS,
                    body=_daemonset_pod(),
                    seconds=t,
                )
            )
        elif kind == 1:
            out.append(
                _ev(
                    n,
                    node,
                    "create",
                    "serviceaccounts",
                    ns=rng.choice(["prod", KS]),
                    name="default",
                    sub="token",
                    groups=("system:nodes",),
                    seconds=t,
                )
            )
        elif kind == 2:
            out.append(
                _ev(
                    n,
                    node,
                    "get",
                    "secrets",
                    ns="prod",
                    name=f"s{rng.randrange(40)}",
                    groups=("system:nodes",),
                    seconds=t,
                )
            )
        elif kind == 3:
            out.append(
                _ev(
                    n,
                    node,
                    "create",
                    "certificatesigningrequests",
                    group="certificates.k8s.io",
                    groups=("system:nodes",),
                    seconds=t,
                )
            )
        elif kind == 4:
            out.append(
                _ev(
                    n,
                    "system:kube-controller-manager",
                    "update",
                    "certificatesigningrequests",
                    name=f"csr-{n}",
                    sub="approval",
                    group="certificates.k8s.io",
                    seconds=t,
                )
            )
        elif kind == 5:
            out.append(
                _ev(
                    n,
                    "system:serviceaccount:kube-system:namespace-controller",
                    "deletecollection",
                    rng.choice(["events", "secrets", "configmaps"]),
                    ns="tmp-ci",
                    seconds=t,
                )
            )
        elif kind == 6:
            out.append(_ev(n, "eks:certificate-controller", "list", "secrets", ns=KS, seconds=t))
        elif kind == 7:
            out.append(
                _ev(
                    n,
                    "system:serviceaccount:kube-system:replicaset-controller",
                    "create",
                    "pods",
                    ns=KS,
                    body={"spec": {"containers": [{"name": "dns", "image": "coredns:1.11"}]}},
                    seconds=t,
                )
            )
        elif kind == 8:
            out.append(
                _ev(
                    n,
                    node,
                    "patch",
                    "pods",
                    ns="prod",
                    name=f"web-{n % 30}",
                    sub="status",
                    groups=("system:nodes",),
                    seconds=t,
                )
            )
        elif kind == 9:
            out.append(
                _ev(
                    n,
                    "aksService",
                    "update",
                    "configmaps",
                    ns=KS,
                    name="kube-proxy",
                    groups=("system:masters",),
                    seconds=t,
                )
            )
        elif kind == 10:
            out.append(
                _ev(
                    n,
                    "system:kube-scheduler",
                    "create",
                    "pods",
                    ns="prod",
                    name=f"web-{n % 30}",
                    sub="binding",
                    seconds=t,
                )
            )
        else:
            out.append(
                _ev(
                    n,
                    "alice@example.com",
                    "get",
                    "pods",
                    ns="prod",
                    groups=("system:authenticated",),
                    seconds=t,
                )
            )
    return out


def test_busy_benign_cluster_yields_no_findings_but_counts_what_it_suppressed() -> None:
    events = busy_day()
    res = engine.run(make_table(events), load_builtin())
    assert res.runtime_errors == []
    loud = [f for f in res.findings if f.severity >= Severity.LOW]
    assert loud == [], [(f.rule_id, f.subject, f.extra.get("object")) for f in loud]
    suppressed = sum(s.requests for s in res.suppressed)
    assert suppressed > len(events) // 3
    # grouped per rule and actor: a handful of lines, not one per request
    assert len(res.suppressed) < 60


def test_the_same_cluster_with_one_intrusion_reports_only_the_intrusion() -> None:
    events = busy_day()
    n = len(events)
    events += [
        _ev(
            n + 1,
            "system:serviceaccount:prod:web",
            "create",
            "pods",
            ns=KS,
            body=_daemonset_pod(),
            seconds=3600,
        ),
        _ev(
            n + 2,
            "system:serviceaccount:prod:web",
            "create",
            "clusterrolebindings",
            group="rbac.authorization.k8s.io",
            seconds=3700,
            body={"roleRef": {"name": "cluster-admin"}, "subjects": [{"name": "web"}]},
        ),
    ]
    res = engine.run(make_table(events), load_builtin())
    actors = {f.subject for f in res.findings if f.severity >= Severity.LOW}
    assert actors == {"system:serviceaccount:prod:web"}
    rules = {f.rule_id for f in res.findings}
    assert {
        "k8s_privileged_container",
        "k8s_cluster_admin_binding",
        "k8s_workload_in_system_namespace",
    } <= rules

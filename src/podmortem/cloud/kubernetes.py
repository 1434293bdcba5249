"""Kubernetes-level containment, the same for every provider, through the official client.

Patches are merge patches of metadata maps (labels, annotations) and of whole
``podSelector`` objects, so the request body is exactly what a reviewer reads in the custody
log. The client sends a dict body as a strategic merge patch, which on these maps merges key
by key like a JSON merge patch: a ``None`` value removes the key, which is how ``release``
takes labels off again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from podmortem.cloud import labels as names
from podmortem.cloud.calls import CallLog
from podmortem.cloud.executor import StepContext, StepFn, UndoFn
from podmortem.cloud.model import Outcome, Status, Target
from podmortem.errors import InputError

CA_NODE = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
CA_POD = "cluster-autoscaler.kubernetes.io/safe-to-evict"
KARPENTER = "karpenter.sh/do-not-disrupt"
NODE_PROTECTION = {CA_NODE: "true", KARPENTER: "true"}
POD_PROTECTION = {CA_POD: "false", KARPENTER: "true"}
# Controllers whose pods leave them when relabelled out of the selector (the controller
# orphans the pod and starts a replacement). StatefulSets recreate pods by name, Jobs
# track pods by uid labels and finalizers: neither is detached this way.
# DaemonSets (in kube-system) of network-policy enforcers, and for the AWS VPC CNI the
# container that enforces policy. Without one of them a NetworkPolicy is stored and ignored.
ENFORCERS = {
    "calico-node": "Calico",
    "cilium": "Cilium",
    "anetd": "GKE Dataplane V2 (Cilium)",
    "antrea-agent": "Antrea",
    "kube-router": "kube-router",
    "weave-net": "Weave Net",
    "azure-npm": "Azure Network Policy Manager",
    "azure-cns": None,  # Azure CNI itself: enforcement comes from azure-npm/Cilium/Calico
}
AWS_POLICY_AGENT = "aws-network-policy-agent"
DETACHABLE = {
    "ReplicaSet": "read_namespaced_replica_set",
    "DaemonSet": "read_namespaced_daemon_set",
}

_PROVIDER_ID = {
    "eks": re.compile(r"^aws:///(?P<zone>[a-z0-9-]+)/(?P<instance>i-[0-9a-f]{8,17})$"),
    "aks": re.compile(
        r"^azure:///subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
        r"/providers/Microsoft\.Compute/virtualMachineScaleSets/(?P<vmss>[^/]+)"
        r"/virtualMachines/(?P<vm>\d+)$",
        re.IGNORECASE,
    ),
    "gke": re.compile(r"^gce://(?P<project>[^/]+)/(?P<zone>[a-z0-9-]+)/(?P<instance>[a-z0-9-]+)$"),
}


def parse_provider_id(provider: str, provider_id: str, target: Target) -> None:
    """Fill ``target.instance`` (and zone, resource group) from a node's ``spec.providerID``.
    The value comes from the cluster (which may be the compromised party), so it is matched
    against the provider's documented shape and rejected otherwise."""
    m = _PROVIDER_ID[provider].fullmatch(provider_id)  # `$` would accept a trailing newline
    if m is None:
        raise InputError(f"node providerID {provider_id[:200]!r} is not a {provider} node")
    g = m.groupdict()
    target.provider_id = provider_id
    if provider == "aks":
        target.instance = target.instance or f"{g['vmss']}/{g['vm']}"
        target.extra.setdefault("node_resource_group", g["rg"])
        target.extra.setdefault("subscription", g["subscription"])
    else:
        target.instance = target.instance or g["instance"]
        target.zone = target.zone or g["zone"]
        if provider == "gke":
            target.extra.setdefault("project", g["project"])


def _meta(obj: Any) -> tuple[dict[str, str], dict[str, str]]:
    md = obj.metadata
    return dict(md.labels or {}), dict(md.annotations or {})


def selector_matches(selector: Mapping[str, Any] | None, pod_labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics; an empty selector selects every pod."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or selector.get("match_labels") or {}).items():
        if pod_labels.get(k) != v:
            return False
    exprs = selector.get("matchExpressions") or selector.get("match_expressions") or []
    for e in exprs:
        key, op, values = e.get("key"), e.get("operator"), list(e.get("values") or [])
        has = key in pod_labels
        if op == "In" and not (has and pod_labels[key] in values):
            return False
        if op == "NotIn" and has and pod_labels[key] in values:
            return False
        if op == "Exists" and not has:
            return False
        if op == "DoesNotExist" and has:
            return False
    return True


def _missing(want: Mapping[str, str], have: Mapping[str, str]) -> dict[str, str]:
    """The entries of ``want`` that ``have`` lacks or holds with another value."""
    return {k: v for k, v in want.items() if have.get(k) != v}


def _prior(have: Mapping[str, str], keys: Any) -> dict[str, str | None]:
    """What ``have`` held for ``keys`` (None: absent); as a merge patch it puts the values
    back and removes the keys that were added."""
    return {k: have.get(k) for k in keys}


class KubernetesContainment:
    """The ``k8s.*`` steps. Clients are injected: ``CoreV1Api``, ``AppsV1Api``,
    ``NetworkingV1Api`` from the official client, configured by the caller (kubeconfig,
    in-cluster config)."""

    def __init__(self, core: Any, apps: Any, networking: Any) -> None:
        self.core = core
        self.apps = apps
        self.net = networking
        self.steps: dict[str, StepFn] = {
            "k8s.mark-pod": self.mark_pod,
            "k8s.mark-node": self.mark_node,
            "k8s.autoscaler-protection": self.autoscaler_protection,
            "k8s.detach-from-controller": self.detach,
            "k8s.quarantine-network-policy": self.quarantine,
            "k8s.cordon-node": self.cordon,
        }
        self.undos: dict[str, UndoFn] = {
            "k8s.mark-pod": self.undo_mark_pod,
            "k8s.mark-node": self.undo_mark_node,
            "k8s.autoscaler-protection": self.undo_autoscaler_protection,
            "k8s.detach-from-controller": self.undo_detach,
            "k8s.quarantine-network-policy": self.undo_quarantine,
            "k8s.cordon-node": self.undo_cordon,
        }

    # ------------------------------------------------------------------ resolve

    def resolve(self, target: Target, calls: CallLog) -> None:
        if target.pod and target.node is None:
            pod = self._read_pod(calls, target)
            target.node = pod.spec.node_name
            target.extra["pod_uid"] = pod.metadata.uid
        if target.node and target.instance is None:
            node = self._read_node(calls, target)
            pid = node.spec.provider_id if node.spec else None
            # Without a cloud provider nothing acts on the machine: its id is not needed
            # (and a self-managed cluster's providerID may follow no documented shape).
            if pid and target.provider in _PROVIDER_ID:
                parse_provider_id(target.provider, pid, target)

    def _on_pod(self, record: Callable[..., Any], method: str, target: Target, **kw: Any) -> Any:
        """``core.<method>`` on the target pod, through ``calls.read`` or ``calls.write``."""
        fn = getattr(self.core, method)
        return record("core", method, fn, name=target.pod_name, namespace=target.namespace, **kw)

    def _read_pod(self, calls: CallLog, target: Target) -> Any:
        return self._on_pod(calls.read, "read_namespaced_pod", target)

    def _patch_pod(self, calls: CallLog, target: Target, body: dict[str, Any]) -> Any:
        return self._on_pod(calls.write, "patch_namespaced_pod", target, body=body)

    def _read_node(self, calls: CallLog, target: Target) -> Any:
        return calls.read("core", "read_node", self.core.read_node, name=target.node)

    def _patch_node(self, calls: CallLog, target: Target, body: dict[str, Any]) -> Any:
        return calls.write("core", "patch_node", self.core.patch_node, name=target.node, body=body)

    # -------------------------------------------------------------------- marks

    def _mark_wanted(self, ctx: StepContext) -> tuple[dict[str, str], dict[str, str]]:
        return (
            {names.LABEL_CASE: names.k8s_label_value(ctx.case_id)},
            {names.ANNOTATION_CASE: ctx.case_id},
        )

    def mark_pod(self, ctx: StepContext) -> Outcome:
        pod = self._read_pod(ctx.calls, ctx.target)
        return self._mark(ctx, pod, self._patch_pod)

    def mark_node(self, ctx: StepContext) -> Outcome:
        node = self._read_node(ctx.calls, ctx.target)
        return self._mark(ctx, node, self._patch_node)

    def _mark(self, ctx: StepContext, obj: Any, patch: Any) -> Outcome:
        have_l, have_a = _meta(obj)
        want_l, want_a = self._mark_wanted(ctx)
        add_l, add_a = _missing(want_l, have_l), _missing(want_a, have_a)
        if not add_l and not add_a:
            return Outcome(Status.UNCHANGED, "already marked for this case")
        undo = {"labels": _prior(have_l, add_l), "annotations": _prior(have_a, add_a)}
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would set {sorted(add_l) + sorted(add_a)}")
        patch(ctx.calls, ctx.target, {"metadata": {"labels": add_l, "annotations": add_a}})
        return Outcome(Status.CHANGED, "marked", undo=undo)

    def _unmark_body(self, saved: Mapping[str, Any]) -> dict[str, Any]:
        labels = dict(saved.get("labels") or {})
        annotations = dict(saved.get("annotations") or {})
        return {"metadata": {"labels": labels, "annotations": annotations}}

    def undo_mark_pod(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        self._patch_pod(ctx.calls, ctx.target, self._unmark_body(saved))
        return Outcome(Status.CHANGED, "marks removed")

    def undo_mark_node(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        self._patch_node(ctx.calls, ctx.target, self._unmark_body(saved))
        return Outcome(Status.CHANGED, "marks removed")

    # --------------------------------------------------------------- autoscaler

    def autoscaler_protection(self, ctx: StepContext) -> Outcome:
        t = ctx.target
        node = self._read_node(ctx.calls, t)
        node_ann = _meta(node)[1]
        node_add = _missing(NODE_PROTECTION, node_ann)
        pod_add: dict[str, str] = {}
        pod_ann: dict[str, str] = {}
        if t.pod:
            pod_ann = _meta(self._read_pod(ctx.calls, t))[1]
            pod_add = _missing(POD_PROTECTION, pod_ann)
        if not node_add and not pod_add:
            return Outcome(Status.UNCHANGED, "autoscaler annotations already present")
        undo = {"node": _prior(node_ann, node_add), "pod": _prior(pod_ann, pod_add)}
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would annotate {sorted(node_add | pod_add)}")
        if node_add:
            self._patch_node(ctx.calls, t, {"metadata": {"annotations": node_add}})
        if pod_add:
            self._patch_pod(ctx.calls, t, {"metadata": {"annotations": pod_add}})
        return Outcome(Status.CHANGED, "autoscaler protection annotations set", undo=undo)

    def undo_autoscaler_protection(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        if saved.get("node"):
            self._patch_node(ctx.calls, ctx.target, {"metadata": {"annotations": saved["node"]}})
        if saved.get("pod") and ctx.target.pod:
            self._patch_pod(ctx.calls, ctx.target, {"metadata": {"annotations": saved["pod"]}})
        return Outcome(Status.CHANGED, "annotations restored")

    # ------------------------------------------------------------------- detach

    def detach(self, ctx: StepContext) -> Outcome:
        t = ctx.target
        pod = self._read_pod(ctx.calls, t)
        have_l, _ = _meta(pod)
        if names.LABEL_DETACHED in have_l:
            return Outcome(
                Status.UNCHANGED, f"already detached from {have_l[names.LABEL_DETACHED]}"
            )
        owners = [o for o in (pod.metadata.owner_references or []) if o.controller]
        if not owners:
            return Outcome(Status.UNCHANGED, "the pod has no controller")
        owner = owners[0]
        if owner.kind not in DETACHABLE:
            return Outcome(
                Status.NOT_APPLICABLE,
                f"owner {owner.kind} does not release relabelled pods; left attached",
            )
        method = DETACHABLE[owner.kind]
        ctrl = ctx.calls.read(
            "apps", method, getattr(self.apps, method), name=owner.name, namespace=t.namespace
        )
        match_labels = dict((ctrl.spec.selector.match_labels or {}) if ctrl.spec.selector else {})
        remove = {k: have_l[k] for k in match_labels if k in have_l}
        if not remove:
            return Outcome(
                Status.NOT_APPLICABLE,
                "the controller selects by expressions only; relabelling cannot detach it",
            )
        detached = names.k8s_label_value(f"{owner.kind}.{owner.name}")
        undo = {"labels": remove, "added": [names.LABEL_DETACHED]}
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would remove selector labels {sorted(remove)}")
        body_labels: dict[str, str | None] = dict.fromkeys(remove)
        body_labels[names.LABEL_DETACHED] = detached
        self._patch_pod(
            ctx.calls,
            t,
            {
                "metadata": {
                    "labels": body_labels,
                    "annotations": {names.ANNOTATION_ORIGINAL_LABELS: json.dumps(remove)},
                }
            },
        )
        return Outcome(Status.CHANGED, f"relabelled out of {owner.kind} {owner.name}", undo=undo)

    def undo_detach(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        restore: dict[str, str | None] = dict(saved.get("labels") or {})
        for k in saved.get("added") or []:
            restore[str(k)] = None
        self._patch_pod(
            ctx.calls,
            ctx.target,
            {
                "metadata": {
                    "labels": restore,
                    "annotations": {names.ANNOTATION_ORIGINAL_LABELS: None},
                }
            },
        )
        return Outcome(Status.CHANGED, "original labels restored; the controller may adopt it")

    # --------------------------------------------------------------- quarantine

    def _policy_name(self, case_id: str) -> str:
        return ("podmortem-quarantine-" + names.k8s_label_value(case_id).lower())[:253].rstrip("-.")

    def quarantine(self, ctx: StepContext) -> Outcome:
        t = ctx.target
        ns = t.namespace
        pod = self._read_pod(ctx.calls, t)
        pod_labels = _meta(pod)[0]
        qval = names.k8s_label_value(ctx.case_id)
        name = self._policy_name(ctx.case_id)
        need_label = pod_labels.get(names.LABEL_QUARANTINE) != qval
        labelled = {**pod_labels, names.LABEL_QUARANTINE: qval}
        policies = ctx.calls.read(
            "networking",
            "list_namespaced_network_policy",
            self.net.list_namespaced_network_policy,
            namespace=ns,
        )
        exists = False
        to_patch: dict[str, dict[str, Any]] = {}
        for pol in policies.items or []:
            if pol.metadata.name == name:
                exists = True
                continue
            sel = self.net.api_client.sanitize_for_serialization(pol.spec.pod_selector)
            spec = pol.spec
            allows = bool(spec.ingress) or bool(spec.egress)
            if allows and selector_matches(sel or {}, labelled):
                to_patch[pol.metadata.name] = sel or {}
        enforcer = self._enforcer(ctx)
        if not need_label and exists and not to_patch:
            return Outcome(
                Status.UNCHANGED,
                f"quarantine policy {name} already in force; {enforcer}",
                result={"enforcer": enforcer},
            )
        undo: dict[str, Any] = {
            "policy": name if not exists else None,
            "label": need_label,
            "patched": to_patch,
        }
        plan = []
        if need_label:
            plan.append("label the pod")
        if not exists:
            plan.append(f"create {name}")
        if to_patch:
            plan.append(f"exclude the pod from {sorted(to_patch)}")
        if not ctx.execute:
            return Outcome(
                Status.WOULD_CHANGE,
                "would " + ", ".join(plan) + f"; {enforcer}",
                result={"enforcer": enforcer},
            )
        if need_label:
            self._patch_pod(ctx.calls, t, {"metadata": {"labels": {names.LABEL_QUARANTINE: qval}}})
        if not exists:
            ctx.calls.write(
                "networking",
                "create_namespaced_network_policy",
                self.net.create_namespaced_network_policy,
                namespace=ns,
                body=self.policy_body(name, qval, ctx.case_id),
            )
        for pname, sel in to_patch.items():
            new_sel = json.loads(json.dumps(sel))
            exprs = list(new_sel.get("matchExpressions") or [])
            exprs.append({"key": names.LABEL_QUARANTINE, "operator": "DoesNotExist"})
            new_sel["matchExpressions"] = exprs
            self._patch_selector(ctx.calls, ns, pname, new_sel)
        return Outcome(
            Status.CHANGED, "; ".join([*plan, enforcer]), undo=undo, result={"enforcer": enforcer}
        )

    def _patch_selector(
        self, calls: CallLog, namespace: str | None, name: str, selector: dict[str, Any]
    ) -> None:
        calls.write(
            "networking",
            "patch_namespaced_network_policy",
            self.net.patch_namespaced_network_policy,
            name=name,
            namespace=namespace,
            body={"spec": {"podSelector": selector}},
        )

    def _enforcer(self, ctx: StepContext) -> str:
        """Which CNI (if any) enforces NetworkPolicy here, read from kube-system's
        DaemonSets; a policy nobody enforces isolates nothing, so the outcome says so."""
        try:
            dss = ctx.calls.read(
                "apps",
                "list_namespaced_daemon_set",
                self.apps.list_namespaced_daemon_set,
                namespace="kube-system",
            )
        except Exception as exc:  # RBAC may forbid it: report, do not guess
            return f"policy enforcement not checked ({type(exc).__name__})"
        found: list[str] = []
        for ds in dss.items or []:
            name = str(ds.metadata.name)
            if ENFORCERS.get(name):
                found.append(str(ENFORCERS[name]))
            if name == "aws-node":
                containers = ds.spec.template.spec.containers or []
                if any(c.name == AWS_POLICY_AGENT for c in containers):
                    found.append("AWS VPC CNI network policy agent")
        if not found:
            return (
                "WARNING: no NetworkPolicy enforcer found in kube-system; the policy may do nothing"
            )
        return "enforced by " + ", ".join(sorted(set(found)))

    @staticmethod
    def policy_body(name: str, qval: str, case_id: str) -> dict[str, Any]:
        # No ingress or egress rules with both policy types: everything is denied.
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": name,
                "labels": {names.LABEL_CASE: qval},
                "annotations": {names.ANNOTATION_CASE: case_id},
            },
            "spec": {
                "podSelector": {"matchLabels": {names.LABEL_QUARANTINE: qval}},
                "policyTypes": ["Ingress", "Egress"],
            },
        }

    def undo_quarantine(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        ns = ctx.target.namespace
        for pname, sel in (saved.get("patched") or {}).items():
            # A merge patch of podSelector would merge maps; restore the list explicitly.
            restored = {**sel, "matchExpressions": sel.get("matchExpressions")}
            self._patch_selector(ctx.calls, ns, pname, restored)
        if saved.get("policy"):
            ctx.calls.write(
                "networking",
                "delete_namespaced_network_policy",
                self.net.delete_namespaced_network_policy,
                name=saved["policy"],
                namespace=ns,
            )
        if saved.get("label"):
            self._patch_pod(
                ctx.calls, ctx.target, {"metadata": {"labels": {names.LABEL_QUARANTINE: None}}}
            )
        return Outcome(Status.CHANGED, "quarantine lifted")

    # ------------------------------------------------------------------- cordon

    def cordon(self, ctx: StepContext) -> Outcome:
        node = self._read_node(ctx.calls, ctx.target)
        if node.spec and node.spec.unschedulable:
            return Outcome(Status.UNCHANGED, "node already cordoned")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, "would cordon the node")
        self._patch_node(ctx.calls, ctx.target, {"spec": {"unschedulable": True}})
        return Outcome(Status.CHANGED, "node cordoned", undo={"unschedulable": False})

    def undo_cordon(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        self._patch_node(ctx.calls, ctx.target, {"spec": {"unschedulable": None}})
        return Outcome(Status.CHANGED, "node uncordoned")

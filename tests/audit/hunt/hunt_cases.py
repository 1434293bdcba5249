"""The hunt plans the verification tests share: every built-in rule, the golden cases, the
hostile-value rule and the SigmaHQ rules of the public corpus (when present).

The clock is fixed (``NOW``) so that ``--since`` output is reproducible byte for byte.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from podmortem.audit.hunt import load_rules, plan_hunt
from podmortem.audit.hunt.plan import HuntPlan
from podmortem.audit.ruleset import RuleSet

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

# GKE has no requestURI: these negative examples differ from a positive only in requestURI,
# so GKE's queries select them too (and say so in their notes).
GKE_BLIND = {
    ("k8s_anonymous_request", "negative-0"): "requestURI",
    ("k8s_anonymous_request_allowed", "negative-0"): "requestURI",
    ("k8s_nodes_proxy", "negative-0"): "requestURI",
}

NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
PROVIDERS = ("eks", "aks", "gke")

HOSTILE_DIR = HERE / "hostile"  # hostile.yml: values built to break out of literals


@dataclass(frozen=True, slots=True)
class Case:
    """One golden case: a rule (built-in id, or ``sigma:<file stem>``) with options."""

    name: str
    rule: str
    since: str | None = None
    cluster: str | None = None


CASES = (
    Case("exec_into_container", "k8s_exec_into_container"),
    Case("exec_shell_or_tool", "k8s_exec_shell_or_tool"),
    Case("privileged_container", "k8s_privileged_container"),
    Case("hostpath_mount", "k8s_hostpath_mount"),
    Case("secret_read", "k8s_secret_read"),
    Case("secret_enumeration", "k8s_secret_enumeration"),
    Case("cluster_admin_binding", "k8s_cluster_admin_binding"),
    Case("forbidden_burst", "k8s_forbidden_burst"),
    Case("impersonation", "k8s_impersonation"),
    Case("sigmahq_hostpath_mount", "sigma:kubernetes_audit_hostpath_mount"),
    Case("sigmahq_exec_into_container", "sigma:kubernetes_audit_exec_into_container"),
    Case("since_24h_exec_into_container", "k8s_exec_into_container", since="24h"),
    Case("since_rfc3339_secret_read", "k8s_secret_read", since="2026-11-19T08:30:00+01:00"),
    Case("cluster_prod_cluster_admin_binding", "k8s_cluster_admin_binding", cluster="prod-1"),
    Case(
        "since_cluster_secret_enumeration", "k8s_secret_enumeration", since="7d", cluster="prod-1"
    ),
    Case("hostile_values", "hostile_values"),
)


def sigma_dir() -> Path:
    """The SigmaHQ Kubernetes rules of the public corpus (``../shared/corpus`` beside the repo,
    or ``$PODMORTEM_CORPUS``), as tests/conftest.py locates the corpus."""
    env = os.environ.get("PODMORTEM_CORPUS")
    corpus = Path(env) if env else (REPO / ".." / "shared" / "corpus").resolve()
    return corpus / "k8s-audit" / "sigma-rules"


@cache
def builtin_rules() -> RuleSet:
    return load_rules()


@cache
def hostile_rules() -> RuleSet:
    rules = load_rules(rules_dirs=[HOSTILE_DIR], builtin=False)
    assert not rules.errors, rules.errors
    return rules


@cache
def sigmahq_rules() -> RuleSet | None:
    d = sigma_dir()
    if not d.is_dir():
        return None
    return load_rules(sigma_dirs=[d], builtin=False)


def sigmahq_id(stem: str) -> str | None:
    rules = sigmahq_rules()
    if rules is None:
        return None
    for r in rules.rules:
        if Path(r.path).stem == stem:
            return r.rule_id
    return None


@cache
def all_builtin_plans() -> dict[str, HuntPlan]:
    """Every built-in rule, per provider, without and with --since/--cluster."""
    out = {}
    for p in PROVIDERS:
        out[p] = plan_hunt(p, builtin_rules(), now=NOW)
        out[p + "+since+cluster"] = plan_hunt(
            p, builtin_rules(), since="24h", cluster="prod-1", now=NOW
        )
        out[p + "+rfc3339"] = plan_hunt(p, builtin_rules(), since="2026-11-19T08:30:00Z", now=NOW)
    return out


def queries(plan: HuntPlan, target: str) -> dict[str, str]:
    """rule id -> the printed query of ``target`` (expressible ones only)."""
    out = {}
    for h in plan.hunts:
        for q in h.queries:
            if q.target == target and q.query is not None:
                out[h.rule.rule_id] = q.query
    return out

"""``podmortem audit hunt``: every selected rule as the query for where a provider keeps its
audit logs. Rules come from the same loader as ``audit analyze`` (built-in, ``--sigma``,
``--rules``); a rule a language cannot express is listed with the reason, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sigma.collection import SigmaCollection
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from podmortem.audit.actors import ActorPolicy
from podmortem.audit.fieldmap import UnknownFieldError
from podmortem.audit.hunt.backend import Aggregation, HuntBackend, QueryContext, Translation
from podmortem.audit.hunt.bigquery import BigQueryBackend
from podmortem.audit.hunt.cloudlogging import CloudLoggingBackend
from podmortem.audit.hunt.fields import FieldResolver, load_targets
from podmortem.audit.hunt.insights import InsightsBackend
from podmortem.audit.hunt.kql import AksAuditBackend, AzureDiagnosticsBackend
from podmortem.audit.hunt.since import Since, parse_since
from podmortem.audit.hunt.values import Unexpressible
from podmortem.audit.ruleset import AuditRule, RuleError, RuleSet, load_builtin, load_dir
from podmortem.errors import InputError

BACKENDS: dict[str, type[HuntBackend]] = {
    "insights": InsightsBackend,
    "kql-aksaudit": AksAuditBackend,
    "kql-azurediagnostics": AzureDiagnosticsBackend,
    "gke-logging": CloudLoggingBackend,
    "gke-bigquery": BigQueryBackend,
}
PROVIDERS: dict[str, tuple[str, ...]] = {
    "eks": ("insights",),
    "aks": ("kql-aksaudit", "kql-azurediagnostics"),
    "gke": ("gke-logging", "gke-bigquery"),
}


# EKS: [A-Za-z0-9][A-Za-z0-9_-]{0,99}; AKS: letters, digits, '_' and '-'; GKE: lower-case
# letters, digits and '-': one whitelist that admits all three and nothing a shell or a
# query literal would read.
_CLUSTER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class UnknownRuleError(InputError):
    """``--rule`` names no loaded rule."""


@dataclass(slots=True)
class HuntQuery:
    target: str
    language: str
    query: str | None  # None: not expressible (see reason)
    reason: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "language": self.language,
            "query": self.query,
            "reason": self.reason,
            "notes": self.notes,
        }


@dataclass(slots=True)
class RuleHunt:
    rule: AuditRule
    queries: list[HuntQuery]

    def to_dict(self) -> dict[str, Any]:
        r = self.rule
        return {
            "rule_id": r.rule_id,
            "title": r.title,
            "level": str(r.level),
            "origin": r.origin,
            "path": r.path,
            "techniques": list(r.techniques),
            "kind": "correlation" if r.correlation else "detection",
            "queries": [q.to_dict() for q in self.queries],
        }


@dataclass(slots=True)
class HuntPlan:
    provider: str
    since: Since | None
    cluster: str | None
    hunts: list[RuleHunt]
    errors: list[RuleError]

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "since": self.since.rfc3339 if self.since else None,
            "since_seconds": self.since.seconds if self.since else None,
            "cluster": self.cluster,
            "rules": [h.to_dict() for h in self.hunts],
            "rule_errors": [e.to_dict() for e in self.errors],
        }


def load_rules(
    sigma_dirs: Iterable[Path] = (), rules_dirs: Iterable[Path] = (), *, builtin: bool = True
) -> RuleSet:
    rs = load_builtin() if builtin else RuleSet()
    for d in sigma_dirs:
        rs.extend(load_dir(Path(d), "sigma"))
    for d in rules_dirs:
        rs.extend(load_dir(Path(d), "custom"))
    return rs


def select(rules: RuleSet, wanted: Sequence[str]) -> list[AuditRule]:
    if not wanted:
        return [r for r in rules.rules if r.sql is not None or r.correlation is not None]
    out: list[AuditRule] = []
    unknown = []
    for w in wanted:
        hit = [r for r in rules.rules if w in (r.rule_id, r.key, r.name, _sigma_id(r))]
        if not hit:
            unknown.append(w)
        out += [r for r in hit if r not in out]
    if unknown:
        raise UnknownRuleError("unknown rule id(s): " + ", ".join(repr(u[:80]) for u in unknown))
    return out


def _sigma_id(rule: AuditRule) -> str | None:
    return None


def plan_hunt(
    provider: str,
    rules: RuleSet,
    *,
    rule_ids: Sequence[str] = (),
    since: str | None = None,
    cluster: str | None = None,
    now: datetime | None = None,
) -> HuntPlan:
    if provider not in PROVIDERS:
        raise InputError(f"provider must be one of {', '.join(PROVIDERS)}")
    if cluster is not None and not _CLUSTER.fullmatch(cluster):
        # the name lands in queries and in the printed shell command (EKS log group)
        raise InputError(
            f"--cluster {cluster[:60]!r}: a cluster name is letters, digits, '-', '_' or '.'"
            " (at most 100, starting with a letter or digit)"
        )
    chosen = select(rules, rule_ids)
    ctx = QueryContext(
        since=parse_since(since, now or datetime.now(UTC)) if since else None,
        cluster=cluster,
    )
    by_key = {r.key: r for r in rules.rules}
    texts: dict[str, str] = {}
    hunts = [RuleHunt(r, []) for r in chosen]
    targets = load_targets()
    for name in PROVIDERS[provider]:
        backend = BACKENDS[name](FieldResolver(targets[name]))
        for h in hunts:
            h.queries.append(_one(backend, h.rule, by_key, texts, ctx))
    return HuntPlan(provider, ctx.since, cluster, hunts, list(rules.errors))


def _sigma_rule(rule: AuditRule, texts: dict[str, str]) -> SigmaRule:
    """A fresh pySigma rule object for ``rule`` (pipelines change the object they run on)."""
    text = texts.get(rule.path)
    if text is None:
        text = texts[rule.path] = Path(rule.path).read_text("utf-8")
    coll = SigmaCollection.from_yaml(text, collect_errors=True, resolve_references=False)
    for r in coll.rules:
        if isinstance(r, SigmaRule) and rule.rule_id in (
            r.name,
            str(r.id) if r.id else None,
            Path(rule.path).stem if rule.origin == "builtin" else None,
        ):
            return r
    raise InputError(f"{rule.path}: rule {rule.rule_id} not found on re-reading")


def _one(
    backend: HuntBackend,
    rule: AuditRule,
    by_key: dict[str, AuditRule],
    texts: dict[str, str],
    ctx: QueryContext,
) -> HuntQuery:
    q = HuntQuery(backend.target_name, backend.language, None)
    try:
        if rule.correlation is None:
            tr = backend.translate(_sigma_rule(rule, texts))
            q.notes = tr.notes
            if tr.constant is False:
                raise Unexpressible(
                    "the rule can never match this provider's logs: " + "; ".join(tr.notes)
                )
            q.query = backend.detection_query(tr, ctx)
        else:
            q.query, q.notes = _correlation(backend, rule, by_key, texts, ctx)
    except (Unexpressible, UnknownFieldError, SigmaError) as exc:
        q.query = None
        q.reason = " ".join(str(exc).split())[:500]
    return q


def _correlation(
    backend: HuntBackend,
    rule: AuditRule,
    by_key: dict[str, AuditRule],
    texts: dict[str, str],
    ctx: QueryContext,
) -> tuple[str, list[str]]:
    spec = rule.correlation
    assert spec is not None  # noqa: S101 - only called for correlations
    parts: list[Translation] = []
    notes: list[str] = []
    for key in spec.rules:
        tr = backend.translate(_sigma_rule(by_key[key], texts))
        notes += tr.notes
        if tr.constant is True:
            raise Unexpressible(f"referenced rule {by_key[key].rule_id} matches every event here")
        if tr.constant is None:
            parts.append(tr)
    if not parts:
        raise Unexpressible("the referenced rules can never match this provider's logs")
    policy = ActorPolicy.default_policy()
    expected = rule.expected_actors if rule.expected_actors is not None else policy.default_expected
    exprs = [f"({p.expr})" for p in parts]
    preludes = [s for p in parts for s in p.preludes]
    if expected:
        excl = backend.actor_exclusion(sorted(expected))
        notes += excl.notes
        notes.append(
            "activity of expected actors (" + ", ".join(sorted(expected)) + ") is not counted,"
            " as in podmortem's engine"
        )
        if excl.constant is False:
            raise Unexpressible("every actor here is an expected actor of this correlation")
        if excl.expr:
            preludes += excl.preludes
            joined = f" {backend.or_token} ".join(exprs)
            exprs = [f"({joined})", f"({excl.expr})"]
            base_expr = f" {backend.and_token} ".join(exprs)
        else:
            base_expr = f" {backend.or_token} ".join(exprs)
    else:
        base_expr = f" {backend.or_token} ".join(exprs)
    groups = []
    for g in spec.group_by:
        refs = backend.resolver.resolve(g)
        if len(refs) != 1:
            raise Unexpressible(f"group-by field {g} has several places here")
        groups.append(backend.group_expr(refs[0]))
    value = None
    if spec.value_field:
        refs = backend.resolver.resolve(spec.value_field)
        if len(refs) != 1:
            raise Unexpressible(f"value field {spec.value_field} has several places here")
        value = backend.group_expr(refs[0])
    agg = Aggregation(groups, value, spec.timespan_s, spec.op, spec.count, list(spec.group_by))
    notes.append(
        f"windows are fixed {spec.timespan_s}s buckets; podmortem's engine slides the window,"
        " so a burst that straddles a bucket boundary can fall below the threshold here"
    )
    base = Translation(base_expr, None, [], preludes)
    return backend.correlation_query(base, agg, ctx), list(dict.fromkeys(notes + backend.notes))

"""Every KQL query podmortem prints, parsed and bound by Microsoft's Kusto language service
(kusto_check.py) against the documented AKSAudit/AKSAuditAdmin/AzureDiagnostics columns:
no diagnostic of any severity is allowed. Both flavours, every built-in rule (plain, with
``--since`` as a duration and as a time, with ``--cluster``), the SigmaHQ rules of the public
corpus when present, and the hostile-value rule."""

from __future__ import annotations

import pytest
from hunt_cases import all_builtin_plans, hostile_rules, queries, sigmahq_rules
from kusto_check import diagnostics

from podmortem.audit.hunt import plan_hunt
from podmortem.audit.ruleset import RuleSet

FLAVOURS = ("kql-aksaudit", "kql-azurediagnostics")


def _describe(bad: dict[str, list[dict[str, object]]], texts: dict[str, str]) -> str:
    out = []
    for qid, diags in list(bad.items())[:5]:
        for d in diags[:3]:
            start = int(str(d["start"]))
            out.append(f"{qid}: {d['severity']} {d['code']} {d['message']} at ...")
            out.append("    " + texts[qid][max(0, start - 60) : start + 60].replace("\n", " "))
    return "\n".join(out)


def test_the_service_reports_errors_it_should() -> None:
    """The checker itself: a bad column, a bad function and broken syntax are all caught,
    and a well-formed query over the declared schema is clean."""
    texts = {
        "ok": 'AKSAudit | where tostring(User.username) =~ "x" | project AuditId',
        "unknown_column": "AKSAudit | where ImpersonatedUser != ''",
        "unknown_function": "AKSAudit | where nosuchfn(Verb)",
        "syntax": "AKSAudit | where (Verb == 'get'",
        "diag_unknown": "AzureDiagnostics | where ResourceId endswith 'x'",
    }
    got = diagnostics(texts)
    assert got["ok"] == []
    assert {d["code"] for d in got["unknown_column"]} == {"KS142"}
    for qid in ("unknown_function", "syntax", "diag_unknown"):
        assert any(d["severity"] == "Error" for d in got[qid]), qid


def test_every_builtin_kql_query_is_clean() -> None:
    """All rules with --since 24h --cluster prod-1 (the head lines of every variant); the
    plain and RFC 3339 --since variants differ from it only in those lines, so the ten
    smallest rules of each stand for them (binding a large query takes seconds)."""
    texts: dict[str, str] = {}
    for name, plan in all_builtin_plans().items():
        if not name.startswith("aks"):
            continue
        for target in FLAVOURS:
            found = queries(plan, target)
            keep = sorted(found, key=lambda r: len(found[r]))
            if name != "aks+since+cluster":
                keep = keep[:10]
            texts.update({f"{name}/{target}/{r}": found[r] for r in keep})
    # 61 rules x 2 flavours, less the few a flavour cannot express, and 2 x 2 x 10 more
    assert len(texts) >= 2 * 55 + 40
    got = diagnostics(texts)
    bad = {k: v for k, v in got.items() if v}
    assert not bad, _describe(bad, texts)


def _check_ruleset(name: str, rules: RuleSet) -> int:
    plan = plan_hunt("aks", rules, since="90m", cluster="c-1")
    texts = {
        f"{name}/{target}/{rule_id}": q
        for target in FLAVOURS
        for rule_id, q in queries(plan, target).items()
    }
    got = diagnostics(texts)
    bad = {k: v for k, v in got.items() if v}
    assert not bad, _describe(bad, texts)
    return len(texts)


def test_hostile_values_kql_queries_are_clean() -> None:
    assert _check_ruleset("hostile", hostile_rules()) == 2


def test_sigmahq_kql_queries_are_clean() -> None:
    sigma = sigmahq_rules()
    if sigma is None:
        pytest.skip("SigmaHQ rules of the public corpus not present")
    assert _check_ruleset("sigmahq", sigma) >= 2 * 14

"""Rule values stay values in every language: 80 random strings over an alphabet of quote,
escape, wildcard, regex, comment and control characters (and non-ASCII ones) become rules;
each printed query must parse (Kusto service, the Cloud Logging and Insights parsers), and
executed here (BigQuery in DuckDB; the KQL, Cloud Logging and Insights evaluators) it must
select the value itself and its case-flipped form (Sigma compares without case) and nothing
else: not the value with a character more, nor with one less.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml
from bq_duckdb import connect, insert, log_entry, run, sink_row
from insights_query import parse as insights_parse
from insights_query import run as insights_run
from kql_eval import run_query
from kusto_check import diagnostics
from logging_filter import evaluate
from logging_filter import parse as logging_parse

from podmortem.audit.hunt import load_rules, plan_hunt

ALPHABET = [*"aZ0 '\"\\|/*?-()[]{}$^.+%#;,=~`@:!&<>", "\n", "\t", "é", "✓", "😀", "\u2028"]
N = 80


def _values() -> list[str]:
    rng = random.Random(20261127)  # fixed: the same strings on every run
    out = []
    while len(out) < N:
        v = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 12)))
        if v.strip() and v not in out:
            out.append(v)
    return out


def _sigma_literal(v: str) -> str:
    """``v`` as a Sigma string with no wildcard: backslash, ``*`` and ``?`` escaped."""
    return v.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")


def _rules(tmp: Path, values: list[str]) -> Any:
    docs = []
    for i, v in enumerate(values):
        docs.append(
            {
                "title": f"fuzz {i}",
                "id": f"0b5c5f8e-0000-4000-8000-{i:012d}",
                "status": "experimental",
                "logsource": {"product": "kubernetes", "service": "audit"},
                "detection": {
                    "selection": {"objectRef.resource": "pods", "user.username": _sigma_literal(v)},
                    "condition": "selection",
                },
                "level": "low",
            }
        )
    (tmp / "fuzz.yml").write_text(yaml.safe_dump_all(docs, allow_unicode=True), "utf-8")
    rules = load_rules(rules_dirs=[tmp], builtin=False)
    assert not rules.errors, rules.errors[:3]
    assert len(rules.rules) == len(values)
    return rules


def _flip(v: str) -> str:
    return v.swapcase() if v.swapcase() != v else v


def _cases(v: str) -> dict[str, bool]:
    cases = {v: True, _flip(v): True, v + "x": False}
    if len(v) > 1:
        cases[v[:-1]] = False
    return cases


BASE = {
    "verb": "get",
    "stage": "ResponseComplete",
    "objectRef": {"resource": "pods", "namespace": "p", "name": "n"},
    "stageTimestamp": "2026-11-20T10:00:00Z",
}


def test_values_stay_values(tmp_path: Path) -> None:
    values = _values()
    rules = _rules(tmp_path, values)
    by_id = {r.rule_id: v for r, v in zip(rules.rules, values, strict=True)}
    kql: dict[str, str] = {}
    checked = 0
    for provider in ("eks", "aks", "gke"):
        plan = plan_hunt(provider, rules)
        for h in plan.hunts:
            v = by_id[h.rule.rule_id]
            for q in h.queries:
                assert q.query is not None, (repr(v), q.target, q.reason)
                assert all(" " <= c <= "~" or c == "\n" for c in q.query), q.target
                events = {u: {**BASE, "user": {"username": u}} for u in _cases(v)}
                if q.target.startswith("kql"):
                    kql[f"{q.target}/{h.rule.rule_id}"] = q.query
                    got = {
                        u
                        for i, (u, e) in enumerate(events.items())
                        if run_query(q.query, [{**e, "auditID": str(i)}])
                    }
                elif q.target == "insights":
                    cmds = insights_parse(q.query)
                    got = {
                        u
                        for u, e in events.items()
                        if insights_run(cmds, [e], "kube-apiserver-audit-1")
                    }
                elif q.target == "gke-logging":
                    tree = logging_parse(q.query)
                    got = {u for u, e in events.items() if evaluate(tree, log_entry(e, "i"))}
                else:
                    con = connect()
                    users = list(events)
                    insert(con, [sink_row(events[u], str(i)) for i, u in enumerate(users)])
                    got = {users[int(r[1])] for r in run(con, q.query)}
                want = {u for u, hit in _cases(v).items() if hit}
                assert got == want, (q.target, repr(v), sorted(map(repr, got)))
                checked += 1
    assert checked == N * 5
    bad = {k: d for k, d in diagnostics(kql).items() if d}
    assert len(kql) == N * 2
    assert not bad, list(bad.items())[:3]

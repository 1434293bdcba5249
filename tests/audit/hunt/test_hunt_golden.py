"""Golden output of ``podmortem audit hunt``: each case's query per provider and language,
compared byte for byte with ``golden/<provider>/<target>/<case>.txt``.

A golden file is the query exactly as printed (or ``not expressible: <reason>``), then the
notes printed under it (``# note: ...``). Each file was reviewed by hand against the language's
documentation before it was frozen (docs/audit-hunt.md lists what was checked); the parser
and execution tests (test_hunt_kql_parse.py, test_hunt_cloudlogging.py,
test_hunt_insights.py, test_hunt_bigquery_exec.py) check every query beyond these cases.

Regenerate only after reviewing the difference, with the env var set explicitly::

    PODMORTEM_UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/audit/hunt/test_hunt_golden.py

which rewrites the files of the cases that ran (and fails nothing); then read ``git diff
tests/audit/hunt/golden`` before committing. Cases on SigmaHQ rules need the public corpus
(``../shared/corpus`` or ``$PODMORTEM_CORPUS``) and skip without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hunt_cases import (
    CASES,
    NOW,
    PROVIDERS,
    Case,
    builtin_rules,
    hostile_rules,
    sigmahq_id,
    sigmahq_rules,
)

from podmortem.audit.hunt import plan_hunt
from podmortem.audit.hunt.plan import PROVIDERS as TARGETS_OF
from podmortem.audit.hunt.plan import HuntPlan, HuntQuery
from podmortem.audit.hunt.render import run_command

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("PODMORTEM_UPDATE_GOLDEN") == "1"


def golden_text(q: HuntQuery, plan: HuntPlan) -> str:
    """As ``render_text`` prints one query: the run command (it carries --since and
    --cluster where the query does not, e.g. Logs Insights), the query, its notes."""
    if q.query is None:
        head = f"not expressible: {q.reason}\n"
    else:
        head = f"# run: {run_command(q.target, plan)}\n{q.query}\n"
    return head + "".join(f"# note: {n}\n" for n in q.notes)


def _plan(case: Case, provider: str) -> HuntPlan:
    if case.rule.startswith("sigma:"):
        rule_id = sigmahq_id(case.rule.split(":", 1)[1])
        rules = sigmahq_rules()
        if rule_id is None or rules is None:
            pytest.skip("SigmaHQ rules of the public corpus not present")
    elif case.rule == "hostile_values":
        rules, rule_id = hostile_rules(), hostile_rules().rules[0].rule_id
    else:
        rules, rule_id = builtin_rules(), case.rule
    plan = plan_hunt(
        provider, rules, rule_ids=[rule_id], since=case.since, cluster=case.cluster, now=NOW
    )
    assert len(plan.hunts) == 1
    return plan


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_golden(case: Case, provider: str) -> None:
    plan = _plan(case, provider)
    queries = plan.hunts[0].queries
    assert [q.target for q in queries] == list(TARGETS_OF[provider])
    for q in queries:
        path = GOLDEN / provider / q.target / f"{case.name}.txt"
        got = golden_text(q, plan)
        if UPDATE:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(got.encode("utf-8"))
            continue
        assert path.is_file(), f"no golden file {path.relative_to(GOLDEN)}: see module doc"
        want = path.read_bytes().decode("utf-8")
        assert got == want, f"{path.relative_to(GOLDEN)} differs (module doc: how to regenerate)"


def test_every_golden_file_belongs_to_a_case() -> None:
    """A renamed or dropped case must not leave a stale golden file behind."""
    names = {c.name for c in CASES}
    stale = [
        str(p.relative_to(GOLDEN))
        for p in GOLDEN.rglob("*.txt")
        if p.stem not in names or p.parent.name not in TARGETS_OF[p.parent.parent.name]
    ]
    assert not stale
    # five languages per case (eks: 1, aks: 2, gke: 2), all committed
    assert len(list(GOLDEN.rglob("*.txt"))) == len(CASES) * 5

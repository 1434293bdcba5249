"""The built-in ruleset: every rule loads, is tagged, and its examples behave.

Each rule file carries `examples: {positive: [...], negative: [...]}`. For a detection rule an
example is one audit Event; it must match (positive) or not (negative). For a correlation an
example is a scenario: a list of Events or `{repeat, every_seconds, event, vary}` bursts; it
must produce a finding of that correlation (positive) or none (negative).
"""

from __future__ import annotations

import copy
import importlib.util
import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from podmortem.audit import engine
from podmortem.audit.ruleset import AuditRule, RuleSet, builtin_rules_dir, load_builtin


def _load_builders() -> ModuleType:
    """The engine tests' event builders (one definition of Event -> audit_events row)."""
    path = Path(__file__).resolve().parents[1] / "engine" / "audit_rows.py"
    spec = importlib.util.spec_from_file_location("podmortem_test_audit_rows", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


builders = _load_builders()
RULE_FILES = sorted(builtin_rules_dir().glob("*.yml"))
RULESET = load_builtin()
BY_ID = {r.rule_id: r for r in RULESET.rules}


def _doc(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def test_every_rule_file_loads() -> None:
    assert RULESET.errors == []
    assert len(RULE_FILES) == len(RULESET.rules)
    assert len({r.rule_id for r in RULESET.rules}) == len(RULESET.rules)


def test_coverage_of_attack_techniques() -> None:
    techniques = {t for r in RULESET.rules for t in r.techniques}
    assert len(techniques) >= 35, sorted(techniques)
    # the detection list, by technique
    for required in (
        "T1609",
        "T1610",
        "T1611",
        "T1098.006",
        "T1528",
        "T1649",
        "T1053.007",
        "T1543.005",
        "T1133",
        "T1070",
        "T1105",
        "T1496",
        "T1552.007",
        "T1110",
    ):
        assert required in techniques, required


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.stem)
def test_rule_metadata(path: Path) -> None:
    doc = _doc(path)
    assert doc["name"] == path.stem, "a built-in rule's name is its file name"
    uuid.UUID(str(doc["id"]))
    assert doc["level"] in ("informational", "low", "medium", "high", "critical")
    assert any(re.fullmatch(r"attack\.t\d{4}(\.\d{3})?", t) for t in doc["tags"]), (
        "needs a technique"
    )
    assert doc["description"].strip() and doc["title"].strip()
    ex = doc["examples"]
    assert ex["positive"] and ex["negative"], "at least one positive and one negative example"
    rule = BY_ID[path.stem]
    assert rule.warnings == ()


def _expand(scenario: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in scenario:
        if "repeat" not in item:
            yield item
            continue
        base = item["event"]
        t0 = datetime.fromisoformat(base["stageTimestamp"].replace("Z", "+00:00"))
        for i in range(int(item["repeat"])):
            ev = copy.deepcopy(base)
            ev["auditID"] = str(uuid.uuid5(uuid.UUID(base["auditID"]), str(i)))
            ts = (t0 + timedelta(seconds=i * float(item["every_seconds"]))).isoformat()
            ev["stageTimestamp"] = ev["requestReceivedTimestamp"] = ts
            for dotted, template in (item.get("vary") or {}).items():
                target = ev
                *parents, last = dotted.split(".")
                for key in parents:
                    target = target.setdefault(key, {})
                target[last] = str(template).format(i=i)
            yield ev


def _cases() -> Iterator[Any]:
    for path in RULE_FILES:
        doc = _doc(path)
        for kind in ("positive", "negative"):
            for i, example in enumerate(doc["examples"][kind]):
                yield pytest.param(path.stem, kind, example, id=f"{path.stem}-{kind}-{i}")


def _subset(rule: AuditRule) -> RuleSet:
    rules = [rule]
    if rule.correlation:
        rules += [r for r in RULESET.rules if r.key in rule.correlation.rules]
    return RuleSet(rules=rules)


@pytest.mark.parametrize(("rule_id", "kind", "example"), list(_cases()))
def test_rule_example(rule_id: str, kind: str, example: Any) -> None:
    rule = BY_ID[rule_id]
    events = list(_expand(example)) if rule.correlation else [example]
    con = builders.make_table(events)
    result = engine.run(con, _subset(rule))
    assert result.runtime_errors == []
    if rule.correlation:
        fired = sum(1 for f in result.findings if f.rule_id == rule_id)
    else:
        fired = result.hits_per_rule.get(rule_id, 0)
    if kind == "positive":
        assert fired > 0, f"{rule_id} did not fire on its positive example"
    else:
        assert fired == 0, f"{rule_id} fired on its negative example"

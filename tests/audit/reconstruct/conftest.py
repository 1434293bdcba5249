"""Scenario fixtures loaded through the real readers and engine, reconstructed once per
(story, provider) and shared by the tests of this folder."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import pytest

from podmortem.audit import engine, ruleset
from podmortem.audit.reconstruct import Reconstruction, reconstruct
from podmortem.audit.sources import load
from podmortem.findings import Finding

AUDIT_TESTS = Path(__file__).resolve().parents[1]
SCENARIOS = AUDIT_TESTS / "fixtures" / "scenarios"
sys.path.insert(0, str(AUDIT_TESTS))

import scenarios  # noqa: E402  (the builder lives beside the fixtures it writes)

PROVIDERS = scenarios.PROVIDERS
VARIANTS = tuple(scenarios.VARIANTS)


def fixture_path(story: str, provider: str) -> Path:
    name = scenarios.FILES.get(provider) or scenarios.VARIANTS[provider]
    return SCENARIOS / story / name


@dataclass
class Scenario:
    con: duckdb.DuckDBPyConnection
    findings: list[Finding]
    rec: Reconstruction
    doc: dict[str, Any]


@cache
def _built(story: str, provider: str, index: str | None = None) -> Scenario:
    con = duckdb.connect(index) if index else duckdb.connect()
    load(con, [fixture_path(story, provider)])
    findings = engine.run(con, ruleset.load_builtin()).findings
    rec = reconstruct(con, findings)
    # Through JSON and back: what `audit analyze --json` users get.
    doc = json.loads(json.dumps(rec.to_dict(), default=str))
    return Scenario(con, findings, rec, doc)


@pytest.fixture
def built() -> Any:
    return _built


def attack_of(s: Scenario) -> dict[str, Any]:
    attacks = s.doc["narrative"]["attacks"]
    assert len(attacks) == 1, [a["members"] for a in attacks]
    return attacks[0]

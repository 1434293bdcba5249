"""Forensic readiness: checks as data (``checks.yaml``), frameworks as data
(``controls.yaml``), evaluated against facts a provider module reads from the cluster.

A check passes, fails, or is ``unknown`` when its fact could not be read (a missing
permission, an API the SDK does not reach): unknown is never reported as a pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from podmortem.errors import InputError

OPS = ("equals", "gte", "in")
SEVERITIES = ("low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    providers: tuple[str, ...]
    title: str
    fact: str
    expect: tuple[str, Any]
    severity: str
    why: str
    terraform: Mapping[str, str]
    examples: Mapping[str, list[dict[str, Any]]]

    def holds(self, value: Any) -> bool:
        op, want = self.expect
        if op == "equals":
            return bool(value == want)
        if op == "gte":
            return isinstance(value, int | float) and not isinstance(value, bool) and value >= want
        return value in want


@dataclass(frozen=True, slots=True)
class Control:
    framework: str
    framework_title: str
    id: str
    title: str
    providers: tuple[str, ...] = ()

    def applies(self, provider: str) -> bool:
        return not self.providers or provider in self.providers


@dataclass(slots=True)
class CheckResult:
    check: Check
    status: str  # pass | fail | unknown
    observed: Any
    note: str = ""
    controls: list[Control] = field(default_factory=list)

    def to_dict(self, provider: str) -> dict[str, Any]:
        c = self.check
        return {
            "id": c.id,
            "title": c.title,
            "status": self.status,
            "severity": c.severity,
            "fact": c.fact,
            "observed": self.observed,
            "expected": {c.expect[0]: c.expect[1]},
            "note": self.note,
            "why": c.why,
            "controls": [
                {"framework": k.framework, "control": k.id, "title": k.title} for k in self.controls
            ],
            "terraform": c.terraform.get(provider) if self.status != "pass" else None,
        }


def kubernetes_minor(version: str | None) -> int | None:
    """The minor version of ``1.30`` / ``v1.30.2-eks-...`` style strings, or None."""
    parts = (version or "").split(".")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def _parse_checks(doc: Any, source: str) -> tuple[Check, ...]:
    if not isinstance(doc, dict) or not isinstance(doc.get("checks"), list):
        raise InputError(f"{source}: needs a 'checks' list")
    out: list[Check] = []
    seen: set[str] = set()
    for raw in doc["checks"]:
        cid = str(raw.get("id"))
        where = f"{source}: check {cid}"
        if cid in seen:
            raise InputError(f"{where}: duplicate id")
        seen.add(cid)
        expect = raw.get("expect")
        if not isinstance(expect, dict) or len(expect) != 1 or next(iter(expect)) not in OPS:
            raise InputError(f"{where}: expect must be one of {OPS}")
        if raw.get("severity") not in SEVERITIES:
            raise InputError(f"{where}: severity must be one of {SEVERITIES}")
        providers = tuple(raw.get("providers") or ())
        terraform = dict(raw.get("terraform") or {})
        if set(providers) - set(terraform):
            raise InputError(f"{where}: every provider needs its terraform fix")
        examples = raw.get("examples") or {}
        if not examples.get("pass") or not examples.get("fail"):
            raise InputError(f"{where}: needs pass and fail examples")
        out.append(
            Check(
                id=cid,
                providers=providers,
                title=str(raw["title"]),
                fact=str(raw["fact"]),
                expect=(next(iter(expect)), next(iter(expect.values()))),
                severity=str(raw["severity"]),
                why=" ".join(str(raw["why"]).split()),
                terraform=terraform,
                examples=examples,
            )
        )
    return tuple(out)


def _parse_controls(doc: Any, checks: tuple[Check, ...], source: str) -> dict[str, list[Control]]:
    known = {c.id for c in checks}
    by_check: dict[str, list[Control]] = {c: [] for c in known}
    for fid, fw in (doc.get("frameworks") or {}).items():
        for cid, ctl in (fw.get("controls") or {}).items():
            for check_id in ctl.get("checks") or []:
                if check_id not in known:
                    raise InputError(f"{source}: {fid} {cid} names unknown check {check_id}")
                by_check[check_id].append(
                    Control(
                        str(fid),
                        str(fw["title"]),
                        str(cid),
                        str(ctl["title"]),
                        tuple(fw.get("providers") or ()),
                    )
                )
    return by_check


def _load(name: str) -> Any:
    ref = resources.files("podmortem.cloud.readiness") / name
    return yaml.safe_load(ref.read_text(encoding="utf-8"))


@cache
def checks() -> tuple[Check, ...]:
    return _parse_checks(_load("checks.yaml"), "readiness/checks.yaml")


@cache
def controls() -> dict[str, list[Control]]:
    return _parse_controls(_load("controls.yaml"), checks(), "readiness/controls.yaml")


def evaluate(
    provider: str, facts: Mapping[str, Any], notes: Mapping[str, str] | None = None
) -> list[CheckResult]:
    """Evaluate every check for ``provider``; a fact absent or ``None`` is unknown."""
    notes = notes or {}
    out: list[CheckResult] = []
    ctl = controls()
    for c in checks():
        if provider not in c.providers:
            continue
        value = facts.get(c.fact)
        status = "unknown" if value is None else "pass" if c.holds(value) else "fail"
        mapped = [k for k in ctl[c.id] if k.applies(provider)]
        out.append(CheckResult(c, status, value, notes.get(c.fact, ""), mapped))
    return out


def report(provider: str, cluster: str, results: list[CheckResult]) -> dict[str, Any]:
    summary = {s: sum(1 for r in results if r.status == s) for s in ("pass", "fail", "unknown")}
    return {
        "provider": provider,
        "cluster": cluster,
        "summary": summary,
        "checks": [r.to_dict(provider) for r in results],
    }

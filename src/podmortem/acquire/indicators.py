"""Findings drawn from a live capture. The rules' words, severities and patterns live in
``indicators.yaml`` (each with examples the tests run); this module only applies them."""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from podmortem.acquire.bounded import lines
from podmortem.findings import Finding, Provenance, Severity

RULE_PREFIX = "acquire."


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    severity: Severity
    techniques: tuple[str, ...]
    summary: str


@dataclass(frozen=True, slots=True)
class Indicators:
    rules: Mapping[str, Rule]
    secret_names: tuple[re.Pattern[str], ...]
    secret_name_exceptions: tuple[re.Pattern[str], ...]
    secret_values: tuple[re.Pattern[str], ...]
    persistence: tuple[tuple[str, str], ...]  # (glob pattern, technique)
    raw: Mapping[str, Any]


@functools.cache
def load() -> Indicators:
    raw = yaml.safe_load(
        resources.files("podmortem.acquire").joinpath("indicators.yaml").read_text("utf-8")
    )
    rules = {
        rid: Rule(
            id=RULE_PREFIX + rid,
            title=str(r["title"]),
            severity=Severity.parse(str(r["severity"])),
            techniques=tuple(str(t) for t in r.get("techniques", ())),
            summary=" ".join(str(r.get("summary", "")).split()),
        )
        for rid, r in raw["rules"].items()
    }
    env = raw["secret_environment"]
    return Indicators(
        rules=rules,
        secret_names=tuple(re.compile(p, re.I) for p in env["name_patterns"]),
        secret_name_exceptions=tuple(re.compile(p, re.I) for p in env["name_exceptions"]),
        secret_values=tuple(re.compile(p) for p in env["value_patterns"]),
        persistence=tuple(
            (str(p["pattern"]), str(p["technique"])) for p in raw["persistence"]["paths"]
        ),
        raw=raw,
    )


def finding(
    rule: str,
    subject: str,
    *,
    summary: str = "",
    evidence: Iterable[str] = (),
    artifact: str | None = None,
    location: tuple[str, ...] = (),
    extra: Mapping[str, Any] | None = None,
    severity: Severity | None = None,
    source: str = "node",
) -> Finding:
    r = load().rules[rule]
    return Finding(
        rule_id=r.id,
        title=r.title,
        severity=severity if severity is not None else r.severity,
        techniques=r.techniques,
        subject=subject,
        summary=summary or r.summary,
        evidence=tuple(evidence),
        provenance=Provenance(
            source="node", parser="podmortem.acquire", artifact=artifact, location=location
        ),
        extra=dict(extra or {}),
    )


def secret_reason(name: str, value: str) -> str | None:
    """Why an environment variable looks like a credential, or None. Never returns the value."""
    ind = load()
    if any(p.search(name) for p in ind.secret_names) and not any(
        p.search(name) for p in ind.secret_name_exceptions
    ):
        return "variable name"
    for p in ind.secret_values:
        if p.search(value[:65536]):
            return "value format"
    return None


def persistence_technique(path: str) -> str | None:
    for pattern, technique in load().persistence:
        # fnmatch's '*' would cross '/', so compare component by component.
        pp, cp = pattern.split("/"), path.split("/")
        if len(pp) == len(cp) and all(
            fnmatch.fnmatchcase(c, p) for p, c in zip(pp, cp, strict=True)
        ):
            return technique
    return None


def runtime_scaffolding(runtime: str) -> frozenset[str]:
    return frozenset(str(p) for p in load().raw.get("runtime_scaffolding", {}).get(runtime) or ())


def uid0_accounts(passwd: bytes) -> list[str]:
    """Account names other than ``root`` whose uid is 0."""
    out = []
    for line in lines(passwd):
        f = line.split(":")
        if len(f) >= 4 and f[2].strip() == "0" and f[0] != "root":
            out.append(f[0])
    return out


def looks_executable(head: bytes, mode: int) -> bool:
    """ELF or a script, or any execute bit set."""
    return head.startswith((b"\x7fELF", b"#!")) or bool(mode & 0o111)

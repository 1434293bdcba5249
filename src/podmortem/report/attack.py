"""MITRE ATT&CK tactics and technique names, read from ``attack.yaml``, for the report's
matrix and its narrative by tactic. Analyses only name technique ids; which tactic a technique
serves is this file's business alone (Prowler's habit: frameworks are data pointing at ids)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

_ID = re.compile(r"^[Tt](\d{4})(?:\.(\d{3}))?$")
UNMAPPED = "unmapped"


@dataclass(frozen=True, slots=True)
class Tactic:
    id: str
    key: str
    name: str


@dataclass(frozen=True, slots=True)
class Technique:
    id: str
    name: str
    tactics: tuple[str, ...]  # tactic keys, empty when unmapped

    @property
    def url(self) -> str:
        base, _, sub = self.id.partition(".")
        tail = f"{base}/{sub}" if sub else base
        return f"https://attack.mitre.org/techniques/{tail}/"


@dataclass(frozen=True, slots=True)
class Attack:
    tactics: tuple[Tactic, ...]
    techniques: dict[str, Technique]
    examples: dict[str, Any]

    def normalise(self, raw: str) -> str | None:
        """``t1552.007`` -> ``T1552.007``; anything that is not a technique id -> None."""
        m = _ID.match(raw.strip())
        if not m:
            return None
        return "T" + m.group(1) + (f".{m.group(2)}" if m.group(2) else "")

    def technique(self, raw: str) -> Technique:
        tid = self.normalise(raw)
        if tid is None:
            return Technique(raw, "not an ATT&CK technique id", ())
        if tid in self.techniques:
            return self.techniques[tid]
        parent = self.techniques.get(tid.partition(".")[0])
        if parent is not None:
            # A sub-technique we do not list still serves its parent's tactics.
            return Technique(tid, f"{parent.name} (sub-technique {tid})", parent.tactics)
        return Technique(tid, "technique not in podmortem's ATT&CK table", ())

    def tactic(self, key: str) -> Tactic:
        for t in self.tactics:
            if t.key == key:
                return t
        return Tactic("", UNMAPPED, "Unmapped techniques")

    def order(self, key: str) -> int:
        for i, t in enumerate(self.tactics):
            if t.key == key:
                return i
        return len(self.tactics)

    def tactics_of(self, techniques: Iterable[str]) -> list[str]:
        """Tactic keys served by any of ``techniques``, in matrix order."""
        keys = {k for t in techniques for k in (self.technique(t).tactics or (UNMAPPED,))}
        return sorted(keys, key=self.order)


@functools.cache
def load() -> Attack:
    text = resources.files("podmortem.report").joinpath("attack.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    tactics = tuple(Tactic(str(t["id"]), str(t["key"]), str(t["name"])) for t in data["tactics"])
    keys = {t.key for t in tactics}
    techniques: dict[str, Technique] = {}
    for tid, spec in data["techniques"].items():
        bad = [k for k in spec["tactics"] if k not in keys]
        if bad or not _ID.match(str(tid)):
            raise ValueError(f"attack.yaml: technique {tid}: unknown tactic(s) {bad} or bad id")
        techniques[str(tid)] = Technique(str(tid), str(spec["name"]), tuple(spec["tactics"]))
    return Attack(tactics, techniques, dict(data.get("examples") or {}))

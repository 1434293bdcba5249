"""ATT&CK tactics for the narrative, from ``tactics.yml``: which tactic a step is filed under
and whether a chain of steps is an attack."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True, slots=True)
class TacticMap:
    kill_chain: tuple[str, ...]
    techniques: Mapping[str, tuple[str, ...]]
    unmapped: str
    misuse_is_attack: bool
    min_tactics: int
    escalating: frozenset[str]
    examples: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TacticMap:
        chain = tuple(str(t) for t in data["kill_chain"])
        techniques = {
            str(k).upper(): tuple(str(t) for t in v) for k, v in data["techniques"].items()
        }
        when = data.get("attack_when") or {}
        escalating = frozenset(str(t) for t in when.get("escalating", ()))
        unknown = (escalating | {t for v in techniques.values() for t in v}) - set(chain)
        if unknown:
            raise ValueError(f"tactics.yml names tactics outside the kill chain: {sorted(unknown)}")
        return cls(
            kill_chain=chain,
            techniques=techniques,
            unmapped=str(data.get("unmapped", "unmapped")),
            misuse_is_attack=bool(when.get("credential_misuse", True)),
            min_tactics=int(when.get("min_tactics", 2)),
            escalating=escalating,
            examples=tuple(data.get("examples", ())),
        )

    @classmethod
    def default(cls) -> TacticMap:
        return _default()

    def rank(self, tactic: str) -> int:
        """Position in the kill chain; unmapped steps sort last."""
        try:
            return self.kill_chain.index(tactic)
        except ValueError:
            return len(self.kill_chain)

    def tactics_of(self, techniques: Iterable[str]) -> tuple[str, ...]:
        """Every tactic the techniques belong to, in kill-chain order."""
        found = {t for tech in techniques for t in self._lookup(tech)}
        return tuple(sorted(found, key=self.rank))

    def primary(self, techniques: Iterable[str]) -> str:
        """The tactic a step is filed under: the furthest along the kill chain among the
        first-listed tactics of its techniques (a privileged pod, T1610 + T1611, shows the
        escalation, not merely that a container was deployed)."""
        firsts = [self._lookup(t)[0] for t in techniques if self._lookup(t)]
        return max(firsts, key=self.rank) if firsts else self.unmapped

    def is_attack(self, tactics: Iterable[str], credential_misuse: bool) -> bool:
        if credential_misuse and self.misuse_is_attack:
            return True
        seen = {t for t in tactics if t != self.unmapped}
        return len(seen) >= self.min_tactics and bool(seen & self.escalating)

    def _lookup(self, technique: str) -> tuple[str, ...]:
        key = technique.strip().upper()
        while key:
            if key in self.techniques:
                return self.techniques[key]
            if "." not in key:
                break
            key = key.rsplit(".", 1)[0]  # a sub-technique we do not list: its parent's tactics
        return ()


@cache
def _default() -> TacticMap:
    text = resources.files("podmortem.audit.reconstruct").joinpath("tactics.yml").read_text("utf-8")
    return TacticMap.from_dict(yaml.safe_load(text))

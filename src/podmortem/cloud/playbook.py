"""Playbooks as data: ``playbooks/<provider>.yaml`` define the steps (id, phase, why, risk,
undo, API calls); the provider modules implement them by id. Loading checks the files
strictly, so a typo in a playbook is an error at load time, not a skipped step at 3 a.m.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from podmortem.cloud.model import KUBERNETES, PHASES, Platform
from podmortem.errors import InputError

NEEDS = frozenset({"pod", "node", "instance"})
_FIELDS = {"id", "phase", "title", "why", "risk", "undo", "reversible", "needs", "api_calls"}


@dataclass(frozen=True, slots=True)
class StepSpec:
    id: str
    phase: str
    title: str
    why: str
    risk: str
    undo: str
    reversible: bool
    needs: tuple[str, ...]
    api_calls: tuple[str, ...]
    source: str  # the playbook file

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "phase": self.phase,
            "title": self.title,
            "why": self.why,
            "risk": self.risk,
            "undo": self.undo,
            "reversible": self.reversible,
            "needs": list(self.needs),
            "api_calls": list(self.api_calls),
        }


def parse(text: str, source: str) -> list[StepSpec]:
    """Parse one playbook file; raises InputError naming the file and the step."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list):
        raise InputError(f"{source}: a playbook needs a 'steps' list")
    out: list[StepSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(doc["steps"]):
        where = f"{source}: step {i + 1}"
        if not isinstance(raw, dict):
            raise InputError(f"{where}: not a mapping")
        unknown = set(raw) - _FIELDS
        missing = _FIELDS - set(raw)
        if unknown or missing:
            raise InputError(
                f"{where}: unknown fields {sorted(unknown)}, missing {sorted(missing)}"
            )
        sid = str(raw["id"])
        if sid in seen:
            raise InputError(f"{where}: duplicate step id {sid}")
        seen.add(sid)
        if raw["phase"] not in PHASES:
            raise InputError(f"{where}: phase must be one of {PHASES}")
        needs = tuple(str(n) for n in raw["needs"] or ())
        if set(needs) - NEEDS:
            raise InputError(f"{where}: needs must be among {sorted(NEEDS)}")
        calls = tuple(str(c) for c in raw["api_calls"] or ())
        if any("." not in c for c in calls):
            raise InputError(f"{where}: api_calls are <service>.<method>")
        out.append(
            StepSpec(
                id=sid,
                phase=str(raw["phase"]),
                title=str(raw["title"]).strip(),
                why=str(raw["why"]).strip(),
                risk=str(raw["risk"]).strip(),
                undo=str(raw["undo"]).strip(),
                reversible=bool(raw["reversible"]),
                needs=needs,
                api_calls=calls,
                source=source,
            )
        )
    return out


@cache
def load(name: str) -> tuple[StepSpec, ...]:
    """The packaged playbook ``name`` (``kubernetes``, ``eks``, ``aks``, ``gke``)."""
    ref = resources.files("podmortem.cloud") / "playbooks" / f"{name}.yaml"
    return tuple(parse(ref.read_text(encoding="utf-8"), f"playbooks/{name}.yaml"))


def procedure(provider: Platform) -> list[StepSpec]:
    """The full ordered procedure for ``provider``: preserve first (nothing is lost by
    protecting and copying), then contain; Kubernetes steps before the cloud's in each
    phase, because marking the pod and node is what the cloud steps' tags refer to.
    ``kubernetes`` (no cloud configured) is the Kubernetes steps alone."""
    k8s = load(KUBERNETES)
    cloud = () if provider == KUBERNETES else load(provider)
    ordered: list[StepSpec] = []
    for phase in PHASES:
        ordered += [s for s in k8s if s.phase == phase]
        ordered += [s for s in cloud if s.phase == phase]
    return ordered

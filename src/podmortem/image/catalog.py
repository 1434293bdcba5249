"""Rule metadata (titles, severities, ATT&CK techniques) for every finding the image
analysis can emit, loaded from the YAML files in ``indicators/``; and :class:`Hit`, the
mutable draft of a finding that becomes a :class:`~podmortem.findings.Finding` once the
merge knows which layer hid it."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from podmortem.findings import Caveat, Finding, Provenance, Severity

_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
PARSER = "podmortem.image"


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    severity: Severity
    kind: str
    techniques: tuple[str, ...] = ()
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    examples: dict[str, Any] = field(default_factory=dict)
    source_file: str = ""


class RuleFileError(ValueError):
    """A rule file is malformed; the message names the file and the rule."""


def _parse_rule(raw: Any, fname: str) -> Rule:
    if not isinstance(raw, dict):
        raise RuleFileError(f"{fname}: a rule is not a mapping")
    try:
        rid = str(raw.pop("id"))
        title = str(raw.pop("title"))
        severity = Severity.parse(str(raw.pop("severity")))
        kind = str(raw.pop("kind"))
    except (KeyError, ValueError) as exc:
        raise RuleFileError(f"{fname}: rule {raw.get('id', '?')}: {exc}") from exc
    techniques = tuple(str(t) for t in raw.pop("techniques", ()) or ())
    description = str(raw.pop("description", "") or "")
    examples = raw.pop("examples", {}) or {}
    return Rule(rid, title, severity, kind, techniques, description, raw, examples, fname)


@functools.cache
def rules() -> dict[str, Rule]:
    """All rules by id; duplicate ids across files are an error (explicit registration)."""
    out: dict[str, Rule] = {}
    pkg = resources.files("podmortem.image.indicators")
    for entry in sorted(pkg.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yml"):
            continue
        # libyaml's safe loader when present: the pure-Python one costs ~0.1 s per start
        doc = yaml.load(entry.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)  # noqa: S506
        if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
            raise RuleFileError(f"{entry.name}: expected a mapping with a 'rules' list")
        for raw in doc["rules"]:
            rule = _parse_rule(dict(raw), entry.name)
            if rule.id in out:
                raise RuleFileError(f"{entry.name}: duplicate rule id {rule.id}")
            out[rule.id] = rule
    return out


def rules_of_kind(kind: str) -> list[Rule]:
    return [r for r in rules().values() if r.kind == kind]


@dataclass(slots=True)
class Hit:
    """A finding in the making. ``sha256`` names the file version the hit is about, so the
    merge can say whether a later layer deleted or replaced exactly that content."""

    rule_id: str
    summary: str = ""
    path: str | None = None
    layer: int | None = None
    config_key: str | None = None
    evidence: tuple[str, ...] = ()
    sha256: str | None = None
    hidden_by: int | None = None
    hidden_how: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # the file version the hit is about (not output): the merge marks it hidden or not
    entry: Any = field(default=None, repr=False, compare=False)

    def key(self) -> tuple[Any, ...]:
        return (
            self.rule_id,
            self.path or "",
            self.layer if self.layer is not None else -1,
            self.config_key or "",
            self.evidence,
        )


def to_finding(hit: Hit, diff_ids: list[str], source: str) -> Finding:
    rule = rules()[hit.rule_id]
    layer_diff_id = (
        diff_ids[hit.layer] if hit.layer is not None and 0 <= hit.layer < len(diff_ids) else None
    )
    location = [source]
    if hit.layer is not None:
        location.append(f"layer {hit.layer}")
    if hit.path:
        location.append(hit.path)
    if hit.config_key:
        location.append(f"config {hit.config_key}")
    extra: dict[str, Any] = {
        "path": hit.path,
        "layer_index": hit.layer,
        "layer_diff_id": layer_diff_id,
        "hidden_by_layer": hit.hidden_by,
    }
    if hit.config_key:
        extra["config_key"] = hit.config_key
    if hit.hidden_how:
        extra["hidden_how"] = hit.hidden_how
    if hit.sha256:
        extra["sha256"] = hit.sha256
    extra.update(hit.extra)
    subject = hit.path or (f"config:{hit.config_key}" if hit.config_key else source)
    return Finding(
        rule_id=rule.id,
        title=rule.title,
        severity=rule.severity,
        techniques=rule.techniques,
        subject=subject,
        summary=hit.summary or rule.description,
        evidence=hit.evidence,
        provenance=Provenance(
            source="image", parser=PARSER, artifact=source, location=tuple(location)
        ),
        extra=extra,
    )


def caveat(kind: str, message: str, source: str, **details: Any) -> Caveat:
    return Caveat(
        kind=kind,
        message=message,
        provenance=Provenance(source="image", parser=PARSER, artifact=source),
        details=details,
    )


@dataclass
class Notes:
    """Hits and caveats collected while reading one image."""

    source: str
    hits: list[Hit] = field(default_factory=list)
    caveats: list[Caveat] = field(default_factory=list)

    def hit(self, rule_id: str, summary: str = "", **kw: Any) -> Hit:
        if rule_id not in rules():
            raise KeyError(f"rule {rule_id} is not in the catalog")
        h = Hit(rule_id, summary, **kw)
        self.hits.append(h)
        return h

    def caveat(self, kind: str, message: str, **details: Any) -> None:
        self.caveats.append(caveat(kind, message, self.source, **details))

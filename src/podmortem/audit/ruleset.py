"""Loading Sigma rules for Kubernetes audit logs: the built-in set, a SigmaHQ folder, or an
analyst's own folder. Each file is parsed with pySigma and compiled to SQL on its own; a file
that cannot load or compile is reported with its path and the reason, and every other rule
still runs. Rules for other log sources (a whole SigmaHQ checkout) are counted and skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationCondition, SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule
from sigma.rule.base import SigmaYAMLLoader

from podmortem.audit.fieldmap import FieldMap, UnknownFieldError
from podmortem.audit.sigma import CompileError, compile_rule
from podmortem.errors import InputError
from podmortem.findings import Severity

Origin = Literal["builtin", "sigma", "custom"]

MAX_RULE_FILE = 1 << 20  # bytes; a rule file is small text, anything larger is refused
MAX_RULE_FILES = 20_000
_TECHNIQUE = re.compile(r"t(\d{4})(?:\.(\d{3}))?")


@dataclass(frozen=True, slots=True)
class CorrelationSpec:
    """A Sigma correlation (event_count / value_count) over other rules' matches."""

    type: str
    rules: tuple[str, ...]  # keys of the referenced rules
    group_by: tuple[str, ...]  # Sigma field names
    timespan_s: int
    op: str  # SQL comparison operator
    count: int
    value_field: str | None = None  # value_count: the field whose distinct values are counted


@dataclass(frozen=True, slots=True)
class AuditRule:
    key: str  # unique in a run: "<origin>:<rule_id>"
    rule_id: str
    title: str
    level: Severity
    origin: Origin
    path: str
    techniques: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    name: str | None = None
    description: str = ""
    author: str = ""
    sql: str | None = None  # detection predicate; None for a correlation
    # (JSON column, None | key) that hold wherever ``sql`` is true (sigma.Compiled.needs)
    needs: tuple[tuple[str, str | None], ...] = ()
    # (column SQL, values it can have wherever ``sql`` is true) (sigma.Compiled.allowed)
    allowed: tuple[tuple[str, tuple[str | None, ...]], ...] = ()
    correlation: CorrelationSpec | None = None
    generate: bool = True  # False: only feeds correlations (Sigma `generate: false`)
    expected_actors: frozenset[str] | None = None  # None: the policy's default
    warnings: tuple[str, ...] = ()
    custom: Mapping[str, Any] = field(default_factory=dict)
    # The parsed rule, for compiling it to another SQL dialect (Spark) without loading the
    # file again; None for a correlation.
    sigma: SigmaRule | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class RuleError:
    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(slots=True)
class RuleSet:
    rules: list[AuditRule] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    skipped_other_logsource: int = 0

    @property
    def detections(self) -> list[AuditRule]:
        return [r for r in self.rules if r.sql is not None]

    @property
    def correlations(self) -> list[AuditRule]:
        return [r for r in self.rules if r.correlation is not None]

    @property
    def reads_raw(self) -> bool:
        """Whether some rule searches the original record (Sigma keywords read ``raw``)."""
        return any('"raw"' in (r.sql or "") for r in self.rules)

    def count(self, origin: Origin) -> int:
        return sum(1 for r in self.rules if r.origin == origin)

    def extend(self, other: RuleSet) -> None:
        self.rules.extend(other.rules)
        self.errors.extend(other.errors)
        self.skipped_other_logsource += other.skipped_other_logsource


def builtin_rules_dir() -> Path:
    return Path(str(resources.files("podmortem.audit").joinpath("rules")))


def load_builtin(fields: FieldMap | None = None) -> RuleSet:
    return load_dir(builtin_rules_dir(), "builtin", fields)


def load_dir(folder: Path, origin: Origin, fields: FieldMap | None = None) -> RuleSet:
    """Every ``*.yml``/``*.yaml`` under ``folder`` (recursively, symlinks not followed)."""
    if not folder.is_dir():
        raise InputError(f"rule folder {folder} is not a readable folder")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix in (".yml", ".yaml") and p.is_file() and not p.is_symlink()
    )
    if len(files) > MAX_RULE_FILES:
        raise InputError(f"{folder} holds {len(files)} rule files; more than {MAX_RULE_FILES}")
    return load_files(files, origin, fields)


def load_files(files: Iterable[Path], origin: Origin, fields: FieldMap | None = None) -> RuleSet:
    fields = fields or FieldMap.default()
    out = RuleSet()
    parsed: list[tuple[Path, SigmaRule | SigmaCorrelationRule]] = []
    for path in files:
        try:
            size = path.stat().st_size
            if size > MAX_RULE_FILE:
                raise _FileError(f"{size} bytes, larger than {MAX_RULE_FILE}")
            text = path.read_text("utf-8")
            coll = SigmaCollection.from_dicts(
                _yaml_documents(text), collect_errors=True, resolve_references=False
            )
        except _FileError as exc:
            out.errors.append(RuleError(str(path), str(exc)))
            continue
        except (OSError, UnicodeDecodeError, yaml.YAMLError, SigmaError) as exc:
            out.errors.append(RuleError(str(path), _one_line(exc)))
            continue
        # pySigma reports a rule's errors both on the rule and on the collection: once here.
        reasons = dict.fromkeys(_one_line(e) for e in coll.errors)
        for rule in coll.rules:
            reasons.update(dict.fromkeys(_one_line(e) for e in rule.errors))
        out.errors += [RuleError(str(path), r) for r in reasons]
        for rule in coll.rules:
            if rule.errors:
                continue
            if isinstance(rule, SigmaRule) and not _is_k8s_audit(rule):
                out.skipped_other_logsource += 1
                continue
            parsed.append((path, rule))

    by_ref: dict[str, AuditRule] = {}
    pending_corr: list[tuple[Path, SigmaCorrelationRule]] = []
    for path, rule in parsed:
        if isinstance(rule, SigmaCorrelationRule):
            pending_corr.append((path, rule))
            continue
        try:
            compiled = compile_rule(rule, fields)
        except (CompileError, UnknownFieldError, SigmaError) as exc:
            out.errors.append(RuleError(str(path), _one_line(exc)))
            continue
        ar = _audit_rule(
            rule,
            path,
            origin,
            sql=compiled.sql,
            needs=compiled.needs,
            allowed=compiled.allowed,
            warnings=tuple(compiled.warnings),
        )
        if any(r.key == ar.key for r in out.rules):
            out.errors.append(RuleError(str(path), f"duplicate rule id {ar.rule_id}"))
            continue
        out.rules.append(ar)
        for ref in (rule.name, str(rule.id) if rule.id else None):
            if ref:
                by_ref[ref] = ar

    silenced: set[str] = set()
    for path, corr in pending_corr:
        try:
            spec = _correlation(corr, by_ref, fields)
        except (CompileError, UnknownFieldError, SigmaError) as exc:
            out.errors.append(RuleError(str(path), _one_line(exc)))
            continue
        out.rules.append(_audit_rule(corr, path, origin, correlation=spec))
        if not corr.generate:
            silenced.update(spec.rules)
    if silenced:
        out.rules = [_replace_generate(r) if r.key in silenced else r for r in out.rules]
    return out


class _FileError(Exception):
    pass


def _yaml_documents(text: str) -> list[Any]:
    """The YAML documents of a rule file, parsed by libyaml. ``SigmaCollection.from_yaml``
    uses PyYAML's pure-Python loader: 2.2 of the 2.6 s it took to load the 61 built-in
    rules (their example events make them long). pySigma's own rule loader (C-based,
    refusing duplicate keys) is used instead; ``from_dicts`` still bounds alias expansion."""
    return list(yaml.load_all(text, Loader=SigmaYAMLLoader))


def _replace_generate(r: AuditRule) -> AuditRule:
    from dataclasses import replace

    return replace(r, generate=False)


def _is_k8s_audit(rule: SigmaRule) -> bool:
    ls = rule.logsource
    return (ls.product or "").lower() == "kubernetes" and (ls.service or "").lower() == "audit"


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split())[:500]


def techniques_from_tags(tags: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for tag in tags:
        ns, _, name = tag.partition(".")
        if ns.lower() != "attack":
            continue
        m = _TECHNIQUE.fullmatch(name.lower())
        if m:
            tid = "T" + m.group(1) + (f".{m.group(2)}" if m.group(2) else "")
            if tid not in out:
                out.append(tid)
    return tuple(out)


def _audit_rule(
    rule: SigmaRule | SigmaCorrelationRule,
    path: Path,
    origin: Origin,
    *,
    sql: str | None = None,
    needs: tuple[tuple[str, str | None], ...] = (),
    allowed: tuple[tuple[str, tuple[str | None, ...]], ...] = (),
    correlation: CorrelationSpec | None = None,
    warnings: tuple[str, ...] = (),
) -> AuditRule:
    # Built-in rules are named by their file (a test enforces that `name` equals the file
    # stem); external Sigma rules keep the id their authors gave them.
    if origin == "builtin":
        rule_id = path.stem
    else:
        rule_id = str(rule.id) if rule.id else (rule.name or path.stem)
    tags = tuple(str(t) for t in rule.tags)
    custom = dict(rule.custom_attributes)
    pm = custom.get("podmortem") or {}
    expected = pm.get("expected_actors") if isinstance(pm, dict) else None
    level = Severity.parse(str(rule.level)) if rule.level else Severity.MEDIUM
    return AuditRule(
        key=f"{origin}:{rule_id}",
        rule_id=rule_id,
        title=rule.title or rule_id,
        level=level,
        origin=origin,
        path=str(path),
        techniques=techniques_from_tags(tags),
        tags=tags,
        name=rule.name,
        description=(rule.description or "").strip(),
        author=rule.author or "",
        sql=sql,
        needs=needs,
        allowed=allowed,
        correlation=correlation,
        expected_actors=frozenset(expected) if expected is not None else None,
        warnings=warnings,
        custom=custom,
        sigma=rule if isinstance(rule, SigmaRule) else None,
    )


# Only "at least" thresholds: a burst is a window whose count reaches the threshold; "fewer
# than" over sliding windows has no useful meaning for a finding.
_OPS = {"gt": ">", "gte": ">="}


def _correlation(
    corr: SigmaCorrelationRule, by_ref: Mapping[str, AuditRule], fields: FieldMap
) -> CorrelationSpec:
    ctype = str(corr.type.name).lower()
    if ctype not in ("event_count", "value_count"):
        raise CompileError(f"correlation type {ctype} is not supported (event_count, value_count)")
    keys = []
    for ref in corr.rules or []:
        target = by_ref.get(ref.reference)
        if target is None:
            raise CompileError(f"correlation refers to unknown rule {ref.reference!r}")
        keys.append(target.key)
    group_by = tuple(corr.group_by or ())
    for g in group_by:
        fields.resolve(g)  # fail now, by file, rather than at run time
    cond = corr.condition
    if not isinstance(cond, SigmaCorrelationCondition):
        raise CompileError("extended (temporal) correlation conditions are not supported")
    op_name = str(cond.op.name).lower()
    if op_name not in _OPS:
        raise CompileError(f"correlation condition {op_name} is not supported")
    value_field = getattr(cond, "fieldref", None)
    if isinstance(value_field, list):
        value_field = value_field[0] if value_field else None
    if value_field:
        fields.resolve(str(value_field))
    return CorrelationSpec(
        type=ctype,
        rules=tuple(keys),
        group_by=group_by,
        timespan_s=int(corr.timespan.seconds),
        op=_OPS[op_name],
        count=int(cond.count),
        value_field=str(value_field) if value_field else None,
    )

"""Sigma field names -> where each cloud log engine keeps them (``targets.yml``).

A rule's field is first resolved to native Event paths with podmortem's own field map
(``../fields.yml``: aliases, ``containers.*`` over every container list, ``podSpec.*`` over
every place a workload keeps its pod spec), then each native path is looked up in the
target's mapping. One Sigma field can land in several places (a pod spec has four possible
homes): pySigma's field-mapping transformation turns those into an OR, as it does for any
one-to-many mapping.

The result of a lookup is a :class:`Ref`; the processing pipeline writes a short token for
it (``@3``) into the rule, and the backend reads the Ref back when it renders the condition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from sigma.processing.transformations.base import FieldMappingTransformationBase

from podmortem.audit.fieldmap import FieldMap, UnknownFieldError

RefKind = Literal["path", "absent", "unsupported", "derived", "actor", "whole"]
TARGETS = ("insights", "kql-aksaudit", "kql-azurediagnostics", "gke-logging", "gke-bigquery")

# Sigma field names reach here from third-party rule files: only these characters, the same
# whitelist as the embedded engine's field map, so no name can break out of a quoted path.
_SAFE_FIELD = re.compile(r"[A-Za-z0-9_./@:*-]+")
_SAFE_KEY = re.compile(r"[A-Za-z0-9_./:@-]+")


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    array: bool = False  # the value here is a JSON array: the rule matches ANY element
    single_key: bool = False  # one key that may hold dots (annotation keys)


@dataclass(frozen=True, slots=True)
class Ref:
    """One place a field lives in one engine."""

    kind: RefKind
    native: str  # the native field name, for messages
    # kind == "path": the column path, then (json_string roots only) the path inside a JSON
    # string column (BigQuery requestJson) after ``json_at`` segments.
    segments: tuple[Segment, ...] = ()
    json_at: int | None = None
    reason: str = ""
    derived: str = ""  # kind == "derived": which part of `column`
    column: str = ""
    value_type: str = "string"  # string | integer | timestamp | boolean
    sanitize_keys: bool = False  # BigQuery: label keys become column names
    element_of: str | None = None  # set for paths relative to an array element variable

    @property
    def has_array(self) -> bool:
        return any(s.array for s in self.segments)

    def split_first_array(self) -> tuple[Ref, Ref]:
        """(path to the first array, path inside one of its elements)."""
        i = next(i for i, s in enumerate(self.segments) if s.array)
        outer = replace(self, segments=(*self.segments[:i], replace(self.segments[i], array=False)))
        json_at = self.json_at
        inner_json: int | None = None
        if json_at is not None:
            # The element of a JSON array inside a JSON string is a JSON string again.
            inner_json = 0 if json_at <= i + 1 else json_at - (i + 1)
        inner = replace(self, segments=self.segments[i + 1 :], json_at=inner_json)
        return outer, inner


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    provider: str
    fields: dict[str, Any]
    json_roots: dict[str, Any]
    index_bound: int = 0


@cache
def load_targets() -> dict[str, Target]:
    text = resources.files("podmortem.audit.hunt").joinpath("targets.yml").read_text("utf-8")
    data = yaml.safe_load(text)
    out = {}
    for name in TARGETS:
        spec = data[name]
        out[name] = Target(
            name=name,
            provider=str(spec["provider"]),
            fields=dict(spec["fields"]),
            json_roots=dict(spec["json_roots"]),
            index_bound=int(spec.get("index_bound", 0)),
        )
    return out


def _path(text: str) -> tuple[Segment, ...]:
    """``a.b[].c`` or ``labels."x.y/z"`` -> segments."""
    out: list[Segment] = []
    for m in re.finditer(r'"([^"]+)"(\[\])?|([^."]+?)(\[\])?(?:\.|$)', text):
        if m.group(1) is not None:
            out.append(Segment(m.group(1), bool(m.group(2)), single_key=True))
        elif m.group(3):
            out.append(Segment(m.group(3), bool(m.group(4))))
    return tuple(out)


@dataclass(slots=True)
class FieldResolver:
    """Resolves Sigma fields for one target and keeps the tokens written into rules."""

    target: Target
    fieldmap: FieldMap = field(default_factory=FieldMap.default)
    refs: dict[str, Ref] = field(default_factory=dict)
    _by_ref: dict[Ref, str] = field(default_factory=dict)

    def token(self, ref: Ref) -> str:
        tok = self._by_ref.get(ref)
        if tok is None:
            tok = f"@{len(self.refs)}"
            self.refs[tok] = ref
            self._by_ref[ref] = tok
        return tok

    def ref(self, token: str) -> Ref:
        try:
            return self.refs[token]
        except KeyError:
            raise UnknownFieldError(f"field {token!r} was not mapped") from None

    def tokens(self, name: str) -> list[str]:
        return [self.token(r) for r in self.resolve(name)]

    # ------------------------------------------------------------------ resolving

    def resolve(self, name: str) -> list[Ref]:
        if not _SAFE_FIELD.fullmatch(name):
            raise UnknownFieldError(f"field name {name!r} has characters podmortem refuses")
        return self._native(name, 0)

    def _native(self, name: str, depth: int) -> list[Ref]:
        fm = self.fieldmap
        if depth > 4:
            raise UnknownFieldError(f"field alias loop at {name!r}")
        if name in fm.aliases:
            return self._native(fm.aliases[name], depth + 1)
        if name == "actorClass":
            return [Ref("actor", name)]
        if name in fm.columns:
            return [self._column(name)]
        head, _, rest = name.partition(".")
        if head in fm.prefix_aliases and rest:
            return [
                r for t in fm.prefix_aliases[head] for r in self._native(f"{t}.{rest}", depth + 1)
            ]
        if head == "podSpec" and rest:
            out = []
            for p in fm.pod_spec_paths:
                out += self._native(f"{p}.{rest}", depth + 1)
            return out
        for root in self.target.json_roots:
            if name == root:
                return [self._json(root, "")]
            if name.startswith(root + "."):
                return [self._json(root, name[len(root) + 1 :])]
        raise UnknownFieldError(f"unknown field {name!r}")

    def _column(self, name: str) -> Ref:
        col = self.fieldmap.columns[name]
        spec = self.target.fields.get(name)
        if spec is None:
            raise UnknownFieldError(f"field {name!r} has no mapping for {self.target.name}")
        return self._spec(name, spec, col.type)

    def _spec(self, native: str, spec: Any, value_type: str = "string") -> Ref:
        if isinstance(spec, str):
            return Ref("path", native, _path(spec), value_type=value_type)
        if "absent" in spec:
            return Ref("absent", native, reason=str(spec["absent"]))
        if "unsupported" in spec:
            return Ref("unsupported", native, reason=str(spec["unsupported"]))
        if "derived" in spec:
            return Ref(
                "derived",
                native,
                derived=str(spec["derived"]),
                column=str(spec["column"]),
                value_type=value_type,
            )
        raise UnknownFieldError(f"bad mapping for {native!r} in {self.target.name}")

    def _json(self, root: str, sub: str) -> Ref:
        native = f"{root}.{sub}" if sub else root
        spec = self.target.json_roots[root]
        if "path" not in spec:
            return self._spec(native, spec)
        base = _path(str(spec["path"]))
        if not sub:
            # The whole object as text, for |contains and |re over a body whose keys are
            # not known in advance.
            return Ref(
                "whole", native, base, json_at=len(base) if spec.get("json_string") else None
            )
        if spec.get("single_key"):
            if not _SAFE_KEY.fullmatch(sub):
                raise UnknownFieldError(f"key {sub!r} has characters podmortem refuses")
            segs: tuple[Segment, ...] = (Segment(sub, bool(spec.get("list")), single_key=True),)
        else:
            keys = sub.split(".")
            if any(not k for k in keys):
                raise UnknownFieldError(f"empty path segment in {native!r}")
            segs = tuple(Segment(k, k in self.fieldmap.array_keys) for k in keys)
        return Ref(
            "path",
            native,
            base + segs,
            json_at=len(base) if spec.get("json_string") else None,
            sanitize_keys=bool(spec.get("sanitize_keys")),
        )


@dataclass
class TargetFieldTransformation(FieldMappingTransformationBase):
    """pySigma processing step: each Sigma field -> the token(s) of its place(s) in the
    target. Several places become an OR of the same condition, pySigma's own behaviour for a
    one-to-many field mapping."""

    resolver: FieldResolver

    def apply_field_name(self, field: str | None) -> str | list[str] | None:
        if field is None:
            return None
        return self.resolver.tokens(field)

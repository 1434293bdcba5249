"""Sigma field names of Kubernetes audit rules -> SQL expressions over ``audit_events``.

The mapping itself is data (``fields.yml``): native Event paths map to flat columns or to
DuckDB JSON paths into the JSON columns, SigmaHQ's short aliases (``apiGroup``, ``hostPath``,
``capabilities``) map to native paths, and keys that hold arrays in Kubernetes objects
(``containers``, ``volumes``, ``rules`` ...) make the field list-valued, so that a rule
matches when ANY element matches, as Sigma rules written for flattened logs expect.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml

from podmortem.audit.dialect import DUCKDB, Dialect, Step, UnsafeLiteralError
from podmortem.errors import InputError

Kind = Literal["scalar", "list"]
ValueType = Literal["string", "integer", "timestamp", "boolean"]

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Field names come from rule files (possibly a user's --sigma folder): refuse anything that
# could break out of a quoted JSON path or SQL literal instead of trying to escape it.
_SAFE_FIELD = re.compile(r"[A-Za-z0-9_./@:*-]+")
_MAX_ALIAS_DEPTH = 4


class UnknownFieldError(InputError):
    """A rule names a field that has no place in the normalized audit event."""


def sql_string(value: str, dialect: Dialect = DUCKDB) -> str:
    """A SQL string literal. NUL cannot be represented and is refused."""
    try:
        return dialect.string(value)
    except UnsafeLiteralError as exc:
        raise UnknownFieldError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class FieldExpr:
    """A SQL expression for one Sigma field: a scalar, or a list matched element-wise."""

    sql: str
    kind: Kind = "scalar"
    type: ValueType = "string"
    # The API server only ever writes this field in lower case: compare without lower().
    lowercase: bool = False
    # A bare column reference (cheap to repeat) rather than a computed expression.
    is_column: bool = False
    # The JSON column (as SQL) this is read from: where that column is NULL the expression
    # is NULL, or an empty list. The rule compiler then tests the column first (see
    # :mod:`.sigma`).
    json_column: str | None = None
    # Keys of that column's document that every value of the expression is read under (the
    # keys of its path, those common to every alternative path): where the document lacks
    # one, the expression is NULL or an empty list too.
    json_keys: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Column:
    column: str
    is_list: bool
    type: ValueType
    lowercase: bool = False


@dataclass(frozen=True, slots=True)
class _JsonRoot:
    column: str
    single_key: bool
    is_list: bool


class FieldMap:
    """Resolves Sigma field names; built from ``fields.yml`` (or another mapping dict)."""

    def __init__(
        self,
        data: dict[str, Any],
        computed: dict[str, FieldExpr] | None = None,
        dialect: Dialect = DUCKDB,
    ) -> None:
        self.dialect = dialect
        # Fields computed from others (the actor class, from the actor policy).
        self.computed: dict[str, FieldExpr] = dict(computed or {})
        self.columns: dict[str, _Column] = {
            name: _Column(
                column=str(spec["column"]),
                is_list=bool(spec.get("list", False)),
                type=spec.get("type", "string"),
                lowercase=bool(spec.get("lowercase", False)),
            )
            for name, spec in data["columns"].items()
        }
        self.json_roots: dict[str, _JsonRoot] = {
            name: _JsonRoot(
                column=str(spec["column"]),
                single_key=bool(spec.get("single_key", False)),
                is_list=bool(spec.get("list", False)),
            )
            for name, spec in data["json_roots"].items()
        }
        self.array_keys: frozenset[str] = frozenset(data["array_keys"])
        self.pod_spec_paths: tuple[str, ...] = tuple(data["pod_spec_paths"])
        self.prefix_aliases: dict[str, tuple[str, ...]] = {
            k: tuple(v) for k, v in data.get("prefix_aliases", {}).items()
        }
        self.aliases: dict[str, str] = dict(data.get("aliases", {}))

    @classmethod
    def default(cls, dialect: str = "duckdb") -> FieldMap:
        """The built-in mapping; ``dialect="spark"`` writes Spark SQL (a new map each call:
        the Spark dialect numbers its lambda variables)."""
        if dialect == "duckdb":
            return _default_map()
        if dialect == "spark":
            from podmortem.audit.actors import ActorPolicy
            from podmortem.audit.dialect import spark

            d = spark()
            actor = FieldExpr(
                ActorPolicy.default_policy().sql(
                    d.ident("username"), d.ident("user_groups"), dialect=d
                )
            )
            return FieldMap(_default_data(), {"actorClass": actor}, dialect=d)
        raise ValueError(f"unknown SQL dialect {dialect!r}")

    # ------------------------------------------------------------------ resolving

    def resolve(self, name: str) -> FieldExpr:
        """The SQL expression for a Sigma field name; raises :class:`UnknownFieldError`."""
        if not _SAFE_FIELD.fullmatch(name):
            raise UnknownFieldError(f"field name {name!r} has characters podmortem refuses")
        return self._resolve(name, 0)

    def _resolve(self, name: str, depth: int) -> FieldExpr:
        if depth > _MAX_ALIAS_DEPTH:
            raise UnknownFieldError(f"field alias loop at {name!r}")
        if name in self.aliases:
            return self._resolve(self.aliases[name], depth + 1)
        if name in self.computed:
            return self.computed[name]
        if name in self.columns:
            col = self.columns[name]
            return FieldExpr(
                self.dialect.ident(col.column),
                "list" if col.is_list else "scalar",
                col.type,
                lowercase=col.lowercase,
                is_column=True,
            )
        head, _, rest = name.partition(".")
        if head in self.prefix_aliases and rest:
            targets = self.prefix_aliases[head]
            first = [t.split(".") for t in targets]
            if all(len(t) == 2 and t[0] == "podSpec" and t[1] in self.array_keys for t in first):
                # e.g. containers.image: the containers, init and ephemeral containers of the
                # pod spec, all found in one parse of the request body
                return self._pod_arrays([t[1] for t in first], rest)
            parts = [self._resolve(f"{p}.{rest}", depth + 1) for p in targets]
            return self._union(parts)
        if head == "podSpec" and rest:
            return self._pod_field(rest)
        for root_name, root in self.json_roots.items():
            if name == root_name:
                # The whole object as JSON text, for |contains and |re over a body whose
                # keys are not known in advance (ConfigMap data, labels with dots).
                whole = self.dialect.ident(root.column)
                return FieldExpr(self.dialect.to_text(whole), json_column=whole)
            if name.startswith(root_name + "."):
                sub = name[len(root_name) + 1 :]
                if root.single_key:
                    _quote_key(sub)  # refuses what cannot be quoted
                    kind: Kind = "list" if root.is_list else "scalar"
                    column = self.dialect.ident(root.column)
                    return FieldExpr(
                        self.dialect.json_value(column, [(sub, root.is_list)]),
                        kind,
                        json_column=column,
                        json_keys=frozenset({sub}),
                    )
                return self._json_path(self.dialect.ident(root.column), sub)
        raise UnknownFieldError(f"unknown field {name!r}")

    def _steps(self, dotted: str) -> list[Step]:
        steps: list[Step] = []
        for key in dotted.split(".") if dotted else []:
            if not key:
                raise UnknownFieldError(f"empty path segment in {dotted!r}")
            _quote_key(key)  # refuses what cannot be quoted
            steps.append((key, key in self.array_keys))
        return steps

    def _json_path(self, json_sql: str, dotted: str) -> FieldExpr:
        steps = self._steps(dotted)
        is_list = any(arr for _, arr in steps)
        # With a [*] step DuckDB returns a (flattened) VARCHAR[]: empty when nothing matches.
        return FieldExpr(
            self.dialect.json_value(json_sql, steps),
            "list" if is_list else "scalar",
            json_column=json_sql,
            json_keys=_common_keys([steps]),
        )

    def _pod_paths(self, suffix: str) -> list[list[Step]]:
        """Paths (no array steps): ``suffix`` under every place a pod spec can sit."""
        out = []
        for p in self.pod_spec_paths:
            root, _, sub = p.partition(".")
            if root != "requestObject":
                raise UnknownFieldError(f"pod spec path {p!r} must start with requestObject")
            out.append([(k, False) for k in (*sub.split("."), *suffix.split("."))])
            for k, _ in out[-1]:
                _quote_key(k)
        return out

    def _pod_field(self, rest: str) -> FieldExpr:
        """``podSpec.<rest>`` wherever the workload kind puts the pod spec. One multi-path
        extract parses the body once; a path with an array step extracts the array first and
        then walks its (much smaller) elements."""
        keys = rest.split(".")
        if any(not k for k in keys):
            raise UnknownFieldError(f"empty path segment in podSpec.{rest}")
        split = next((i for i, k in enumerate(keys) if k in self.array_keys), None)
        col = self.dialect.ident(self.json_roots["requestObject"].column)
        if split is None:
            paths = self._pod_paths(rest)
            return FieldExpr(
                self.dialect.json_first(col, paths),
                json_column=col,
                json_keys=_common_keys(paths),
            )
        return self._pod_arrays([".".join(keys[: split + 1])], ".".join(keys[split + 1 :]))

    def _pod_arrays(self, arrays: list[str], rest: str) -> FieldExpr:
        """Elements' ``rest`` of the arrays ``arrays`` (paths under the pod spec ending at an
        array key), across every pod spec location: one parse of the body for all."""
        col = self.dialect.ident(self.json_roots["requestObject"].column)
        paths = [p for a in arrays for p in self._pod_paths(a)]
        steps = self._steps(rest)
        return FieldExpr(
            self.dialect.json_arrays(col, paths, steps),
            "list",
            json_column=col,
            json_keys=_common_keys(paths) | _common_keys([steps]),
        )

    def _union(self, parts: list[FieldExpr]) -> FieldExpr:
        d = self.dialect
        lists = [p.sql if p.kind == "list" else d.singleton(p.sql) for p in parts]
        # Lists read from one JSON column are NULL or empty where it is NULL, and so is their
        # concatenation; a scalar part would add an element (NULL) of its own.
        columns = {p.json_column if p.kind == "list" else None for p in parts}
        only = columns.pop() if len(columns) == 1 else None
        keys = frozenset.intersection(*(p.json_keys for p in parts)) if only else frozenset()
        return FieldExpr(d.concat(lists), "list", json_column=only, json_keys=keys)


def _common_keys(paths: Sequence[Sequence[Step]]) -> frozenset[str]:
    """The keys every one of ``paths`` steps through."""
    sets = [frozenset(k for k, _ in p) for p in paths]
    return frozenset.intersection(*sets) if sets else frozenset()


def _quote_key(key: str) -> str:
    if _PLAIN_KEY.fullmatch(key):
        return key
    if '"' in key or "\\" in key or "'" in key:
        raise UnknownFieldError(f"JSON key {key!r} cannot be quoted safely")
    return f'"{key}"'


@cache
def _default_map() -> FieldMap:
    from podmortem.audit.actors import ActorPolicy  # actors build on this module

    # `actorClass` (podmortem extension): human, workload, node, control-plane,
    # cloud-system or anonymous, as classified by actors.yml.
    actor = FieldExpr(ActorPolicy.default_policy().sql())
    return FieldMap(_default_data(), {"actorClass": actor})


def _default_data() -> dict[str, Any]:
    text = resources.files("podmortem.audit").joinpath("fields.yml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data

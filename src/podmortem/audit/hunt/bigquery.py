"""BigQuery SQL over the tables of a Cloud Logging sink (GKE audit logs).

The sink writes one table per log (``cloudaudit_googleapis_com_activity``,
``..._data_access``); the query reads both through the wildcard table
``cloudaudit_googleapis_com_*``. Request bodies are the JSON string ``requestJson``, read with
``JSON_VALUE`` / ``JSON_QUERY_ARRAY``; an array step becomes ``EXISTS (SELECT 1 FROM
UNNEST(...))``. Strings are compared case-insensitively as Sigma defines, plain values with
``LOWER(x) = '...'`` and wildcards with RE2 through ``REGEXP_CONTAINS``. ``NOT`` is
null-safe (``NOT COALESCE(x, FALSE)``): a missing field does not match, so its negation does.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from sigma.conditions import ConditionFieldEqualsValueExpression
from sigma.conversion.state import ConversionState
from sigma.types import SigmaString

from podmortem.audit.hunt.backend import Aggregation, HuntBackend, QueryContext, Translation
from podmortem.audit.hunt.fields import Ref, Segment
from podmortem.audit.hunt.gke_fields import derived_regex, grpc_codes
from podmortem.audit.hunt.values import Unexpressible, plain_text, sigma_regex

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JSON_KEY = re.compile(r"[A-Za-z0-9_]+")


def sql_literal(text: str) -> str:
    """A BigQuery string literal ('...', backslash escapes). Values reaching here are printable
    ASCII (see values.py); anything else is refused rather than guessed at."""
    if any(not (" " <= c <= "~") for c in text):
        raise Unexpressible("a value holds a character BigQuery literals would need escaped")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ident(seg: Segment, sanitize: bool) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", seg.name) if sanitize else seg.name
    if not _IDENT.fullmatch(name):
        raise Unexpressible(f"{seg.name!r} is not a BigQuery column name")
    return name


def _json_path(segs: tuple[Segment, ...]) -> str:
    out = "$"
    for s in segs:
        # JSONPath in BigQuery quotes a key with other characters in double quotes.
        out += f".{s.name}" if _JSON_KEY.fullmatch(s.name) else '."' + s.name + '"'
        if '"' in s.name or "\\" in s.name or "'" in s.name:
            raise Unexpressible(f"JSON key {s.name!r} cannot be quoted")
    return out


class BigQueryBackend(HuntBackend):
    language: ClassVar[str] = "BigQuery SQL"
    target_name: ClassVar[str] = "gke-bigquery"
    or_token: ClassVar[str] = "OR"
    and_token: ClassVar[str] = "AND"
    not_token: ClassVar[str] = "NOT"
    not_template: ClassVar[str] = "NOT COALESCE({expr}, FALSE)"

    # ------------------------------------------------------------------ fields

    def column(self, ref: Ref) -> str:
        segs = ref.segments if ref.json_at is None else ref.segments[: ref.json_at]
        parts = [ref.element_of] if ref.element_of else []
        parts += [_ident(s, ref.sanitize_keys) for s in segs]
        return ".".join(parts)

    def value(self, ref: Ref) -> str:
        """The field as it is stored (STRING from JSON)."""
        if ref.json_at is None:
            return self.column(ref)
        inner = ref.segments[ref.json_at :]
        return f"JSON_VALUE({self.column(ref)}, {sql_literal(_json_path(inner))})"

    def text(self, ref: Ref) -> str:
        if ref.kind == "whole":
            return self.column(ref)
        v = self.value(ref)
        return (
            v if ref.json_at is not None or ref.value_type == "string" else f"CAST({v} AS STRING)"
        )

    # ------------------------------------------------------------------ values

    def str_match(self, ref: Ref, value: SigmaString, *, cased: bool) -> str:
        plain = plain_text(value)
        if plain is not None:
            if cased:
                return f"{self.text(ref)} = {sql_literal(plain)}"
            return f"LOWER({self.text(ref)}) = {sql_literal(plain.lower())}"
        flags = "(?s)" if cased else "(?is)"
        return f"REGEXP_CONTAINS({self.text(ref)}, {sql_literal(flags + sigma_regex(value))})"

    def re_match(self, ref: Ref, regex: str) -> str:
        return f"REGEXP_CONTAINS({self.text(ref)}, {sql_literal(regex)})"

    def num_eq(self, ref: Ref, n: int) -> str:
        if ref.json_at is None and ref.value_type == "integer":
            return f"{self.value(ref)} = {n}"
        return f"SAFE_CAST({self.text(ref)} AS INT64) = {n}"

    def bool_eq(self, ref: Ref, b: bool) -> str:
        return f"LOWER({self.text(ref)}) = {sql_literal('true' if b else 'false')}"

    def compare(self, ref: Ref, op: str, n: float) -> str:
        return f"SAFE_CAST({self.text(ref)} AS FLOAT64) {op} {n!r}"

    def is_null(self, ref: Ref) -> str:
        return f"{self.value(ref) if ref.kind == 'path' else self.column(ref)} IS NULL"

    def exists(self, ref: Ref) -> str:
        return f"{self.value(ref) if ref.kind == 'path' else self.column(ref)} IS NOT NULL"

    def wrap_any(self, outer: Ref, var: str, pred: str) -> str:
        if outer.json_at is None:
            arr = self.column(outer)
        else:
            inner = outer.segments[outer.json_at :]
            arr = f"JSON_QUERY_ARRAY({self.column(outer)}, {sql_literal(_json_path(inner))})"
        return f"EXISTS(SELECT 1 FROM UNNEST({arr}) AS {var} WHERE {pred})"

    def convert_condition_field_eq_val(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Any:
        ref = self.resolver.ref(str(cond.field))
        if ref.kind == "derived" and ref.derived == "gke_command":
            # The label holds argv as a JSON array text (or one plain string): one element per
            # argument, as podmortem's GKE reader splits it.
            col = ".".join(_ident(s, False) for s in _split(ref.column))
            var = self.new_var()
            elem = Ref("path", ref.native, (), element_of=var)
            pred = super().convert_condition_field_eq_val(self.element_condition(cond, elem), state)
            arr = f"IF(STARTS_WITH({col}, '['), JSON_VALUE_ARRAY({col}), [{col}])"
            return f"EXISTS(SELECT 1 FROM UNNEST({arr}) AS {var} WHERE {pred})"
        return super().convert_condition_field_eq_val(cond, state)

    def derived(self, ref: Ref, value: object) -> str:
        col = ".".join(_ident(s, False) for s in _split(ref.column))
        if ref.derived == "grpc_code":
            codes, with_null = grpc_codes(ref, value)
            test = f"{col} IN ({', '.join(str(c) for c in codes)})"
            return f"({test} OR {col} IS NULL)" if with_null else test
        return f"REGEXP_CONTAINS({col}, {sql_literal(derived_regex(ref, value))})"

    # ------------------------------------------------------------------ queries

    def detection_query(self, tr: Translation, ctx: QueryContext) -> str:
        return detection_query(tr.expr, ctx)

    def correlation_query(self, base: Translation, agg: Aggregation, ctx: QueryContext) -> str:
        return correlation_query(
            base.expr or "TRUE", agg.groups, agg.value, agg.window_s, agg.op, agg.count, ctx
        )

    # ------------------------------------------------------------------ aggregation

    def group_expr(self, ref: Ref) -> str:
        if ref.kind == "derived":
            return ".".join(_ident(s, False) for s in _split(ref.column))
        if ref.kind != "path" or ref.has_array:
            raise Unexpressible(f"{ref.native} cannot be grouped on in {self.language}")
        return self.text(ref)


def _split(path: str) -> tuple[Segment, ...]:
    return tuple(Segment(p) for p in path.split("."))


TABLE = "`PROJECT.DATASET.cloudaudit_googleapis_com_*`"
_COLUMNS = (
    "timestamp, insertId, protopayload_auditlog.methodName,"
    " protopayload_auditlog.resourceName,"
    " protopayload_auditlog.authenticationInfo.principalEmail,"
    " protopayload_auditlog.requestMetadata.callerIp, protopayload_auditlog.status.code,"
    " resource.labels.cluster_name"
)


def _where(ctx: QueryContext, conds: list[str]) -> str:
    parts = ["resource.type = 'k8s_cluster'", "protopayload_auditlog.serviceName = 'k8s.io'"]
    if ctx.since is not None:
        if ctx.since.seconds is not None:
            parts.append(
                "timestamp >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(),"
                f" INTERVAL {ctx.since.seconds} SECOND)"
            )
        else:
            parts.append(f"timestamp >= TIMESTAMP {sql_literal(ctx.since.rfc3339)}")
    if ctx.cluster is not None:
        parts.append(f"resource.labels.cluster_name = {sql_literal(ctx.cluster)}")
    return "\n  AND ".join(parts + conds)


def detection_query(expr: str | None, ctx: QueryContext) -> str:
    conds = [f"({expr})"] if expr else []
    return f"SELECT {_COLUMNS}\nFROM {TABLE}\nWHERE {_where(ctx, conds)}\nORDER BY timestamp"


def correlation_query(
    base: str, groups: list[str], value: str | None, window_s: int, op: str, count: int,
    ctx: QueryContext,
) -> str:
    measure = f"COUNT(DISTINCT {value})" if value else "COUNT(DISTINCT insertId)"
    gsel = "".join(f",\n       {g} AS g{i}" for i, g in enumerate(groups))
    gby = "".join(f", g{i}" for i in range(len(groups)))
    return (
        f"SELECT TIMESTAMP_BUCKET(timestamp, INTERVAL {window_s} SECOND) AS window_start{gsel},"
        f"\n       {measure} AS n\nFROM {TABLE}\nWHERE {_where(ctx, [f'({base})'])}"
        f"\nGROUP BY window_start{gby}\nHAVING {measure} {op} {count}\nORDER BY window_start"
    )

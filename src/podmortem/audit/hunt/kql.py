"""KQL (Azure Monitor Log Analytics) for AKS, in two flavours: the resource-specific tables
``AKSAudit``/``AKSAuditAdmin`` (PascalCase columns, ``dynamic`` objects) and
``AzureDiagnostics`` (the native Event as the JSON string ``log_s``, parsed once into ``e``).

KQL has no "any element" inside a predicate, so an array step becomes an ``mv-apply`` before
the ``where`` that counts the matching elements into a column (``_p1``); the condition tests
that column. Each array gets one extra null element so that a row whose array is empty or
missing still reaches the ``summarize`` (and counts 0) instead of being dropped by the
expansion. Strings compare case-insensitively (``=~``, ``(?i)`` regexes); regexes are
verbatim literals (``@"..."``, quotes doubled).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, ClassVar

from sigma.conditions import ConditionFieldEqualsValueExpression
from sigma.conversion.state import ConversionState
from sigma.types import SigmaString

from podmortem.audit.hunt.backend import Aggregation, HuntBackend, QueryContext, Translation
from podmortem.audit.hunt.fields import Ref, Segment
from podmortem.audit.hunt.values import Unexpressible, plain_text, sigma_regex

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DECODE = "@urldecode"  # Ref.column marker: the element is a URL-encoded query value


def kql_string(text: str) -> str:
    if any(not (" " <= c <= "~") for c in text):
        raise Unexpressible("a value holds a character KQL literals would need escaped")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def kql_regex(regex: str) -> str:
    if any(not (" " < c <= "~") for c in regex):
        raise Unexpressible("a regular expression holds a character outside printable ASCII")
    return '@"' + regex.replace('"', '""') + '"'


class _KqlBackend(HuntBackend):
    language: ClassVar[str] = "KQL"
    or_token: ClassVar[str] = "or"
    and_token: ClassVar[str] = "and"
    not_token: ClassVar[str] = "not"
    not_template: ClassVar[str] = "not(coalesce({expr}, false))"
    table: ClassVar[str] = ""
    preamble: ClassVar[tuple[str, ...]] = ()
    cluster_column: ClassVar[str] = ""
    time_column: ClassVar[str] = "TimeGenerated"
    id_column: ClassVar[str] = ""
    project: ClassVar[str] = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scopes: list[list[str]] = [[]]
        self._pcols = 0

    def take_preludes(self) -> list[str]:
        out = self._scopes[0]
        self._scopes = [[]]
        return out

    # ------------------------------------------------------------------ fields

    def path(self, ref: Ref) -> str:
        out = ref.element_of or ""
        for s in ref.segments:
            if s.single_key or not _IDENT.fullmatch(s.name):
                out += "[" + kql_string(s.name) + "]"
            else:
                out += ("." if out else "") + s.name
        if not out:
            raise Unexpressible(f"{ref.native}: empty path")
        return out

    def text(self, ref: Ref) -> str:
        if ref.column == _DECODE:
            # Go's url.Values encoding: "+" is a space, then %XX escapes (as podmortem's
            # readers decode the exec command).
            return f'url_decode(replace_string(tostring({self.path(ref)}), "+", " "))'
        if ref.column.startswith("@container:"):
            col = ref.column.split(":", 1)[1]
            raw = f'extract(@"[?&]container=([^&#]*)", 1, tostring({col}))'
            return f'url_decode(replace_string({raw}, "+", " "))'
        return f"tostring({self.path(ref)})"

    # ------------------------------------------------------------------ values

    def str_match(self, ref: Ref, value: SigmaString, *, cased: bool) -> str:
        plain = plain_text(value)
        if plain is not None:
            return f"{self.text(ref)} {'==' if cased else '=~'} {kql_string(plain)}"
        flags = "(?s)" if cased else "(?is)"
        return f"{self.text(ref)} matches regex {kql_regex(flags + sigma_regex(value))}"

    def re_match(self, ref: Ref, regex: str) -> str:
        return f"{self.text(ref)} matches regex {kql_regex(regex)}"

    def num_eq(self, ref: Ref, n: int) -> str:
        return f"tolong({self.path(ref)}) == {n}"

    def bool_eq(self, ref: Ref, b: bool) -> str:
        return f"{self.text(ref)} =~ {kql_string('true' if b else 'false')}"

    def compare(self, ref: Ref, op: str, n: float) -> str:
        return f"todouble({self.path(ref)}) {op} {n!r}"

    def is_null(self, ref: Ref) -> str:
        return f"isempty({self.text(ref)})"

    def exists(self, ref: Ref) -> str:
        return f"isnotempty({self.text(ref)})"

    def cidr_match(self, ref: Ref, cidr: str) -> str:
        fn = "ipv6_is_in_range" if ":" in cidr else "ipv4_is_in_range"
        return f"{fn}({self.text(ref)}, {kql_string(cidr)})"

    # ------------------------------------------------------------------ arrays

    def any_element(
        self, ref: Ref, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        self._scopes.append([])
        try:
            return super().any_element(ref, cond, state)
        except BaseException:
            self._scopes.pop()
            raise

    def wrap_any(self, outer: Ref, var: str, pred: str) -> str:
        return self._mv_apply(self.path(outer), var, pred)

    def _mv_apply(self, array: str, var: str, pred: str) -> str:
        inner = self._scopes.pop()
        self._pcols += 1
        col = f"_p{self._pcols}"
        sub = " | ".join([*inner, f"summarize {col} = countif({pred})"])
        # the extra null element keeps rows whose array is empty or missing (see module doc)
        arr = f"array_concat(iff(isnull({array}), dynamic([]), {array}), dynamic([null]))"
        self._scopes[-1].append(f"mv-apply {var} = {arr} to typeof(dynamic) on ({sub})")
        return f"{col} > 0"

    def derived(self, ref: Ref, value: object) -> str:
        raise Unexpressible(f"{ref.native}: not derived in KQL")

    def convert_condition_field_eq_val(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Any:
        ref = self.resolver.ref(str(cond.field))
        if ref.kind == "derived" and ref.derived == "exec_command":
            # every `command=` parameter of the URI, decoded one by one
            self._scopes.append([])
            var = self.new_var()
            elem = Ref("path", ref.native, (), element_of=var, column=_DECODE)
            try:
                pred = super().convert_condition_field_eq_val(
                    self.element_condition(cond, elem), state
                )
            except BaseException:
                self._scopes.pop()
                raise
            array = f'extract_all(@"[?&]command=([^&#]*)", tostring({ref.column}))'
            return self._mv_apply(array, var, str(pred))
        if ref.kind == "derived" and ref.derived == "exec_container":
            scalar = Ref("path", ref.native, (Segment("container"),), column=f"@container:{ref.column}")
            return super().convert_condition_field_eq_val(
                self.element_condition(cond, scalar), state
            )
        return super().convert_condition_field_eq_val(cond, state)

    # ------------------------------------------------------------------ queries

    def group_expr(self, ref: Ref) -> str:
        if ref.kind != "path":
            raise Unexpressible(f"{ref.native} cannot be grouped on in {self.language}")
        # an array groups by its whole value (as the embedded engine joins it)
        return f"tostring({self.path(replace(ref, segments=tuple(replace(s, array=False) for s in ref.segments)))})"

    def _head(self, ctx: QueryContext) -> list[str]:
        lines = [self.table, *self.preamble]
        if ctx.since is not None:
            if ctx.since.seconds is not None:
                lines.append(f"| where {self.time_column} >= ago({ctx.since.seconds}s)")
            else:
                lines.append(f"| where {self.time_column} >= datetime({ctx.since.rfc3339})")
        if ctx.cluster is not None:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,63}", ctx.cluster):
                raise Unexpressible("the cluster name has characters an AKS name cannot have")
            lines.append(
                f"| where {self.cluster_column} endswith {kql_string('/managedclusters/' + ctx.cluster)}"
            )
        return lines

    def _body(self, tr: Translation) -> list[str]:
        lines = [f"| {p}" for p in tr.preludes]
        if tr.expr:
            lines.append(f"| where {tr.expr}")
        if tr.preludes:
            lines.append("| project-away _p*")
        return lines

    def detection_query(self, tr: Translation, ctx: QueryContext) -> str:
        lines = self._head(ctx) + self._body(tr)
        lines.append(f"| project {self.project}")
        lines.append(f"| order by {self.time_column} asc")
        return "\n".join(lines)

    def correlation_query(self, base: Translation, agg: Aggregation, ctx: QueryContext) -> str:
        lines = self._head(ctx) + self._body(base)
        measure = f"count_distinct({agg.value})" if agg.value else f"count_distinct({self.id_column})"
        keys = "".join(f", g{i} = {g}" for i, g in enumerate(agg.groups))
        lines.append(
            f"| summarize n = {measure} by window_start = bin({self.time_column},"
            f" {agg.window_s}s){keys}"
        )
        lines.append(f"| where n {agg.op} {agg.count}")
        lines.append("| order by window_start asc")
        return "\n".join(lines)


class AksAuditBackend(_KqlBackend):
    target_name: ClassVar[str] = "kql-aksaudit"
    language: ClassVar[str] = "KQL (AKSAudit, AKSAuditAdmin)"
    # With both diagnostic categories exported a write is in both tables: keep one copy.
    table: ClassVar[str] = "union isfuzzy=true AKSAudit, AKSAuditAdmin"
    preamble: ClassVar[tuple[str, ...]] = ()
    cluster_column: ClassVar[str] = "_ResourceId"
    id_column: ClassVar[str] = "AuditId"
    project: ClassVar[str] = (
        "TimeGenerated, AuditId, Stage, Verb, User, SourceIps, ObjectRef, RequestUri,"
        " ResponseStatus, UserAgent, _ResourceId"
    )

    def detection_query(self, tr: Translation, ctx: QueryContext) -> str:
        q = super().detection_query(tr, ctx)
        return q.replace(
            f"| project {self.project}",
            f"| summarize arg_max(TimeGenerated, *) by AuditId, Stage\n| project {self.project}",
        )

    def keyword(self, value: SigmaString) -> str:
        raise Unexpressible("AKSAudit has no raw event text for a keyword search")


class AzureDiagnosticsBackend(_KqlBackend):
    target_name: ClassVar[str] = "kql-azurediagnostics"
    language: ClassVar[str] = "KQL (AzureDiagnostics)"
    table: ClassVar[str] = "AzureDiagnostics"
    preamble: ClassVar[tuple[str, ...]] = (
        '| where Category in ("kube-audit", "kube-audit-admin")',
        "| extend e = parse_json(log_s)",
    )
    cluster_column: ClassVar[str] = "ResourceId"
    id_column: ClassVar[str] = "tostring(e.auditID)"
    project: ClassVar[str] = (
        "TimeGenerated, Category, auditID = tostring(e.auditID), stage = tostring(e.stage),"
        " verb = tostring(e.verb), user = tostring(e.user.username), sourceIPs = e.sourceIPs,"
        " objectRef = e.objectRef, requestURI = tostring(e.requestURI), ResourceId"
    )

    def keyword(self, value: SigmaString) -> str:
        return f"log_s matches regex {kql_regex('(?is)' + sigma_regex(value, anchored=False))}"

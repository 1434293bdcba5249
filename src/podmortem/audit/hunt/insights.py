"""CloudWatch Logs Insights for EKS (log group ``/aws/eks/<cluster>/cluster``, streams
``kube-apiserver-audit-*``).

Insights discovers the fields of each JSON message by dotted path and names array elements
by index (``sourceIPs.0``): there is no "any element" operator in a ``filter``, so an array
step is an OR over the first ``index_bound`` indexes (targets.yml) and the query says so. A
query longer than Insights accepts is reported instead of printed. String matches are regexes
(``=~ /(?i)^...$/``, the wildcard written ``[\\s\\S]*`` so it also spans newlines, which
``.`` may not in Insights' engine); the time range is not part of the query language but of
``start-query`` (``--start-time``).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, ClassVar

from sigma.conditions import ConditionFieldEqualsValueExpression, ConditionOR
from sigma.conversion.state import ConversionState
from sigma.types import SigmaExists, SigmaNull, SigmaString

from podmortem.audit.hunt.backend import Aggregation, HuntBackend, QueryContext, Translation
from podmortem.audit.hunt.fields import Ref, Segment
from podmortem.audit.hunt.values import Unexpressible, escape_delimiter, sigma_regex

_PLAIN_FIELD = re.compile(r"[A-Za-z_@][A-Za-z0-9_.@]*")
# "Queries can be up to 10,000 characters long" (CloudWatch Logs quotas).
MAX_QUERY = 10_000
_STREAM = "filter @logStream like /^kube-apiserver-audit-/"
_FIELDS = (
    "fields @timestamp, @logStream, auditID, stage, verb, user.username, sourceIPs.0,"
    " objectRef.resource, objectRef.namespace, objectRef.name, objectRef.subresource,"
    " requestURI, responseStatus.code"
)


def regex_literal(regex: str) -> str:
    if any(not (" " < c <= "~") for c in regex):
        raise Unexpressible("a regular expression holds a character outside printable ASCII")
    return "/" + escape_delimiter(regex, "/") + "/"


def string_literal(text: str) -> str:
    if any(not (" " <= c <= "~") for c in text):
        raise Unexpressible("a value holds a character an Insights literal would need escaped")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InsightsBackend(HuntBackend):
    language: ClassVar[str] = "CloudWatch Logs Insights"
    target_name: ClassVar[str] = "insights"
    or_token: ClassVar[str] = "or"
    and_token: ClassVar[str] = "and"
    not_token: ClassVar[str] = "not"
    not_template: ClassVar[str] = "not {expr}"

    def field_name(self, ref: Ref) -> str:
        if ref.kind == "whole":
            raise Unexpressible(f"{ref.native}: Insights has no text of a nested object")
        name = ".".join(s.name for s in ref.segments)
        if _PLAIN_FIELD.fullmatch(name):
            return name
        if "`" in name:
            raise Unexpressible(f"field {name!r} cannot be quoted")
        return f"`{name}`"

    def any_element(
        self, ref: Ref, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Any:
        bound = self.resolver.target.index_bound
        i = next(i for i, s in enumerate(ref.segments) if s.array)
        seg = ref.segments[i]
        self.notes.append(f"{ref.native}: only the first {bound} elements of {seg.name} are checked")
        leaves = []
        for n in range(bound):
            segs = (*ref.segments[:i], Segment(f"{seg.name}.{n}"), *ref.segments[i + 1 :])
            leaves.append(replace(ref, segments=segs))
        if isinstance(cond.value, SigmaNull):
            exists = [
                ConditionFieldEqualsValueExpression(self.resolver.token(r), SigmaExists(True))
                for r in leaves
            ]
            node = ConditionOR(exists)
            for e in exists:
                e.parent = node
            return self.not_template.format(expr="(" + str(self.convert_condition(node, state)) + ")")
        conds = [self.element_condition(cond, r) for r in leaves]
        node = ConditionOR(conds)
        node.parent = cond.parent
        for c in conds:
            c.parent = node
        return "(" + str(self.convert_condition(node, state)) + ")"

    def str_match(self, ref: Ref, value: SigmaString, *, cased: bool) -> str:
        flags = "" if cased else "(?i)"
        regex = flags + sigma_regex(value, multi=r"[\s\S]*", single=r"[\s\S]")
        return f"{self.field_name(ref)} =~ {regex_literal(regex)}"

    def re_match(self, ref: Ref, regex: str) -> str:
        return f"{self.field_name(ref)} =~ {regex_literal(regex)}"

    def num_eq(self, ref: Ref, n: int) -> str:
        return f"{self.field_name(ref)} = {n}"

    def bool_eq(self, ref: Ref, b: bool) -> str:
        # Insights shows a JSON boolean as the text true/false
        return f"{self.field_name(ref)} =~ /^(?i){'true' if b else 'false'}$/"

    def compare(self, ref: Ref, op: str, n: float) -> str:
        return f"{self.field_name(ref)} {op} {n!r}"

    def is_null(self, ref: Ref) -> str:
        return f"not ispresent({self.field_name(ref)})"

    def exists(self, ref: Ref) -> str:
        return f"ispresent({self.field_name(ref)})"

    def cidr_match(self, ref: Ref, cidr: str) -> str:
        if ":" in cidr:
            raise Unexpressible("Logs Insights matches IPv4 subnets only")
        return f"isIpv4InSubnet({self.field_name(ref)}, {string_literal(cidr)})"

    def keyword(self, value: SigmaString) -> str:
        regex = "(?i)" + sigma_regex(value, multi=r"[\s\S]*", single=r"[\s\S]", anchored=False)
        return f"@message =~ {regex_literal(regex)}"

    def group_expr(self, ref: Ref) -> str:
        if ref.kind != "path":
            raise Unexpressible(f"{ref.native} cannot be grouped on in {self.language}")
        if ref.has_array:
            # a list groups by its first two elements (sourceIPs: client and first proxy)
            i = next(i for i, s in enumerate(ref.segments) if s.array)
            self.notes.append(f"grouped by the first two elements of {ref.native}")
            names = []
            for n in range(2):
                segs = (*ref.segments[:i], Segment(f"{ref.segments[i].name}.{n}"), *ref.segments[i + 1 :])
                names.append(self.field_name(replace(ref, segments=segs)))
            return ", ".join(names)
        return self.field_name(ref)

    def _check(self, query: str) -> str:
        if len(query) > MAX_QUERY:
            raise Unexpressible(
                f"the query would be {len(query)} characters; Logs Insights accepts {MAX_QUERY}"
            )
        return query

    def detection_query(self, tr: Translation, ctx: QueryContext) -> str:
        lines = [_FIELDS, f"| {_STREAM}"]
        if tr.expr:
            lines.append(f"| filter {tr.expr}")
        lines += ["| sort @timestamp asc", "| limit 10000"]
        return self._check("\n".join(lines))

    def correlation_query(self, base: Translation, agg: Aggregation, ctx: QueryContext) -> str:
        measure = f"count_distinct({agg.value})" if agg.value else "count_distinct(auditID)"
        keys = "".join(f", {g}" for g in agg.groups)
        lines = [
            f"filter @logStream like /^kube-apiserver-audit-/ and ({base.expr})",
            f"| stats {measure} as n by bin({agg.window_s}s) as window_start{keys}",
            f"| filter n {agg.op} {agg.count}",
            "| sort window_start asc",
        ]
        self.notes.append("count_distinct is approximate in Logs Insights for high cardinalities")
        return self._check("\n".join(lines))

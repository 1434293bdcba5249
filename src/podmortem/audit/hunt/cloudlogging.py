"""The Cloud Logging query language (``gcloud logging read``, Logs Explorer) for GKE.

A comparison on a field inside a repeated value (``protoPayload.request.spec.containers``)
matches when any element does, so array steps need no construct of their own. ``OR`` binds
tighter than ``AND`` in this language (the reverse of SQL), so every compound is written in
parentheses. Case-insensitive string matches are ``=~`` regexes with ``(?i)``, anchored (the
operator finds a match anywhere). The language selects entries and cannot count them: a
correlation is reported as not expressible (the BigQuery form runs it).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from sigma.conditions import ConditionFieldEqualsValueExpression
from sigma.conversion.state import ConversionState
from sigma.types import SigmaString

from podmortem.audit.hunt.backend import HuntBackend, QueryContext, Translation
from podmortem.audit.hunt.fields import Ref, Segment
from podmortem.audit.hunt.gke_fields import derived_regex, grpc_codes
from podmortem.audit.hunt.values import Unexpressible, plain_text, sigma_regex

_IDENT = re.compile(r"[A-Za-z_@][A-Za-z0-9_]*")


def filter_string(text: str) -> str:
    """A double-quoted string of the filter language (backslash escapes)."""
    if any(not (" " <= c <= "~") for c in text):
        raise Unexpressible("a value holds a character the filter literal would need escaped")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class CloudLoggingBackend(HuntBackend):
    language: ClassVar[str] = "Cloud Logging query language"
    target_name: ClassVar[str] = "gke-logging"
    or_token: ClassVar[str] = "OR"
    and_token: ClassVar[str] = "AND"
    not_token: ClassVar[str] = "NOT"
    # NOT over a missing field is true here, as Sigma wants: no null handling needed.
    not_template: ClassVar[str] = "NOT {expr}"

    def path(self, ref: Ref | str) -> str:
        segs = ref.segments if isinstance(ref, Ref) else tuple(Segment(p) for p in ref.split("."))
        parts = []
        for s in segs:
            parts.append(s.name if (not s.single_key and _IDENT.fullmatch(s.name)) else filter_string(s.name))
        return ".".join(parts)

    def _ref(self, cond: ConditionFieldEqualsValueExpression) -> Ref:
        ref = super()._ref(cond)
        if ref.kind == "whole":
            raise Unexpressible(f"{ref.native}: the filter language cannot match a whole object")
        return ref

    def any_element(
        self, ref: Ref, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Any:
        flat = Ref(
            "path",
            ref.native,
            tuple(Segment(s.name, False, s.single_key) for s in ref.segments),
            value_type=ref.value_type,
        )
        return super().convert_condition_field_eq_val(self.element_condition(cond, flat), state)

    def str_match(self, ref: Ref, value: SigmaString, *, cased: bool) -> str:
        plain = plain_text(value)
        if plain is not None and cased:
            return f"{self.path(ref)}={filter_string(plain)}"
        flags = "(?s)" if cased else "(?is)"
        return f"{self.path(ref)}=~{filter_string(flags + sigma_regex(value))}"

    def re_match(self, ref: Ref, regex: str) -> str:
        return f"{self.path(ref)}=~{filter_string(regex)}"

    def num_eq(self, ref: Ref, n: int) -> str:
        return f"{self.path(ref)}={n}"

    def bool_eq(self, ref: Ref, b: bool) -> str:
        return f"{self.path(ref)}={'true' if b else 'false'}"

    def compare(self, ref: Ref, op: str, n: float) -> str:
        if op == "!=":
            return f"{self.path(ref)}!={n!r}"
        return f"{self.path(ref)}{op}{n!r}"

    def is_null(self, ref: Ref) -> str:
        return f"NOT {self.path(ref)}:*"

    def exists(self, ref: Ref) -> str:
        return f"{self.path(ref)}:*"

    def cidr_match(self, ref: Ref, cidr: str) -> str:
        return f"ip_in_net({self.path(ref)}, {filter_string(cidr)})"

    def derived(self, ref: Ref, value: object) -> str:
        col = self.path(ref.column)
        if ref.derived == "grpc_code":
            codes, with_null = grpc_codes(ref, value)
            tests = [f"{col}={c}" for c in codes] + ([f"NOT {col}:*"] if with_null else [])
            return tests[0] if len(tests) == 1 else "(" + " OR ".join(tests) + ")"
        return f"{col}=~{filter_string(derived_regex(ref, value))}"

    def group_expr(self, ref: Ref) -> str:
        raise Unexpressible(
            "the Cloud Logging query language selects entries and cannot count them over time"
            " windows; run the BigQuery form of this rule over a log sink"
        )

    def detection_query(self, tr: Translation, ctx: QueryContext) -> str:
        lines = [
            'resource.type="k8s_cluster"',
            'protoPayload.serviceName="k8s.io"',
            '(log_id("cloudaudit.googleapis.com/activity")'
            ' OR log_id("cloudaudit.googleapis.com/data_access"))',
        ]
        if ctx.since is not None:
            lines.append(f"timestamp>={filter_string(ctx.since.rfc3339)}")
        if ctx.cluster is not None:
            lines.append(f"resource.labels.cluster_name={filter_string(ctx.cluster)}")
        if tr.expr:
            lines.append(f"({tr.expr})")
        return "\nAND ".join(lines)

"""Native Event fields that GKE keeps inside other fields (notes/audit-formats.md):

* the verb, resource and subresource are segments of ``methodName``
  (``io.k8s.core.v1.pods.exec.create``; CRDs use reversed domains, so the resource is found as
  the segment after the API version, not at a fixed position);
* group, version, namespace and name are segments of ``resourceName``
  (``core/v1/namespaces/prod/pods/api-0[/exec]``; the core group is spelled ``core``);
* ``status.code`` is a gRPC code: an HTTP code is compared as the gRPC codes podmortem's GKE
  reader maps to it (``sources/grpc_status.yaml``, one table for both), and HTTP 200 is also an
  entry with no status at all.

Each part is matched with one RE2 pattern over the whole field, with Sigma wildcards limited
to one segment.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import cache
from importlib import resources

import yaml
from sigma.types import (
    CompareOperators,
    SigmaCasedString,
    SigmaCompareExpression,
    SigmaNumber,
    SigmaString,
)

from podmortem.audit.hunt.fields import Ref
from podmortem.audit.hunt.values import Unexpressible, sigma_regex

_VERSION = r"v[0-9]+(?:(?:alpha|beta)[0-9]+)?"
# (template, character class a wildcard may span). {v} is the value's pattern.
_TEMPLATES: dict[str, tuple[str, str]] = {
    "method_verb": (r"\.{v}$", "[^.]"),
    "method_resource": (r"\." + _VERSION + r"\.{v}(?:\.[^.]+)?\.[^.]+$", "[^.]"),
    "method_subresource": (r"\." + _VERSION + r"\.[^.]+\.{v}\.[^.]+$", "[^.]"),
    "name_group": (r"^{v}/", "[^/]"),
    "name_version": (r"^[^/]+/{v}/", "[^/]"),
    "name_namespace": (r"^[^/]+/[^/]+/namespaces/{v}(?:/|$)", "[^/]"),
    "name_object": (r"^[^/]+/[^/]+/(?:namespaces/[^/]+/)?[^/]+/{v}(?:/[^/]+)?$", "[^/]"),
}
NOTES = {
    "name_object": "objectRef.name is matched in resourceName; a request on a whole namespace's"
    " collection (namespaces/<x>/pods) has the shape of the object namespaces/<x>",
}
_CMP: dict[CompareOperators, Callable[[int, float], bool]] = {
    CompareOperators.LT: operator.lt,
    CompareOperators.LTE: operator.le,
    CompareOperators.GT: operator.gt,
    CompareOperators.GTE: operator.ge,
    CompareOperators.NEQ: operator.ne,
}


def derived_regex(ref: Ref, value: object) -> str:
    """The RE2 pattern (printable ASCII) matching ``ref``'s part equal to ``value``."""
    spec = _TEMPLATES.get(ref.derived)
    if spec is None:
        raise Unexpressible(f"{ref.native}: unknown derived field {ref.derived}")
    if not isinstance(value, SigmaString):
        raise Unexpressible(
            f"{ref.native} is part of {ref.column} on GKE; only string values can be matched"
        )
    template, cls = spec
    text = str(value)
    if ref.derived == "name_group" and text == "":
        value = SigmaString("core")  # the core API group is spelled `core` in resourceName
    body = sigma_regex(value, multi=cls + "*", single=cls, anchored=False)
    flags = "" if isinstance(value, SigmaCasedString) else "(?i)"
    return flags + template.replace("{v}", body)


@cache
def _grpc_to_http() -> dict[int, int]:
    path = resources.files("podmortem.audit.sources").joinpath("grpc_status.yaml")
    data = yaml.safe_load(path.read_text("utf-8"))
    return {int(k): int(v[0]) for k, v in data.items()}


def grpc_codes(ref: Ref, value: object) -> tuple[list[int], bool]:
    """gRPC codes whose HTTP equivalent satisfies the rule's value, and whether an entry with
    no status (success) matches too."""
    table = _grpc_to_http()
    if isinstance(value, SigmaCompareExpression):
        test = _CMP[value.op]
        bound = float(value.number.number)
        codes = [g for g, http in sorted(table.items()) if test(http, bound)]
    else:
        if isinstance(value, SigmaNumber):
            http = int(value.number)
        elif isinstance(value, SigmaString) and str(value).isdigit():
            http = int(str(value))
        else:
            raise Unexpressible(f"{ref.native}: value {value!s:.40} is not an HTTP status code")
        codes = [g for g, h in sorted(table.items()) if h == http]
    if not codes:
        raise Unexpressible(
            f"{ref.native}: no gRPC status of GKE maps to the HTTP code(s) of this rule"
        )
    return codes, 0 in codes

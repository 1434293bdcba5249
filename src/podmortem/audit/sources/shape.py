"""The native ``audit.k8s.io/v1`` Event shape as DuckDB reads it, and the checks that keep a
hostile record from breaking a whole batch.

Every reader ends in the same place: a native-shaped Event (for GKE, one built from the
LogEntry) that DuckDB's JSON reader turns into the contract columns with one SQL mapping
(:mod:`podmortem.audit.sources.mapping`). DuckDB rejects a whole file when one value has the
wrong type (``"user": "bob"`` where an object is expected), so the Python readers pass each
event through :func:`conform` first: a field of the wrong type is dropped from the typed
view (it stays in ``raw``) and the record is still loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# The typed view of an Event. "JSON" fields keep any JSON value; strings are VARCHAR.
# Older v1beta1 events (the Falco traces) add top-level ``timestamp`` and ``metadata``.
EVENT_FIELDS: dict[str, Any] = {
    "kind": "VARCHAR",
    "apiVersion": "VARCHAR",
    "level": "VARCHAR",
    "auditID": "VARCHAR",
    "stage": "VARCHAR",
    "requestURI": "VARCHAR",
    "verb": "VARCHAR",
    "user": {"username": "VARCHAR", "uid": "VARCHAR", "groups": ["VARCHAR"], "extra": "JSON"},
    "impersonatedUser": "JSON",
    "sourceIPs": ["VARCHAR"],
    "userAgent": "VARCHAR",
    "objectRef": {
        "resource": "VARCHAR",
        "namespace": "VARCHAR",
        "name": "VARCHAR",
        "subresource": "VARCHAR",
        "apiGroup": "VARCHAR",
        "apiVersion": "VARCHAR",
    },
    "responseStatus": {
        "code": "BIGINT",
        "status": "VARCHAR",
        "reason": "VARCHAR",
        "message": "VARCHAR",
    },
    "requestObject": "JSON",
    "responseObject": "JSON",
    "annotations": "JSON",
    "requestReceivedTimestamp": "VARCHAR",
    "stageTimestamp": "VARCHAR",
    "timestamp": "VARCHAR",
    "metadata": {"creationTimestamp": "VARCHAR"},
}

# Provenance and provider overrides written next to each staged event.
META_FIELDS: dict[str, Any] = {
    "provider": "VARCHAR",
    "envelope": "VARCHAR",
    "cluster": "VARCHAR",
    "log": "VARCHAR",
    "line": "BIGINT",
    "truncated": "BOOLEAN",
    "exec_command": ["VARCHAR"],
}

_INT64 = (-(2**63), 2**63 - 1)


def duckdb_type(spec: Any) -> str:
    """Render a field spec (string, one-element list, dict) as a DuckDB type."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, list):
        return duckdb_type(spec[0]) + "[]"
    inner = ", ".join(f'"{k}" {duckdb_type(v)}' for k, v in spec.items())
    return f"STRUCT({inner})"


def columns_literal(fields: Mapping[str, Any]) -> str:
    """A ``columns={...}`` literal for ``read_json``."""
    return "{" + ", ".join(f"'{k}': '{duckdb_type(v)}'" for k, v in fields.items()) + "}"


def _fits(value: Any, spec: Any) -> bool:
    if value is None or spec == "JSON":
        return True
    if spec == "VARCHAR":
        return isinstance(value, str)
    if spec == "BIGINT":
        # bool is an int in Python but not in JSON; DuckDB refuses to cast it.
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and (_INT64[0] <= value <= _INT64[1])
        )
    if spec == "BOOLEAN":
        return isinstance(value, bool)
    if isinstance(spec, list):
        return isinstance(value, list) and all(_fits(v, spec[0]) for v in value)
    return isinstance(value, dict)


def conform(
    obj: Mapping[str, Any], fields: Mapping[str, Any] = EVENT_FIELDS
) -> tuple[Mapping[str, Any], list[str]]:
    """Return ``obj`` (or, when some typed field does not fit ``fields``, a copy without
    those fields) and the dotted names of the fields dropped (they remain in the raw record).

    The common case, an Event whose fields all have the documented types, allocates nothing:
    keys outside ``fields`` are left in place and ignored by DuckDB's typed reader."""
    bad = _misfits(obj, fields)
    if not bad:
        return obj, []
    return _without(obj, fields, bad, ""), bad


def _misfits(obj: Mapping[str, Any], fields: Mapping[str, Any], prefix: str = "") -> list[str]:
    bad: list[str] = []
    for key, spec in fields.items():
        value = obj.get(key)
        if value is None:
            continue
        if isinstance(spec, dict):
            if isinstance(value, dict):
                bad.extend(_misfits(value, spec, f"{prefix}{key}."))
            else:
                bad.append(prefix + key)
        elif not _fits(value, spec):
            bad.append(prefix + key)
    return bad


def _without(
    obj: Mapping[str, Any], fields: Mapping[str, Any], bad: list[str], prefix: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, spec in fields.items():
        if key not in obj or prefix + key in bad:
            continue
        value = obj[key]
        if isinstance(spec, dict) and isinstance(value, dict):
            value = _without(value, spec, bad, f"{prefix}{key}.")
        out[key] = value
    return out


def is_event(obj: Mapping[str, Any]) -> bool:
    """Does this mapping look like one native audit Event (any version)?

    ``kind`` is optional (old v1beta1 traces and some forwarders drop it); an Event has an
    ``auditID``, or at least a verb with a request URI or an object reference.
    """
    kind = obj.get("kind")
    if kind is not None and kind != "Event":
        return False
    if isinstance(obj.get("auditID"), str) and obj["auditID"]:
        return True
    return isinstance(obj.get("verb"), str) and (
        isinstance(obj.get("requestURI"), str) or isinstance(obj.get("objectRef"), dict)
    )


# Salvage from a cut Event: the fields that come early in the apiserver's output order
# (auditID, stage, requestURI, verb, user, sourceIPs, userAgent, objectRef) usually survive a
# cut that happens inside the (large) request or response object.
_STR_FIELD = {
    name: re.compile(r'"' + name + r'"\s*:\s*"((?:[^"\\]|\\.){0,4096})"')
    for name in (
        "auditID",
        "stage",
        "level",
        "requestURI",
        "verb",
        "userAgent",
        "requestReceivedTimestamp",
        "stageTimestamp",
        "timestamp",
    )
}
_USERNAME = re.compile(r'"user"\s*:\s*\{\s*"username"\s*:\s*"((?:[^"\\]|\\.){0,1024})"')
_OBJREF = re.compile(r'"objectRef"\s*:\s*(\{[^{}]{0,4096}\})')
_SOURCE_IPS = re.compile(r'"sourceIPs"\s*:\s*(\[[^\[\]]{0,4096}\])')
_CODE = re.compile(r'"responseStatus"\s*:\s*\{[^{}]*?"code"\s*:\s*(\d{1,3})\b')


def _unescape(text: str) -> str:
    import json

    try:
        value = json.loads(f'"{text}"')
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def salvage(text: str) -> dict[str, Any]:
    """Recover what can be recovered from the text of a cut or broken Event.

    Regular expressions over the prefix, bounded so that a hostile line cannot make them
    slow; returns an empty dict when nothing identifying survived.
    """
    import json

    head = text[: 1 << 20]
    out: dict[str, Any] = {}
    for name, rx in _STR_FIELD.items():
        m = rx.search(head)
        if m:
            out[name] = _unescape(m.group(1))
    m = _USERNAME.search(head)
    if m:
        out["user"] = {"username": _unescape(m.group(1))}
    for key, rx in (("objectRef", _OBJREF), ("sourceIPs", _SOURCE_IPS)):
        m = rx.search(head)
        if m:
            try:
                value = json.loads(m.group(1))
            except ValueError:
                continue
            out[key] = value
    m = _CODE.search(head)
    if m:
        out["responseStatus"] = {"code": int(m.group(1))}
    if not any(k in out for k in ("auditID", "verb", "requestURI")):
        return {}
    conformed, _ = conform(out)
    return dict(conformed)

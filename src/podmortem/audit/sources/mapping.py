"""One SQL mapping from the native Event shape to the contract columns of ``audit_events``.

Both routes use it: the fast route reads native JSONL straight from the evidence file with
DuckDB's JSON reader, the Python route stages native-shaped events (with provenance in
``m``) as NDJSON that the same reader loads. Keeping one mapping means a field is never
normalized two different ways.
"""

from __future__ import annotations

import duckdb

from podmortem.audit.model import COLUMN_NAMES
from podmortem.audit.sources.framing import MAX_LINE
from podmortem.audit.sources.shape import EVENT_FIELDS, META_FIELDS, columns_literal, duckdb_type

# Exec/attach/port-forward keep the command only in the query string, form-encoded by Go's
# url.Values ("+" for space, %XX escapes, ``command`` repeated once per argv element). A
# hostile %XX sequence can decode to invalid UTF-8; then the encoded text is kept.
_EXEC = r"""
    CASE WHEN m.exec_command IS NOT NULL THEN m.exec_command
         WHEN e.objectRef.subresource = 'exec'
         THEN list_transform(
                regexp_extract_all(e.requestURI, '[?&]command=([^&#]*)', 1),
                lambda x: coalesce(try(url_decode(replace(x, '+', ' '))), x))
    END"""
_CONTAINER = r"""
    CASE WHEN e.objectRef.subresource IN ('exec', 'attach')
         THEN nullif(coalesce(try(url_decode(replace(
                regexp_extract(e.requestURI, '[?&]container=([^&#]*)', 1), '+', ' '))),
                regexp_extract(e.requestURI, '[?&]container=([^&#]*)', 1)), '')
    END"""

# Expressions in contract column order; ``e`` is the event struct, ``m`` the provenance
# struct, ``r`` the raw record (JSON or NULL), ``f`` the file name, ``n`` the line/record.
EXPRESSIONS: dict[str, str] = {
    "event_key": "m.provider || ':' || coalesce(e.auditID || ':' || coalesce(e.stage, ''),"
    " f || ':' || CAST(n AS VARCHAR))",
    "audit_id": "e.auditID",
    "stage": "e.stage",
    "level": "e.level",
    "verb": "e.verb",
    "request_uri": "e.requestURI",
    "username": "e.user.username",
    "user_uid": "e.user.uid",
    "user_groups": "e.user.groups",
    "user_extra": "e.user.extra",
    "impersonated_user": "e.impersonatedUser",
    "source_ips": "e.sourceIPs",
    "user_agent": "e.userAgent",
    "obj_resource": "e.objectRef.resource",
    "obj_namespace": "e.objectRef.namespace",
    "obj_name": "e.objectRef.name",
    "obj_subresource": "e.objectRef.subresource",
    "obj_api_group": "e.objectRef.apiGroup",
    "obj_api_version": "e.objectRef.apiVersion",
    "response_code": "TRY_CAST(e.responseStatus.code AS INTEGER)",
    "response_status": "e.responseStatus.status",
    "response_reason": "e.responseStatus.reason",
    "response_message": "e.responseStatus.message",
    "request_object": "e.requestObject",
    "response_object": "e.responseObject",
    "annotations": "e.annotations",
    # v1beta1 events carry a second-resolution ``timestamp`` and ``metadata.creationTimestamp``
    "request_received": "TRY_CAST(coalesce(e.requestReceivedTimestamp, e.timestamp,"
    " e.metadata.creationTimestamp) AS TIMESTAMPTZ)",
    "stage_timestamp": "TRY_CAST(coalesce(e.stageTimestamp, e.timestamp,"
    " e.metadata.creationTimestamp) AS TIMESTAMPTZ)",
    "exec_command": _EXEC,
    "exec_container": _CONTAINER,
    "truncated": "coalesce(m.truncated, false)",
    "provider": "m.provider",
    "envelope": "m.envelope",
    "cluster": "m.cluster",
    "source_file": "f",
    "source_line": "n",
    "raw": "r",
}
if tuple(EXPRESSIONS) != COLUMN_NAMES:  # pragma: no cover - a programming error
    raise ImportError("audit.sources.mapping is out of step with audit.model.COLUMNS")

# DuckDB quotes the offending input in its error messages and may cut it inside a UTF-8
# sequence; the Python client then raises UnicodeDecodeError instead of duckdb.Error.
DUCKDB_ERRORS: tuple[type[BaseException], ...] = (duckdb.Error, UnicodeDecodeError)

EVENT_COLUMNS = columns_literal(EVENT_FIELDS)
STAGED_COLUMNS = columns_literal({"e": EVENT_FIELDS, "m": META_FIELDS, "r": "JSON"})
META_TYPE = duckdb_type(META_FIELDS)


def insert_sql(table: str, source: str) -> str:
    """``INSERT`` from a relation yielding ``e, m, r, f, n``."""
    select = ",\n  ".join(EXPRESSIONS.values())
    return f'INSERT INTO "{table}" SELECT\n  {select}\nFROM ({source})'


def native_source(
    *, keep_raw: bool, compression: str, envelope: str = "jsonl", typed: bool = False
) -> str:
    """Relation over a native JSONL file (parameters ``$path``, ``$file``).

    With ``keep_raw`` each line is read as JSON text (kept in ``raw``) and transformed into
    the typed struct; a value of the wrong type reads as NULL in its column and is still in
    ``raw`` (``json_transform_strict`` cannot be used: it also rejects absent keys). Without
    it DuckDB's typed reader is used, about twice as fast, which refuses a mistyped file
    outright (the Python route then reads it and reports the field); ``raw`` is NULL and
    the file and line locate the original.

    ``typed`` with ``keep_raw``: the typed reader gives ``e`` and the JSON-objects reader
    gives ``raw``, side by side (``POSITIONAL JOIN``: both split the file into the same
    records, blank lines skipped alike). It parses each line once instead of twice (about
    twice as fast) but, like the typed reader alone, refuses a whole file in which some
    field has the wrong type; the caller then uses the form without ``typed``.
    """
    meta = (
        f"CAST({{'provider': 'native', 'envelope': '{envelope}', 'cluster': NULL, "
        f"'line': NULL, 'truncated': false, 'exec_command': NULL}} AS {META_TYPE})"
    )
    objects = (
        f"read_ndjson_objects($path::VARCHAR, compression='{compression}',"
        f" maximum_object_size={MAX_LINE})"
    )
    typed_reader = (
        f"read_json($path::VARCHAR, format='newline_delimited', records=true,"
        f" compression='{compression}', maximum_object_size={MAX_LINE},"
        f" columns={EVENT_COLUMNS})"
    )
    if keep_raw and typed:
        return (
            f"SELECT t AS e, {meta} AS m, o.json AS r, $file::VARCHAR AS f,"  # noqa: S608 - plain identifiers, values bound
            f" row_number() OVER () AS n FROM {typed_reader} t POSITIONAL JOIN {objects} o"
        )
    if keep_raw:
        struct = _json_structure()
        return (
            f"SELECT json_transform(json, '{struct}') AS e, {meta} AS m, json AS r,"  # noqa: S608 - plain identifiers, values bound
            f" $file::VARCHAR AS f, row_number() OVER () AS n FROM {objects}"
        )
    return (
        f"SELECT t AS e, {meta} AS m, NULL::JSON AS r, $file::VARCHAR AS f,"  # noqa: S608 - plain identifiers, values bound
        f" row_number() OVER () AS n FROM {typed_reader} t"
    )


def staged_source(*, lenient: bool = False) -> str:
    """Relation over a staging NDJSON file (parameters ``$file``, ``$path``). The typed
    reader refuses a batch in which a field has a type the Event does not allow; the
    ``lenient`` form then reads ``e`` as JSON text and transforms it as the columnar routes
    do, so both routes give the same columns for the same record."""
    if lenient:
        columns = columns_literal({"e": "JSON", "m": META_FIELDS, "r": "JSON"})
        event = f"json_transform(e, '{_json_structure()}')"
    else:
        columns, event = STAGED_COLUMNS, "e"
    return (
        f"SELECT {event} AS e, m, r, $file::VARCHAR AS f, m.line AS n"  # noqa: S608 - plain identifiers, values bound
        " FROM read_json($path::VARCHAR, format='newline_delimited', records=true,"
        f" maximum_object_size={MAX_LINE * 4},"
        f" compression='none', columns={columns})"
    )


def json_structure(fields: object = None) -> str:
    """``fields`` (default: the Event) as a ``json_transform`` structure, SQL-quoted."""
    return _json_structure(fields)


def _json_structure(fields: object = None) -> str:
    import json

    def conv(spec: object) -> object:
        if isinstance(spec, str):
            return spec
        if isinstance(spec, list):
            return [conv(spec[0])]
        if isinstance(spec, dict):
            return {k: conv(v) for k, v in spec.items()}
        raise TypeError(spec)

    return json.dumps(conv(EVENT_FIELDS if fields is None else fields)).replace("'", "''")

"""One SQL mapping from the native Event shape to the contract columns of ``audit_events``.

Both routes use it: the fast route reads native JSONL straight from the evidence file with
DuckDB's JSON reader, the Python route stages native-shaped events (with provenance in
``m``) as NDJSON that the same reader loads. Keeping one mapping means a field is never
normalized two different ways.
"""

from __future__ import annotations

import duckdb

from podmortem.audit.model import COLUMN_LIST, COLUMN_NAMES
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
    "log_name": "m.log",
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
    return f'INSERT INTO "{table}" ({COLUMN_LIST}) SELECT\n  {select}\nFROM ({source})'


# ``m.provider`` of a row that is not an event of the route: re-read in Python (residue),
# a counted skip (the reason follows), or a blank line (no record at all).
RESIDUE = "!residue"
SKIP = "!skip:"
BLANK = "!blank"

# A line of the CSV reader that is blank as :func:`.framing.iter_lines` sees it (nothing
# but what Python's ``bytes.strip()`` removes): not a record. Evaluated only on rows that
# did not parse (``CASE``): trimming every line copied it, and took 1.5 s of a 2 s load.
_BLANK_LINE = "(line IS NULL OR trim(line, ' ' || chr(9) || chr(11) || chr(12)) = '')"


# The longest line the parallel line routes take. DuckDB sizes its read buffers by the
# longest line (or object) allowed and splits work by buffer: with ``MAX_LINE`` (64 MiB) a
# 250 MB file was one buffer on one core (200k GKE entries 1.6 s, with 8 MiB 0.95 s). An
# audit event rarely comes near: the apiserver refuses bodies over 3 MiB. A longer line makes
# the route refuse the file, and the next one (``MAX_LINE``) reads it.
FAST_LINE = 8 << 20


def blank_case(parsed: str) -> str:
    """True for a blank line, given the SQL of what was parsed from ``line``."""
    return f"CASE WHEN {parsed} IS NULL THEN {_BLANK_LINE} ELSE false END"


# An Event of the native shape: (kind absent or Event) and (auditID, or verb and a target)
_IS_NATIVE_EVENT = (
    "(e.kind IS NULL OR e.kind = 'Event') AND (nullif(e.auditID, '') IS NOT NULL"
    " OR (e.verb IS NOT NULL AND (e.requestURI IS NOT NULL OR e.objectRef IS NOT NULL)))"
)


def text_lines(compression: str) -> str:
    """Rows ``(line)``: each line of a JSON-lines file as text, in file order.

    DuckDB's CSV reader splits the file on ``\\n`` in parallel, with a delimiter (U+0001)
    and no quote or escape, so a line of valid JSON is one column, verbatim: JSON text
    cannot hold a raw control character. It is strict where a silent difference from the
    Python route could creep in, and then refuses the whole file (the caller falls back to
    the JSON-objects reader): a carriage return anywhere (the Python route splits on
    ``\\n`` only, and would number lines differently), U+0001, invalid UTF-8, a line
    longer than ``FAST_LINE``. Against the typed JSON reader paired by position with the
    objects reader (the previous route), this parses each line once and keeps every step
    parallel. It carries no line number (``row_number()`` serialises the insert): the
    loader numbers the rows by insertion order afterwards. Blank lines come through as
    rows (see :func:`blank_case`), so that the relation stays one row per line."""
    return (
        f"SELECT line FROM read_csv($path::VARCHAR, columns={{'line': 'VARCHAR'}},"  # noqa: S608 - fixed SQL text, values bound
        " delim='\x01', quote='', escape='', header=false, auto_detect=false,"
        f" new_line='\\n', compression='{compression}', max_line_size={FAST_LINE})"
    )


def native_source(
    *,
    keep_raw: bool,
    compression: str,
    envelope: str = "jsonl",
    by_line: bool = True,
    max_line: int = FAST_LINE,
) -> str:
    """Relation over a native JSONL file (parameters ``$path``, ``$file``).

    With ``keep_raw`` each line is read as text (:func:`text_lines`, kept in ``raw``) and
    transformed into the typed struct: a value of the wrong type reads as NULL in its
    column and is still in ``raw`` (``json_transform_strict`` cannot be used: it also
    rejects absent keys). A line that is not an Event (not JSON, another kind, no
    auditID...) is residue, for the Python route to salvage and report. Without ``keep_raw``
    DuckDB's typed reader is used, which refuses a file with a mistyped value outright:
    the Python route then reads it and reports the field, which would otherwise be lost.
    Both read in parallel and leave ``n`` NULL: the loader numbers the rows by insertion
    order, and ``t``, the line's text (NULL from the typed reader), lets them hand residue
    lines to Python without a second read of the file. ``max_line`` (typed reader only):
    the longest line it takes (see ``FAST_LINE``).

    ``by_line=False``: the JSON-objects reader, numbered here; for a file the line
    readers refuse (a carriage return, invalid UTF-8, a mistyped value...). It refuses a
    file with a line that is not JSON (the Python route then reads all of it).
    """
    provider = f"CASE WHEN {_IS_NATIVE_EVENT} THEN 'native' ELSE '{RESIDUE}' END"
    if by_line and keep_raw:
        provider = f"CASE WHEN {blank_case('e')} THEN '{BLANK}' ELSE {provider} END"
    meta = (
        f"CAST({{'provider': {provider}, 'envelope': '{envelope}', 'cluster': NULL, "
        f"'log': NULL, 'line': NULL, 'truncated': false, 'exec_command': NULL}} AS {META_TYPE})"
    )
    struct = _json_structure()
    if by_line and keep_raw:
        return (
            f"SELECT e, {meta} AS m, CASE WHEN e IS NOT NULL THEN line END::JSON AS r,"  # noqa: S608 - plain identifiers, values bound
            " $file::VARCHAR AS f, NULL::BIGINT AS n, line AS t"
            f" FROM (SELECT line, try(json_transform(line, '{struct}')) AS e"
            f" FROM ({text_lines(compression)}))"
        )
    if by_line:
        typed_reader = (
            f"read_json($path::VARCHAR, format='newline_delimited', records=true,"
            f" compression='{compression}', maximum_object_size={max_line},"
            f" columns={EVENT_COLUMNS})"
        )
        return (
            f"SELECT e, {meta} AS m, NULL::JSON AS r, $file::VARCHAR AS f,"  # noqa: S608 - plain identifiers, values bound
            f" NULL::BIGINT AS n, NULL::VARCHAR AS t FROM (SELECT x AS e FROM {typed_reader} x)"
        )
    objects = (
        f"read_ndjson_objects($path::VARCHAR, compression='{compression}',"
        f" maximum_object_size={MAX_LINE})"
    )
    return (
        f"SELECT e, {meta} AS m, {'json' if keep_raw else 'NULL::JSON'} AS r,"  # noqa: S608 - plain identifiers, values bound
        f" $file::VARCHAR AS f, n FROM (SELECT json, json_transform(json, '{struct}') AS e,"
        f" row_number() OVER () AS n FROM {objects})"
    )


# The provider's log of a record read by the Python route, from the record it kept in raw
# (the columnar routes read the same field of the same record).
_STAGED_LOG = (
    "CASE m.provider WHEN 'gke' THEN r->>'$.logName' WHEN 'aks' THEN r->>'$.category'"
    " WHEN 'eks' THEN coalesce(r->>'$.logStream', r->>'$.logStreamName') END"
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
        f"SELECT {event} AS e, struct_update(m, log := {_STAGED_LOG}) AS m, r,"  # noqa: S608 - plain identifiers, values bound
        " $file::VARCHAR AS f, m.line AS n"
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

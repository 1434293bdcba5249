"""Columnar routes for the bulk cloud envelopes: DuckDB reads the export, unwraps it and
parses the inner Event in SQL, so that millions of records never pass through Python.

Each route takes only records of the plain, common shape. Anything else in the file (a cut
or malformed inner event, another log category, a GKE entry that is truncated, anonymous,
an exec or not a Kubernetes call, a CONTROL_MESSAGE...) is marked as *residue*: the loader
deletes those rows and hands the same lines (or values) to the Python readers, which hold
the complete semantics (salvage, caveats, counted skips). The equivalence of both routes is
tested on the fixtures.

Every relation yields ``e`` (the Event struct), ``m`` (provenance; ``m.provider`` is
``RESIDUE`` for rows to re-read in Python), ``r`` (raw record or NULL), ``f``, ``n`` (the
line, or the value index for concatenated documents: the unit the Python route re-reads)
and takes the parameters ``$path`` and ``$file``. The line-by-line forms (``by_line``) leave
``n`` NULL for the loader to number, mark blank lines (``BLANK``) and add ``t``, the line's
text, which the loader hands to Python for residue lines.
"""

from __future__ import annotations

from podmortem.audit.sources.framing import MAX_LINE
from podmortem.audit.sources.gke import grpc_map
from podmortem.audit.sources.mapping import (
    BLANK,
    META_TYPE,
    RESIDUE,
    SKIP,
    blank_case,
    json_structure,
    text_lines,
)
from podmortem.audit.sources.shape import columns_literal

# The largest single JSON document the columnar routes hand to DuckDB. A CloudWatch Logs
# subscription payload is one PutRecord (at most 1 MiB of gzip), an Event Hub batch or a
# filter-log-events page about 1 MiB. DuckDB's JSON reader sizes its buffers by
# ``maximum_object_size``: with the 1 GiB document limit, under the analysis memory limit,
# it thrashed (200k EKS events: 11 s instead of 2.9 s). A larger document makes DuckDB
# refuse the file, and the Python route (which allows ``MAX_DOCUMENT``) reads it.
MAX_PAYLOAD = 64 << 20
EVENT = json_structure()

# (kind IS NULL OR kind = 'Event') AND (auditID OR (verb AND (requestURI OR objectRef)))
_IS_EVENT = (
    "((e.kind IS NULL OR e.kind = 'Event') AND (nullif(e.auditID, '') IS NOT NULL"
    " OR (e.verb IS NOT NULL AND (e.requestURI IS NOT NULL OR e.objectRef IS NOT NULL))))"
)


def _meta(
    provider_if_ok: str,
    ok: str,
    envelope: str,
    cluster: str,
    skip: str = "NULL",
    *,
    log: str = "NULL",
    blank: str = "false",
) -> str:
    """``m``: ``provider`` is ``BLANK`` for a blank line (``blank``: SQL), ``SKIP`` + reason
    for a counted skip (``skip`` is a SQL expression giving the reason or NULL),
    ``RESIDUE`` unless ``ok``, else the provider."""
    return (
        f"CAST(struct_pack(provider := CASE WHEN {blank} THEN '{BLANK}'"
        f" WHEN ({skip}) IS NOT NULL THEN '{SKIP}' || ({skip})"
        f" WHEN {ok} THEN '{provider_if_ok}' ELSE '{RESIDUE}' END,"
        f" envelope := '{envelope}', cluster := {cluster}, log := {log}, line := n,"
        f" truncated := false, exec_command := NULL::VARCHAR[]) AS {META_TYPE})"
    )


def _units(reader: str, list_path: str | None) -> str:
    """Rows ``(r, n)``: each value of ``reader`` with its index, or, with ``list_path``,
    each element of that list inside each value (an empty or absent list gives one NULL
    row, which is residue: the Python reader counts it)."""
    if list_path is None:
        return f"SELECT json AS r, row_number() OVER () AS n FROM {reader}"  # noqa: S608 - fixed SQL text
    return f"""
        SELECT n, unnest(CASE WHEN json_array_length(json, '{list_path}') > 0
                              THEN json_extract(json, '{list_path}[*]')
                              ELSE [NULL::JSON] END) AS r
        FROM (SELECT json, row_number() OVER () AS n FROM {reader})"""  # noqa: S608 - fixed SQL text


def _parsed_lines(fields: dict[str, object], compression: str, keep_raw: bool) -> str:
    """Rows ``(r, n, a)`` over a JSON-lines file: each line as text (:func:`.text_lines`,
    kept as ``r`` with ``keep_raw``) and ``a``, the struct ``fields`` parsed from it once
    (NULL for a line that is not JSON: residue), ``b`` whether the line is blank, ``t`` its
    text. ``n`` is NULL: the loader numbers the rows by insertion order (one row per
    line)."""
    raw = "CASE WHEN a IS NOT NULL THEN line END" if keep_raw else "NULL"
    return (
        f"SELECT {raw}::JSON AS r, NULL::BIGINT AS n, a, {blank_case('a')} AS b, line AS t"  # noqa: S608 - fixed SQL text
        f" FROM (SELECT line, try(json_transform(line, '{json_structure(fields)}')) AS a"
        f" FROM ({text_lines(compression)}))"
    )


def _reader(kind: str, compression: str) -> str:
    if kind == "lines":
        return (
            f"read_ndjson_objects($path::VARCHAR, compression='{compression}',"
            f" maximum_object_size={MAX_LINE})"
        )
    limit = MAX_LINE if kind in ("newline_delimited", "array") else MAX_PAYLOAD
    return (
        f"read_json_objects($path::VARCHAR, format='{kind}', compression='{compression}',"
        f" maximum_object_size={limit})"
    )


def _event_of_text(expr: str) -> str:
    """Parse an Event carried as JSON text (or as a JSON object) into the Event struct; NULL
    when it is not valid JSON (the Python route then salvages and reports it)."""
    return (
        f"CASE json_type({expr}) WHEN 'VARCHAR' THEN try(json_transform({expr}->>'$', '{EVENT}'))"
        f" WHEN 'OBJECT' THEN json_transform({expr}, '{EVENT}') END"
    )


def aks(
    compression: str,
    keep_raw: bool,
    *,
    records_doc: bool,
    lines: bool = True,
    by_line: bool = False,
) -> str:
    """AKS diagnostic records: storage-blob lines (one record per line), or Event Hub /
    storage documents ``{"records": [...]}`` (``n`` is then the document's index). Records
    of other categories are counted skips; the rest must carry an Event in ``properties.log``.

    ``by_line`` (blob lines only): each line is read as text (:func:`_parsed_lines`) and
    ``properties.log`` taken as text whether it is a string or an object (DuckDB renders
    an object as its JSON text), so the inner Event is parsed once, and only for audit
    categories: four times faster than unwrapping JSON values (48k records: 1.5 s to
    0.35 s). The CSV reader behind it refuses some files (see :func:`.text_lines`); the
    caller then uses the generic form."""
    fields: dict[str, object] = {
        "category": "VARCHAR",
        "properties": {"log": "JSON"},
        "resourceId": "VARCHAR",
    }
    rec = json_structure(fields)
    cluster = (
        "CASE WHEN contains(lower(a.resourceId), '/managedclusters/')"
        " THEN nullif(regexp_extract(rtrim(a.resourceId, '/'), '[^/]+$'), '') END"
    )
    skip = (
        "CASE WHEN a.properties IS NOT NULL AND a.category IS NOT NULL"
        " AND a.category NOT IN ('kube-audit', 'kube-audit-admin')"
        " THEN 'aks: category ' || left(a.category, 60) END"
    )
    ok = f"a.category IN ('kube-audit', 'kube-audit-admin') AND {_IS_EVENT}"
    if by_line and not records_doc:
        units = _parsed_lines({**fields, "properties": {"log": "VARCHAR"}}, compression, keep_raw)
        event = (
            "CASE WHEN a.category IN ('kube-audit', 'kube-audit-admin')"
            f" THEN try(json_transform(a.properties.log, '{EVENT}')) END"
        )
        meta = _meta("aks", ok, "blob-lines", cluster, skip, log="a.category", blank="b")
        return f"""
      SELECT e, {meta} AS m, r, $file::VARCHAR AS f, n, t
      FROM (SELECT r, n, a, b, t, {event} AS e FROM ({units}))"""  # noqa: S608 - fixed SQL text, values bound
    if records_doc:
        layout = "newline_delimited" if lines else "unstructured"
        units = _units(_reader(layout, compression), "$.records")
        envelope = "records"
    else:
        units = _units(_reader("lines", compression), None)
        envelope = "blob-lines"
    return f"""
      SELECT e, {_meta("aks", ok, envelope, cluster, skip, log="a.category")} AS m,
             {"r" if keep_raw else "NULL::JSON"} AS r, $file::VARCHAR AS f, n
      FROM (
        SELECT r, n, a, {_event_of_text("a.properties.log")} AS e
        FROM (SELECT r, n, json_transform(r, '{rec}') AS a FROM ({units})))"""  # noqa: S608 - fixed SQL text, values bound


_EKS_OTHER_STREAMS = (
    "authenticator-",
    "kube-apiserver-",
    "kube-controller-manager-",
    "kube-scheduler-",
    "cloud-controller-manager-",
)


def _eks_skip(stream: str) -> str:
    other = " OR ".join(f"starts_with({stream}, '{p}')" for p in _EKS_OTHER_STREAMS)
    return (
        f"CASE WHEN NOT starts_with({stream}, 'kube-apiserver-audit') AND ({other})"
        f" THEN 'eks: non-audit log stream ' || regexp_replace({stream}, '-[^-]*$', '') END"
    )


def eks_subscription(compression: str, keep_raw: bool, layout: str = "unstructured") -> str:
    """CloudWatch subscription messages, concatenated (Firehose) or one per line; one row
    per log event, ``n`` the index of the message in the file. A CONTROL_MESSAGE is one
    counted skip.

    Read with DuckDB's typed reader: unnesting lists of JSON text held every message of a
    vector of 2,048 payloads (200,000 events) several times over (2.7 GB for 200k events);
    typed structs stream (0.6 GB). A log event has ``id``, ``timestamp``, ``message`` and
    optionally ``extractedFields``; ``raw`` is rebuilt from exactly those, with the group
    and stream it came from, as the Python reader keeps it."""
    cols = columns_literal(
        {
            "messageType": "VARCHAR",
            "logGroup": "VARCHAR",
            "logStream": "VARCHAR",
            "logEvents": [
                {
                    "id": "VARCHAR",
                    "timestamp": "BIGINT",
                    "message": "VARCHAR",
                    "extractedFields": "JSON",
                }
            ],
        }
    )
    cluster = "nullif(regexp_extract(a.logGroup, '^/aws/eks/([^/]+)/cluster$', 1), '')"
    skip = (
        f"CASE WHEN a.messageType = 'CONTROL_MESSAGE' THEN 'eks: subscription CONTROL_MESSAGE'"
        f" WHEN a.messageType = 'DATA_MESSAGE' THEN {_eks_skip('a.logStream')} END"
    )
    ok = f"a.messageType = 'DATA_MESSAGE' AND {_IS_EVENT}"
    raw = (
        "CASE WHEN le.extractedFields IS NULL"
        " THEN json_object('logGroup', a.logGroup, 'logStream', a.logStream, 'id', le.id,"
        " 'timestamp', le.\"timestamp\", 'message', le.message)"
        " ELSE json_object('logGroup', a.logGroup, 'logStream', a.logStream, 'id', le.id,"
        " 'timestamp', le.\"timestamp\", 'message', le.message,"
        " 'extractedFields', le.extractedFields) END"
        if keep_raw
        else "NULL::JSON"
    )
    meta = _meta("eks", ok, "cloudwatch-subscription", cluster, skip, log="a.logStream")
    return f"""
      SELECT e, {meta} AS m,
             {raw} AS r, $file::VARCHAR AS f, n
      FROM (
        SELECT a, n, le, CASE WHEN a.messageType = 'DATA_MESSAGE'
                              THEN try(json_transform(le.message, '{EVENT}')) END AS e
        FROM (
          SELECT a, n, unnest(CASE WHEN a.messageType = 'DATA_MESSAGE' AND len(events) > 0
                                   THEN events ELSE [NULL] END) AS le
          FROM (
            SELECT struct_pack(messageType := t.messageType, logGroup := t.logGroup,
                               logStream := t.logStream) AS a,
                   t.logEvents AS events, row_number() OVER () AS n
            FROM read_json($path::VARCHAR, format='{layout}', records=true,
                           compression='{compression}', maximum_object_size={MAX_PAYLOAD},
                           columns={cols}) t)))"""  # noqa: S608 - fixed SQL text, values bound


def eks_filter_log_events(compression: str, keep_raw: bool, *, lines: bool = False) -> str:
    """``aws logs filter-log-events`` output: ``{"events": [...]}`` documents."""
    layout = "newline_delimited" if lines else "unstructured"
    units = _units(_reader(layout, compression), "$.events")
    le = json_structure({"logStreamName": "VARCHAR", "message": "JSON"})
    ok = f"a.message IS NOT NULL AND {_IS_EVENT}"
    return f"""
      SELECT e, {
        _meta(
            "eks",
            ok,
            "filter-log-events",
            "NULL::VARCHAR",
            _eks_skip("a.logStreamName"),
            log="a.logStreamName",
        )
    } AS m,
             {"r" if keep_raw else "NULL::JSON"} AS r, $file::VARCHAR AS f, n
      FROM (
        SELECT r, n, a, {_event_of_text("a.message")} AS e
        FROM (SELECT r, n, json_transform(r, '{le}') AS a FROM ({units})))"""  # noqa: S608 - fixed SQL text, values bound


def gke(compression: str, keep_raw: bool, *, layout: str = "lines", by_line: bool = False) -> str:
    """Cloud Audit Log entries, one per line (``layout="lines"``) or in a JSON array
    (``"array"``, as ``gcloud logging read --format=json`` writes): the Kubernetes API calls
    of the plain shape
    (``k8s.io``, an identified caller, not truncated, not exec: those carry meaning the
    Python reader spells out) are mapped here, as :mod:`podmortem.audit.sources.gke` does."""
    fields: dict[str, object] = {
        "insertId": "VARCHAR",
        "logName": "VARCHAR",
        "labels": "JSON",
        "operation": {"id": "VARCHAR", "first": "JSON", "last": "JSON"},
        "protoPayload": {
            "serviceName": "VARCHAR",
            "methodName": "VARCHAR",
            "resourceName": "VARCHAR",
            "authenticationInfo": {"principalEmail": "VARCHAR"},
            "requestMetadata": {"callerIp": "VARCHAR", "callerSuppliedUserAgent": "VARCHAR"},
            "status": "JSON",
            "request": "JSON",
            "response": "JSON",
        },
        "resource": {"labels": {"cluster_name": "VARCHAR"}},
        "timestamp": "JSON",
    }
    entry = json_structure(fields)
    # the gRPC -> HTTP mapping of grpc_status.yaml, the one the Python reader uses
    codes = grpc_map()
    grpc = (
        "CASE sc "
        + " ".join(f"WHEN {g} THEN {http}" for g, (http, _) in sorted(codes.items()))
        + " ELSE 500 END"
    )
    reason = (
        "CASE sc "
        + " ".join(
            f"WHEN {g} THEN " + ("'" + why.replace("'", "''") + "'" if why else "NULL")
            for g, (_, why) in sorted(codes.items())
        )
        + " ELSE 'Unknown' END"
    )
    # resourceName: <group>/<version>/[namespaces/<ns>/]<resource>[/<name>[/<sub>...]]
    ns_scoped = "(len(rest) >= 3 AND rest[1] = 'namespaces')"
    ns_object = "(len(rest) = 2 AND rest[1] = 'namespaces')"
    tail = f"CASE WHEN {ns_scoped} THEN rest[3:] ELSE rest END"
    event = f"""struct_pack(
        kind := 'Event', apiVersion := NULL::VARCHAR,
        level := CASE WHEN p.response IS NOT NULL THEN 'RequestResponse'
                      WHEN p.request IS NOT NULL THEN 'Request' ELSE 'Metadata' END,
        auditID := g.insertId,
        stage := CASE WHEN g.operation.first = 'true'::JSON
                       AND coalesce(g.operation.last <> 'true'::JSON, true)
                      THEN 'ResponseStarted' ELSE 'ResponseComplete' END,
        requestURI := NULL::VARCHAR,
        verb := regexp_extract(p.methodName, '[^.]*$'),
        "user" := struct_pack(username := p.authenticationInfo.principalEmail,
                              uid := NULL::VARCHAR, groups := NULL::VARCHAR[],
                              extra := NULL::JSON),
        impersonatedUser := NULL::JSON,
        sourceIPs := CASE WHEN p.requestMetadata.callerIp IS NOT NULL
                          THEN [p.requestMetadata.callerIp] END,
        userAgent := p.requestMetadata.callerSuppliedUserAgent,
        objectRef := CASE WHEN len(parts) >= 3 THEN struct_pack(
            resource := CASE WHEN {ns_object} THEN 'namespaces' ELSE ({tail})[1] END,
            namespace := CASE WHEN {ns_scoped} THEN rest[2] END,
            name := CASE WHEN {ns_object} THEN rest[2] ELSE ({tail})[2] END,
            subresource := CASE WHEN NOT {ns_object} AND len({tail}) >= 3
                                THEN array_to_string(({tail})[3:], '/') END,
            apiGroup := CASE WHEN parts[1] = 'core' THEN '' ELSE parts[1] END,
            apiVersion := parts[2])
          ELSE struct_pack(resource := NULL::VARCHAR, namespace := NULL::VARCHAR,
                           name := NULL::VARCHAR, subresource := NULL::VARCHAR,
                           apiGroup := NULL::VARCHAR, apiVersion := NULL::VARCHAR) END,
        responseStatus := struct_pack(
            code := CAST({grpc} AS BIGINT),
            status := CASE WHEN {grpc} < 400 THEN 'Success' ELSE 'Failure' END,
            reason := {reason},
            message := json_extract_string(p.status, '$.message')),
        requestObject := p.request, responseObject := p.response,
        annotations := CASE WHEN json_type(g.labels) = 'OBJECT'
                             AND len(json_keys(g.labels)) > 0 THEN g.labels END,
        requestReceivedTimestamp := g."timestamp"->>'$',
        stageTimestamp := g."timestamp"->>'$',
        "timestamp" := NULL::VARCHAR,
        metadata := struct_pack(creationTimestamp := NULL::VARCHAR))"""
    ok = (
        "p.serviceName = 'k8s.io' AND nullif(g.insertId, '') IS NOT NULL"
        " AND nullif(p.methodName, '') IS NOT NULL AND NOT contains(p.methodName, 'exec')"
        " AND p.resourceName IS NOT NULL"
        " AND nullif(p.authenticationInfo.principalEmail, '') IS NOT NULL"
        " AND coalesce(json_type(p.status, '$.code') IN ('UBIGINT', 'BIGINT'),"
        "              json_type(p.status, '$.code') IS NULL)"
        " AND (p.status IS NULL OR json_type(p.status) = 'OBJECT')"
        " AND (g.labels IS NULL OR json_type(g.labels) = 'OBJECT')"
        " AND NOT coalesce(json_exists(g.labels, '$.\"audit.k8s.io/truncated\"'), false)"
        " AND coalesce(json_type(g.\"timestamp\") = 'VARCHAR', true)"
        " AND coalesce(json_type(g.operation.first) IN ('BOOLEAN', 'NULL'), true)"
        " AND coalesce(json_type(g.operation.last) IN ('BOOLEAN', 'NULL'), true)"
    )
    skip = (
        "CASE WHEN p.serviceName NOT IN ('k8s.io', 'container.googleapis.com')"
        " THEN 'gke: audit entry of service ' || left(p.serviceName, 60) END"
    )
    envelope = "jsonl" if layout == "lines" else "array"
    cluster = "g.resource.labels.cluster_name"
    if by_line and layout == "lines":
        # one parse per line, in parallel, instead of two (objects, then transform)
        units = f"SELECT r, n, a AS g, b, t FROM ({_parsed_lines(fields, compression, keep_raw)})"  # noqa: S608 - fixed SQL text
    else:
        units = (
            f"SELECT json AS r, row_number() OVER () AS n, json_transform(json, '{entry}') AS g,"  # noqa: S608 - fixed SQL text
            f" false AS b, NULL::VARCHAR AS t FROM {_reader(layout, compression)}"
        )
    return f"""
      SELECT e, {_meta("gke", ok, envelope, cluster, skip, log="g.logName", blank="b")} AS m,
             {"r" if keep_raw else "NULL::JSON"} AS r, $file::VARCHAR AS f, n, t
      FROM (
        SELECT r, n, g, b, t, p, {event} AS e
        FROM (
          SELECT r, n, g, b, t, g.protoPayload AS p, parts, parts[3:] AS rest,
                 coalesce(TRY_CAST(json_extract(g.protoPayload.status, '$.code') AS BIGINT), 0)
                   AS sc
          FROM (
            SELECT r, n, g, b, t,
                   list_filter(string_split(g.protoPayload.resourceName, '/'),
                               lambda x: x <> '') AS parts
            FROM ({units}))))"""  # noqa: S608 - fixed SQL text, values bound

"""Everything a report needs, read from one case and nothing else: the manifest and custody
log, the index's ``findings``/``caveats``/``audit_events`` tables, the acquisition run
documents (``acquisition.json``) with each target's runtime inspect document, and the image
analysis documents. The case is only read (the index is opened read-only).

Every document here came from evidence or from analyses of evidence, so it is hostile: each
JSON artifact is read with a size cap, and a document that does not parse or has the wrong
shape becomes a caveat, never an exception that stops the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from podmortem.case import paths
from podmortem.case.custody import CustodyRecord, read_lines
from podmortem.case.store import ArtifactRecord, Case
from podmortem.findings import Caveat, Finding, Provenance

PARSER = "podmortem.report"
MAX_DOCUMENT = 256 << 20  # an acquisition document with 100k processes is ~100 MiB
MAX_CUSTODY = 64 << 20
MAX_AUDIT_ROWS = 20_000  # per report; more are counted in a caveat (the index keeps them)


def parse_time(value: object) -> datetime | None:
    """ISO-8601 (``Z`` or offset, any fraction) or a datetime; naive values are UTC.
    Docker's zero time ``0001-01-01T00:00:00Z`` means "never" (still running)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    s = value.strip().replace("Z", "+00:00")
    # Go writes nanoseconds; Python takes at most microseconds.
    head, dot, frac = s.partition(".")
    if dot:
        digits = "".join(c for c in frac if c.isdigit())
        rest = frac[len(digits) :]
        s = f"{head}.{digits[:6]}{rest}"
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass(slots=True)
class AuditEvent:
    """One API request (deduplicated over stages and over the provider formats it came in)."""

    audit_id: str
    time: datetime | None
    verb: str
    username: str
    source_ips: list[str]
    user_agent: str
    resource: str
    namespace: str
    name: str
    subresource: str
    request_uri: str
    code: int | None
    exec_command: list[str]
    exec_container: str
    request_object: Any
    provider: str
    provenance: list[Provenance] = field(default_factory=list)

    @property
    def is_exec(self) -> bool:
        return self.resource == "pods" and self.subresource in ("exec", "attach")

    @property
    def object_path(self) -> str:
        parts = [p for p in (self.namespace, self.resource, self.name, self.subresource) if p]
        return "/".join(parts) or self.request_uri


@dataclass(slots=True)
class RuntimeTarget:
    """One acquired container: identity, its runtime inspect document, and what was seen."""

    target: str
    identity: dict[str, Any]
    inspect: dict[str, Any]
    processes: list[dict[str, Any]] = field(default_factory=list)
    sockets: list[dict[str, Any]] = field(default_factory=list)
    fs_changes: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False
    artifact: str = ""

    def _label(self, key: str) -> str:
        labels = self.identity.get("labels") or {}
        return str(labels.get(key) or "") if isinstance(labels, Mapping) else ""

    @property
    def pod_name(self) -> str:
        pod = self.identity.get("pod") or {}
        # cri-dockerd/dockershim and containerd's CRI plugin label every container so.
        return str(pod.get("name") or "") or self._label("io.kubernetes.pod.name")

    @property
    def pod_namespace(self) -> str:
        pod = self.identity.get("pod") or {}
        return str(pod.get("namespace") or "") or self._label("io.kubernetes.pod.namespace")

    @property
    def container_name(self) -> str:
        return self._label("io.kubernetes.container.name") or str(self.identity.get("name") or "")

    @property
    def image_refs(self) -> set[str]:
        refs = {str(self.identity.get("image_digest") or ""), str(self.identity.get("image") or "")}
        refs.add(str(self.inspect.get("Image") or ""))
        return {r for r in refs if r}


@dataclass(slots=True)
class ImageDocument:
    """An image analysis result: identity, layers (with history and path lists), findings."""

    artifact: str
    data: dict[str, Any]

    @property
    def identity(self) -> dict[str, Any]:
        img = self.data.get("image")
        return img if isinstance(img, dict) else {}

    @property
    def layers(self) -> list[dict[str, Any]]:
        layers = self.data.get("layers")
        if not isinstance(layers, list):
            return []
        out = []
        for x in layers:
            if isinstance(x, dict):
                # path lists of the wrong type count as empty (their values stay displayable)
                out.append(
                    {
                        **x,
                        **{
                            k: x[k] if isinstance(x.get(k), list) else []
                            for k in ("added", "modified", "deleted")
                        },
                    }
                )
        return out

    @property
    def refs(self) -> set[str]:
        ident = self.identity
        out: set[str] = set()
        for key in ("digest", "id", "image_id", "config_digest", "manifest_digest", "reference"):
            v = ident.get(key)
            if isinstance(v, str) and v:
                out.add(v)
        for key in ("repo_tags", "tags", "repo_digests", "runtime_tags"):
            v = ident.get(key)
            if isinstance(v, list):
                out.update(str(x) for x in v if x)
        return out

    @property
    def label(self) -> str:
        ident = self.identity
        tags = ident.get("tags") or ident.get("runtime_tags") or ident.get("repo_tags") or []
        if isinstance(tags, list) and tags:
            return str(tags[0])
        return str(
            ident.get("reference") or ident.get("digest") or ident.get("id") or self.artifact
        )


@dataclass(slots=True)
class CaseEvidence:
    case: Case
    custody: list[CustodyRecord] = field(default_factory=list)
    findings: list[tuple[str, Finding]] = field(default_factory=list)  # (analysis, finding)
    caveats: list[tuple[str, Caveat]] = field(default_factory=list)
    audit: list[AuditEvent] = field(default_factory=list)
    audit_total: int = 0
    runtime: list[RuntimeTarget] = field(default_factory=list)
    images: list[ImageDocument] = field(default_factory=list)
    # attack threads the audit reconstruction (issue 6) told, from the audit analysis documents
    threads: list[dict[str, Any]] = field(default_factory=list)
    # sha256 -> (image config digest, path, layer) for the hashes seen at runtime
    image_hashes: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)
    problems: list[Caveat] = field(default_factory=list)  # what the report itself could not read

    def problem(self, kind: str, message: str, artifact: str | None = None) -> None:
        prov = Provenance(source="case", parser=PARSER, artifact=artifact)
        self.problems.append(Caveat(kind, message, prov))


def load(case: Case) -> CaseEvidence:
    ev = CaseEvidence(case)
    _custody(ev)
    _index(ev)
    arts = case.artifacts
    _runtime(ev, arts)
    _images(ev, arts)
    _audit_documents(ev, arts)
    _image_hashes(ev)
    return ev


def _read_json(ev: CaseEvidence, art: ArtifactRecord, limit: int = MAX_DOCUMENT) -> Any:
    path = ev.case.root / art.path
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        ev.problem("artifact-unreadable", f"{art.path}: {exc.strerror}", art.path)
        return None
    if len(data) > limit:
        ev.problem("artifact-too-large", f"{art.path} is over {limit} bytes; not read", art.path)
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        ev.problem("artifact-unparsable", f"{art.path} is not JSON: {exc}", art.path)
        return None


def _custody(ev: CaseEvidence) -> None:
    path = ev.case.root / paths.CUSTODY
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CUSTODY + 1)
    except OSError as exc:
        ev.problem("custody-unreadable", f"custody log: {exc.strerror}")
        return
    if len(data) > MAX_CUSTODY:
        ev.problem("custody-truncated", f"custody log over {MAX_CUSTODY} bytes: only its start")
        data = data[: data.rfind(b"\n", 0, MAX_CUSTODY) + 1]
    ev.custody = [ln.record for ln in read_lines(data) if ln.record is not None]


def _index(ev: CaseEvidence) -> None:
    if not ev.case.index_path.exists():
        return
    import duckdb

    from podmortem.case import index

    try:
        con = index.connect(ev.case, read_only=True)
    except duckdb.Error as exc:
        ev.problem("index-unreadable", f"case index: {' '.join(str(exc).split())[:300]}")
        return
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "findings" in tables:
            _findings(ev, con)
        if "caveats" in tables:
            for row in con.execute(
                "SELECT analysis, kind, message, provenance, details FROM caveats"
            ).fetchall():
                prov = json.loads(row[3]) if row[3] else None
                ev.caveats.append(
                    (
                        str(row[0]),
                        Caveat.from_dict(
                            {
                                "kind": row[1],
                                "message": row[2],
                                "provenance": prov,
                                "details": json.loads(row[4]) if row[4] else {},
                            }
                        ),
                    )
                )
        if "audit_events" in tables:
            _audit(ev, con)
    finally:
        con.close()


def _findings(ev: CaseEvidence, con: Any) -> None:
    rows = con.execute(
        "SELECT analysis, rule_id, title, severity, techniques, time, subject, summary,"
        " evidence, provenance, extra FROM findings"
    ).fetchall()
    for row in rows:
        try:
            f = Finding.from_dict(
                {
                    "rule_id": row[1],
                    "title": row[2],
                    "severity": row[3],
                    "techniques": row[4] or [],
                    "time": row[5].isoformat() if row[5] else None,
                    "subject": row[6],
                    "summary": row[7],
                    "evidence": row[8] or [],
                    "provenance": json.loads(row[9]) if row[9] else None,
                    "extra": json.loads(row[10]) if row[10] else {},
                }
            )
        except (ValueError, KeyError, TypeError) as exc:
            ev.problem("finding-unreadable", f"a finding of {row[0]!r} could not be read: {exc}")
            continue
        ev.findings.append((str(row[0]), f))


# One request yields up to three events (one per stage) with the same auditID, and the same
# request may arrive in two provider formats. Keep one per auditID: ResponseComplete, except
# for exec/attach/portforward whose ResponseStarted is the meaningful one (the stream may
# never complete); rank 0 wins, then the first row loaded. Every copy is kept as provenance.
# Grouping on narrow columns first and joining back by rowid keeps this a fraction of a
# second for 100k events (a window over whole rows took seconds).
_AUDIT_SQL = """
WITH r AS (
  SELECT rowid AS rid, coalesce(audit_id, event_key) AS k,
    CASE WHEN stage = 'ResponseStarted' AND obj_subresource IN ('exec','attach','portforward')
           THEN 0
         WHEN stage = 'ResponseComplete' THEN 1 WHEN stage = 'ResponseStarted' THEN 2
         WHEN stage = 'Panic' THEN 3 ELSE 4 END AS rank,
    provider || '|' || coalesce(source_file, '') || '|'
      || coalesce(CAST(source_line AS VARCHAR), '') || '|' || coalesce(envelope, '') AS copy
  FROM audit_events),
pick AS (
  SELECT k, arg_min(rid, rank * 1000000000000 + rid) AS rid,
         list(DISTINCT copy ORDER BY copy) AS copies
  FROM r GROUP BY k)
SELECT e.audit_id, coalesce(e.stage_timestamp, e.request_received) AS t, e.verb, e.username,
  e.source_ips, e.user_agent, e.obj_resource, e.obj_namespace, e.obj_name, e.obj_subresource,
  e.request_uri, e.response_code, e.exec_command, e.exec_container,
  -- only workload writes carry the pod specs the correlation reads
  CASE WHEN e.verb IN ('create','update','patch') AND e.obj_resource IN ('pods','deployments',
    'replicasets','daemonsets','statefulsets','jobs','cronjobs') THEN e.request_object END,
  e.provider, pick.copies, e.event_key
FROM pick JOIN audit_events e ON e.rowid = pick.rid
ORDER BY t NULLS LAST, e.audit_id LIMIT ?
"""


def _audit(ev: CaseEvidence, con: Any) -> None:
    ev.audit_total = int(
        con.execute(
            "SELECT count(DISTINCT coalesce(audit_id, event_key)) FROM audit_events"
        ).fetchone()[0]
    )
    for row in con.execute(_AUDIT_SQL, [MAX_AUDIT_ROWS]).fetchall():
        provs = []
        for copy in sorted(row[16] or [])[:8]:
            provider, src, line, envelope = [*str(copy).split("|"), "", "", "", ""][:4]
            loc = tuple(x for x in (src, f"record {line}" if line else "") if x)
            provs.append(Provenance("audit", f"podmortem.audit.{provider}/{envelope}", None, loc))
        try:
            req = json.loads(row[14]) if row[14] else None
        except ValueError:
            req = None
        ev.audit.append(
            AuditEvent(
                audit_id=str(row[0] or row[17] or ""),
                time=parse_time(row[1]),
                verb=str(row[2] or ""),
                username=str(row[3] or ""),
                source_ips=[str(x) for x in row[4] or []],
                user_agent=str(row[5] or ""),
                resource=str(row[6] or ""),
                namespace=str(row[7] or ""),
                name=str(row[8] or ""),
                subresource=str(row[9] or ""),
                request_uri=str(row[10] or ""),
                code=int(row[11]) if row[11] is not None else None,
                exec_command=[str(x) for x in row[12] or []],
                exec_container=str(row[13] or ""),
                request_object=req,
                provider=str(row[15] or ""),
                provenance=provs,
            )
        )
    if ev.audit_total > len(ev.audit):
        ev.problem(
            "timeline-truncated",
            f"the timeline shows the first {len(ev.audit)} of {ev.audit_total} audit requests;"
            " the case index holds them all",
        )


def _artifacts_named(arts: list[ArtifactRecord], suffix: str) -> Iterator[ArtifactRecord]:
    for a in arts:
        if a.path.endswith(suffix) and a.error is None:
            yield a


def _runtime(ev: CaseEvidence, arts: list[ArtifactRecord]) -> None:
    inspects = {a.path: a for a in _artifacts_named(arts, "/t5/inspect.json")}
    for art in _artifacts_named(arts, "acquisition.json"):
        doc = _read_json(ev, art)
        if not isinstance(doc, dict) or not isinstance(doc.get("targets"), list):
            if doc is not None:
                ev.problem("artifact-shape", f"{art.path}: no target list", art.path)
            continue
        by_target: dict[str, RuntimeTarget] = {}
        for t in doc["targets"]:
            if not isinstance(t, dict):
                continue
            name = str(t.get("target") or "")
            ident = _clean(t["identity"]) if isinstance(t.get("identity"), dict) else {}
            if not isinstance(ident.get("labels"), dict):
                ident["labels"] = {}
            if not isinstance(ident.get("pod"), dict):
                ident["pod"] = {}
            rt = RuntimeTarget(name, ident, {}, complete=t.get("complete") is True)
            rt.artifact = art.path
            by_target[name] = rt
            ev.runtime.append(rt)
            for path, ia in inspects.items():
                # The collector files each target under targets/<safe target>/.
                if _target_dir(name) in path:
                    idoc = _read_json(ev, ia, 16 << 20)
                    if isinstance(idoc, dict):
                        rt.inspect = idoc
        for key in ("processes", "sockets", "fs_changes"):
            items = doc.get(key)
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and str(item.get("target")) in by_target:
                    getattr(by_target[str(item.get("target"))], key).append(_clean(item))


# Fields the report computes with; anything else is only displayed (as text). A document of
# the wrong shape (a pid that is a list, a command line that is a string) must not stop the
# report: numbers that are not integers become None, text becomes str, argv a list of str.
_INTS = (
    "pid",
    "ns_pid",
    "ppid",
    "size",
    "uid",
    "local_port",
    "remote_port",
    "inode",
    "restart_count",
)


def as_int(value: object) -> int:
    """An integer from a document, 0 for anything else (hostile or missing)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


_TEXTS = ("path", "change", "type", "exe", "mtime", "start_time", "sha256", "exe_sha256")


def _clean(item: dict[str, Any]) -> dict[str, Any]:
    out = dict(item)
    for k in _INTS:
        if k in out:
            v = out[k]
            out[k] = v if isinstance(v, int) and not isinstance(v, bool) else None
    for k in _TEXTS:
        if k in out and out[k] is not None and not isinstance(out[k], str):
            out[k] = str(out[k])
    if "cmdline" in out:
        argv = out["cmdline"]
        out["cmdline"] = [str(x) for x in argv] if isinstance(argv, list) else [str(argv)]
    for k in ("exe_deleted", "exe_memfd"):
        if k in out:
            out[k] = out[k] is True
    return out


def _target_dir(target: str) -> str:
    from podmortem.case.paths import safe_component

    return "targets/" + safe_component(target.replace("://", "-")) + "/"


def _images(ev: CaseEvidence, arts: list[ArtifactRecord]) -> None:
    """The image capability's ``--json`` reports (``image/reports/*.report.json``, written by
    ``podmortem image analyze --case`` and by ``investigate``)."""
    for art in arts:
        if art.error is not None or not (
            "/image/reports/" in art.path and art.path.endswith(".report.json")
        ):
            continue
        doc = _read_json(ev, art)
        if isinstance(doc, dict) and isinstance(doc.get("layers"), list):
            ev.images.append(ImageDocument(art.path, doc))


def _audit_documents(ev: CaseEvidence, arts: list[ArtifactRecord]) -> None:
    """The audit analysis documents ``investigate`` stores (``analysis/audit-*.json``): their
    ``narrative.attacks`` are the attack threads the audit reconstruction found."""
    for art in arts:
        name = art.path.rsplit("/", 1)[-1]
        if art.error is not None or not (name.startswith("audit-") and name.endswith(".json")):
            continue
        doc = _read_json(ev, art)
        narrative = doc.get("narrative") if isinstance(doc, dict) else None
        attacks = narrative.get("attacks") if isinstance(narrative, dict) else None
        for thread in attacks if isinstance(attacks, list) else []:
            if isinstance(thread, dict):
                ev.threads.append({**thread, "_artifact": art.path})


def _image_hashes(ev: CaseEvidence) -> None:
    """Which image files have the content of a file or executable seen at runtime (the image
    capability's ``image_files`` table): a dropped file may be a renamed copy of one."""
    wanted = sorted(
        {
            str(h)
            for rt in ev.runtime
            for h in [c.get("sha256") for c in rt.fs_changes]
            + [p.get("exe_sha256") for p in rt.processes]
            if isinstance(h, str) and len(h) == 64
        }
    )[:10_000]
    if not wanted or not ev.case.index_path.exists():
        return
    import duckdb

    from podmortem.case import index

    try:
        con = index.connect(ev.case, read_only=True)
    except duckdb.Error:
        return  # already reported by _index
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "image_files" not in tables:
            return
        rows = con.execute(
            "SELECT sha256, config_digest, path, layer_index FROM image_files"
            " WHERE sha256 IN (SELECT unnest(?)) AND hidden_by_layer IS NULL"
            " ORDER BY layer_index, path LIMIT 100000",
            [wanted],
        ).fetchall()
    finally:
        con.close()
    for sha, digest, path, layer in rows:
        ev.image_hashes.setdefault(str(sha), []).append((str(digest), str(path), int(layer)))

"""One case timeline: audit requests, runtime state (container start and restart, process
start times, writable-layer modification times), image build history, analysis findings and
the custody log, merged in time order, each entry keeping where it came from.

Clocks differ by source: audit times are the API server's, process and file times the
node's, image ``created`` times whatever the builder claimed (forgeable), custody times the
examiner's machine. The timeline orders them as given and says which clock each one is
(``clock``); the correlation in :mod:`podmortem.report.links` allows for skew.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from podmortem.findings import Finding, Provenance, Severity
from podmortem.report.evidence import CaseEvidence, RuntimeTarget, as_int, parse_time

AUDIT = "audit"
RUNTIME = "runtime"
IMAGE = "image"
FINDING = "finding"
CUSTODY = "custody"
SOURCES = (AUDIT, RUNTIME, IMAGE, FINDING, CUSTODY)
MAX_CUSTODY_ENTRIES = 5_000


@dataclass(slots=True)
class Entry:
    id: str
    time: datetime | None
    source: str  # one of SOURCES
    kind: str  # api-request, exec, container-start, process-start, file-change, layer, ...
    actor: str
    subject: str
    summary: str
    provenance: tuple[Provenance, ...]
    clock: str
    severity: Severity | None = None
    techniques: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time.isoformat() if self.time else None,
            "source": self.source,
            "kind": self.kind,
            "actor": self.actor,
            "subject": self.subject,
            "summary": self.summary,
            "clock": self.clock,
            "severity": str(self.severity) if self.severity is not None else None,
            "techniques": list(self.techniques),
            "provenance": [p.to_dict() for p in self.provenance],
            "details": self.details,
        }


def finding_id(analysis: str, f: Finding) -> str:
    key = "\x00".join(
        (
            analysis,
            f.rule_id,
            f.subject,
            f.time.isoformat() if f.time else "",
            f.summary,
            *f.evidence,
        )
    )
    return "finding:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def target_key(rt: RuntimeTarget) -> str:
    return rt.target


def build(ev: CaseEvidence) -> list[Entry]:
    out: list[Entry] = []
    out.extend(_audit(ev))
    for rt in ev.runtime:
        out.extend(_runtime(rt))
    out.extend(_images(ev))
    out.extend(_findings(ev))
    out.extend(_reconstructed(ev))
    out.extend(_custody(ev))
    return sort(out)


def sort(entries: list[Entry]) -> list[Entry]:
    # Undated entries (an image layer without history, a process whose start time was not
    # read) go last, in a stable order; they are still part of the case.
    return sorted(
        entries,
        key=lambda e: (
            e.time is None,
            e.time.timestamp() if e.time else 0.0,
            SOURCES.index(e.source),
            e.id,
        ),
    )


def _audit(ev: CaseEvidence) -> list[Entry]:
    out = []
    for a in ev.audit:
        if a.is_exec:
            kind = "exec"
            summary = (
                f"{a.subresource} into {a.namespace}/{a.name}"
                f"{' container ' + a.exec_container if a.exec_container else ''}: "
                f"{' '.join(a.exec_command) or '(command not logged)'}"
            )
        else:
            kind = "api-request"
            summary = f"{a.verb} {a.object_path}"
        if a.code is not None:
            summary += f" -> {a.code}"
        out.append(
            Entry(
                id=f"audit:{a.audit_id}",
                time=a.time,
                source=AUDIT,
                kind=kind,
                actor=a.username,
                subject=a.object_path,
                summary=summary,
                provenance=tuple(a.provenance),
                clock="API server",
                details={
                    "audit_id": a.audit_id,
                    "verb": a.verb,
                    "source_ips": a.source_ips,
                    "user_agent": a.user_agent,
                    "response_code": a.code,
                    "provider_formats": sorted({p.parser for p in a.provenance}),
                },
            )
        )
    return out


def _runtime(rt: RuntimeTarget) -> list[Entry]:
    out: list[Entry] = []
    prov = (Provenance(RUNTIME, "podmortem.acquire", rt.artifact, (rt.target,)),)
    who = rt.pod_name or rt.container_name or rt.target
    doc = rt.inspect
    state = doc.get("State") if isinstance(doc.get("State"), dict) else {}
    created = parse_time(doc.get("Created"))
    started = parse_time(state.get("StartedAt")) if state else None
    restarts = as_int(doc.get("RestartCount")) or as_int(rt.identity.get("restart_count"))
    if created:
        out.append(
            Entry(
                f"container:{rt.target}:created",
                created,
                RUNTIME,
                "container-created",
                "",
                who,
                f"container {rt.container_name or rt.target} created from "
                f"{rt.identity.get('image') or '?'}",
                prov,
                "node",
                details={"target": rt.target},
            )
        )
    if started:
        note = f" (restarted {restarts} times: earlier volatile state is gone)" if restarts else ""
        out.append(
            Entry(
                f"container:{rt.target}:started",
                started,
                RUNTIME,
                "container-start",
                "",
                who,
                f"container {rt.container_name or rt.target} started{note}",
                prov,
                "node",
                details={"target": rt.target, "restart_count": restarts},
            )
        )
    for p in rt.processes:
        t = parse_time(p.get("start_time"))
        argv = p.get("cmdline") or []
        cmd = " ".join(str(x) for x in argv) if isinstance(argv, list) else str(argv)
        pid = p.get("pid")
        out.append(
            Entry(
                f"process:{rt.target}:{pid}",
                t,
                RUNTIME,
                "process-start",
                "",
                who,
                f"process {p.get('ns_pid') or pid} started: {cmd or p.get('exe')}",
                prov,
                "node",
                details={
                    "target": rt.target,
                    "pid": pid,
                    "ns_pid": p.get("ns_pid"),
                    "ppid": p.get("ppid"),
                    "exe": p.get("exe"),
                    "exe_sha256": p.get("exe_sha256"),
                    "exe_deleted": p.get("exe_deleted"),
                },
            )
        )
    for c in rt.fs_changes:
        t = parse_time(c.get("mtime"))
        out.append(
            Entry(
                f"file:{rt.target}:{c.get('path')}",
                t,
                RUNTIME,
                "file-change",
                "",
                who,
                f"{c.get('change')} {c.get('type') or 'file'} {c.get('path')} (modification time)",
                prov,
                "node",
                details={
                    "target": rt.target,
                    "path": c.get("path"),
                    "change": c.get("change"),
                    "sha256": c.get("sha256"),
                    "size": c.get("size"),
                },
            )
        )
    return out


def _images(ev: CaseEvidence) -> list[Entry]:
    out = []
    for img in ev.images:
        prov = (Provenance(IMAGE, "podmortem.image", img.artifact, ()),)
        created = parse_time(img.identity.get("created"))
        ref = img.label
        out.append(
            Entry(
                f"image:{img.artifact}",
                created,
                IMAGE,
                "image-created",
                "",
                ref,
                f"image {ref} built (claimed by its config)",
                prov,
                "image builder (claimed)",
                details={"refs": sorted(img.refs)},
            )
        )
        for layer in img.layers:
            idx = layer.get("index")
            out.append(
                Entry(
                    f"layer:{img.artifact}:{idx}",
                    parse_time(layer.get("created")),
                    IMAGE,
                    "layer",
                    "",
                    ref,
                    f"layer {idx}: {layer.get('created_by') or '(no history)'}",
                    (Provenance(IMAGE, "podmortem.image", img.artifact, (f"layer {idx}",)),),
                    "image builder (claimed)",
                    details={
                        "diff_id": layer.get("diff_id"),
                        "added": len(layer.get("added") or []),
                        "modified": len(layer.get("modified") or []),
                        "deleted": len(layer.get("deleted") or []),
                    },
                )
            )
    return out


def layer_times(ev: CaseEvidence) -> dict[str, datetime]:
    """diff_id -> the layer's ``created`` time as its image history claims it."""
    out: dict[str, datetime] = {}
    for img in ev.images:
        for layer in img.layers:
            t = parse_time(layer.get("created"))
            if t is not None and layer.get("diff_id"):
                out[str(layer["diff_id"])] = t
    return out


def finding_time(f: Finding, layers: dict[str, datetime]) -> tuple[datetime | None, str]:
    """When a finding happened, and by which clock. Image findings carry no time of their
    own: they are dated by the history entry of the layer that added the content, which the
    builder wrote and could have forged, and the report says so."""
    if f.time is not None:
        return f.time, "as the analysis dated it"
    diff_id = f.extra.get("layer_diff_id") if isinstance(f.extra, dict) else None
    if diff_id and str(diff_id) in layers:
        return layers[str(diff_id)], "image layer history (claimed by the builder)"
    return None, "undated"


def _findings(ev: CaseEvidence) -> list[Entry]:
    out = []
    layers = layer_times(ev)
    for analysis, f in ev.findings:
        prov = (f.provenance,) if f.provenance else (Provenance(analysis, analysis),)
        when, clock = finding_time(f, layers)
        out.append(
            Entry(
                finding_id(analysis, f),
                when,
                FINDING,
                analysis,
                # audit findings name their actor: the actor filter then keeps them
                str(f.extra.get("actor") or "") if isinstance(f.extra, dict) else "",
                f.subject,
                f"{f.title}: {f.summary}" if f.summary else f.title,
                prov,
                clock,
                severity=f.severity,
                techniques=f.techniques,
                details={
                    "rule_id": f.rule_id,
                    "analysis": analysis,
                    "evidence": list(f.evidence[:50]),
                },
            )
        )
    return out


def thread_steps(thread: dict[str, Any]) -> list[dict[str, Any]]:
    steps = thread.get("steps")
    return [x for x in steps if isinstance(x, dict)] if isinstance(steps, list) else []


def step_id(step: dict[str, Any]) -> str:
    key = "\x00".join(str(step.get(k)) for k in ("origin", "title", "time", "summary"))
    return "reconstruction:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _reconstructed(ev: CaseEvidence) -> list[Entry]:
    """Steps the audit reconstruction inferred itself (a stolen token used away from its
    pod, ...): they are in no findings table, and they belong in the timeline. Steps that
    repeat an engine finding are already there as that finding."""
    out: list[Entry] = []
    seen: set[str] = set()
    for thread in ev.threads:
        for step in thread_steps(thread):
            if not str(step.get("origin") or "").startswith("reconstruction:"):
                continue
            sid = step_id(step)
            if sid in seen:
                continue
            seen.add(sid)
            raw_ev, raw_actors = step.get("evidence"), step.get("actors")
            evidence: list[Any] = raw_ev if isinstance(raw_ev, list) else []
            ids = [str(e.get("audit_id")) for e in evidence if isinstance(e, dict)]
            actors: list[Any] = raw_actors if isinstance(raw_actors, list) else []
            techniques = step.get("techniques")
            try:
                sev: Severity | None = Severity.parse(str(step.get("severity")))
            except ValueError:
                sev = None
            out.append(
                Entry(
                    sid,
                    parse_time(step.get("time")),
                    FINDING,
                    "audit.reconstruct",
                    str(actors[0]) if actors else "",
                    str(step.get("origin") or ""),
                    f"{step.get('title')}: {step.get('summary')}",
                    (Provenance(AUDIT, "podmortem.audit.reconstruct", thread.get("_artifact")),),
                    "API server",
                    severity=sev,
                    techniques=tuple(str(t) for t in techniques)
                    if isinstance(techniques, list)
                    else (),
                    details={
                        "analysis": "audit.reconstruct",
                        "evidence": ids[:50],
                        "rule_id": str(step.get("origin") or ""),
                    },
                )
            )
    return out


def _custody(ev: CaseEvidence) -> list[Entry]:
    out = []
    for rec in ev.custody[:MAX_CUSTODY_ENTRIES]:
        if rec.action == "artifact_started":
            # Every artifact_added has one; an unmatched one (an interrupted write) is what
            # case verification reports, in the evidence table and the custody status.
            continue
        d = rec.details
        subject = str(d.get("path") or d.get("analysis") or d.get("case_id") or "")
        summary = rec.action.replace("_", " ")
        if rec.action == "artifact_added":
            summary += f": {d.get('path')} sha256 {str(d.get('sha256'))[:16]}..."
        elif "analysis" in d:
            summary += f": {d.get('analysis')}"
        out.append(
            Entry(
                f"custody:{rec.seq}",
                parse_time(rec.time),
                CUSTODY,
                rec.action,
                str(d.get("examiner") or ""),
                subject,
                summary,
                (Provenance(CUSTODY, "podmortem.case", "custody.jsonl", (f"record {rec.seq}",)),),
                "examiner's machine",
                details={"seq": rec.seq},
            )
        )
    if len(ev.custody) > MAX_CUSTODY_ENTRIES:
        ev.problem(
            "timeline-truncated",
            f"the timeline shows the first {MAX_CUSTODY_ENTRIES}"
            f" of {len(ev.custody)} custody records (all are in custody.jsonl)",
        )
    return out

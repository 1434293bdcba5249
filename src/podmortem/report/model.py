"""The report as data, assembled from one case: executive summary, narrative by ATT&CK
tactic, the correlated timeline and its links, the matrix, findings with their evidence, the
runtime picture, image layers, evidence gaps and caveats, and the evidence table. Renderers
(HTML, Markdown, JSON) only present this; they decide nothing.

Strings in here are raw evidence: every renderer escapes them for its medium.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import podmortem
from podmortem.case.store import Case
from podmortem.case.verify import VerifyReport, verify_case
from podmortem.findings import Caveat, Finding, Severity
from podmortem.report import attack, evidence, links, timeline
from podmortem.report.evidence import CaseEvidence
from podmortem.report.links import Link
from podmortem.report.timeline import Entry

FORMAT = "podmortem-report/1"
# Findings at or above this severity make the "what happened" and "since when" statements.
NOTABLE = Severity.MEDIUM


@dataclass(slots=True)
class FindingView:
    id: str
    analysis: str
    finding: Finding
    tactics: list[str]
    linked: list[str]  # timeline entry ids the finding's evidence names
    when: datetime | None = None  # the finding's time, or its image layer's claimed time
    clock: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "analysis": self.analysis,
            "tactics": self.tactics,
            "linked_entries": self.linked,
            "timeline_time": self.when.isoformat() if self.when else None,
            "timeline_clock": self.clock,
            **self.finding.to_dict(),
        }


@dataclass(slots=True)
class Summary:
    what: list[str]
    since: datetime | None
    last: datetime | None
    affected: dict[str, list[str]]
    confidence: str
    confidence_reasons: list[str]
    severity_counts: dict[str, int]
    sources: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "what_happened": self.what,
            "since": self.since.isoformat() if self.since else None,
            "last_activity": self.last.isoformat() if self.last else None,
            "affected": self.affected,
            "confidence": self.confidence,
            "confidence_reasons": self.confidence_reasons,
            "severity_counts": self.severity_counts,
            "entries_by_source": self.sources,
        }


@dataclass(slots=True)
class EvidenceRow:
    path: str
    sha256: str
    size: int
    source: str
    collected_at: str
    command: str
    status: str  # verified | modified | missing | incomplete-capture
    sensitive: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "size": self.size,
            "source": self.source,
            "collected_at": self.collected_at,
            "command": self.command,
            "status": self.status,
            "sensitive": self.sensitive,
        }


@dataclass(slots=True)
class Report:
    case_id: str
    examiner: str
    description: str
    generated_at: datetime
    summary: Summary
    narrative: list[tuple[attack.Tactic, list[FindingView]]]
    matrix: list[tuple[attack.Tactic, list[tuple[attack.Technique, int]]]]
    findings: list[FindingView]
    entries: list[Entry]
    links: list[Link]
    runtime: list[dict[str, Any]]
    images: list[dict[str, Any]]
    caveats: list[tuple[str, Caveat]]
    gaps: list[str]
    evidence: list[EvidenceRow]
    custody: dict[str, Any]
    threads: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def entry(self, entry_id: str) -> Entry | None:
        for e in self.entries:
            if e.id == entry_id:
                return e
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "tool_version": podmortem.__version__,
            "case_id": self.case_id,
            "examiner": self.examiner,
            "description": self.description,
            "generated_at": self.generated_at.isoformat(),
            "summary": self.summary.to_dict(),
            "attack_threads": self.threads,
            "narrative": [
                {"tactic": t.key, "tactic_name": t.name, "findings": [fv.id for fv in fvs]}
                for t, fvs in self.narrative
            ],
            "attack_matrix": [
                {
                    "tactic": t.key,
                    "tactic_name": t.name,
                    "techniques": [{"id": tq.id, "name": tq.name, "findings": n} for tq, n in tqs],
                }
                for t, tqs in self.matrix
            ],
            "findings": [fv.to_dict() for fv in self.findings],
            "timeline": [e.to_dict() for e in self.entries],
            "links": [lk.to_dict() for lk in self.links],
            "runtime": self.runtime,
            "images": self.images,
            "caveats": [{"analysis": a, **c.to_dict()} for a, c in self.caveats],
            "evidence_gaps": self.gaps,
            "evidence": [r.to_dict() for r in self.evidence],
            "custody": self.custody,
        }


def build(case: Case, *, verify: bool = True, now: datetime | None = None) -> Report:
    ev = evidence.load(case)
    entries = timeline.build(ev)
    lks = links.correlate(ev, entries)
    atk = attack.load()
    fviews = _finding_views(ev, lks, atk)
    report_verify = verify_case(case.root) if verify else None
    caveats = list(ev.caveats) + [("report", c) for c in ev.problems]
    return Report(
        case_id=case.case_id,
        examiner=case.examiner,
        description=str(case.manifest.get("description") or ""),
        generated_at=now or datetime.now(UTC),
        summary=_summary(ev, fviews, entries, lks, atk=atk, caveats=caveats),
        narrative=_narrative(fviews, atk),
        matrix=_matrix(fviews, atk),
        findings=fviews,
        entries=entries,
        links=lks,
        runtime=_runtime(ev, lks),
        images=_images(ev),
        caveats=caveats,
        gaps=_gaps(ev),
        evidence=_evidence(case, report_verify),
        custody=_custody(case, report_verify),
        threads=_threads(ev, atk),
    )


def _finding_views(ev: CaseEvidence, lks: list[Link], atk: attack.Attack) -> list[FindingView]:
    by_finding: dict[str, list[str]] = defaultdict(list)
    for lk in lks:
        if lk.relation == links.EVIDENCE_OF:
            by_finding[lk.source].append(lk.target)
    out = []
    layers = timeline.layer_times(ev)
    for analysis, f in ev.findings:
        fid = timeline.finding_id(analysis, f)
        when, clock = timeline.finding_time(f, layers)
        out.append(
            FindingView(
                fid,
                analysis,
                f,
                atk.tactics_of(f.techniques) if f.techniques else [],
                by_finding.get(fid, []),
                when,
                clock,
            )
        )
    out.sort(
        key=lambda v: (
            -int(v.finding.severity),
            v.when.timestamp() if v.when else float("inf"),
            v.finding.rule_id,
        )
    )
    return out


def _narrative(
    fviews: list[FindingView], atk: attack.Attack
) -> list[tuple[attack.Tactic, list[FindingView]]]:
    """Findings grouped under the tactic of their primary (first-named) technique, each
    group in time order: the attack told from initial access to impact. (T1078 serves four
    tactics; a rule that names T1098.006 first means persistence, not initial access.)"""
    groups: dict[str, list[FindingView]] = defaultdict(list)
    for fv in fviews:
        primary = atk.technique(fv.finding.techniques[0]) if fv.finding.techniques else None
        key = primary.tactics[0] if primary is not None and primary.tactics else attack.UNMAPPED
        groups[key].append(fv)
    out = []
    for key in sorted(groups, key=atk.order):
        items = sorted(
            groups[key], key=lambda v: (v.when is None, v.when.timestamp() if v.when else 0.0)
        )
        out.append((atk.tactic(key), items))
    return out


def _threads(ev: CaseEvidence, atk: attack.Attack) -> list[dict[str, Any]]:
    """The audit reconstruction's attack threads, for the narrative: who (actor and client
    address), with a misused credential or not, when, and the kill chain by tactic."""
    out = []
    for thread in ev.threads:
        steps = timeline.thread_steps(thread)
        raw_members = thread.get("members")
        members: list[Any] = raw_members if isinstance(raw_members, list) else []
        chain: list[dict[str, Any]] = []
        raw_chain = thread.get("kill_chain")
        for link in raw_chain if isinstance(raw_chain, list) else []:
            if not isinstance(link, dict):
                continue
            idx = [i for i in link.get("steps") or [] if isinstance(i, int) and 0 <= i < len(steps)]
            chain.append(
                {
                    "tactic": str(link.get("tactic") or ""),
                    "tactic_name": atk.tactic(str(link.get("tactic") or "")).name,
                    "steps": [
                        {
                            "time": steps[i].get("time"),
                            "title": str(steps[i].get("title")),
                            "summary": str(steps[i].get("summary") or ""),
                            "severity": str(steps[i].get("severity") or ""),
                        }
                        for i in idx
                    ],
                }
            )
        chain.sort(key=lambda c: atk.order(str(c["tactic"])))
        out.append(
            {
                "members": [
                    f"{m.get('actor')} from {m.get('client_ip')}"
                    for m in members
                    if isinstance(m, dict)
                ],
                "credential_misuse": thread.get("credential_misuse") is True,
                "start": str(thread.get("start") or ""),
                "end": str(thread.get("end") or ""),
                "kill_chain": chain,
            }
        )
    return out


def _matrix(
    fviews: list[FindingView], atk: attack.Attack
) -> list[tuple[attack.Tactic, list[tuple[attack.Technique, int]]]]:
    counts: Counter[str] = Counter()
    for fv in fviews:
        for t in fv.finding.techniques:
            counts[atk.technique(t).id] += 1
    cols: dict[str, list[tuple[attack.Technique, int]]] = defaultdict(list)
    for tid, n in counts.items():
        tq = atk.technique(tid)
        for key in tq.tactics or (attack.UNMAPPED,):
            cols[key].append((tq, n))
    return [
        (atk.tactic(k), sorted(cols[k], key=lambda x: x[0].id)) for k in sorted(cols, key=atk.order)
    ]


def _summary(
    ev: CaseEvidence,
    fviews: list[FindingView],
    entries: list[Entry],
    lks: list[Link],
    *,
    atk: attack.Attack,
    caveats: list[tuple[str, Caveat]],
) -> Summary:
    notable = [fv for fv in fviews if fv.finding.severity >= NOTABLE]
    tactics = atk.tactics_of(t for fv in notable for t in fv.finding.techniques)
    what = []
    if notable:
        names = [atk.tactic(k).name for k in tactics if k != attack.UNMAPPED]
        if names:
            what.append("Activity consistent with " + ", ".join(names) + ".")
        for th in ev.threads:
            raw = th.get("members")
            who = ", ".join(
                f"{m.get('actor')} from {m.get('client_ip')}"
                for m in (raw if isinstance(raw, list) else [])
                if isinstance(m, dict)
            )
            misuse = " using a misused credential" if th.get("credential_misuse") is True else ""
            what.append(
                f"API attack thread by {who}{misuse}, {th.get('start')} to "
                f"{th.get('end')} (audit reconstruction)"
            )
        for fv in notable[:6]:
            f = fv.finding
            what.append(f"{f.title}" + (f" ({f.subject})" if f.subject else ""))
    elif fviews:
        what.append("Only low-severity or informational findings.")
    else:
        what.append(
            "No findings. Check the evidence gaps: absence of findings is not absence of activity."
        )
    # "Since when": the earliest notable finding (image findings dated by their layer's
    # claimed build time) or runtime/audit entry tied to the attack by a link; a pod's
    # creation that merely ran the image is context, not attack.
    serious = [fv for fv in notable if fv.finding.severity >= Severity.HIGH] or notable
    times = [fv.when for fv in serious if fv.when]
    attack_links = (links.SPAWNED, links.LIKELY_WROTE, links.EVIDENCE_OF)
    linked_ids = {x for lk in lks if lk.relation in attack_links for x in (lk.source, lk.target)}
    times += [
        e.time
        for e in entries
        if e.id in linked_ids and e.time and e.source in (timeline.AUDIT, timeline.RUNTIME)
    ]
    affected: dict[str, set[str]] = defaultdict(set)
    for fv in notable:
        if fv.finding.subject:
            affected["subjects"].add(fv.finding.subject)
    for a in ev.audit:
        if a.is_exec:
            affected["pods"].add(f"{a.namespace}/{a.name}")
    for rt in ev.runtime:
        affected["containers"].add(
            rt.target + (f" (pod {rt.pod_namespace}/{rt.pod_name})" if rt.pod_name else "")
        )
    for img in ev.images:
        affected["images"].add(img.label)
    sources = Counter(e.source for e in entries)
    corroborating = {
        lk.relation
        for lk in lks
        if lk.relation in (links.SPAWNED, links.LIKELY_WROTE, links.RAN_IMAGE, links.NOT_FROM_IMAGE)
    }
    reasons = []
    analysed = [s for s in (timeline.AUDIT, timeline.RUNTIME, timeline.IMAGE) if sources[s]]
    reasons.append(f"sources analysed: {', '.join(analysed) or 'none'}")
    if corroborating:
        reasons.append(
            "independent sources corroborate each other (" + ", ".join(sorted(corroborating)) + ")"
        )
    gaps = [
        c
        for _, c in caveats
        if c.kind in ("budget-exhausted", "step-failed", "timeline-truncated", "analysis-failed")
    ]
    if gaps:
        reasons.append(f"{len(gaps)} gap(s) in collection or analysis lower the confidence")
    if notable and corroborating and len(analysed) >= 2 and not gaps:
        confidence = "high"
    elif notable and (corroborating or len(analysed) >= 2):
        confidence = "medium"
    else:
        confidence = "low"
    sev = Counter(str(fv.finding.severity) for fv in fviews)
    return Summary(
        what=what,
        since=min(times) if times else None,
        last=max(times) if times else None,
        affected={k: sorted(v) for k, v in sorted(affected.items())},
        confidence=confidence,
        confidence_reasons=reasons,
        severity_counts={str(s): sev.get(str(s), 0) for s in sorted(Severity, reverse=True)},
        sources={s: sources.get(s, 0) for s in timeline.SOURCES},
    )


def _runtime(ev: CaseEvidence, lks: list[Link]) -> list[dict[str, Any]]:
    """Per container: process tree, sockets and changed files, each with its links."""
    by_entry: dict[str, list[dict[str, str]]] = defaultdict(list)
    for lk in lks:
        by_entry[lk.target].append(lk.to_dict())
        by_entry[lk.source].append(lk.to_dict())
    out = []
    for rt in ev.runtime:
        tree = [
            {
                "depth": depth,
                "id": f"process:{rt.target}:{p.get('pid')}",
                **p,
                "links": by_entry.get(f"process:{rt.target}:{p.get('pid')}", []),
            }
            for depth, p in process_tree(rt.processes)
        ]
        files = [
            {
                "id": f"file:{rt.target}:{c.get('path')}",
                **c,
                "links": by_entry.get(f"file:{rt.target}:{c.get('path')}", []),
            }
            for c in sorted(rt.fs_changes, key=lambda c: str(c.get("mtime") or ""))
        ]
        out.append(
            {
                "target": rt.target,
                "identity": rt.identity,
                "complete": rt.complete,
                "pod": f"{rt.pod_namespace}/{rt.pod_name}" if rt.pod_name else "",
                "container": rt.container_name,
                "processes": tree,
                "sockets": rt.sockets,
                "files": files,
            }
        )
    return out


def _images(ev: CaseEvidence) -> list[dict[str, Any]]:
    """Each image's layers with what they did and the findings about their content (by the
    layer's diff_id; a finding about content a later layer hid says so)."""
    by_layer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for analysis, f in ev.findings:
        diff_id = f.extra.get("layer_diff_id") if isinstance(f.extra, dict) else None
        if analysis == "image" and diff_id:
            hidden = f.extra.get("hidden_by_layer")
            by_layer[str(diff_id)].append(
                {
                    "severity": str(f.severity),
                    "title": f.title,
                    "subject": f.subject,
                    "hidden_by_layer": hidden if isinstance(hidden, int) else None,
                }
            )
    keep = ("index", "diff_id", "created", "created_by", "digest", "size", "entries")
    out = []
    for img in ev.images:
        layers = []
        for layer in img.layers:
            row = {k: v for k, v in layer.items() if k in keep}
            row |= {k: len(layer[k]) for k in ("added", "modified", "deleted")}
            row["findings"] = by_layer.get(str(layer.get("diff_id")), [])
            layers.append(row)
        out.append(
            {
                "artifact": img.artifact,
                "label": img.label,
                "identity": img.identity,
                "layers": layers,
            }
        )
    return out


def process_tree(processes: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Processes in tree order with their depth; roots are those whose parent was not
    captured (the container's init, exec'd processes whose parent is the runtime's shim).
    Iterative, and each pid is visited once: a pid loop in hostile data cannot recurse."""
    pids = {p.get("pid") for p in processes}
    children: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for p in processes:
        children[p.get("ppid") if p.get("ppid") in pids else None].append(p)
    for kids in children.values():
        kids.sort(key=lambda q: int(q.get("pid") or 0), reverse=True)
    out: list[tuple[int, dict[str, Any]]] = []
    seen: set[Any] = set()
    stack: list[tuple[int, dict[str, Any]]] = [(0, p) for p in children.get(None, [])]
    while stack:
        depth, p = stack.pop()
        if p.get("pid") in seen:
            continue
        seen.add(p.get("pid"))
        out.append((depth, p))
        stack.extend((depth + 1, c) for c in children.get(p.get("pid"), []))
    # Processes only reachable through a cycle are still shown, at the top level.
    out.extend((0, p) for p in processes if p.get("pid") not in seen)
    return out


def _gaps(ev: CaseEvidence) -> list[str]:
    """What the case structurally lacks: an absent source means an absent view, not an
    absence of activity."""
    gaps = []
    if not ev.runtime:
        gaps.append(
            "No live acquisition: no process, socket or writable-layer evidence "
            "(the container may be gone, or was not acquired)."
        )
    if ev.audit_total == 0:
        gaps.append(
            "No Kubernetes audit log: API activity (exec, pod creation, RBAC changes, "
            "secret reads) is not visible."
        )
    if not ev.images:
        gaps.append(
            "No image analysed: files and processes cannot be attributed to an image "
            "layer or called 'not from the image'."
        )
    providers = {a.provider for a in ev.audit}
    if providers & {"eks", "gke"}:
        gaps.append(
            "EKS/GKE audit policies log events at level None and secrets at Metadata: "
            "event deletions and secret contents are invisible in these logs."
        )
    if "gke" in providers:
        gaps.append("GKE Data Access logs (reads) are off by default: get/list may be missing.")
    if "aks" in providers:
        gaps.append("AKS kube-audit-admin omits get and list requests.")
    for rt in ev.runtime:
        restarts = evidence.as_int(rt.identity.get("restart_count"))
        if restarts:
            gaps.append(
                f"{rt.target} restarted {restarts} time(s) before acquisition: the "
                "volatile state of earlier runs is gone."
            )
        if not rt.complete:
            gaps.append(f"{rt.target}: the acquisition was partial (see caveats).")
    return gaps


def _evidence(case: Case, rep: VerifyReport | None) -> list[EvidenceRow]:
    bad: dict[str, str] = {}
    if rep is not None:
        for issue in rep.problems + rep.warnings:
            bad.setdefault(issue.subject, issue.kind)
    rows = []
    for a in case.artifacts:
        status = "not verified" if rep is None else bad.get(a.path, "verified")
        if a.error and status == "verified":
            status = "verified (capture incomplete)"
        rows.append(
            EvidenceRow(
                a.path,
                a.sha256,
                a.size,
                a.source,
                a.collected_at,
                a.command or "",
                status,
                a.sensitive,
            )
        )
    return rows


def _custody(case: Case, rep: VerifyReport | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "head": case.custody_head,
        "records": int(case.manifest.get("custody_records") or 0),
    }
    if rep is None:
        out["status"] = "not verified"
    else:
        out["status"] = "intact" if rep.ok else "FAILED"
        out["problems"] = [str(p) for p in rep.problems]
        out["warnings"] = [str(w) for w in rep.warnings]
        out["artifacts_checked"] = rep.artifacts_checked
    return out

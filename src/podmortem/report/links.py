"""Links across sources, the part no single tool does (issue 7):

- an exec in the audit log -> the processes it spawned (same pod and container, started in
  the exec's window);
- a file in the writable layer -> the exec session that likely wrote it (same container,
  modified in the exec's window);
- a process or file -> the image layer it came from, or "not from the image" (dropped at
  runtime);
- an image -> the pods that ran it (runtime identity, pod specs in the audit log);
- a finding -> the timeline entries its evidence names.

Audit times come from the API server, process and file times from the node: the windows
allow :data:`SKEW` of clock difference. A link is an inference and says how strong it is
(``confidence``) and why (``reason``), so a reader can weigh it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from podmortem.report.evidence import (
    AuditEvent,
    CaseEvidence,
    ImageDocument,
    RuntimeTarget,
    as_int,
)
from podmortem.report.timeline import Entry

SKEW = timedelta(seconds=5)
_WORDS = re.compile(r"[\s'\";|&()<>]+")
# A command started by exec rarely outlives an interactive session by more than this before
# writing its files; a later exec into the same container ends the window sooner.
EXEC_WINDOW = timedelta(minutes=15)
MAX_IMAGE_PATHS = 500_000


@dataclass(frozen=True, slots=True)
class Link:
    source: str  # entry id
    target: str  # entry id (or an image/pod label when there is no entry)
    relation: str
    confidence: str  # high | medium | low
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {
            "source": self.source,
            "target": self.target,
            "relation": self.relation,
            "confidence": self.confidence,
            "reason": self.reason,
        }


# Relations, stable strings that tests and JSON consumers match on.
SPAWNED = "spawned"
LIKELY_WROTE = "likely-wrote"
FROM_LAYER = "from-image-layer"
NOT_FROM_IMAGE = "not-from-image"
MODIFIES_IMAGE_FILE = "modifies-image-file"
COPY_OF_IMAGE_FILE = "copy-of-image-file"
RAN_IMAGE = "ran-image"
EVIDENCE_OF = "evidence-of"


def correlate(ev: CaseEvidence, entries: list[Entry]) -> list[Link]:
    by_id = {e.id: e for e in entries}
    links: list[Link] = []
    execs = [a for a in ev.audit if a.is_exec and a.time is not None]
    for rt in ev.runtime:
        mine = [a for a in execs if _same_container(a, rt)]
        links.extend(_exec_links(rt, mine))
    for rt in ev.runtime:
        images = [img for img in ev.images if runs_image(rt, img)]
        links.extend(_image_origin(rt, images))
        links.extend(_copies(rt, images, ev.image_hashes))
    links.extend(_image_users(ev))
    links.extend(_finding_links(entries, by_id))
    return [lk for lk in links if lk.source in by_id or lk.target in by_id]


def _same_container(a: AuditEvent, rt: RuntimeTarget) -> bool:
    if not rt.pod_name or a.name != rt.pod_name:
        return False
    if rt.pod_namespace and a.namespace != rt.pod_namespace:
        return False
    # exec without container= goes to the pod's first container: accept, at lower confidence.
    return not a.exec_container or a.exec_container == rt.container_name


def _windows(execs: list[AuditEvent]) -> list[tuple[AuditEvent, datetime, datetime]]:
    execs = sorted(execs, key=lambda a: a.time or datetime.min)
    out = []
    for i, a in enumerate(execs):
        assert a.time is not None  # noqa: S101 - filtered by the caller
        end = a.time + EXEC_WINDOW
        if i + 1 < len(execs) and (nxt := execs[i + 1].time) is not None:
            end = min(end, nxt + SKEW)
        out.append((a, a.time - SKEW, end))
    return out


def _exec_links(rt: RuntimeTarget, execs: list[AuditEvent]) -> list[Link]:
    from podmortem.report.evidence import parse_time

    if not execs:
        return []
    windows = _windows(execs)
    init_pid = rt.identity.get("pid")
    by_pid = {p.get("pid"): p for p in rt.processes}
    links = []
    for root, members in _exec_sessions(rt.processes, init_pid).items():
        t = parse_time(by_pid[root].get("start_time"))
        if t is None:
            continue
        hits = [(a, lo, hi) for a, lo, hi in windows if lo <= t <= hi]
        if not hits:
            continue
        a = hits[-1][0]
        # The words of the exec'd command (argv, and the words of an `sh -c` string).
        words = {w for arg in a.exec_command for w in _WORDS.split(arg) if w}
        for p in members:
            argv = p.get("cmdline") or []
            argv0 = str(argv[0]) if isinstance(argv, list) and argv else ""
            exe = str(p.get("exe") or "")
            # The command names the program (sh, or a path it dropped and runs).
            named = bool(words & {argv0, argv0.rsplit("/", 1)[-1], exe} - {""})
            pt = parse_time(p.get("start_time")) or t
            is_root = p is by_pid[root]
            why = (
                f"started {(pt - (a.time or pt)).total_seconds():+.1f}s after the exec into "
                "the same container; "
            )
            why += (
                "its parent is outside the container (the runtime's exec shim)"
                if is_root
                else f"a descendant of process {root}, which the exec started"
            )
            if named:
                why += "; the exec'd command names it"
            links.append(
                Link(
                    f"audit:{a.audit_id}",
                    f"process:{rt.target}:{p.get('pid')}",
                    SPAWNED,
                    "high" if named or not is_root else "medium",
                    why,
                )
            )
    for c in rt.fs_changes:
        t = parse_time(c.get("mtime"))
        if t is None or c.get("change") == "deleted":
            continue
        hits = [(a, lo, hi) for a, lo, hi in windows if lo <= t <= hi]
        if not hits:
            continue
        a = hits[-1][0]
        delta = (t - (a.time or t)).total_seconds()
        links.append(
            Link(
                f"audit:{a.audit_id}",
                f"file:{rt.target}:{c.get('path')}",
                LIKELY_WROTE,
                "medium" if delta < 120 else "low",
                f"modified {delta:+.1f}s after the exec into the same container and "
                "before any later exec (modification times can be forged)",
            )
        )
    return links


def _exec_sessions(
    processes: list[dict[str, Any]], init_pid: Any
) -> dict[Any, list[dict[str, Any]]]:
    """Processes grouped by the exec session that started them. An exec'd process's parent
    is the runtime's shim, outside the container: a process whose parent is not among the
    container's processes (and is not the container's init) roots a session, and its
    descendants belong to it. Descendants of init are the workload's own and never linked.
    (A background child whose exec'd parent exited is re-parented to init and is lost to
    this rule; the time window alone would be too weak to claim it.)"""
    pids = {p.get("pid") for p in processes}
    children: dict[Any, list[dict[str, Any]]] = {}
    for p in processes:
        children.setdefault(p.get("ppid"), []).append(p)
    sessions: dict[Any, list[dict[str, Any]]] = {}
    for p in processes:
        if p.get("pid") == init_pid or p.get("ppid") in pids:
            continue
        members, stack, seen = [], [p], set()
        while stack:
            q = stack.pop()
            if q.get("pid") in seen:
                continue
            seen.add(q.get("pid"))
            members.append(q)
            stack.extend(children.get(q.get("pid"), []))
        sessions[p.get("pid")] = members
    return sessions


def runs_image(rt: RuntimeTarget, img: ImageDocument) -> bool:
    """Digests decide when both sides have one (a tag may have moved since the container
    started); a tag is used only when the runtime reports no digest."""
    rt_refs, img_refs = _expand(rt.image_refs), _expand(img.refs)
    rt_digests = {r for r in rt_refs if r.startswith("sha256:")}
    img_digests = {r for r in img_refs if r.startswith("sha256:")}
    if rt_digests and img_digests:
        return bool(rt_digests & img_digests)
    return bool(rt_refs & img_refs)


def _expand(refs: set[str]) -> set[str]:
    """``repo@sha256:x`` also matches ``sha256:x``; ``sha256:x`` also matches ``x``."""
    out = set(refs)
    for r in refs:
        if "@" in r:
            out.add(r.split("@", 1)[1])
        if r.startswith("sha256:"):
            out.add(r[7:])
    return out


def _image_paths(img: ImageDocument) -> dict[str, tuple[int, str]]:
    """The merged view of the image: path -> (layer that last wrote it, created_by)."""
    merged: dict[str, tuple[int, str]] = {}
    for layer in img.layers:
        idx = as_int(layer.get("index"))
        by = str(layer.get("created_by") or "")
        for key in ("added", "modified"):
            for path in _paths(layer, key):
                merged["/" + str(path).lstrip("/")] = (idx, by)
        for path in _paths(layer, "deleted"):
            merged.pop("/" + str(path).lstrip("/"), None)
    return merged


def _paths(layer: dict[str, Any], key: str) -> list[Any]:
    paths = layer.get(key)
    return paths[:MAX_IMAGE_PATHS] if isinstance(paths, list) else []


def _image_origin(rt: RuntimeTarget, images: list[ImageDocument]) -> list[Link]:
    if not images:
        return []
    img = images[0]
    merged = _image_paths(img)
    added = {
        "/" + str(c.get("path")).lstrip("/"): str(c.get("path"))
        for c in rt.fs_changes
        if c.get("change") == "added"
    }
    links: list[Link] = []
    for p in rt.processes:
        exe = str(p.get("exe") or "")
        pid_id = f"process:{rt.target}:{p.get('pid')}"
        if p.get("exe_deleted") or p.get("exe_memfd"):
            links.append(
                Link(
                    pid_id,
                    f"image:{img.artifact}",
                    NOT_FROM_IMAGE,
                    "high",
                    "its executable is deleted or memory-only (memfd): it cannot come "
                    "from the image",
                )
            )
        elif exe in added:
            links.append(
                Link(
                    pid_id,
                    f"file:{rt.target}:{added[exe]}",
                    NOT_FROM_IMAGE,
                    "high",
                    f"its executable {exe} was added to the writable layer at "
                    "runtime (dropped after the container started)",
                )
            )
        elif exe in merged:
            idx, by = merged[exe]
            links.append(
                Link(
                    pid_id,
                    f"layer:{img.artifact}:{idx}",
                    FROM_LAYER,
                    "high",
                    f"its executable {exe} is in image layer {idx} ({by[:120]})",
                )
            )
        elif exe:
            links.append(
                Link(
                    pid_id,
                    f"image:{img.artifact}",
                    NOT_FROM_IMAGE,
                    "medium",
                    f"its executable {exe} is in no layer of the image",
                )
            )
    for c in rt.fs_changes:
        path = "/" + str(c.get("path") or "").lstrip("/")
        fid = f"file:{rt.target}:{c.get('path')}"
        if path in merged:
            idx, by = merged[path]
            links.append(
                Link(
                    fid,
                    f"layer:{img.artifact}:{idx}",
                    MODIFIES_IMAGE_FILE,
                    "high",
                    f"{c.get('change')} a file that image layer {idx} provides ({by[:120]})",
                )
            )
        elif c.get("change") == "added":
            links.append(
                Link(
                    fid,
                    f"image:{img.artifact}",
                    NOT_FROM_IMAGE,
                    "high",
                    "in no layer of the image: written at runtime",
                )
            )
    return links


def _copies(
    rt: RuntimeTarget, images: list[ImageDocument], hashes: dict[str, list[tuple[str, str, int]]]
) -> list[Link]:
    """A file written at runtime with the content of an image file under another path (a
    copied binary renamed to hide): link it to the layer that holds the original."""
    if not images:
        return []
    img = images[0]
    digests = _expand(img.refs)
    links = []
    for c in rt.fs_changes:
        sha, path = c.get("sha256"), "/" + str(c.get("path") or "").lstrip("/")
        originals = [
            (p, layer) for d, p, layer in hashes.get(str(sha), []) if d in digests and p != path
        ]
        if c.get("change") != "added" or not originals:
            continue
        p, layer = originals[0]
        links.append(
            Link(
                f"file:{rt.target}:{c.get('path')}",
                f"layer:{img.artifact}:{layer}",
                COPY_OF_IMAGE_FILE,
                "high",
                f"same SHA-256 as {p} in image layer {layer}: a copy of an image "
                "file under another name",
            )
        )
    return links


def _pod_images(a: AuditEvent) -> list[str]:
    """Container images named in a pod (or pod template) spec the request carried."""
    obj: Any = a.request_object
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except ValueError:
            return []
    if not isinstance(obj, dict):
        return []
    spec: dict[str, Any] = obj["spec"] if isinstance(obj.get("spec"), dict) else {}
    tmpl = spec.get("template")
    if isinstance(tmpl, dict) and isinstance(tmpl.get("spec"), dict):
        spec = tmpl["spec"]
    out = []
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict) and isinstance(c.get("image"), str):
                out.append(c["image"])
    return out


def _image_users(ev: CaseEvidence) -> list[Link]:
    links = []
    for img in ev.images:
        refs = _expand(img.refs)
        iid = f"image:{img.artifact}"
        for rt in ev.runtime:
            if runs_image(rt, img):
                target = f"container:{rt.target}:started"
                links.append(
                    Link(
                        iid,
                        target,
                        RAN_IMAGE,
                        "high",
                        f"the runtime reports {rt.target} "
                        f"(pod {rt.pod_namespace}/{rt.pod_name}) runs this image",
                    )
                )
        for a in ev.audit:
            if a.resource not in (
                "pods",
                "deployments",
                "replicasets",
                "daemonsets",
                "statefulsets",
                "jobs",
                "cronjobs",
            ) or a.verb not in ("create", "update", "patch"):
                continue
            for ref in _pod_images(a):
                if refs & _expand({ref}):
                    pinned = "@" in ref
                    links.append(
                        Link(
                            iid,
                            f"audit:{a.audit_id}",
                            RAN_IMAGE,
                            "high" if pinned else "low",
                            f"{a.namespace}/{a.name} was created with image {ref}"
                            + ("" if pinned else " (a tag, which can move)"),
                        )
                    )
    return links


def _finding_links(entries: list[Entry], by_id: dict[str, Entry]) -> list[Link]:
    audit_ids = {e.details.get("audit_id"): e.id for e in entries if e.source == "audit"}
    links = []
    for e in entries:
        if e.source != "finding":
            continue
        for ref in e.details.get("evidence") or []:
            target = audit_ids.get(ref) or (ref if ref in by_id else None)
            if target:
                links.append(
                    Link(e.id, target, EVIDENCE_OF, "high", "named in the finding's evidence")
                )
    return links

"""T3 and T4 from the node: RAM-backed files (tmpfs), the writable layer (overlay upperdir),
persistence files read through ``/proc/<pid>/root``, and the runtime's own diff as a
cross-check. Each function is one step of :class:`~podmortem.acquire.collector.TargetCollector`.
"""

from __future__ import annotations

import fnmatch
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podmortem.acquire import indicators
from podmortem.acquire.caveats import BUDGET_EXHAUSTED, LAYER_MISMATCH, TRUNCATED
from podmortem.acquire.node import mounts, rootfs, writable_layer
from podmortem.acquire.node.statx import birth_time
from podmortem.acquire.node.tree import walk
from podmortem.acquire.runtimes.base import UnsupportedError
from podmortem.case.paths import safe_component
from podmortem.findings import Severity

if TYPE_CHECKING:
    from podmortem.acquire.collector import TargetCollector

SENSITIVE_PERSISTENCE = ("/etc/shadow", "history")


def ram_backed_files(c: TargetCollector) -> None:
    if not c.r.node_view:
        raise UnsupportedError("RAM-backed files need the node view")
    info = c.info()
    root = c.proc / str(info.pid) / "root"
    listing: list[dict[str, Any]] = []
    used = 0
    for m in mounts.ram_backed(c.mounts):
        secretish = any(s in m.mount_point for s in ("secret", "serviceaccount", "token"))
        mdir = safe_component(m.mount_point.strip("/").replace("/", "_") or "root")
        try:
            dfd = rootfs.open_in_root(root, m.mount_point, flags=os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            listing.append({"mount": m.mount_point, "error": exc.strerror})
            continue

        def visit(
            e: Any, m: mounts.Mount = m, mdir: str = mdir, secretish: bool = secretish
        ) -> None:
            nonlocal used
            path = m.mount_point.rstrip("/") + "/" + e.path
            rec: dict[str, Any] = {
                "mount": m.mount_point,
                "path": path,
                "type": writable_layer.file_type(e.st.st_mode),
                "mode": oct(e.st.st_mode & 0o7777),
                "uid": e.st.st_uid,
                "size": e.st.st_size,
                "mtime": datetime.fromtimestamp(e.st.st_mtime, UTC).isoformat(),
                "btime": birth_time(e.parent_fd, e.name),
            }
            listing.append(rec)
            if rec["type"] != "file":
                return
            if used + e.st.st_size > c.opt.max_ram_bytes:
                rec["error"] = "not copied: RAM-file size limit reached"
                return
            art = f"{c.prefix}/t3/ram/{mdir}/" + "/".join(
                safe_component(c) for c in e.path.split("/")
            )
            fd = e.open()
            try:
                with c.case.artifact(
                    art,
                    source="node",
                    command=f"read {path} via /proc/{info.pid}/root",
                    sensitive=secretish,
                ) as w:
                    head = os.read(fd, 4096)
                    w.write(head)
                    while buf := os.read(fd, 1 << 20):
                        w.write(buf)
                        if c.budget.expired():
                            w.error = "copy cut: the time budget ran out"
                            c.caveat(BUDGET_EXHAUSTED, f"copy of {path} was cut")
                            break
                    w.extra = {"container_path": path}
            finally:
                os.close(fd)
            used += w.size
            rec["artifact"] = "artifacts/" + art
            rec["sha256"] = w.sha256
            if not secretish:
                exe = indicators.looks_executable(head, e.st.st_mode)
                c.r.findings.append(
                    indicators.finding(
                        "ram-backed-file",
                        f"{c.r.target} {path}",
                        summary=f"{path} ({e.st.st_size} bytes, sha256 {w.sha256}) is in "
                        "RAM-backed "
                        f"{m.fstype} {m.mount_point}" + (" and is executable" if exe else ""),
                        evidence=("artifacts/" + art,),
                        severity=indicators.load().rules["ram-backed-file"].severity
                        if not exe
                        else Severity.HIGH,
                        extra={"path": path, "sha256": w.sha256, "executable": exe},
                    )
                )

        try:
            _n, complete, errors = walk(dfd, visit, should_stop=c.budget.expired)
        finally:
            os.close(dfd)
        if not complete:
            c.caveat(BUDGET_EXHAUSTED, f"walk of {m.mount_point} stopped early")
        if errors:
            c.caveat(
                "unreadable",
                f"{len(errors)} entries under {m.mount_point} unreadable",
                errors=errors[:20],
            )
    c.put("t3/ram_files.json", listing, source="node", command="walk tmpfs mounts")


def writable_layer_step(c: TargetCollector) -> None:
    if not c.r.node_view:
        raise UnsupportedError("the writable layer needs the node view")
    ov = mounts.root_overlay(c.mounts)
    if ov is None:
        raise UnsupportedError("the container's root is not an overlay mount: no upperdir")
    path = f"{c.prefix}/t4/upperdir.tar"
    with c.case.artifact(path, source="node", command=f"tar of {ov.upperdir}") as w:
        cap = writable_layer.capture(
            ov,
            w,
            should_stop=c.budget.expired,
            max_archive_bytes=c.opt.max_layer_archive,
        )
        w.extra = {"upperdir": ov.upperdir, "lowerdirs": list(ov.lowerdirs)}
        if not cap.complete:
            w.error = "incomplete: the time budget ran out during the walk"
    c.r.fs_changes = cap.changes
    c.copied_up = frozenset(cap.copied_up)
    c.put(
        "t4/fs_changes.json",
        {
            "upperdir": ov.upperdir,
            "complete": cap.complete,
            "errors": cap.errors,
            "not_archived": cap.not_archived,
            "cut_by_budget": cap.cut_files,
            "changes": [c.to_dict() for c in cap.changes],
        },
        source="node",
        command=f"walk {ov.upperdir}",
    )
    if not cap.complete:
        c.caveat(BUDGET_EXHAUSTED, "the writable-layer walk stopped early")
    if cap.not_archived:
        c.caveat(
            TRUNCATED,
            f"{len(cap.not_archived)} file(s) hashed but not archived (archive size limit)",
        )
    for ch in cap.changes:
        tech = indicators.persistence_technique(ch.path)
        if tech and ch.change in ("added", "modified"):
            c.r.findings.append(
                indicators.finding(
                    "persistence-changed",
                    f"{c.r.target} {ch.path}",
                    summary=f"{ch.path} was {ch.change} in the writable layer "
                    f"(sha256 {ch.sha256}).",
                    evidence=(f"{c.prefix}/t4/fs_changes.json",),
                    extra={"path": ch.path, "change": ch.change, "technique": tech},
                )
            )


def persistence_files(c: TargetCollector) -> None:
    if not c.r.node_view:
        raise UnsupportedError("persistence files need the node view")
    info = c.info()
    root = c.proc / str(info.pid) / "root"
    seen: list[dict[str, Any]] = []
    for pattern, _tech in indicators.load().persistence:
        for path in _expand(root, pattern):
            try:
                b = rootfs.read_in_root(root, path, 16 << 20)
            except OSError:
                continue
            sensitive = any(s in path for s in SENSITIVE_PERSISTENCE)
            art = c.put(
                "t4/persistence/" + "/".join(safe_component(c) for c in path.strip("/").split("/")),
                b.data,
                source="node",
                command=f"read {path} via /proc/{info.pid}/root",
                sensitive=sensitive,
                error="truncated" if b.truncated else None,
            )
            seen.append({"path": path, "artifact": art, "size": len(b.data)})
            if path == "/etc/passwd":
                for name in indicators.uid0_accounts(b.data):
                    c.r.findings.append(
                        indicators.finding(
                            "uid0-account",
                            f"{c.r.target} account {name}",
                            summary=f"account {name!r} has uid 0 in /etc/passwd",
                            evidence=(art,),
                            extra={"account": name},
                        )
                    )
            if path == "/etc/ld.so.preload" and b.data.strip():
                c.r.findings.append(
                    indicators.finding(
                        "preload-hijack",
                        f"{c.r.target} /etc/ld.so.preload",
                        summary=f"/etc/ld.so.preload lists {b.data.strip()[:200]!r}",
                        evidence=(art,),
                    )
                )
    c.put("t4/persistence.json", seen, source="node", command="persistence file list")


def runtime_diff(c: TargetCollector) -> None:
    entries = c.rt.diff()
    rows = [(e.path, e.change) for e in entries]
    report: dict[str, Any] = {"runtime": c.rt.name, "changes": [list(r) for r in rows]}
    if c.r.fs_changes or c.r.node_view:
        scaffold = indicators.runtime_scaffolding(c.rt.name)
        check = writable_layer.cross_check(c.r.fs_changes, rows, scaffold, c.copied_up)
        report["runtime_scaffolding"] = sorted(c.path for c in c.r.fs_changes if c.path in scaffold)
        report["cross_check"] = check
        if any(check.values()):
            c.caveat(
                LAYER_MISMATCH,
                "the runtime's diff and the upperdir walk differ (see t4/runtime_diff.json)",
                **{k: v[:20] for k, v in check.items()},
            )
    c.put("t4/runtime_diff.json", report, source="api", command=f"{c.rt.name} diff")


def _expand(root: Path, pattern: str) -> list[str]:
    """Expand one '*' component of a persistence pattern by listing that directory inside
    the container root (safely); patterns without '*' are returned as they are."""
    if "*" not in pattern:
        return [pattern]
    parts = pattern.split("/")
    i = next(k for k, c in enumerate(parts) if "*" in c)
    parent = "/".join(parts[:i]) or "/"
    try:
        fd = rootfs.open_in_root(root, parent, flags=os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return []
    try:
        names = sorted(os.listdir(fd))[:1000]
    finally:
        os.close(fd)

    rest = "/".join(parts[i + 1 :])
    return [
        f"{parent.rstrip('/')}/{n}" + (f"/{rest}" if rest else "")
        for n in names
        if fnmatch.fnmatchcase(n, parts[i])
    ]

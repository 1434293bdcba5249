"""One ``podmortem acquire`` run: several targets in parallel threads, one time budget, one
case, sealed with whatever was captured.

Threads, not processes: the work is reading ``/proc``, hashing (hashlib releases the GIL)
and waiting on runtime APIs. Each collector checks the shared :class:`Budget` between steps
and inside long walks; at the deadline the run is sealed, and a collector that is still
inside one blocking call is cancelled and reported as a gap.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import podmortem
from podmortem.acquire.bounded import Budget, read_bounded
from podmortem.acquire.caveats import STEP_FAILED
from podmortem.acquire.collector import Options, TargetCollector, TargetResult
from podmortem.acquire.runtimes.base import Runtime
from podmortem.acquire.target import TargetRef
from podmortem.case import index
from podmortem.case.store import Case
from podmortem.errors import PodmortemError
from podmortem.findings import Caveat, Provenance

ANALYSIS = "acquire"
# After the budget, collectors get this long to notice and return before the case is sealed.
SEAL_GRACE_S = 2.0
MAX_WORKERS = 16

RuntimeFactory = Callable[[TargetRef], Runtime]
Progress = Callable[[str, str], None]


def acquire(
    case: Case,
    targets: Sequence[TargetRef],
    open_runtime: RuntimeFactory,
    options: Options,
    *,
    progress: Progress = lambda target, step: None,
) -> dict[str, Any]:
    """Acquire every target into ``case``; returns the JSON document of the run."""
    budget = Budget(options.budget)
    t0 = time.monotonic()
    # Each run files its artifacts under its own folder, so a case can take several runs
    # (the same target again later, or more targets).
    run_dir = (
        "acquisitions/" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    )
    case.log_action(
        "acquisition_started",
        {
            "targets": [str(t) for t in targets],
            "budget_s": options.budget,
            "memory": options.memory,
            "checkpoint": options.checkpoint,
            "exec": options.exec_allowed,
            "tool_version": podmortem.__version__,
            "run_dir": run_dir,
        },
    )
    results: list[TargetResult] = []
    with case.batch():
        _node_scope(case)
        pool = cf.ThreadPoolExecutor(
            max_workers=min(MAX_WORKERS, max(1, len(targets))),
            thread_name_prefix="podmortem-acquire",
        )
        futures = {
            pool.submit(
                _one,
                case,
                target=t,
                open_runtime=open_runtime,
                options=options,
                budget=budget,
                progress=progress,
                run_dir=run_dir,
            ): t
            for t in targets
        }
        done, pending = cf.wait(futures, timeout=budget.remaining() + SEAL_GRACE_S)
        if pending:
            budget.cancel()
            more, pending = cf.wait(pending, timeout=SEAL_GRACE_S)
            done |= more
        for fut, t in futures.items():
            if fut in done:
                results.append(fut.result())
            else:
                r = TargetResult(target=str(t), label=str(t))
                r.caveats.append(
                    Caveat(
                        STEP_FAILED,
                        "the collector was still blocked in a call "
                        "when the case was sealed; what it wrote before is kept",
                        Provenance(source=str(t), parser="podmortem.acquire"),
                    )
                )
                results.append(r)
        pool.shutdown(wait=False, cancel_futures=True)
        doc = _document(case, results, time.monotonic() - t0)
        _index(case, results)
        case.add_bytes(
            f"{run_dir}/acquisition.json",
            json.dumps(doc, indent=1, default=str).encode() + b"\n",
            source="analysis",
            command="podmortem acquire (run summary)",
        )
        case.log_action(
            "acquisition_sealed",
            {
                "complete": doc["complete"],
                "elapsed_s": doc["elapsed_s"],
                "targets": len(results),
                "findings": len(doc["findings"]),
                "caveats": len(doc["caveats"]),
            },
        )
    doc["artifacts"] = _artifacts(case)
    doc["elapsed_s"] = round(time.monotonic() - t0, 3)
    return doc


# Node-scope state, once per run: a rootkit module or a tainted kernel concerns every target.
NODE_FILES = (
    ("node/modules", "/proc/modules"),
    ("node/tainted", "/proc/sys/kernel/tainted"),
    ("node/version", "/proc/version"),
    ("node/cmdline", "/proc/cmdline"),
)


def _node_scope(case: Case) -> None:
    taken = {a.path for a in case.artifacts}
    for rel, path in NODE_FILES:
        if f"artifacts/{rel}" in taken:
            continue  # a second run into the same case keeps the first copy
        try:
            data = read_bounded(path, 4 << 20).data
        except OSError:
            continue
        case.add_bytes(rel, data, source="node", command=f"read {path}")


def _one(
    case: Case,
    *,
    target: TargetRef,
    open_runtime: RuntimeFactory,
    options: Options,
    budget: Budget,
    progress: Progress,
    run_dir: str,
) -> TargetResult:
    try:
        rt = open_runtime(target)
    except PodmortemError as exc:
        r = TargetResult(target=str(target), label=str(target))
        r.caveats.append(
            Caveat(
                STEP_FAILED,
                f"cannot reach the runtime: {exc.message}",
                Provenance(source=str(target), parser="podmortem.acquire"),
            )
        )
        progress(str(target), "failed")
        return r
    try:
        result = TargetCollector(
            case,
            runtime=rt,
            target=str(target),
            options=options,
            budget=budget,
            progress=progress,
            run_dir=run_dir,
        ).run()
    finally:
        # Closing a client must never lose the capture.
        with contextlib.suppress(Exception):
            rt.close()
    progress(str(target), "done" if result.complete else "partial")
    return result


def _artifacts(case: Case) -> list[dict[str, Any]]:
    return [
        {
            "name": a.name,
            "path": a.path,
            "sha256": a.sha256,
            "size": a.size,
            "source": a.source,
            "sensitive": a.sensitive,
        }
        for a in case.artifacts
    ]


def _document(case: Case, results: list[TargetResult], elapsed: float) -> dict[str, Any]:
    processes: list[dict[str, Any]] = []
    socks: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    caveats: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    for r in results:
        targets.append(
            {
                "target": r.target,
                "identity": r.info.to_dict() if r.info else None,
                "complete": r.complete,
                "node_view": r.node_view,
                "in_container_view": r.exec_view,
                "steps": r.steps,
            }
        )
        for p in r.processes:
            processes.append(
                {
                    "target": r.target,
                    "pid": p.pid,
                    "ns_pid": p.ns_pid,
                    "ppid": p.ppid,
                    "cmdline": p.cmdline,
                    "exe": p.exe,
                    "exe_deleted": p.exe_deleted,
                    "exe_memfd": p.exe_memfd,
                    "exe_sha256": p.exe_sha256,
                    "uids": p.uids,
                    "start_time": p.start_time,
                }
            )
        for s in r.sockets:
            socks.append({"target": r.target, **s.to_dict()})
        for c in r.fs_changes:
            changes.append(
                {
                    "target": r.target,
                    "path": c.path,
                    "change": c.change,
                    "sha256": c.sha256,
                    "type": c.type,
                    "mode": c.mode,
                    "uid": c.uid,
                    "btime": c.btime,
                    "size": c.size,
                    "mtime": c.mtime,
                }
            )
        findings.extend(f.to_dict() for f in r.findings)
        caveats.extend({"target": r.target, **c.to_dict()} for c in r.caveats)
    return {
        "case_id": case.case_id,
        "tool_version": podmortem.__version__,
        "targets": targets,
        "elapsed_s": round(elapsed, 3),
        "complete": bool(results) and all(r.complete for r in results),
        "caveats": caveats,
        "processes": processes,
        "sockets": socks,
        "fs_changes": changes,
        "artifacts": [],
        "findings": findings,
    }


_TABLES = """
CREATE TABLE IF NOT EXISTS acquire_processes (target VARCHAR, pid BIGINT, ns_pid BIGINT,
    ppid BIGINT, cmdline VARCHAR[], exe VARCHAR, exe_deleted BOOLEAN, exe_sha256 VARCHAR);
CREATE TABLE IF NOT EXISTS acquire_sockets (target VARCHAR, proto VARCHAR,
    local_address VARCHAR, local_port INTEGER, remote_address VARCHAR, remote_port INTEGER,
    state VARCHAR, inode BIGINT, pid BIGINT);
CREATE TABLE IF NOT EXISTS acquire_fs_changes (target VARCHAR, path VARCHAR, change VARCHAR,
    type VARCHAR, sha256 VARCHAR);
"""


def _index(case: Case, results: list[TargetResult]) -> None:
    index.store_findings(
        case,
        ANALYSIS,
        [f for r in results for f in r.findings],
        [c for r in results for c in r.caveats],
    )
    con = index.connect(case)
    try:
        con.execute(_TABLES)
        rows_p = [
            (r.target, p.pid, p.ns_pid, p.ppid, p.cmdline, p.exe, p.exe_deleted, p.exe_sha256)
            for r in results
            for p in r.processes
        ]
        rows_s = [
            (
                r.target,
                s.proto,
                s.local_address,
                s.local_port,
                s.remote_address,
                s.remote_port,
                s.state,
                s.inode,
                s.pid,
            )
            for r in results
            for s in r.sockets
        ]
        rows_c = [
            (r.target, c.path, c.change, c.type, c.sha256) for r in results for c in r.fs_changes
        ]
        if rows_p:
            con.executemany("INSERT INTO acquire_processes VALUES (?,?,?,?,?,?,?,?)", rows_p)
        if rows_s:
            con.executemany("INSERT INTO acquire_sockets VALUES (?,?,?,?,?,?,?,?,?)", rows_s)
        if rows_c:
            con.executemany("INSERT INTO acquire_fs_changes VALUES (?,?,?,?,?)", rows_c)
    finally:
        con.close()
    case.log_action(
        "analysis_run", {"analysis": ANALYSIS, "findings": sum(len(r.findings) for r in results)}
    )

"""One target, tier by tier in order of volatility (RFC 3227), under the shared budget.

Each step either stores its artifacts and records, or becomes a :class:`Caveat` that says
what is missing and why; nothing is dropped silently. The target is only ever read: from the
node's ``/proc`` and the overlay upperdir, and through the runtime's API (exec runs read-only
commands; a checkpoint only with ``--checkpoint`` and always leave-running).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import podmortem
from podmortem.acquire import indicators
from podmortem.acquire.bounded import Budget, read_bounded
from podmortem.acquire.node import memory, mounts, network, procfs, rootfs, sockets, writable_layer
from podmortem.acquire.node.tree import walk
from podmortem.acquire.runtimes.base import ExecOutput, Runtime, TargetInfo, UnsupportedError
from podmortem.acquire.second_view import (
    MISSING_BINARY_CODES,
    PS_COMMANDS,
    hidden_processes,
    parse_ps,
)
from podmortem.case.paths import safe_component
from podmortem.case.store import Case, Source
from podmortem.errors import PodmortemError
from podmortem.findings import Caveat, Finding, Provenance, Severity

# Caveat kinds (stable strings for JSON consumers and tests).
BUDGET_EXHAUSTED = "budget-exhausted"
TARGET_EXITED = "target-exited"
PROCESS_EXITED = "process-exited"
STEP_FAILED = "step-failed"
UNSUPPORTED = "unsupported"
NO_NODE_VIEW = "node-view-unavailable"
NO_EXEC_VIEW = "in-container-view-unavailable"
TRUNCATED = "truncated"
HOST_NETWORK = "host-network-namespace"
RESTARTED = "container-restarted"
LAYER_MISMATCH = "runtime-diff-mismatch"
SIDE_EFFECT = "acquisition-side-effect"
# Caveats that mean evidence the run should have had is missing.
GAP_KINDS = frozenset({BUDGET_EXHAUSTED, TARGET_EXITED, STEP_FAILED, NO_NODE_VIEW})

SENSITIVE_PERSISTENCE = ("/etc/shadow", "history")

# What the in-container fallback asks the container for: (artifact, argv, sensitive).
FALLBACK_COMMANDS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    *((f"net/{t}", ("cat", f"/proc/net/{t}"), False) for t in sockets.ALL_TABLES),
    ("proc/1/mountinfo", ("cat", "/proc/1/mountinfo"), False),
    ("proc/1/environ", ("cat", "/proc/1/environ"), True),
    ("etc/passwd", ("cat", "/etc/passwd"), False),
    ("etc/ld.so.preload", ("cat", "/etc/ld.so.preload"), False),
    ("dev_shm.txt", ("ls", "-la", "/dev/shm"), False),  # noqa: S108  (the container's)
)


@dataclass(slots=True)
class Options:
    budget: float = 30.0
    memory: bool = False
    checkpoint: bool = False
    exec_allowed: bool = True
    exec_timeout: float = 5.0
    max_exec_output: int = 4 << 20
    max_log_bytes: int = 64 << 20
    max_layer_archive: int = 1 << 30
    max_ram_bytes: int = 1 << 30
    max_memory_bytes: int = 8 << 30
    proc: Path = Path("/proc")


@dataclass(slots=True)
class TargetResult:
    target: str
    label: str
    info: TargetInfo | None = None
    processes: list[procfs.ProcessRecord] = field(default_factory=list)
    sockets: list[sockets.SocketRecord] = field(default_factory=list)
    fs_changes: list[writable_layer.FsChange] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    caveats: list[Caveat] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    node_view: bool = False
    exec_view: bool = False

    @property
    def complete(self) -> bool:
        return self.info is not None and not any(c.kind in GAP_KINDS for c in self.caveats)


class TargetCollector:
    def __init__(
        self,
        case: Case,
        *,
        runtime: Runtime,
        target: str,
        options: Options,
        budget: Budget,
        progress: Callable[[str, str], None] = lambda target, step: None,
        run_dir: str = "",
    ) -> None:
        """``run_dir`` is this run's folder under ``artifacts/`` (several runs can go into
        one case; artifacts are write-once)."""
        self.case = case
        self.rt = runtime
        self.opt = options
        self.budget = budget
        self.progress = progress
        self.proc = options.proc
        self.r = TargetResult(target=target, label=target)
        self.prefix = (
            (f"{run_dir}/" if run_dir else "")
            + "targets/"
            + safe_component(target.replace("://", "-"))
        )
        self._mounts: list[mounts.Mount] = []
        self._node_pids: list[int] = []
        self._copied_up: frozenset[str] = frozenset()
        self._notes: set[str] = set()

    # ------------------------------------------------------------------ helpers

    def _info(self) -> TargetInfo:
        if self.r.info is None:  # steps run only after T0 identity succeeded
            raise RuntimeError("no target identity")
        return self.r.info

    def _caveat(self, kind: str, message: str, **details: Any) -> None:
        self.r.caveats.append(
            Caveat(
                kind, message, Provenance(source=self.r.target, parser="podmortem.acquire"), details
            )
        )

    def _put(
        self,
        rel: str,
        data: bytes | Any,
        *,
        source: Source,
        command: str,
        sensitive: bool = False,
        exit_status: int | None = None,
        error: str | None = None,
    ) -> str:
        if not isinstance(data, bytes):
            data = (json.dumps(data, indent=1, sort_keys=True, default=str) + "\n").encode()
        path = f"{self.prefix}/{rel}"
        with self.case.artifact(path, source=source, command=command, sensitive=sensitive) as w:
            w.write(data)
            w.exit_status = exit_status
            w.error = error
        return "artifacts/" + path

    def _step(self, tier: str, name: str, fn: Callable[[], None]) -> None:
        label = f"{tier} {name}"
        if self.budget.expired():
            self._caveat(
                BUDGET_EXHAUSTED, f"{label} not collected: the time budget ran out", step=label
            )
            self.r.steps.append({"step": label, "status": "skipped"})
            return
        self.progress(self.r.target, label)
        t = time.monotonic()
        status = "ok"
        try:
            fn()
        except procfs.ProcessGoneError as exc:
            status = "target-exited"
            self._caveat(
                TARGET_EXITED, f"{label}: the container exited during capture ({exc})", step=label
            )
        except UnsupportedError as exc:
            status = "unsupported"
            self._caveat(UNSUPPORTED, f"{label}: {exc}", step=label)
        except (OSError, PodmortemError) as exc:
            status = "failed"
            msg = exc.message if isinstance(exc, PodmortemError) else f"{type(exc).__name__}: {exc}"
            self._caveat(STEP_FAILED, f"{label} failed: {msg}"[:600], step=label)
        except Exception as exc:  # a collector bug must show as a gap, never end the run
            status = "failed"
            self._caveat(
                STEP_FAILED, f"{label} failed: {type(exc).__name__}: {exc}"[:600], step=label
            )
        self.r.steps.append(
            {"step": label, "status": status, "seconds": round(time.monotonic() - t, 4)}
        )

    # ---------------------------------------------------------------------- run

    def run(self) -> TargetResult:
        try:
            info = self.rt.inspect()
        except PodmortemError as exc:
            self._caveat(STEP_FAILED, f"T0 identity failed: {exc.message}", step="T0 identity")
            return self.r
        self.r.info = info
        self.r.label = f"{self.r.target} ({info.name or info.container_id[:12]})"
        self._step("T0", "identity", self.t0_identity)
        self._step("T1", "node view", self.t1_node)
        if self.opt.exec_allowed:
            self._step("T1", "in-container view", self.t1_exec)
            if not self.r.node_view:
                self._step("T1", "in-container fallback", self.t1_exec_fallback)
        else:
            self._caveat(NO_EXEC_VIEW, "in-container second view skipped (--no-exec)")
        if self.opt.memory:
            self._step("T2", "memory", self.t2_memory)
        if self.opt.checkpoint:
            self._step("T2", "checkpoint", self.t2_checkpoint)
        self._step("T3", "RAM-backed files", self.t3_ram)
        self._step("T4", "writable layer", self.t4_layer)
        self._step("T4", "persistence files", self.t4_persistence)
        self._step("T4", "runtime diff", self.t4_runtime_diff)
        self._step("T5", "logs", self.t5_logs)
        self._step("T5", "runtime records", self.t5_records)
        # A process that exited after T1 means nothing for the record; a target whose init
        # is gone at the end is worth saying.
        if self.r.node_view and not (self.proc / str(info.pid)).exists():
            self._caveat(TARGET_EXITED, "the container's init process exited during acquisition")
        return self.r

    # ----------------------------------------------------------------------- T0

    def t0_identity(self) -> None:
        info = self._info()
        if info.restart_count:
            self._caveat(
                RESTARTED,
                f"the container restarted {info.restart_count} time(s): "
                "volatile state of earlier runs is gone",
                restarts=info.restart_count,
            )
        self._put(
            "t0/identity.json",
            {"target": self.r.target, **info.to_dict()},
            source="api",
            command=f"{self.rt.name} inspect",
        )
        clocks = {
            "utc": datetime.now(UTC).isoformat(),
            "monotonic": time.monotonic(),
            "boot_time": procfs.boot_time(),
            "host": socket.gethostname(),
            "tool": "podmortem",
            "tool_version": podmortem.__version__,
            "argv": list(sys.argv),
            "acquirer_pid": os.getpid(),
        }
        self._put("t0/clocks.json", clocks, source="node", command="clock_gettime; /proc/stat")

    # ----------------------------------------------------------------------- T1

    def _node_usable(self) -> bool:
        info = self._info()
        if not info.running:
            self._caveat(NO_NODE_VIEW, "the container is not running")
            return False
        if info.pid <= 0:
            self._caveat(
                NO_NODE_VIEW,
                "no host PID for the container: podmortem does not run on its node (run it "
                "there, or as the node-agent Job); only the API and in-container views remain",
            )
            return False
        try:
            cg = read_bounded(self.proc / str(info.pid) / "cgroup", 65536).data
        except OSError:
            self._caveat(
                NO_NODE_VIEW,
                f"host pid {info.pid} is not visible here: podmortem "
                "does not run on the container's node (or not in the host PID namespace)",
            )
            return False
        if info.container_id and info.container_id.encode() not in cg:
            self._caveat(
                NO_NODE_VIEW,
                f"host pid {info.pid} is not in the container's cgroup: "
                "a different PID namespace or a reused pid",
            )
            return False
        return True

    def t1_node(self) -> None:
        info = self._info()
        if not self._node_usable():
            return
        self.r.node_view = True
        pids, how = procfs.container_pids(info.pid, self.proc)
        btime = procfs.boot_time()
        gone = []
        for pid in pids:
            try:
                self.r.processes.append(procfs.read_process(pid, btime=btime, proc=self.proc))
            except procfs.ProcessGoneError:
                gone.append(pid)
        if info.pid in gone:
            raise procfs.ProcessGoneError(f"init pid {info.pid} exited")
        if gone:
            self._caveat(
                PROCESS_EXITED, f"{len(gone)} process(es) exited before they were read", pids=gone
            )
        self._node_pids = [p.pid for p in self.r.processes]
        self._executables()
        self._environments()
        self._sockets()
        self._network()
        self._mountinfo()
        self._put(
            "t1/processes.json",
            {
                "membership": how,
                "init_pid": info.pid,
                "processes": [p.to_dict() for p in self.r.processes],
            },
            source="node",
            command="read /proc/<pid>/{status,stat,cmdline,exe,cwd,fd,ns,cgroup,attr/current}",
        )

    def _executables(self) -> None:
        hashed: dict[tuple[int, int, int, int], tuple[str, int]] = {}
        for p in self.r.processes:
            ident = procfs.exe_identity(p.pid, self.proc)
            if ident is None:
                p.errors.append("exe not readable (kernel thread or exited)")
                continue
            if ident in hashed and not (p.exe_deleted or p.exe_memfd):
                p.exe_sha256, p.exe_size = hashed[ident]
                continue
            try:
                if p.exe_deleted or p.exe_memfd:
                    # Copied out: once this process exits the binary is gone for good.
                    name = safe_component(
                        (p.exe or "exe").removesuffix(" (deleted)").rsplit("/", 1)[-1]
                    )
                    path = f"{self.prefix}/t1/exe/{p.pid}-{name}"
                    with self.case.artifact(
                        path, source="node", command=f"read /proc/{p.pid}/exe", sensitive=False
                    ) as w:
                        p.exe_sha256, p.exe_size = procfs.hash_executable(p.pid, self.proc, w.write)
                        w.extra = {
                            "pid": p.pid,
                            "exe": p.exe,
                            "deleted": p.exe_deleted,
                            "memfd": p.exe_memfd,
                        }
                else:
                    p.exe_sha256, p.exe_size = procfs.hash_executable(p.pid, self.proc)
                hashed[ident] = (p.exe_sha256, p.exe_size)
            except OSError as exc:
                p.errors.append(f"exe: {exc.strerror}")

    def _environments(self) -> None:
        envs: dict[str, Any] = {}
        # One finding per variable and value: children inherit their parent's environment,
        # and twenty processes holding the same token are one exposure, not twenty.
        seen: dict[tuple[str, str], tuple[str, list[int]]] = {}
        for p in self.r.processes:
            try:
                env, truncated = procfs.read_environ(p.pid, self.proc)
            except OSError as exc:
                envs[str(p.pid)] = {"error": exc.strerror}
                continue
            envs[str(p.pid)] = {"environ": env, "truncated": truncated}
            for k, v in env.items():
                why = indicators.secret_reason(k, v)
                if why:
                    key = (k, hashlib.sha256(v.encode("utf-8", "surrogatepass")).hexdigest())
                    seen.setdefault(key, (why, []))[1].append(p.pid)
        for (k, _digest), (why, pids) in seen.items():
            self.r.findings.append(
                indicators.finding(
                    "secret-in-environment",
                    f"{self.r.target} ${k}",
                    summary=f"Environment variable {k} looks like a credential ({why}); held "
                    f"by pid(s) {', '.join(map(str, pids[:20]))}. Its value is in the "
                    "sensitive environ artifact, not here.",
                    evidence=(f"{self.prefix}/t1/environ.json",),
                    location=("environ", k),
                    extra={"pids": pids, "variable": k, "reason": why},
                )
            )
        self._put(
            "t1/environ.json",
            envs,
            source="node",
            command="read /proc/<pid>/environ",
            sensitive=True,
        )

    def _sockets(self) -> None:
        info = self._info()
        tables = sockets.read_tables(info.pid, self.proc)
        owners: dict[int, tuple[int, str]] = {}
        for p in self.r.processes:
            for ino in p.socket_inodes():
                owners.setdefault(ino, (p.pid, p.name))
        bad = 0
        found: list[sockets.SocketRecord] = []
        for table, data in tables.items():
            self._put(
                f"t1/net/{table}", data, source="node", command=f"read /proc/{info.pid}/net/{table}"
            )
            recs, b = sockets.parse_table(table, data)
            found.extend(recs)
            bad += b
        sockets.join_to_processes(found, owners)
        if bad:
            self._caveat("malformed-record", f"{bad} socket table line(s) could not be decoded")
        host_net = procfs.namespace_id(info.pid, "net", self.proc) == procfs.host_namespace(
            "net", self.proc
        )
        if host_net:
            # The container shares the node's network namespace: the tables are the node's.
            # Keep the container's own sockets in the record; the raw tables keep all.
            self._caveat(
                HOST_NETWORK,
                "the container uses the node's network namespace; only "
                "sockets held by its processes are listed (raw tables keep all)",
            )
            found = [s for s in found if s.pid is not None]
        self.r.sockets = found
        self._put(
            "t1/sockets.json",
            [s.to_dict() for s in found],
            source="node",
            command="decode /proc/<pid>/net/* joined by socket inode",
        )
        by_pid = {p.pid: p for p in self.r.processes}
        for s in found:
            owner = by_pid.get(s.pid) if s.pid is not None else None
            listening = s.state == "LISTEN" or (s.proto.startswith("udp") and s.state == "UNCONN")
            if owner and listening and (owner.exe_deleted or owner.exe_memfd):
                p = owner
                self.r.findings.append(
                    indicators.finding(
                        "listener-from-deleted-binary",
                        f"{self.r.target} pid {p.pid} {s.proto} {s.local_address}:{s.local_port}",
                        summary=f"pid {p.pid} runs {p.exe!r} (sha256 {p.exe_sha256}) and "
                        "listens on "
                        f"{s.proto} {s.local_address}:{s.local_port}.",
                        evidence=(f"{self.prefix}/t1/sockets.json", f"{self.prefix}/t1/exe/"),
                        extra={
                            "pid": p.pid,
                            "exe_sha256": p.exe_sha256,
                            "proto": s.proto,
                            "port": s.local_port,
                        },
                    )
                )
        for p in self.r.processes:
            if p.exe_memfd or p.exe_deleted:
                rule = "memfd-executable" if p.exe_memfd else "deleted-executable"
                self.r.findings.append(
                    indicators.finding(
                        rule,
                        f"{self.r.target} pid {p.pid}",
                        summary=f"pid {p.pid} ({p.name}) runs {p.exe!r}; sha256 {p.exe_sha256}.",
                        evidence=(f"{self.prefix}/t1/processes.json",),
                        extra={"pid": p.pid, "exe": p.exe, "exe_sha256": p.exe_sha256},
                    )
                )

    def _network(self) -> None:
        info = self._info()
        raw, decoded = network.read_network(info.pid, self.proc)
        for name, data in raw.items():
            self._put(
                f"t1/net/{name}",
                data,
                source="node",
                command=f"read /proc/{info.pid}/net or /proc/<pid>/root/etc",
            )
        self._put("t1/network.json", decoded, source="node", command="decode network files")

    def _mountinfo(self) -> None:
        info = self._info()
        data = read_bounded(self.proc / str(info.pid) / "mountinfo", 8 << 20).data
        self._put("t1/mountinfo", data, source="node", command=f"read /proc/{info.pid}/mountinfo")
        self._mounts, bad = mounts.parse_mountinfo(data)
        if bad:
            self._caveat("malformed-record", f"{bad} mountinfo line(s) could not be decoded")
        self._put(
            "t1/mounts.json",
            [m.to_dict() for m in self._mounts],
            source="node",
            command="decode mountinfo",
        )

    # ------------------------------------------------------------ T1 second view

    def _exec(self, cmd: tuple[str, ...]) -> ExecOutput:
        timeout = min(self.opt.exec_timeout, self.budget.remaining())
        out = self.rt.exec(cmd, timeout=timeout, max_bytes=self.opt.max_exec_output)
        if out.note and out.note not in self._notes:
            self._notes.add(out.note)
            self._caveat(SIDE_EFFECT, out.note)
        return out

    def t1_exec(self) -> None:
        out: ExecOutput | None = None
        view = None
        tried = []
        for cmd in PS_COMMANDS:
            out = self._exec(cmd)
            tried.append(
                {"cmd": list(cmd), "rc": out.rc, "error": out.error, "timed_out": out.timed_out}
            )
            if out.timed_out or self.budget.expired():
                break
            if out.rc == 0:
                view = parse_ps(out.stdout)
                if view is not None:
                    break
        if out is None:  # PS_COMMANDS is never empty
            return
        self._put(
            "t1/in-container/ps.txt",
            out.stdout + (b"\n--- stderr ---\n" + out.stderr if out.stderr else b""),
            source="in-container",
            command=" ; ".join(" ".join(c) for c in PS_COMMANDS[: len(tried)]),
            exit_status=out.rc,
            error=out.error,
        )
        if out.truncated:
            self._caveat(TRUNCATED, "in-container ps output was cut at the output limit")
        if view is None:
            missing = (
                out.rc in MISSING_BINARY_CODES
                or "not found"
                in ((out.error or "") + out.stdout[:300].decode("utf-8", "replace")).lower()
                or ("no such file" in (out.error or "").lower())
            )
            why = (
                "the image has no ps (or no shell): the node view stands alone"
                if missing
                else "the in-container ps did not produce a readable listing"
            )
            if out.timed_out:
                why = "the in-container ps did not finish in time"
            self._caveat(NO_EXEC_VIEW, why, attempts=tried)
            return
        self.r.exec_view = True
        if not self.r.node_view:
            return
        candidates = [(p.pid, p.ns_pid, p.start_ticks) for p in self.r.processes]

        def still_alive(pid: int, ticks: int | None) -> bool:
            try:
                stat = read_bounded(self.proc / str(pid) / "stat", 4096).data
            except OSError:
                return False
            fields = procfs._stat_fields(stat)
            return len(fields) > 19 and fields[19] == str(ticks)

        for h in hidden_processes(candidates, view.pids, still_alive):
            p = next(x for x in self.r.processes if x.pid == h.host_pid)
            self.r.findings.append(
                indicators.finding(
                    "hidden-process",
                    f"{self.r.target} pid {h.host_pid} (ns pid {h.ns_pid})",
                    summary=f"pid {h.ns_pid} in the container (host pid {h.host_pid}, "
                    f"{' '.join(p.cmdline)[:200]!r}) is missing from the container's own ps.",
                    evidence=(
                        f"{self.prefix}/t1/processes.json",
                        f"{self.prefix}/t1/in-container/ps.txt",
                    ),
                    extra={"host_pid": h.host_pid, "ns_pid": h.ns_pid, "exe": p.exe},
                )
            )

    def t1_exec_fallback(self) -> None:
        """Without the node view, ask the container itself (its own, possibly trojaned,
        binaries): socket tables, mounts, accounts, init's environment, /dev/shm."""
        for rel, cmd, sensitive in FALLBACK_COMMANDS:
            if self.budget.expired():
                self._caveat(BUDGET_EXHAUSTED, "in-container fallback stopped early")
                return
            out = self._exec(cmd)
            self._put(
                f"t1/in-container/{rel}",
                out.stdout,
                source="in-container",
                command=" ".join(cmd),
                sensitive=sensitive,
                exit_status=out.rc,
                error=out.error or (out.stderr[:500].decode("utf-8", "replace") or None),
            )
            if out.rc != 0:
                continue
            table = rel.removeprefix("net/")
            if rel.startswith("net/"):
                recs, _bad = sockets.parse_table(table, out.stdout)
                self.r.sockets.extend(recs)
            elif rel == "etc/passwd":
                for name in indicators.uid0_accounts(out.stdout):
                    self.r.findings.append(
                        indicators.finding(
                            "uid0-account",
                            f"{self.r.target} account {name}",
                            summary=f"account {name!r} has uid 0 in /etc/passwd "
                            "(as the container's own cat shows it)",
                            evidence=(f"{self.prefix}/t1/in-container/{rel}",),
                            extra={"account": name},
                            source="in-container",
                        )
                    )
            elif rel == "proc/1/environ":
                for item in out.stdout.split(b"\0"):
                    k, _, v = item.decode("utf-8", "backslashreplace").partition("=")
                    why = indicators.secret_reason(k, v) if k else None
                    if why:
                        self.r.findings.append(
                            indicators.finding(
                                "secret-in-environment",
                                f"{self.r.target} pid 1 ${k}",
                                summary=f"Environment variable {k} of the container's init "
                                f"looks like a credential ({why}).",
                                evidence=(f"{self.prefix}/t1/in-container/{rel}",),
                                extra={"ns_pid": 1, "variable": k, "reason": why},
                                source="in-container",
                            )
                        )
        self._caveat(
            "in-container-only",
            "processes, sockets and files were read by the container's own tools (no node "
            "view): a rootkit inside could hide from them",
        )

    # ----------------------------------------------------------------------- T2

    def t2_memory(self) -> None:
        if not self.r.node_view:
            raise UnsupportedError("memory needs the node view")
        total = 0
        for p in list(self.r.processes):
            if self.budget.expired():
                self._caveat(BUDGET_EXHAUSTED, f"memory of pid {p.pid} and later not taken")
                return
            path = f"{self.prefix}/t2/memory/{p.pid}.mem"
            try:
                with self.case.artifact(
                    path,
                    source="node",
                    command=f"read /proc/{p.pid}/maps + /proc/{p.pid}/mem",
                    sensitive=True,
                ) as w:
                    regions, n, complete = memory.dump(
                        p.pid,
                        w.write,
                        proc=self.proc,
                        should_stop=self.budget.expired,
                        max_bytes=self.opt.max_memory_bytes - total,
                    )
                    w.extra = {"pid": p.pid, "regions": len(regions)}
                    if not complete:
                        w.error = "incomplete: budget or size limit reached"
            except OSError as exc:
                self._caveat(
                    PROCESS_EXITED
                    if isinstance(exc, FileNotFoundError | ProcessLookupError)
                    else STEP_FAILED,
                    f"memory of pid {p.pid}: {exc.strerror}",
                )
                continue
            total += n
            self._put(
                f"t2/memory/{p.pid}.regions.json",
                [r.to_dict() for r in regions],
                source="node",
                command=f"parse /proc/{p.pid}/maps",
            )
            if not complete:
                self._caveat(BUDGET_EXHAUSTED, f"memory of pid {p.pid} is incomplete")

    def t2_checkpoint(self) -> None:
        path = f"{self.prefix}/t2/checkpoint.tar"
        timeout = max(1.0, self.budget.remaining())
        try:
            with self.case.artifact(
                path, source="api", command="checkpoint --leave-running", sensitive=True
            ) as w:
                w.extra = self.rt.checkpoint(w.write, timeout=timeout)
        except UnsupportedError as exc:
            # The empty artifact keeps the attempt on record; the caveat says why.
            raise UnsupportedError(f"CRIU checkpoint unavailable: {exc}") from exc

    # ----------------------------------------------------------------------- T3

    def t3_ram(self) -> None:
        if not self.r.node_view:
            raise UnsupportedError("RAM-backed files need the node view")
        info = self._info()
        root = self.proc / str(info.pid) / "root"
        listing: list[dict[str, Any]] = []
        used = 0
        for m in mounts.ram_backed(self._mounts):
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
                }
                listing.append(rec)
                if rec["type"] != "file":
                    return
                if used + e.st.st_size > self.opt.max_ram_bytes:
                    rec["error"] = "not copied: RAM-file size limit reached"
                    return
                art = f"{self.prefix}/t3/ram/{mdir}/" + "/".join(
                    safe_component(c) for c in e.path.split("/")
                )
                fd = e.open()
                try:
                    with self.case.artifact(
                        art,
                        source="node",
                        command=f"read {path} via /proc/{info.pid}/root",
                        sensitive=secretish,
                    ) as w:
                        head = os.read(fd, 4096)
                        w.write(head)
                        while buf := os.read(fd, 1 << 20):
                            w.write(buf)
                            if self.budget.expired():
                                w.error = "copy cut: the time budget ran out"
                                self._caveat(BUDGET_EXHAUSTED, f"copy of {path} was cut")
                                break
                        w.extra = {"container_path": path}
                finally:
                    os.close(fd)
                used += w.size
                rec["artifact"] = "artifacts/" + art
                rec["sha256"] = w.sha256
                if not secretish:
                    exe = indicators.looks_executable(head, e.st.st_mode)
                    self.r.findings.append(
                        indicators.finding(
                            "ram-backed-file",
                            f"{self.r.target} {path}",
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
                _n, complete, errors = walk(dfd, visit, should_stop=self.budget.expired)
            finally:
                os.close(dfd)
            if not complete:
                self._caveat(BUDGET_EXHAUSTED, f"walk of {m.mount_point} stopped early")
            if errors:
                self._caveat(
                    "unreadable",
                    f"{len(errors)} entries under {m.mount_point} unreadable",
                    errors=errors[:20],
                )
        self._put("t3/ram_files.json", listing, source="node", command="walk tmpfs mounts")

    # ----------------------------------------------------------------------- T4

    def t4_layer(self) -> None:
        if not self.r.node_view:
            raise UnsupportedError("the writable layer needs the node view")
        ov = mounts.root_overlay(self._mounts)
        if ov is None:
            raise UnsupportedError("the container's root is not an overlay mount: no upperdir")
        path = f"{self.prefix}/t4/upperdir.tar"
        with self.case.artifact(path, source="node", command=f"tar of {ov.upperdir}") as w:
            cap = writable_layer.capture(
                ov,
                w,
                should_stop=self.budget.expired,
                max_archive_bytes=self.opt.max_layer_archive,
            )
            w.extra = {"upperdir": ov.upperdir, "lowerdirs": list(ov.lowerdirs)}
            if not cap.complete:
                w.error = "incomplete: the time budget ran out during the walk"
        self.r.fs_changes = cap.changes
        self._copied_up = frozenset(cap.copied_up)
        self._put(
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
            self._caveat(BUDGET_EXHAUSTED, "the writable-layer walk stopped early")
        if cap.not_archived:
            self._caveat(
                TRUNCATED,
                f"{len(cap.not_archived)} file(s) hashed but not archived (archive size limit)",
            )
        for c in cap.changes:
            tech = indicators.persistence_technique(c.path)
            if tech and c.change in ("added", "modified"):
                self.r.findings.append(
                    indicators.finding(
                        "persistence-changed",
                        f"{self.r.target} {c.path}",
                        summary=f"{c.path} was {c.change} in the writable layer "
                        f"(sha256 {c.sha256}).",
                        evidence=(f"{self.prefix}/t4/fs_changes.json",),
                        extra={"path": c.path, "change": c.change, "technique": tech},
                    )
                )

    def t4_persistence(self) -> None:
        if not self.r.node_view:
            raise UnsupportedError("persistence files need the node view")
        info = self._info()
        root = self.proc / str(info.pid) / "root"
        seen: list[dict[str, Any]] = []
        for pattern, _tech in indicators.load().persistence:
            for path in _expand(root, pattern):
                try:
                    b = rootfs.read_in_root(root, path, 16 << 20)
                except OSError:
                    continue
                sensitive = any(s in path for s in SENSITIVE_PERSISTENCE)
                art = self._put(
                    "t4/persistence/"
                    + "/".join(safe_component(c) for c in path.strip("/").split("/")),
                    b.data,
                    source="node",
                    command=f"read {path} via /proc/{info.pid}/root",
                    sensitive=sensitive,
                    error="truncated" if b.truncated else None,
                )
                seen.append({"path": path, "artifact": art, "size": len(b.data)})
                if path == "/etc/passwd":
                    for name in indicators.uid0_accounts(b.data):
                        self.r.findings.append(
                            indicators.finding(
                                "uid0-account",
                                f"{self.r.target} account {name}",
                                summary=f"account {name!r} has uid 0 in /etc/passwd",
                                evidence=(art,),
                                extra={"account": name},
                            )
                        )
                if path == "/etc/ld.so.preload" and b.data.strip():
                    self.r.findings.append(
                        indicators.finding(
                            "preload-hijack",
                            f"{self.r.target} /etc/ld.so.preload",
                            summary=f"/etc/ld.so.preload lists {b.data.strip()[:200]!r}",
                            evidence=(art,),
                        )
                    )
        self._put("t4/persistence.json", seen, source="node", command="persistence file list")

    def t4_runtime_diff(self) -> None:
        entries = self.rt.diff()
        rows = [(e.path, e.change) for e in entries]
        report: dict[str, Any] = {"runtime": self.rt.name, "changes": [list(r) for r in rows]}
        if self.r.fs_changes or self.r.node_view:
            scaffold = indicators.runtime_scaffolding(self.rt.name)
            check = writable_layer.cross_check(self.r.fs_changes, rows, scaffold, self._copied_up)
            report["runtime_scaffolding"] = sorted(
                c.path for c in self.r.fs_changes if c.path in scaffold
            )
            report["cross_check"] = check
            if any(check.values()):
                self._caveat(
                    LAYER_MISMATCH,
                    "the runtime's diff and the upperdir walk differ (see t4/runtime_diff.json)",
                    **{k: v[:20] for k, v in check.items()},
                )
        self._put("t4/runtime_diff.json", report, source="api", command=f"{self.rt.name} diff")

    # ----------------------------------------------------------------------- T5

    def t5_logs(self) -> None:
        data, truncated = self.rt.logs(
            max_bytes=self.opt.max_log_bytes, timeout=max(1.0, self.budget.remaining())
        )
        self._put(
            "t5/logs.txt",
            data,
            source="api",
            command=f"{self.rt.name} logs --timestamps",
            error="truncated at the log limit" if truncated else None,
        )
        if truncated:
            self._caveat(TRUNCATED, "container logs were cut at the size or time limit")

    def t5_records(self) -> None:
        self._put(
            "t5/inspect.json",
            dict(self.rt.inspect_document()),
            source="api",
            command=f"{self.rt.name} inspect",
        )
        for key, doc in self.rt.extra_documents(timeout=max(1.0, self.budget.remaining())).items():
            self._put(
                f"t5/{safe_component(key)}.json", doc, source="api", command=f"{self.rt.name} {key}"
            )


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
    import fnmatch

    rest = "/".join(parts[i + 1 :])
    return [
        f"{parent.rstrip('/')}/{n}" + (f"/{rest}" if rest else "")
        for n in names
        if fnmatch.fnmatchcase(n, parts[i])
    ]

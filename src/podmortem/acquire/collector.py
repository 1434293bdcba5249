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
from podmortem.acquire import exec_view, filesystem, indicators
from podmortem.acquire.bounded import Budget, read_bounded
from podmortem.acquire.caveats import (  # re-exported: the kinds belong to this API
    BUDGET_EXHAUSTED,
    GAP_KINDS,
    HOST_NETWORK,
    NO_EXEC_VIEW,
    NO_NODE_VIEW,
    PROCESS_EXITED,
    RESTARTED,
    SIDE_EFFECT,
    STEP_FAILED,
    TARGET_EXITED,
    TRUNCATED,
    UNSUPPORTED,
)
from podmortem.acquire.node import memory, mounts, network, procfs, sockets, writable_layer
from podmortem.acquire.runtimes.base import ExecOutput, Runtime, TargetInfo, UnsupportedError
from podmortem.case.paths import safe_component
from podmortem.case.store import Case, Source
from podmortem.errors import PodmortemError
from podmortem.findings import Caveat, Finding, Provenance


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
        self.mounts: list[mounts.Mount] = []
        self._node_pids: list[int] = []
        self.copied_up: frozenset[str] = frozenset()
        self.notes: set[str] = set()

    # ------------------------------------------------------------------ helpers

    def info(self) -> TargetInfo:
        if self.r.info is None:  # steps run only after T0 identity succeeded
            raise RuntimeError("no target identity")
        return self.r.info

    def caveat(self, kind: str, message: str, **details: Any) -> None:
        self.r.caveats.append(
            Caveat(
                kind, message, Provenance(source=self.r.target, parser="podmortem.acquire"), details
            )
        )

    def put(
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
            self.caveat(
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
            self.caveat(
                TARGET_EXITED, f"{label}: the container exited during capture ({exc})", step=label
            )
        except UnsupportedError as exc:
            status = "unsupported"
            self.caveat(UNSUPPORTED, f"{label}: {exc}", step=label)
        except (OSError, PodmortemError) as exc:
            status = "failed"
            msg = exc.message if isinstance(exc, PodmortemError) else f"{type(exc).__name__}: {exc}"
            self.caveat(STEP_FAILED, f"{label} failed: {msg}"[:600], step=label)
        except Exception as exc:  # a collector bug must show as a gap, never end the run
            status = "failed"
            self.caveat(
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
            self.caveat(STEP_FAILED, f"T0 identity failed: {exc.message}", step="T0 identity")
            return self.r
        self.r.info = info
        self.r.label = f"{self.r.target} ({info.name or info.container_id[:12]})"
        self._step("T0", "identity", self.t0_identity)
        # Kubernetes off the pod's node: a node-agent Job there brings the node view back.
        agent = getattr(self.rt, "node_agent", lambda: None)()
        if agent is not None:
            return self._run_with_node_agent(agent)
        self._step("T1", "node view", self.t1_node)
        if self.opt.exec_allowed:
            self._step("T1", "in-container view", lambda: exec_view.second_view(self))
            if not self.r.node_view:
                self._step(
                    "T1", "in-container fallback", lambda: exec_view.in_container_fallback(self)
                )
        else:
            self.caveat(NO_EXEC_VIEW, "in-container second view skipped (--no-exec)")
        if self.opt.memory:
            self._step("T2", "memory", self.t2_memory)
        if self.opt.checkpoint:
            self._step("T2", "checkpoint", self.t2_checkpoint)
        self._step("T3", "RAM-backed files", lambda: filesystem.ram_backed_files(self))
        self._step("T4", "writable layer", lambda: filesystem.writable_layer_step(self))
        self._step("T4", "persistence files", lambda: filesystem.persistence_files(self))
        self._step("T4", "runtime diff", lambda: filesystem.runtime_diff(self))
        self._step("T5", "logs", self.t5_logs)
        self._step("T5", "runtime records", self.t5_records)
        # A process that exited after T1 means nothing for the record; a target whose init
        # is gone at the end is worth saying.
        if self.r.node_view and not (self.proc / str(info.pid)).exists():
            self.caveat(TARGET_EXITED, "the container's init process exited during acquisition")
        return self.r

    def _run_with_node_agent(self, agent: Any) -> TargetResult:
        """The node view comes from the node agent (T1 to T4 on the node, by its own
        acquisition); the Job is created first because its pod takes longest, the container's
        own view runs while it starts, and the in-container fallback only if the agent fails.
        The Job is deleted whatever happens."""
        from podmortem.acquire import node_agent

        try:
            self._step("T1", "node agent start", node_agent.start_step(self, agent))
            if self.opt.exec_allowed:
                self._step("T1", "in-container view", lambda: exec_view.second_view(self))
            if agent.job is not None:
                self._step("T1-T4", "node view (node agent)", node_agent.collect_step(self, agent))
            if not self.r.node_view and self.opt.exec_allowed:
                self._step(
                    "T1", "in-container fallback", lambda: exec_view.in_container_fallback(self)
                )
            self._step("T5", "logs", self.t5_logs)
            self._step("T5", "runtime records", self.t5_records)
        finally:
            try:
                agent.finish(self)
            except Exception as exc:  # never lose the capture over a cleanup failure
                self.caveat(STEP_FAILED, f"node agent cleanup failed: {exc}"[:600])
        return self.r

    # ----------------------------------------------------------------------- T0

    def t0_identity(self) -> None:
        info = self.info()
        if info.restart_count:
            self.caveat(
                RESTARTED,
                f"the container restarted {info.restart_count} time(s): "
                "volatile state of earlier runs is gone",
                restarts=info.restart_count,
            )
        self.put(
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
        self.put("t0/clocks.json", clocks, source="node", command="clock_gettime; /proc/stat")

    # ----------------------------------------------------------------------- T1

    def _node_usable(self) -> bool:
        info = self.info()
        if not info.running:
            self.caveat(NO_NODE_VIEW, "the container is not running")
            return False
        if info.pid <= 0:
            self.caveat(
                NO_NODE_VIEW,
                "no host PID for the container: podmortem does not run on its node (run it "
                "there, or as the node-agent Job); only the API and in-container views remain",
            )
            return False
        try:
            cg = read_bounded(self.proc / str(info.pid) / "cgroup", 65536).data
        except OSError:
            self.caveat(
                NO_NODE_VIEW,
                f"host pid {info.pid} is not visible here: podmortem "
                "does not run on the container's node (or not in the host PID namespace)",
            )
            return False
        if info.container_id and info.container_id.encode() not in cg:
            self.caveat(
                NO_NODE_VIEW,
                f"host pid {info.pid} is not in the container's cgroup: "
                "a different PID namespace or a reused pid",
            )
            return False
        return True

    def t1_node(self) -> None:
        info = self.info()
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
            self.caveat(
                PROCESS_EXITED, f"{len(gone)} process(es) exited before they were read", pids=gone
            )
        self._node_pids = [p.pid for p in self.r.processes]
        self._executables()
        self._environments()
        self._sockets()
        self._network()
        self._mountinfo()
        self.put(
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
        self.put(
            "t1/environ.json",
            envs,
            source="node",
            command="read /proc/<pid>/environ",
            sensitive=True,
        )

    def _sockets(self) -> None:
        info = self.info()
        tables = sockets.read_tables(info.pid, self.proc)
        owners: dict[int, tuple[int, str]] = {}
        for p in self.r.processes:
            for ino in p.socket_inodes():
                owners.setdefault(ino, (p.pid, p.name))
        bad = 0
        found: list[sockets.SocketRecord] = []
        for table, data in tables.items():
            self.put(
                f"t1/net/{table}", data, source="node", command=f"read /proc/{info.pid}/net/{table}"
            )
            recs, b = sockets.parse_table(table, data)
            found.extend(recs)
            bad += b
        sockets.join_to_processes(found, owners)
        if bad:
            self.caveat("malformed-record", f"{bad} socket table line(s) could not be decoded")
        host_net = procfs.namespace_id(info.pid, "net", self.proc) == procfs.host_namespace(
            "net", self.proc
        )
        if host_net:
            # The container shares the node's network namespace: the tables are the node's.
            # Keep the container's own sockets in the record; the raw tables keep all.
            self.caveat(
                HOST_NETWORK,
                "the container uses the node's network namespace; only "
                "sockets held by its processes are listed (raw tables keep all)",
            )
            found = [s for s in found if s.pid is not None]
        self.r.sockets = found
        self.put(
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
        info = self.info()
        raw, decoded = network.read_network(info.pid, self.proc)
        for name, data in raw.items():
            self.put(
                f"t1/net/{name}",
                data,
                source="node",
                command=f"read /proc/{info.pid}/net or /proc/<pid>/root/etc",
            )
        self.put("t1/network.json", decoded, source="node", command="decode network files")

    def _mountinfo(self) -> None:
        info = self.info()
        data = read_bounded(self.proc / str(info.pid) / "mountinfo", 8 << 20).data
        self.put("t1/mountinfo", data, source="node", command=f"read /proc/{info.pid}/mountinfo")
        self.mounts, bad = mounts.parse_mountinfo(data)
        if bad:
            self.caveat("malformed-record", f"{bad} mountinfo line(s) could not be decoded")
        self.put(
            "t1/mounts.json",
            [m.to_dict() for m in self.mounts],
            source="node",
            command="decode mountinfo",
        )

    # ------------------------------------------------------------ T1 second view

    def exec(self, cmd: tuple[str, ...]) -> ExecOutput:
        timeout = min(self.opt.exec_timeout, self.budget.remaining())
        out = self.rt.exec(cmd, timeout=timeout, max_bytes=self.opt.max_exec_output)
        if out.note and out.note not in self.notes:
            self.notes.add(out.note)
            self.caveat(SIDE_EFFECT, out.note)
        return out

    # ----------------------------------------------------------------------- T2

    def t2_memory(self) -> None:
        if not self.r.node_view:
            raise UnsupportedError("memory needs the node view")
        total = 0
        for p in list(self.r.processes):
            if self.budget.expired():
                self.caveat(BUDGET_EXHAUSTED, f"memory of pid {p.pid} and later not taken")
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
                self.caveat(
                    PROCESS_EXITED
                    if isinstance(exc, FileNotFoundError | ProcessLookupError)
                    else STEP_FAILED,
                    f"memory of pid {p.pid}: {exc.strerror}",
                )
                continue
            total += n
            self.put(
                f"t2/memory/{p.pid}.regions.json",
                [r.to_dict() for r in regions],
                source="node",
                command=f"parse /proc/{p.pid}/maps",
            )
            if not complete:
                self.caveat(BUDGET_EXHAUSTED, f"memory of pid {p.pid} is incomplete")

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

    # ----------------------------------------------------------------------- T4

    # ----------------------------------------------------------------------- T5

    def t5_logs(self) -> None:
        data, truncated = self.rt.logs(
            max_bytes=self.opt.max_log_bytes, timeout=max(1.0, self.budget.remaining())
        )
        self.put(
            "t5/logs.txt",
            data,
            source="api",
            command=f"{self.rt.name} logs --timestamps",
            error="truncated at the log limit" if truncated else None,
        )
        if truncated:
            self.caveat(TRUNCATED, "container logs were cut at the size or time limit")

    def t5_records(self) -> None:
        self.put(
            "t5/inspect.json",
            dict(self.rt.inspect_document()),
            source="api",
            command=f"{self.rt.name} inspect",
        )
        for key, doc in self.rt.extra_documents(timeout=max(1.0, self.budget.remaining())).items():
            self.put(
                f"t5/{safe_component(key)}.json", doc, source="api", command=f"{self.rt.name} {key}"
            )

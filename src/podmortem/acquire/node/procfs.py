"""Processes of a container as the node sees them, from host ``/proc/<pid>``.

Which processes belong to the container: those in its init process's PID namespace. When
that namespace is the host's (``--pid=host``), PID namespace says nothing, and we fall back to
the processes whose cgroup file is identical to the init process's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from podmortem.acquire.bounded import lines, read_bounded, text

PROC = Path("/proc")
NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "user", "uts")

# Linux capability numbers (include/uapi/linux/capability.h), to show names not bitmasks.
CAPABILITIES = (
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
)
SECCOMP_MODES = {"0": "disabled", "1": "strict", "2": "filter"}


class ProcessGoneError(Exception):
    """The process exited while we were reading it."""


def cap_names(mask_hex: str) -> list[str]:
    try:
        mask = int(mask_hex, 16)
    except ValueError:
        return []
    names = [f"cap_{n}" for i, n in enumerate(CAPABILITIES) if mask >> i & 1]
    names += [f"cap_{i}" for i in range(len(CAPABILITIES), 64) if mask >> i & 1]
    return names


def parse_status(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines(data):
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _stat_fields(data: bytes) -> list[str]:
    # comm (field 2) is in parentheses and may itself contain spaces and ')': split after the
    # LAST ')' (proc(5)).
    raw = text(data)
    return raw[raw.rfind(")") + 2 :].split()


def boot_time() -> float:
    for line in lines(read_bounded(PROC / "stat").data):
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


@dataclass(slots=True)
class ProcessRecord:
    pid: int
    ns_pid: int | None
    ppid: int
    nspid_chain: list[int]
    name: str
    state: str
    uids: list[int]
    gids: list[int]
    cmdline: list[str]
    cwd: str | None
    exe: str | None
    exe_deleted: bool
    exe_memfd: bool
    exe_sha256: str | None = None
    exe_size: int | None = None
    start_time: str | None = None
    start_ticks: int | None = None
    capabilities: dict[str, list[str]] = field(default_factory=dict)
    seccomp: str | None = None
    no_new_privs: bool | None = None
    lsm: str | None = None
    namespaces: dict[str, str] = field(default_factory=dict)
    cgroup: str = ""
    fds: list[dict[str, Any]] = field(default_factory=list)
    cmdline_truncated: bool = False
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def socket_inodes(self) -> set[int]:
        out = set()
        for fd in self.fds:
            t = str(fd.get("target") or "")
            if t.startswith("socket:[") and t.endswith("]"):
                with contextlib.suppress(ValueError):
                    out.add(int(t[8:-1]))
        return out


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except FileNotFoundError:
        raise
    except OSError:
        return None


def namespace_id(pid: int, ns: str, proc: Path = PROC) -> str | None:
    try:
        return os.readlink(proc / str(pid) / "ns" / ns)
    except OSError:
        return None


def host_namespace(ns: str, proc: Path = PROC) -> str | None:
    """The node's namespace of a kind: that of PID 1, or ours if PID 1's is hidden from us
    (some sandboxes deny reading /proc/1/ns). A node agent runs with hostPID, so either is
    the node's PID namespace."""
    return namespace_id(1, ns, proc) or namespace_id(os.getpid(), ns, proc)


def all_pids(proc: Path = PROC) -> list[int]:
    return sorted(int(p) for p in os.listdir(proc) if p.isdigit())


def container_pids(init_pid: int, proc: Path = PROC) -> tuple[list[int], str]:
    """PIDs of the container whose init is ``init_pid``; returns (pids, how).

    Raises ProcessGoneError if the init process no longer exists."""
    target_ns = namespace_id(init_pid, "pid", proc)
    if target_ns is None:
        raise ProcessGoneError(f"pid {init_pid} is gone")
    host_ns = host_namespace("pid", proc)
    if target_ns != host_ns:
        pids = [p for p in all_pids(proc) if namespace_id(p, "pid", proc) == target_ns]
        return (pids or [init_pid]), "pid-namespace"
    try:
        cg = read_bounded(proc / str(init_pid) / "cgroup").data
    except OSError as exc:
        raise ProcessGoneError(f"pid {init_pid} is gone") from exc
    pids = []
    for p in all_pids(proc):
        try:
            if read_bounded(proc / str(p) / "cgroup").data == cg:
                pids.append(p)
        except OSError:
            continue
    return (pids or [init_pid]), "cgroup"


def read_process(
    pid: int, *, btime: float, proc: Path = PROC, max_fds: int = 4096
) -> ProcessRecord:
    """Everything about one process except environ and memory (read separately: sensitive,
    large). Raises ProcessGoneError when it exited before its status could be read."""
    base = proc / str(pid)
    try:
        status = parse_status(read_bounded(base / "status").data)
        stat = _stat_fields(read_bounded(base / "stat").data)
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise ProcessGoneError(f"pid {pid} exited") from exc
    errors: list[str] = []
    chain = [int(x) for x in status.get("NSpid", str(pid)).split() if x.isdigit()]
    cmd = read_bounded(base / "cmdline", 256 * 1024) if (base / "cmdline").exists() else None
    argv = [text(a) for a in cmd.data.rstrip(b"\0").split(b"\0")] if cmd and cmd.data else []
    try:
        exe = _readlink(base / "exe")
    except FileNotFoundError:
        exe = None
    try:
        cwd = _readlink(base / "cwd")
    except FileNotFoundError:
        cwd = None
    # A deleted binary reads "/path (deleted)"; a memfd one "/memfd:name (deleted)".
    exe_deleted = bool(exe and exe.endswith(" (deleted)"))
    exe_memfd = bool(exe and exe.startswith("/memfd:"))
    ticks = int(stat[19]) if len(stat) > 19 and stat[19].isdigit() else None
    start = None
    if ticks is not None and btime:
        start_ts = btime + ticks / os.sysconf("SC_CLK_TCK")
        start = datetime.fromtimestamp(start_ts, UTC).isoformat()
    lsm = None
    # No LSM (or none that exposes a label) makes this file unreadable: that is the answer.
    with contextlib.suppress(OSError):
        lsm = text(read_bounded(base / "attr" / "current", 4096).data).strip("\0\n") or None
    cgroup = ""
    try:
        cgroup = text(read_bounded(base / "cgroup", 65536).data)
    except OSError as exc:
        errors.append(f"cgroup: {exc.strerror}")
    fds: list[dict[str, Any]] = []
    try:
        names = sorted(os.listdir(base / "fd"), key=lambda s: int(s) if s.isdigit() else -1)
        for n in names[:max_fds]:
            try:
                fds.append({"fd": int(n), "target": os.readlink(base / "fd" / n)})
            except OSError:
                continue
        if len(names) > max_fds:
            errors.append(f"fd list cut at {max_fds} of {len(names)}")
    except OSError as exc:
        errors.append(f"fd: {exc.strerror}")
    return ProcessRecord(
        pid=pid,
        ns_pid=chain[-1] if chain else None,
        ppid=int(status.get("PPid", "0") or 0),
        nspid_chain=chain,
        name=status.get("Name", ""),
        state=status.get("State", ""),
        uids=[int(x) for x in status.get("Uid", "").split() if x.isdigit()],
        gids=[int(x) for x in status.get("Gid", "").split() if x.isdigit()],
        cmdline=argv,
        cmdline_truncated=bool(cmd and cmd.truncated),
        cwd=cwd,
        exe=exe,
        exe_deleted=exe_deleted,
        exe_memfd=exe_memfd,
        start_time=start,
        start_ticks=ticks,
        capabilities={
            k[3:].lower(): cap_names(status[k])
            for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
            if k in status
        },
        seccomp=SECCOMP_MODES.get(status.get("Seccomp", ""), status.get("Seccomp")),
        no_new_privs=status.get("NoNewPrivs") == "1" if "NoNewPrivs" in status else None,
        lsm=lsm,
        namespaces={ns: v for ns in NAMESPACES if (v := namespace_id(pid, ns, proc))},
        cgroup=cgroup,
        fds=fds,
        errors=errors,
    )


def read_environ(pid: int, proc: Path = PROC, limit: int = 1 << 20) -> tuple[dict[str, str], bool]:
    """The process's initial environment (what execve received; later setenv calls are not
    visible in /proc). Returns (variables, truncated)."""
    b = read_bounded(proc / str(pid) / "environ", limit)
    env: dict[str, str] = {}
    for item in b.data.split(b"\0"):
        if not item:
            continue
        k, _, v = text(item).partition("=")
        env[k] = v
    return env, b.truncated


def hash_executable(
    pid: int,
    proc: Path = PROC,
    sink: Callable[[bytes], Any] | None = None,
    limit: int = 1 << 30,
) -> tuple[str, int]:
    """SHA-256 and size of the running executable, read through ``/proc/<pid>/exe``: this
    opens the inode the process runs, so it works for deleted and memfd binaries too."""
    h = hashlib.sha256()
    size = 0
    with open(proc / str(pid) / "exe", "rb") as fh:
        while size < limit:
            buf = fh.read(min(1 << 20, limit - size))
            if not buf:
                break
            h.update(buf)
            size += len(buf)
            if sink is not None:
                sink(buf)
    return h.hexdigest(), size


def exe_identity(pid: int, proc: Path = PROC) -> tuple[int, int, int, int] | None:
    """(dev, inode, size, mtime_ns) of the executable, to hash each distinct binary once."""
    try:
        st = os.stat(proc / str(pid) / "exe")
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def process_tree(records: Iterable[ProcessRecord]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for r in records:
        children.setdefault(r.ppid, []).append(r.pid)
    return children

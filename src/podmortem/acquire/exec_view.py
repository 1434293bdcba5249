"""T1 through exec: the container's own view of itself (its ``ps``) compared with the node's,
and, when there is no node view, the in-container fallback collection. Each function is one
step of :class:`~podmortem.acquire.collector.TargetCollector`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from podmortem.acquire import indicators
from podmortem.acquire.bounded import read_bounded
from podmortem.acquire.caveats import BUDGET_EXHAUSTED, NO_EXEC_VIEW, TRUNCATED
from podmortem.acquire.node import procfs, sockets
from podmortem.acquire.runtimes.base import ExecOutput
from podmortem.acquire.second_view import (
    MISSING_BINARY_CODES,
    PS_COMMANDS,
    hidden_processes,
    parse_ps,
)

if TYPE_CHECKING:
    from podmortem.acquire.collector import TargetCollector

# What the in-container fallback asks the container for: (artifact, argv, sensitive).
FALLBACK_COMMANDS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    *((f"net/{t}", ("cat", f"/proc/net/{t}"), False) for t in sockets.ALL_TABLES),
    ("proc/1/mountinfo", ("cat", "/proc/1/mountinfo"), False),
    ("proc/1/environ", ("cat", "/proc/1/environ"), True),
    ("etc/passwd", ("cat", "/etc/passwd"), False),
    ("etc/ld.so.preload", ("cat", "/etc/ld.so.preload"), False),
    ("dev_shm.txt", ("ls", "-la", "/dev/shm"), False),  # noqa: S108  (the container's)
)


def second_view(c: TargetCollector) -> None:
    out: ExecOutput | None = None
    view = None
    tried = []
    for cmd in PS_COMMANDS:
        out = c.exec(cmd)
        tried.append(
            {"cmd": list(cmd), "rc": out.rc, "error": out.error, "timed_out": out.timed_out}
        )
        if out.timed_out or c.budget.expired():
            break
        if out.rc == 0:
            view = parse_ps(out.stdout)
            if view is not None:
                break
    if out is None:  # PS_COMMANDS is never empty
        return
    c.put(
        "t1/in-container/ps.txt",
        out.stdout + (b"\n--- stderr ---\n" + out.stderr if out.stderr else b""),
        source="in-container",
        command=" ; ".join(" ".join(c) for c in PS_COMMANDS[: len(tried)]),
        exit_status=out.rc,
        error=out.error,
    )
    if out.truncated:
        c.caveat(TRUNCATED, "in-container ps output was cut at the output limit")
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
        c.caveat(NO_EXEC_VIEW, why, attempts=tried)
        return
    c.r.exec_view = True
    if not c.r.node_view:
        return
    candidates = [(p.pid, p.ns_pid, p.start_ticks) for p in c.r.processes]

    def still_alive(pid: int, ticks: int | None) -> bool:
        try:
            stat = read_bounded(c.proc / str(pid) / "stat", 4096).data
        except OSError:
            return False
        fields = procfs._stat_fields(stat)
        return len(fields) > 19 and fields[19] == str(ticks)

    for h in hidden_processes(candidates, view.pids, still_alive):
        p = next(x for x in c.r.processes if x.pid == h.host_pid)
        c.r.findings.append(
            indicators.finding(
                "hidden-process",
                f"{c.r.target} pid {h.host_pid} (ns pid {h.ns_pid})",
                summary=f"pid {h.ns_pid} in the container (host pid {h.host_pid}, "
                f"{' '.join(p.cmdline)[:200]!r}) is missing from the container's own ps.",
                evidence=(
                    f"{c.prefix}/t1/processes.json",
                    f"{c.prefix}/t1/in-container/ps.txt",
                ),
                extra={"host_pid": h.host_pid, "ns_pid": h.ns_pid, "exe": p.exe},
            )
        )


def in_container_fallback(c: TargetCollector) -> None:
    """Without the node view, ask the container itself (its own, possibly trojaned,
    binaries): socket tables, mounts, accounts, init's environment, /dev/shm."""
    for rel, cmd, sensitive in FALLBACK_COMMANDS:
        if c.budget.expired():
            c.caveat(BUDGET_EXHAUSTED, "in-container fallback stopped early")
            return
        out = c.exec(cmd)
        c.put(
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
            c.r.sockets.extend(recs)
        elif rel == "etc/passwd":
            for name in indicators.uid0_accounts(out.stdout):
                c.r.findings.append(
                    indicators.finding(
                        "uid0-account",
                        f"{c.r.target} account {name}",
                        summary=f"account {name!r} has uid 0 in /etc/passwd "
                        "(as the container's own cat shows it)",
                        evidence=(f"{c.prefix}/t1/in-container/{rel}",),
                        extra={"account": name},
                        source="in-container",
                    )
                )
        elif rel == "proc/1/environ":
            for item in out.stdout.split(b"\0"):
                k, _, v = item.decode("utf-8", "backslashreplace").partition("=")
                why = indicators.secret_reason(k, v) if k else None
                if why:
                    c.r.findings.append(
                        indicators.finding(
                            "secret-in-environment",
                            f"{c.r.target} pid 1 ${k}",
                            summary=f"Environment variable {k} of the container's init "
                            f"looks like a credential ({why}).",
                            evidence=(f"{c.prefix}/t1/in-container/{rel}",),
                            extra={"ns_pid": 1, "variable": k, "reason": why},
                            source="in-container",
                        )
                    )
    c.caveat(
        "in-container-only",
        "processes, sockets and files were read by the container's own tools (no node "
        "view): a rootkit inside could hide from them",
    )

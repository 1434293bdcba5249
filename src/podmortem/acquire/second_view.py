"""The container's own view of itself, through exec, compared with the node's view.

The in-container ``ps`` is run by the container's own (possibly trojaned) binaries and reads
the container's ``/proc`` (possibly hidden by an LD_PRELOAD rootkit). A process the node sees
in the container's PID namespace but that this view omits, and that still exists after the
view was taken, is hidden from the container's own tools.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from podmortem.acquire.bounded import lines

# Tried in order: procps wants -e for all processes; busybox ps lists all and rejects -e.
PS_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("ps", "-eo", "pid,args"),
    ("ps", "-o", "pid,args"),
    ("ps",),
)
MISSING_BINARY_CODES = frozenset({126, 127})


@dataclass(slots=True)
class PsView:
    pids: set[int] = field(default_factory=set)
    lines: int = 0
    malformed: int = 0


def parse_ps(output: bytes) -> PsView | None:
    """Parse ps output with a header naming a PID column; None if there is no such header."""
    rows = lines(output)
    view = PsView()
    col = None
    for i, line in enumerate(rows):
        cols = line.split()
        if "PID" in cols:
            col = cols.index("PID")
            rows = rows[i + 1 :]
            break
    if col is None:
        return None
    for line in rows:
        cols = line.split()
        if not cols:
            continue
        view.lines += 1
        if len(cols) > col and cols[col].isdigit():
            view.pids.add(int(cols[col]))
        else:
            view.malformed += 1
    return view


@dataclass(frozen=True, slots=True)
class Hidden:
    host_pid: int
    ns_pid: int


def hidden_processes(
    node_view: Iterable[tuple[int, int | None, int | None]],
    ps_pids: set[int],
    still_alive: Callable[[int, int | None], bool],
) -> list[Hidden]:
    """``node_view`` holds (host pid, namespace pid, start ticks) of each node-side process.
    A candidate counts only if ``still_alive(host_pid, start_ticks)`` confirms that the very
    same process (same start time, so not a reused PID) existed after ``ps`` ran; a process
    that merely exited in between is not hidden."""
    out = []
    for host_pid, ns_pid, ticks in node_view:
        if ns_pid is None or ns_pid in ps_pids:
            continue
        if still_alive(host_pid, ticks):
            out.append(Hidden(host_pid, ns_pid))
    return out

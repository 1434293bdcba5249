"""The one small interface every container runtime backend implements.

A backend answers questions about a container through its runtime's API (identity, exec,
logs, diff, checkpoint); it never reads the node itself. Node-side reading is
:mod:`podmortem.acquire.node`, which only needs the container's host PID from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """Identity of one container (T0). ``pid`` is the host PID of its init process, 0 when
    the runtime does not tell us (remote Kubernetes) or the container is not running."""

    container_id: str
    pid: int
    image: str
    image_digest: str
    name: str
    runtime: str
    restart_count: int = 0
    running: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)
    pod: Mapping[str, Any] = field(default_factory=dict)  # uid, name, namespace, node

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = dict(self.labels)
        d["pod"] = dict(self.pod)
        return d


@dataclass(frozen=True, slots=True)
class ExecOutput:
    """What an exec produced, bounded. ``rc`` is None when it did not finish in time."""

    rc: int | None
    stdout: bytes
    stderr: bytes
    truncated: bool = False
    timed_out: bool = False
    error: str | None = None
    # Something the exec did to the target beyond running the command (e.g. an ephemeral
    # debug container added to the pod spec); becomes a caveat.
    note: str | None = None


@dataclass(frozen=True, slots=True)
class DiffEntry:
    """One line of the runtime's own diff (``docker diff``): kind is added/modified/deleted."""

    path: str
    change: str


class UnsupportedError(Exception):
    """This runtime cannot do that here (a caveat, not a failure)."""


@runtime_checkable
class Runtime(Protocol):
    """A container runtime as acquisition sees it. Implementations must never write into,
    pause or restart the container (checkpoint uses ``--leave-running``)."""

    name: str

    def inspect(self) -> TargetInfo: ...

    def inspect_document(self) -> Mapping[str, Any]:
        """The runtime's raw inspect document (kept as an artifact)."""
        ...

    def exec(self, cmd: Sequence[str], *, timeout: float, max_bytes: int) -> ExecOutput: ...

    def logs(self, *, max_bytes: int, timeout: float) -> tuple[bytes, bool]:
        """Container stdout/stderr with timestamps; returns (data, truncated)."""
        ...

    def diff(self) -> list[DiffEntry]:
        """The runtime's own view of the writable layer; raises UnsupportedError."""
        ...

    def checkpoint(self, sink: Callable[[bytes], Any], *, timeout: float) -> dict[str, Any]:
        """Stream a CRIU checkpoint (a tar) taken with leave-running into ``sink``; returns
        what was done (API call, checkpoint name). Raises UnsupportedError when CRIU or the API
        is absent."""
        ...

    def extra_documents(self, *, timeout: float) -> dict[str, Any]:
        """Further API records (Kubernetes: pod spec, owner chain, events...)."""
        ...

    def close(self) -> None: ...


CHANGE_KINDS = {0: "modified", 1: "added", 2: "deleted"}  # docker's ChangeType numbering

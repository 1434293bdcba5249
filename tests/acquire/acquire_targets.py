"""Helpers shared by the acquisition tests (imported by name: tests are not a package)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class NsTarget:
    """A namespaced process tree: ``pid`` is its init (pid 1 inside), ``outer`` is unshare."""

    pid: int
    outer: subprocess.Popen[bytes]
    workdir: Path


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(x) for x in (task / "children").read_text().split()]
    return out


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)

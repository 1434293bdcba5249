"""Reading what a target hands us without letting it choose how much we read or for how long.

Everything read from a live target is hostile: a process can have a 2 GiB ``environ``, a
``cmdline`` full of terminal escapes, an exec can hang forever or flood stdout. Every read here
has a byte limit, and every wait has a deadline.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: Default cap for one small ``/proc`` file (status, cmdline, environ, mountinfo, net tables).
PROC_FILE_LIMIT = 4 << 20


@dataclass(frozen=True, slots=True)
class Bounded:
    """Bytes read under a limit; ``truncated`` says the source had more."""

    data: bytes
    truncated: bool


def read_bounded(path: str | os.PathLike[str], limit: int = PROC_FILE_LIMIT) -> Bounded:
    """Read at most ``limit`` bytes of a file (``/proc`` files report size 0, so we read in
    chunks until EOF). Raises ``OSError`` as ``open``/``read`` do."""
    chunks: list[bytes] = []
    total = 0
    with open(path, "rb", buffering=0) as fh:
        while total < limit:
            buf = fh.read(min(65536, limit - total))
            if not buf:
                return Bounded(b"".join(chunks), False)
            chunks.append(buf)
            total += len(buf)
        more = fh.read(1)
    return Bounded(b"".join(chunks), bool(more))


def text(data: bytes) -> str:
    """Decode evidence bytes without ever failing (invalid UTF-8 kept as escapes)."""
    return data.decode("utf-8", errors="backslashreplace")


def lines(data: bytes) -> list[str]:
    """Split on newline only: ``str.splitlines`` also splits on \\v, \\f, \\x1c-\\x1e,
    \\x85 and \\u2028, which /proc leaves unescaped inside paths and command names; a
    hostile name would otherwise forge extra records. A trailing newline adds no line."""
    out = text(data).split("\n")
    if out and out[-1] == "":
        out.pop()
    return out


class Budget:
    """A wall-clock deadline shared by everything in one acquisition (monotonic clock)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        self.deadline = self.started + seconds
        self.seconds = seconds
        self._cancelled = threading.Event()

    def remaining(self) -> float:
        if self._cancelled.is_set():
            return 0.0
        return max(0.0, self.deadline - self._clock())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def elapsed(self) -> float:
        return self._clock() - self.started

    def cancel(self) -> None:
        self._cancelled.set()


def collect_stream(
    produce: Callable[[], Iterable[tuple[int, bytes]]],
    *,
    timeout: float,
    max_bytes: int,
) -> tuple[dict[int, bytes], bool, bool]:
    """Drain ``produce()`` (``(channel, chunk)`` pairs, e.g. 1=stdout 2=stderr) in a daemon
    thread, keeping at most ``max_bytes`` per channel.

    Returns ``(data by channel, truncated, timed_out)``. A producer that hangs (an exec that
    never ends) is abandoned at the deadline: its thread is a daemon and holds no lock of
    ours. A producer that floods is read to its end or the deadline, but only ``max_bytes``
    per channel are kept.
    """
    bufs: dict[int, bytearray] = {}
    flags = {"truncated": False}
    errors: list[BaseException] = []
    done = threading.Event()
    lock = threading.Lock()

    def worker() -> None:
        try:
            for channel, chunk in produce():
                if done.is_set():
                    return
                if not chunk:
                    continue
                with lock:
                    buf = bufs.setdefault(channel, bytearray())
                    room = max_bytes - len(buf)
                    if room > 0:
                        buf.extend(chunk[:room])
                    if len(chunk) > room:
                        flags["truncated"] = True
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=worker, name="podmortem-stream", daemon=True).start()
    finished = done.wait(max(0.0, timeout))
    done.set()
    if finished and errors:
        raise errors[0]
    with lock:
        return {k: bytes(v) for k, v in bufs.items()}, flags["truncated"], not finished

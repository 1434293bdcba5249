"""Any host process as a target: the node view needs nothing but a PID, and the second view
runs through ``nsenter`` into all of the process's namespaces (what ``docker exec`` does,
without a runtime). Used for sandboxes no runtime API knows about, and by the tests, which
build containers from bare namespaces (``unshare``) to exercise the collectors."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from podmortem.acquire.bounded import collect_stream, read_bounded
from podmortem.acquire.runtimes.base import DiffEntry, ExecOutput, TargetInfo, UnsupportedError
from podmortem.errors import AcquisitionError


class ProcessRuntime:
    name = "process"

    def __init__(self, pid: int, *, name: str = "", container_id: str = "") -> None:
        self.pid = pid
        self._name = name or f"pid-{pid}"
        self._container_id = container_id

    def inspect_document(self) -> Mapping[str, Any]:
        try:
            status = read_bounded(f"/proc/{self.pid}/status", 65536).data
        except OSError as exc:
            raise AcquisitionError(f"process {self.pid}: {exc.strerror}") from exc
        return {"pid": self.pid, "status": status.decode("utf-8", "backslashreplace")}

    def inspect(self) -> TargetInfo:
        self.inspect_document()
        return TargetInfo(
            container_id=self._container_id,
            pid=self.pid,
            image="",
            image_digest="",
            name=self._name,
            runtime=self.name,
        )

    def exec(self, cmd: Sequence[str], *, timeout: float, max_bytes: int) -> ExecOutput:
        argv = ["nsenter", "-t", str(self.pid), "-a", "--", *cmd]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # Its own process group: nsenter forks to enter a PID namespace, and both the
                # fork and what it runs must go if the command overstays.
                start_new_session=True,
            )
        except OSError as exc:
            return ExecOutput(None, b"", b"", error=f"nsenter: {exc.strerror}")
        out, err = proc.stdout, proc.stderr
        if out is None or err is None:  # pragma: no cover - PIPE always gives both
            raise RuntimeError("no pipes")

        def produce() -> Iterator[tuple[int, bytes]]:
            # The pipes belong to this reader (it may outlive the call if the command hangs).
            try:
                while buf := os.read(out.fileno(), 65536):
                    yield 1, buf
                yield 2, err.read(max_bytes)
            finally:
                out.close()
                err.close()

        data, truncated, timed_out = collect_stream(produce, timeout=timeout, max_bytes=max_bytes)
        error = None
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            error = "exec timed out; our command was ended with SIGKILL"
        try:
            rc = proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            rc = None

        return ExecOutput(
            None if timed_out else rc,
            data.get(1, b""),
            data.get(2, b""),
            truncated,
            timed_out,
            error,
        )

    def logs(self, *, max_bytes: int, timeout: float) -> tuple[bytes, bool]:
        raise UnsupportedError("a bare process has no log stream")

    def diff(self) -> list[DiffEntry]:
        raise UnsupportedError("a bare process has no runtime diff")

    def checkpoint(self, sink: Callable[[bytes], Any], *, timeout: float) -> dict[str, Any]:
        raise UnsupportedError("no runtime to checkpoint a bare process")

    def extra_documents(self, *, timeout: float) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        return None

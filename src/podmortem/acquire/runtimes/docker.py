"""Docker and Podman through the Docker Engine API (the ``docker`` SDK speaks to both:
Podman serves a compatible API on ``podman system service``'s socket).

The SDK is imported lazily and the client is injected, so tests can hand in any client.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from podmortem.acquire.bounded import collect_stream
from podmortem.acquire.runtimes.base import (
    CHANGE_KINDS,
    DiffEntry,
    ExecOutput,
    TargetInfo,
    UnsupportedError,
)
from podmortem.errors import AcquisitionError, CapabilityUnavailable

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
DEFAULT_PODMAN_HOST = "unix:///run/podman/podman.sock"


def connect(base_url: str, engine: str) -> Any:
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - docker is a declared dependency
        raise CapabilityUnavailable("the docker SDK is not installed (pip install docker)") from exc
    try:
        # version="auto": older daemons (Debian's 20.10, Podman 4's compat API: 1.41) refuse
        # the SDK's newer default.
        client = docker.DockerClient(base_url=base_url, version="auto", timeout=30)
    except Exception as exc:
        raise CapabilityUnavailable(f"{engine} API at {base_url} is not reachable: {exc}") from exc
    return client


class DockerRuntime:
    """One container on a Docker or Podman engine."""

    def __init__(self, client: Any, ref: str, *, engine: str = "docker") -> None:
        self.client = client
        self.api = client.api
        self.ref = ref
        self.name = engine
        self._doc: dict[str, Any] | None = None

    # ---------------------------------------------------------------- identity

    def inspect_document(self) -> Mapping[str, Any]:
        if self._doc is None:
            import docker.errors

            try:
                self._doc = dict(self.api.inspect_container(self.ref))
            except docker.errors.NotFound as exc:
                raise AcquisitionError(f"{self.name}: no container {self.ref!r}") from exc
            except docker.errors.APIError as exc:
                raise AcquisitionError(f"{self.name}: inspect {self.ref!r} failed: {exc}") from exc
        return self._doc

    def inspect(self) -> TargetInfo:
        doc = self.inspect_document()
        state = doc.get("State") or {}
        config = doc.get("Config") or {}
        image_id = str(doc.get("Image") or "")
        digest = image_id
        try:
            img = self.api.inspect_image(image_id)
            repo_digests = img.get("RepoDigests") or []
            if repo_digests:
                digest = str(repo_digests[0])
        except Exception:  # noqa: S110  (the image id is still a content digest)
            pass
        return TargetInfo(
            container_id=str(doc.get("Id", "")),
            pid=int(state.get("Pid") or 0),
            image=str(config.get("Image") or doc.get("ImageName") or ""),
            image_digest=digest,
            name=str(doc.get("Name", "")).lstrip("/"),
            runtime=self.name,
            restart_count=int(doc.get("RestartCount") or 0),
            running=bool(state.get("Running")),
            labels={str(k): str(v) for k, v in (config.get("Labels") or {}).items()},
        )

    # -------------------------------------------------------------------- exec

    def exec(self, cmd: Sequence[str], *, timeout: float, max_bytes: int) -> ExecOutput:
        import docker.errors

        try:
            exec_id = self.api.exec_create(
                self.ref, list(cmd), stdout=True, stderr=True, tty=False
            )["Id"]
        except docker.errors.APIError as exc:
            return ExecOutput(None, b"", b"", error=f"exec_create: {exc}")

        def produce() -> Iterator[tuple[int, bytes]]:
            # The raw socket, read frame by frame: the SDK's stream=True generator leaves its
            # connection open, and a hung exec must be abandonable without leaking it.
            frames_iter: Any = importlib.import_module("docker.utils.socket").frames_iter

            sock = self.api.exec_start(exec_id, socket=True)
            try:
                yield from frames_iter(sock, tty=False)
            finally:
                _close_raw(sock)

        try:
            data, truncated, timed_out = collect_stream(
                produce, timeout=timeout, max_bytes=max_bytes
            )
        except docker.errors.APIError as exc:
            return ExecOutput(None, b"", b"", error=f"exec_start: {exc}")
        rc: int | None = None
        error = None
        try:
            info = self.api.exec_inspect(exec_id)
            if not info.get("Running"):
                rc = info.get("ExitCode")
            elif timed_out:
                error = self._end_hung_exec(info)
        except docker.errors.APIError as exc:
            error = f"exec_inspect: {exc}"
        # An exec of a missing binary: Docker returns 126/127 with a message on stdout.
        return ExecOutput(rc, data.get(1, b""), data.get(2, b""), truncated, timed_out, error)

    def _end_hung_exec(self, info: Mapping[str, Any]) -> str:
        """Our own exec that did not finish in time is ended, so that acquisition leaves
        nothing of ours running in the target (the container's own processes are never
        signalled)."""
        pid = int(info.get("Pid") or 0)
        if pid <= 0:
            return "exec timed out; its pid is unknown, it may still run"
        try:
            os.kill(pid, 9)
        except OSError as exc:
            return f"exec timed out; ending our exec (host pid {pid}) failed: {exc.strerror}"
        return f"exec timed out; our exec (host pid {pid}) was ended with SIGKILL"

    # -------------------------------------------------------------------- logs

    def logs(self, *, max_bytes: int, timeout: float) -> tuple[bytes, bool]:
        def produce() -> Iterator[tuple[int, bytes]]:
            stream = self.api.logs(
                self.ref, stdout=True, stderr=True, timestamps=True, stream=True, follow=False
            )
            try:
                for chunk in stream:
                    yield 1, chunk
            finally:
                stream.close()

        data, truncated, timed_out = collect_stream(produce, timeout=timeout, max_bytes=max_bytes)
        return data.get(1, b""), truncated or timed_out

    # -------------------------------------------------------------------- diff

    def diff(self) -> list[DiffEntry]:
        import docker.errors

        try:
            changes = self.api.diff(self.ref) or []
        except docker.errors.APIError as exc:
            raise UnsupportedError(f"{self.name} diff: {exc}") from exc
        return [DiffEntry(str(c["Path"]), CHANGE_KINDS.get(int(c["Kind"]), "?")) for c in changes]

    # -------------------------------------------------------------- checkpoint

    def checkpoint(self, sink: Callable[[bytes], Any], *, timeout: float) -> dict[str, Any]:
        if self.name == "podman":
            return self._podman_checkpoint(sink, timeout)
        return self._docker_checkpoint(sink, timeout)

    def _docker_checkpoint(self, sink: Callable[[bytes], Any], timeout: float) -> dict[str, Any]:
        # POST /containers/{id}/checkpoints with Exit=false is `docker checkpoint create
        # --leave-running`; CheckpointDir points at a folder of ours so that the images are
        # copied out and removed without touching the engine's data root.
        name = f"podmortem-{uuid.uuid4().hex[:12]}"
        workdir = tempfile.mkdtemp(prefix="podmortem-ckpt-")
        try:
            res = self.api._post_json(
                self.api._url("/containers/{0}/checkpoints", self.ref),
                data={"CheckpointID": name, "Exit": False, "CheckpointDir": workdir},
                timeout=timeout,
            )
            if res.status_code >= 400:
                raise UnsupportedError(
                    f"docker checkpoint: HTTP {res.status_code}: {res.text[:300]}"
                )
            src = os.path.join(workdir, name)
            buf = _TarSink(sink)
            with tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                tar.add(src, arcname=name)
            return {
                "api": "POST /containers/{id}/checkpoints",
                "checkpoint": name,
                "leave_running": True,
            }
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _podman_checkpoint(self, sink: Callable[[bytes], Any], timeout: float) -> dict[str, Any]:
        # The compat API has no checkpoint; libpod's own endpoint exports the archive in the
        # response body (`podman container checkpoint --leave-running --export`).
        url = f"{self.api.base_url}/v4.0.0/libpod/containers/{self.ref}/checkpoint"
        res = self.api._post(
            url,
            params={"export": "true", "leaveRunning": "true", "keep": "false"},
            stream=True,
            timeout=timeout,
        )
        if res.status_code >= 400:
            raise UnsupportedError(f"podman checkpoint: HTTP {res.status_code}: {res.text[:300]}")
        for chunk in res.iter_content(1 << 20):
            sink(chunk)
        return {
            "api": "POST /libpod/containers/{id}/checkpoint?export&leaveRunning",
            "leave_running": True,
        }

    def extra_documents(self, *, timeout: float) -> dict[str, Any]:
        doc = self.inspect_document()
        try:
            return {"image": self.api.inspect_image(str(doc.get("Image") or ""))}
        except Exception as exc:
            return {"image": {"error": str(exc)[:500]}}

    def close(self) -> None:
        self.client.close()


def _close_raw(sock: Any) -> None:
    """Close an attached exec socket and the HTTP response that owns it."""
    for obj in (sock, getattr(sock, "_sock", None), getattr(sock, "_response", None)):
        if obj is not None:
            with contextlib.suppress(Exception):
                obj.close()


class _TarSink(io.RawIOBase):
    def __init__(self, sink: Callable[[bytes], Any]) -> None:
        self._sink = sink

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._sink(data)
        return len(data)

"""containerd (or any CRI runtime) through the CRI gRPC API, with the client compiled from
the runtime's ``api.proto`` (:mod:`podmortem.acquire.cri_proto`).

``ContainerStatus(verbose=True)`` carries the runtime's ``info`` JSON, which holds the host
PID of the container's init process and its sandbox id; ``ExecSync`` runs the in-container
second view; logs are the CRI log file on the node (``log_path`` below the sandbox's log
directory). CRI has no diff; a checkpoint uses ``CheckpointContainer`` where the runtime
implements it (containerd 1.6 does not).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from podmortem.acquire.bounded import read_bounded
from podmortem.acquire.cri_proto import CriClient, CriError
from podmortem.acquire.runtimes.base import DiffEntry, ExecOutput, TargetInfo, UnsupportedError
from podmortem.errors import AcquisitionError

DEFAULT_CRI_ENDPOINT = "unix:///run/containerd/containerd.sock"
CRI_NAMESPACE = "k8s.io"  # containerd namespace of everything the CRI plugin creates


class _Sink(io.RawIOBase):
    def __init__(self, sink: Callable[[bytes], Any]) -> None:
        self._sink = sink

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._sink(data)
        return len(data)


class CriRuntime:
    name = "cri"

    def __init__(self, client: CriClient, container_id: str) -> None:
        self.client = client
        self.ref = container_id
        self._status: Any = None
        self._info: dict[str, Any] = {}

    def _load(self) -> Any:
        if self._status is None:
            try:
                ids = [c.id for c in self.client.list_containers() if c.id.startswith(self.ref)]
            except CriError as exc:
                raise AcquisitionError(f"cri: ListContainers failed: {exc.details}") from exc
            if len(ids) != 1:
                what = "no container" if not ids else f"{len(ids)} containers"
                raise AcquisitionError(f"cri: {what} match {self.ref!r}")
            self.ref = ids[0]
            self._status = self.client.container_status(self.ref, verbose=True)
            try:
                self._info = json.loads(self._status.info.get("info") or "{}")
            except ValueError:
                self._info = {}
        return self._status

    def inspect_document(self) -> Mapping[str, Any]:
        s = self._load()
        return {
            "id": s.id,
            "name": s.name,
            "state": s.state,
            "image": s.image,
            "image_ref": s.image_ref,
            "created_at_ns": s.created_at_ns,
            "started_at_ns": s.started_at_ns,
            "finished_at_ns": s.finished_at_ns,
            "exit_code": s.exit_code,
            "reason": s.reason,
            "log_path": s.log_path,
            "labels": dict(s.labels),
            "annotations": dict(s.annotations),
            "info": self._info,
        }

    def inspect(self) -> TargetInfo:
        s = self._load()
        labels = dict(s.labels)
        ann = dict(s.annotations)
        pod = {
            "name": labels.get("io.kubernetes.pod.name", ""),
            "namespace": labels.get("io.kubernetes.pod.namespace", ""),
            "uid": labels.get("io.kubernetes.pod.uid", ""),
            "sandbox_id": str(self._info.get("sandboxID", "")),
            "container": labels.get("io.kubernetes.container.name", s.name),
        }
        restart = ann.get("io.kubernetes.container.restartCount", "0")
        return TargetInfo(
            container_id=s.id,
            pid=s.pid or 0,
            image=s.image,
            image_digest=s.image_ref,
            name=s.name,
            runtime="cri",
            restart_count=int(restart) if restart.isdigit() else 0,
            running=s.state == "CONTAINER_RUNNING",
            labels=labels,
            pod=pod,
        )

    def exec(self, cmd: Sequence[str], *, timeout: float, max_bytes: int) -> ExecOutput:
        # ExecSync's timeout is whole seconds, enforced by the runtime (it kills the exec).
        try:
            r = self.client.exec_sync(self.ref, list(cmd), timeout=max(1, int(timeout)))
        except CriError as exc:
            timed = exc.code == "DEADLINE_EXCEEDED" or "timeout" in exc.details.lower()
            return ExecOutput(
                None, b"", b"", timed_out=timed, error=f"{exc.code}: {exc.details[:300]}"
            )
        truncated = len(r.stdout) > max_bytes or len(r.stderr) > max_bytes
        return ExecOutput(r.exit_code, r.stdout[:max_bytes], r.stderr[:max_bytes], truncated)

    def logs(self, *, max_bytes: int, timeout: float) -> tuple[bytes, bool]:
        s = self._load()
        if not s.log_path:
            raise UnsupportedError("cri: the container has no log path")
        b = read_bounded(Path(s.log_path), max_bytes)
        return b.data, b.truncated

    def diff(self) -> list[DiffEntry]:
        raise UnsupportedError("CRI has no diff call; the upperdir walk is the only view")

    def checkpoint(self, sink: Callable[[bytes], Any], *, timeout: float) -> dict[str, Any]:
        """CRI ``CheckpointContainer`` where the runtime implements it; containerd 1.6 does
        not, so then containerd's own task checkpoint (``ctr tasks checkpoint`` without
        ``--exit``: the task keeps running) into a folder of ours, streamed out as a tar."""
        pb2 = self.client.pb2
        with tempfile.TemporaryDirectory(prefix="podmortem-ckpt-") as d:
            location = os.path.join(d, "checkpoint.tar")
            try:
                self.client.call(
                    "CheckpointContainer",
                    pb2.CheckpointContainerRequest(
                        container_id=self.ref, location=location, timeout=max(1, int(timeout))
                    ),
                    timeout=timeout + 5,
                )
            except CriError as exc:
                if exc.code != "UNIMPLEMENTED":
                    raise UnsupportedError(
                        f"CRI CheckpointContainer: {exc.code}: {exc.details[:300]}"
                    ) from exc
                return self._ctr_checkpoint(sink, Path(d), timeout)
            with open(location, "rb") as fh:
                while buf := fh.read(1 << 20):
                    sink(buf)
        return {"api": "CRI CheckpointContainer", "leave_running": True}

    def _ctr_checkpoint(
        self, sink: Callable[[bytes], Any], work: Path, timeout: float
    ) -> dict[str, Any]:
        ctr = shutil.which("ctr")
        address = self.client.endpoint.removeprefix("unix://")
        if ctr is None or not address.startswith("/"):
            raise UnsupportedError(
                "CRI CheckpointContainer is not implemented by this runtime and containerd's "
                "ctr is not available here"
            )
        images = work / "images"
        argv = [
            ctr,
            "--address",
            address,
            "-n",
            CRI_NAMESPACE,
            "tasks",
            "checkpoint",
            "--image-path",
            str(images),
            "--work-path",
            str(work / "work"),
            self.ref,
        ]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise UnsupportedError(
                f"ctr tasks checkpoint did not finish in {timeout:.0f} s"
            ) from exc
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()[:300]
            raise UnsupportedError(f"ctr tasks checkpoint failed (CRIU missing?): {err}")
        with tarfile.open(fileobj=_Sink(sink), mode="w|", format=tarfile.PAX_FORMAT) as tar:
            tar.add(images, arcname="checkpoint")
        return {
            "api": "containerd tasks checkpoint (ctr, no --exit)",
            "leave_running": True,
            "command": " ".join(argv[1:]),
        }

    def extra_documents(self, *, timeout: float) -> dict[str, Any]:
        self._load()
        sandbox = str(self._info.get("sandboxID", ""))
        if not sandbox:
            return {}
        pb2 = self.client.pb2
        try:
            resp = self.client.call(
                "PodSandboxStatus",
                pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox, verbose=True),
                timeout=timeout,
            )
        except CriError as exc:
            return {"pod_sandbox": {"error": exc.message}}
        json_format: Any = importlib.import_module("google.protobuf.json_format")
        return {
            "pod_sandbox": json_format.MessageToDict(resp.status),
            "pod_sandbox_info": dict(resp.info),
        }

    def close(self) -> None:
        self.client.close()

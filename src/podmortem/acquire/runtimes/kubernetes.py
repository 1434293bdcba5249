"""A pod's container through the Kubernetes API, with the official Python client.

What the API gives: the pod (spec and status: container id, image digest, node, restart
count), its owner chain, service account, events, logs (and the previous container's logs
after a restart), and exec over WebSocket (``kubernetes.stream.stream``). What it cannot give
is the node's ``/proc``: when podmortem runs on the pod's node (a node agent, or a responder
on the node), the container id from the pod status is looked up in the local CRI runtime and
its host PID enables the node view. Elsewhere, with a node-agent image configured, a Job
pinned to the pod's node brings the node view back (:mod:`podmortem.acquire.node_agent`);
without one the in-container view is all there is.

Tested here against a test double of the API server (no kube-apiserver can run on the
development machines); written against the official client so that it runs unchanged
against a real cluster.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from podmortem.acquire.node_agent import AgentConfig, NodeAgent, node_agent_job
from podmortem.acquire.runtimes.base import DiffEntry, ExecOutput, TargetInfo, UnsupportedError
from podmortem.acquire.target import TargetRef
from podmortem.errors import AcquisitionError, CapabilityUnavailable

__all__ = ["KubernetesRuntime", "api_client", "node_agent_job"]

# Owner kinds we can follow, and the client method that reads each.
_OWNER_READERS = {
    "ReplicaSet": ("AppsV1Api", "read_namespaced_replica_set"),
    "Deployment": ("AppsV1Api", "read_namespaced_deployment"),
    "StatefulSet": ("AppsV1Api", "read_namespaced_stateful_set"),
    "DaemonSet": ("AppsV1Api", "read_namespaced_daemon_set"),
    "Job": ("BatchV1Api", "read_namespaced_job"),
    "CronJob": ("BatchV1Api", "read_namespaced_cron_job"),
}
MAX_OWNER_DEPTH = 8


def _k8s() -> Any:
    try:
        return importlib.import_module("kubernetes")
    except ImportError as exc:
        raise CapabilityUnavailable(
            "the kubernetes client is not installed (pip install kubernetes)"
        ) from exc


def api_client(context: str | None = None, kubeconfig: str | None = None) -> Any:
    """An ApiClient from in-cluster config (a node agent) or the kubeconfig ($KUBECONFIG or
    ~/.kube/config unless given)."""
    k8s = _k8s()
    cfg = k8s.client.Configuration()
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and context is None and kubeconfig is None:
            k8s.config.load_incluster_config(client_configuration=cfg)
        else:
            k8s.config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=cfg
            )
    except Exception as exc:
        raise CapabilityUnavailable(f"no usable Kubernetes configuration: {exc}") from exc
    return k8s.client.ApiClient(cfg)


class KubernetesRuntime:
    name = "kubernetes"

    def __init__(
        self,
        client: Any,
        ref: TargetRef,
        *,
        node_runtime_for: Callable[[str], Any] | None = None,
        debug_image: str | None = None,
        agent: AgentConfig | None = None,
    ) -> None:
        """``client`` is a ``kubernetes.client.ApiClient``; ``node_runtime_for(container_id)``
        returns a local CRI backend for that container, or None when it is not on this node;
        ``agent`` configures the node-agent Job used when it is not."""
        k8s = _k8s()
        self._k8s = k8s
        self.k8s = k8s
        self._agent_config = agent
        self.client = client
        self.core = k8s.client.CoreV1Api(client)
        self.ref = ref
        self._node_runtime_for = node_runtime_for
        self._pod: Any = None
        self._container = ref.container
        self.node_runtime: Any = None
        self._debug_image = debug_image
        self._debug: str | None = None  # our ephemeral container, once started

    @classmethod
    def connect(
        cls,
        ref: TargetRef,
        *,
        context: str | None = None,
        kubeconfig: str | None = None,
        cri_endpoint: str | None = None,
        debug_image: str | None = None,
        agent: AgentConfig | None = None,
    ) -> KubernetesRuntime:
        def local(container_id: str) -> Any:
            if not cri_endpoint:
                return None
            from podmortem.acquire.cri_proto import CriClient
            from podmortem.acquire.runtimes.cri import CriRuntime

            try:
                rt = CriRuntime(CriClient(cri_endpoint, timeout=3.0), container_id)
                rt.inspect()
            except Exception:  # not on this node, or no CRI here: the API view stands alone
                return None
            return rt

        return cls(
            api_client(context, kubeconfig),
            ref,
            node_runtime_for=local,
            debug_image=debug_image,
            agent=agent,
        )

    # ------------------------------------------------------------------ identity

    def api(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the official client; its errors become one-line AcquisitionErrors."""
        return self._api(call, *args, **kwargs)

    def pod_object(self) -> Any:
        return self._load()

    def node_agent(self) -> NodeAgent | None:
        """The node-agent Job for this target, when one is configured and the node view is
        not to be had here (after :meth:`inspect`)."""
        if self._agent_config is None or self.node_runtime is not None or self._pod is None:
            return None
        st = self._status()
        if not (st and st.state and st.state.running and st.container_id):
            return None  # nothing running to look at: the API and in-container views stand
        return NodeAgent(self, self._agent_config)

    def _api(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except self._k8s.client.exceptions.ApiException as exc:
            raise AcquisitionError(
                f"kubernetes: {getattr(call, '__name__', 'call')} failed: {exc.status} {exc.reason}"
            ) from exc
        except Exception as exc:  # urllib3 connection errors and the like
            raise AcquisitionError(f"kubernetes: API unreachable: {exc}") from exc

    def _load(self) -> Any:
        if self._pod is None:
            self._pod = self._api(self.core.read_namespaced_pod, self.ref.ref, self.ref.namespace)
            names = [c.name for c in self._pod.spec.containers or []]
            if not self._container:
                if not names:
                    raise AcquisitionError(f"kubernetes: pod {self.ref.ref} has no containers")
                self._container = names[0]
            elif self._container not in names:
                raise AcquisitionError(
                    f"kubernetes: pod {self.ref.ref} has no container {self._container!r}"
                )
        return self._pod

    def _status(self) -> Any:
        pod = self._load()
        for s in pod.status.container_statuses or []:
            if s.name == self._container:
                return s
        return None

    def inspect_document(self) -> Mapping[str, Any]:
        doc: Mapping[str, Any] = self.client.sanitize_for_serialization(self._load())
        return doc

    def inspect(self) -> TargetInfo:
        pod = self._load()
        st = self._status()
        raw_id = str(st.container_id or "") if st else ""
        runtime_kind, _, cid = raw_id.partition("://")
        pid = 0
        if cid and self._node_runtime_for is not None:
            self.node_runtime = self._node_runtime_for(cid)
            if self.node_runtime is not None:
                pid = self.node_runtime.inspect().pid
        running = bool(st and st.state and st.state.running)
        return TargetInfo(
            container_id=cid,
            pid=pid,
            image=str(st.image if st else ""),
            image_digest=str(st.image_id if st else ""),
            name=f"{pod.metadata.name}/{self._container}",
            runtime=f"kubernetes/{runtime_kind or '?'}",
            restart_count=int(st.restart_count or 0) if st else 0,
            running=running,
            labels=dict(pod.metadata.labels or {}),
            pod={
                "name": pod.metadata.name,
                "namespace": pod.metadata.namespace,
                "uid": pod.metadata.uid,
                "node": pod.spec.node_name,
                "container": self._container,
                "service_account": pod.spec.service_account_name,
            },
        )

    # ---------------------------------------------------------------------- exec

    def exec(self, cmd: Sequence[str], *, timeout: float, max_bytes: int) -> ExecOutput:
        """Exec in the target container; if its image lacks the command (no shell, no ps) and
        a debug image was given, in an ephemeral debug container that targets it (it shares
        the target's PID namespace, so its ps sees the target's processes)."""
        self._load()
        deadline = time.monotonic() + timeout
        if self._debug is None:
            out = self._ws_exec(self._container, cmd, deadline, max_bytes)
            if not (self._debug_image and _missing_binary(out)):
                return out
            try:
                self._debug = self._start_debug_container(deadline)
            except AcquisitionError as exc:
                return ExecOutput(
                    out.rc,
                    out.stdout,
                    out.stderr,
                    out.truncated,
                    out.timed_out,
                    f"{out.error or ''}; debug container: {exc.message}"[:500],
                )
        out = self._ws_exec(self._debug, cmd, deadline, max_bytes)
        note = (
            f"ran in ephemeral debug container {self._debug!r} (image {self._debug_image}) "
            f"targeting {self._container!r}: it stays in the pod spec for the pod's lifetime "
            "and appears in the API audit log"
        )
        return ExecOutput(
            out.rc, out.stdout, out.stderr, out.truncated, out.timed_out, out.error, note
        )

    def _start_debug_container(self, deadline: float) -> str:
        name = f"podmortem-debug-{uuid.uuid4().hex[:6]}"
        body = {
            "spec": {
                "ephemeralContainers": [
                    {
                        "name": name,
                        "image": self._debug_image,
                        "targetContainerName": self._container,
                        # Short-lived: an ephemeral container cannot be removed, only end.
                        "command": ["sleep", "600"],
                        "stdin": False,
                        "tty": False,
                    }
                ]
            }
        }
        self._api(
            self.core.patch_namespaced_pod_ephemeralcontainers,
            self.ref.ref,
            self.ref.namespace,
            body,
        )
        while time.monotonic() < deadline:
            pod = self._api(self.core.read_namespaced_pod, self.ref.ref, self.ref.namespace)
            for st in pod.status.ephemeral_container_statuses or []:
                if st.name == name and st.state and st.state.running:
                    return name
            time.sleep(0.2)
        raise AcquisitionError(f"ephemeral container {name} did not start in time")

    def _ws_exec(
        self, container: str, cmd: Sequence[str], deadline: float, max_bytes: int
    ) -> ExecOutput:
        return self.exec_in(
            self.ref.namespace, self.ref.ref, container, cmd, deadline=deadline, max_bytes=max_bytes
        )

    def exec_in(
        self,
        namespace: str,
        pod: str,
        container: str,
        cmd: Sequence[str],
        *,
        deadline: float,
        max_bytes: int,
        sink: Callable[[bytes], Any] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ExecOutput:
        """Exec over the WebSocket stream (binary). stdout goes to ``sink`` when given (no
        limit here: the sink bounds it), else is kept up to ``max_bytes``; stderr is kept up
        to ``max_bytes``. Ends at ``deadline`` or when ``should_stop()`` says so."""
        ws, failure = self._connect_exec(namespace, pod, container, cmd, deadline)
        if ws is None:
            return ExecOutput(None, b"", b"", timed_out=failure is None, error=failure)
        out, err = bytearray(), bytearray()
        truncated = False
        status: Any = b""
        stopped = False

        def drain() -> None:
            nonlocal truncated
            # read_channel() may itself read further frames (of any channel) when the one
            # asked for is empty: hence one more drain after the stream has closed.
            data = _as_bytes(ws.read_channel(1))
            if sink is not None:
                if data:
                    sink(data)
            else:
                room = max_bytes - len(out)
                out.extend(data[: max(0, room)])
                truncated = truncated or len(data) > room
            data = _as_bytes(ws.read_channel(2))
            room = max_bytes - len(err)
            err.extend(data[: max(0, room)])
            truncated = truncated or len(data) > room

        try:
            while ws.is_open() and time.monotonic() < deadline:
                if should_stop():
                    stopped = True
                    break
                ws.update(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
                drain()
            timed_out = ws.is_open()
            if not stopped:
                drain()
            status = ws.read_channel(3)  # the error channel: a metav1.Status, once at the end
        except Exception as exc:
            return ExecOutput(None, bytes(out), bytes(err), truncated, error=f"exec: {exc}"[:300])
        finally:
            ws.close()
            # websocket-client's close() returns early once the peer has closed, leaving its
            # socket open; shutdown() closes it whatever the state.
            with contextlib.suppress(Exception):
                ws.sock.shutdown()
        if stopped:
            return ExecOutput(None, bytes(out), bytes(err), truncated, False, "exec stopped")
        if timed_out:
            return ExecOutput(None, bytes(out), bytes(err), truncated, True, "exec timed out")
        rc, error = _exec_status(status)
        return ExecOutput(rc, bytes(out), bytes(err), truncated, False, error)

    def _connect_exec(
        self, namespace: str, pod: str, container: str, cmd: Sequence[str], deadline: float
    ) -> tuple[Any, str | None]:
        """Open the exec WebSocket, bounded by ``deadline``: the client's handshake has no
        timeout of its own, and an API server (or the kubelet behind it) may never answer.
        Returns (ws, None), (None, error) or (None, None) when the deadline passed; a
        connection that completes after we gave up is closed by its thread."""
        stream = importlib.import_module("kubernetes.stream")
        box: dict[str, Any] = {}
        lock = threading.Lock()

        def connect() -> None:
            # A client of its own: stream() swaps the ApiClient's request method for the
            # WebSocket one while it connects, so any other call on a shared client in that
            # window (a Job deletion after we gave up waiting) would go out as a WebSocket.
            api = self._k8s.client.ApiClient(self.client.configuration)
            try:
                ws = stream.stream(
                    self._k8s.client.CoreV1Api(api).connect_get_namespaced_pod_exec,
                    pod,
                    namespace,
                    container=container,
                    command=list(cmd),
                    stderr=True,
                    stdin=False,
                    stdout=True,
                    tty=False,
                    _preload_content=False,
                    binary=True,
                )
                # The client keeps a copy of all stdout and stderr for read_all() unless told
                # otherwise, and stream() offers no way to tell it: a node agent's transfer
                # may be gigabytes, so that copy is replaced by a sink that keeps nothing.
                if hasattr(ws, "_all"):
                    ws._all = _Discard()
            except Exception as exc:
                box["error"] = f"exec: {str(exc)[:300]}"
                return
            finally:
                with contextlib.suppress(Exception):
                    api.rest_client.pool_manager.clear()
            with lock:
                if box.get("abandoned"):
                    with contextlib.suppress(Exception):
                        ws.close()
                else:
                    box["ws"] = ws

        t = threading.Thread(target=connect, name="podmortem-k8s-exec", daemon=True)
        t.start()
        t.join(max(0.0, deadline - time.monotonic()))
        with lock:
            if "ws" in box or "error" in box:
                return box.get("ws"), box.get("error")
            box["abandoned"] = True
        return None, None

    # ---------------------------------------------------------------- logs, diff

    def logs(self, *, max_bytes: int, timeout: float) -> tuple[bytes, bool]:
        self._load()
        data = self._read_log(limit_bytes=max_bytes, _request_timeout=timeout)
        return data[:max_bytes], len(data) >= max_bytes

    def _read_log(self, **kwargs: Any) -> bytes:
        """Raw log bytes (not decoded by the client: logs are hostile and need not be UTF-8),
        with the connection handed back to the pool."""
        resp = self._api(
            self.core.read_namespaced_pod_log,
            self.ref.ref,
            self.ref.namespace,
            container=self._container,
            timestamps=True,
            _preload_content=False,
            **kwargs,
        )
        try:
            return bytes(resp.data)
        finally:
            resp.release_conn()

    def diff(self) -> list[DiffEntry]:
        raise UnsupportedError("the Kubernetes API has no diff; the upperdir walk needs the node")

    def checkpoint(self, sink: Callable[[bytes], Any], *, timeout: float) -> dict[str, Any]:
        if self.node_runtime is not None:
            result: dict[str, Any] = self.node_runtime.checkpoint(sink, timeout=timeout)
            return result
        raise UnsupportedError(
            "the kubelet checkpoint API leaves the archive on the node and is often refused "
            "through the API server proxy; run podmortem on the node (node-agent Job)"
        )

    # ------------------------------------------------------------- API records

    def extra_documents(self, *, timeout: float) -> dict[str, Any]:
        pod = self._load()
        ser = self.client.sanitize_for_serialization
        docs: dict[str, Any] = {"pod": ser(pod)}
        docs["owner_chain"] = self.owner_chain()
        sa = pod.spec.service_account_name or "default"
        try:
            docs["service_account"] = ser(
                self._api(self.core.read_namespaced_service_account, sa, self.ref.namespace)
            )
        except AcquisitionError as exc:
            docs["service_account"] = {"name": sa, "error": exc.message}
        try:
            events = self._api(
                self.core.list_namespaced_event,
                self.ref.namespace,
                field_selector=f"involvedObject.uid={pod.metadata.uid}",
            )
            docs["events"] = ser(events.items)
        except AcquisitionError as exc:
            docs["events"] = {"error": exc.message}
        st = self._status()
        if st is not None and (st.restart_count or 0) > 0:
            try:
                prev = self._read_log(previous=True, limit_bytes=64 << 20)
                docs["previous_logs"] = {"text": prev.decode("utf-8", "backslashreplace")}
            except AcquisitionError as exc:
                docs["previous_logs"] = {"error": exc.message}
        return docs

    def owner_chain(self) -> list[dict[str, Any]]:
        """Pod -> ReplicaSet -> Deployment (or StatefulSet, DaemonSet, Job -> CronJob)."""
        chain: list[dict[str, Any]] = []
        obj = self._load()
        for _ in range(MAX_OWNER_DEPTH):
            refs = obj.metadata.owner_references or []
            ctrl = next((r for r in refs if r.controller), refs[0] if refs else None)
            if ctrl is None:
                break
            entry: dict[str, Any] = {"kind": ctrl.kind, "name": ctrl.name, "uid": ctrl.uid}
            chain.append(entry)
            reader = _OWNER_READERS.get(ctrl.kind)
            if reader is None:
                entry["error"] = "kind not followed"
                break
            api = getattr(self._k8s.client, reader[0])(self.client)
            try:
                obj = self._api(getattr(api, reader[1]), ctrl.name, self.ref.namespace)
            except AcquisitionError as exc:
                entry["error"] = exc.message
                break
        return chain

    def close(self) -> None:
        if self.node_runtime is not None:
            self.node_runtime.close()
        self.client.close()  # its thread pool; the HTTP connections live in the rest client
        with contextlib.suppress(Exception):
            self.client.rest_client.pool_manager.clear()


def _exec_status(raw: Any) -> tuple[int | None, str | None]:
    """Exit code from the exec error channel: ``{"status": "Success"}``, or a Failure whose
    ``details.causes`` carry ``ExitCode``; any other Failure (the command could not start)
    keeps its message."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not raw:
        return None, "no exit status from the exec stream"
    try:
        doc = json.loads(raw)
    except ValueError:
        return None, f"unreadable exec status: {raw[:200]}"
    if doc.get("status") == "Success":
        return 0, None
    for cause in (doc.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode" and str(cause.get("message", "")).isdigit():
            return int(cause["message"]), None
    return None, str(doc.get("message") or doc)[:500]


class _Discard:
    def write(self, data: Any) -> int:
        return len(data)

    def getvalue(self) -> bytes:
        return b""


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, str):
        return data.encode()
    return bytes(data or b"")


def _missing_binary(out: ExecOutput) -> bool:
    text = ((out.error or "") + out.stdout[:500].decode("utf-8", "replace")).lower()
    if out.rc == 0 or out.timed_out:
        return False
    return out.rc in (126, 127) or any(s in text for s in MISSING_BINARY_TEXT)


MISSING_BINARY_TEXT = ("executable file not found", "no such file or directory", "not found")

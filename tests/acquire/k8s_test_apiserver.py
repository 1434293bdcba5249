"""A test double of the Kubernetes API server, for the acquisition tests: NOT an API server.

No kube-apiserver, kubelet, k3s, kind or envtest can be installed on the development and CI
machines (no registry ships them), so the Kubernetes backend is tested against this: a small
HTTP server that serves the few read endpoints acquisition uses, built live from the real
containerd's CRI (pods from pod sandboxes and their containers, logs from the CRI log files),
and that hands ``pods/{name}/exec`` to containerd's real streaming server the way the API
server and kubelet do: ``Exec`` over CRI returns a one-time streaming URL, and the client's
upgrade request (WebSocket or SPDY) is spliced byte for byte to it. The real ``kubectl`` and
the official Python client therefore run real exec protocols into real containers.

What it does not do: authentication, authorisation, admission, watches, writes, or any
endpoint not listed in ``_route``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RESOURCES = [
    {
        "name": "pods",
        "singularName": "pod",
        "namespaced": True,
        "kind": "Pod",
        "verbs": ["get", "list"],
        "shortNames": ["po"],
    },
    {
        "name": "pods/exec",
        "singularName": "",
        "namespaced": True,
        "kind": "PodExecOptions",
        "verbs": ["create", "get"],
    },
    {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
    {
        "name": "events",
        "singularName": "event",
        "namespaced": True,
        "kind": "Event",
        "verbs": ["list"],
    },
    {
        "name": "serviceaccounts",
        "singularName": "serviceaccount",
        "namespaced": True,
        "kind": "ServiceAccount",
        "verbs": ["get"],
    },
]


def _ts(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiServerDouble:
    """``with ApiServerDouble(cri) as api: api.kubeconfig`` (a file for kubectl and the client)."""

    def __init__(
        self,
        cri: Any,
        workdir: Path,
        node_name: str | None = None,
        image_ref: Callable[[str], str] = lambda image: image,
    ) -> None:
        """``image_ref`` maps an image name in a pod spec to containerd's reference."""
        self.cri = cri
        self.image_ref = image_ref
        self.node = node_name or socket.gethostname()
        self.workdir = workdir
        self.objects: dict[str, dict[str, Any]] = {}  # extra objects by API path (owners...)
        self.owners: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (ns, pod) -> refs
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        # (ns, pod) -> [(name, CRI container id, spec)]: ephemeral containers we started
        self.ephemeral: dict[tuple[str, str], list[tuple[str, str, dict[str, Any]]]] = {}
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.kubeconfig = workdir / "kubeconfig"
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "test", "cluster": {"server": self.url}}],
                    "users": [{"name": "test", "user": {}}],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                    "current-context": "test",
                }
            )
        )
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ApiServerDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------- CRI -> objects

    def _sandbox(self, namespace: str, name: str) -> Any:
        pb2 = self.cri.pb2
        resp = self.cri.call("ListPodSandbox", pb2.ListPodSandboxRequest())
        for sb in resp.items:
            if (sb.metadata.namespace, sb.metadata.name) == (namespace, name) and sb.state == 0:
                return sb
        return None

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        sb = self._sandbox(namespace, name)
        if sb is None:
            return None
        containers, statuses = [], []
        for c in self.cri.list_containers(pod_sandbox_id=sb.id):
            st = self.cri.container_status(c.id, verbose=False)
            running = st.state == "CONTAINER_RUNNING"
            containers.append({"name": c.name, "image": c.image})
            statuses.append(
                {
                    "name": c.name,
                    "containerID": f"containerd://{c.id}",
                    "image": c.image,
                    "imageID": c.image_ref,
                    "restartCount": c.attempt,
                    "ready": running,
                    "started": running,
                    "state": {"running": {"startedAt": _ts(st.started_at_ns)}}
                    if running
                    else {"terminated": {"exitCode": st.exit_code, "reason": st.reason or "Error"}},
                }
            )
        eph_specs, eph_statuses = [], []
        for ename, cid, spec in self.ephemeral.get((namespace, name), []):
            st = self.cri.container_status(cid, verbose=False)
            eph_specs.append(spec)
            eph_statuses.append(
                {
                    "name": ename,
                    "containerID": f"containerd://{cid}",
                    "image": st.image,
                    "imageID": st.image_ref,
                    "restartCount": 0,
                    "ready": False,
                    "state": {"running": {"startedAt": _ts(st.started_at_ns)}}
                    if st.state == "CONTAINER_RUNNING"
                    else {"waiting": {"reason": "Starting"}},
                }
            )
        meta: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "uid": sb.metadata.uid,
            "creationTimestamp": _ts(sb.created_at),
            "labels": dict(sb.labels),
        }
        if (namespace, name) in self.owners:
            meta["ownerReferences"] = self.owners[(namespace, name)]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {
                "nodeName": self.node,
                "serviceAccountName": "default",
                "containers": containers,
                "ephemeralContainers": eph_specs,
            },
            "status": {
                "phase": "Running",
                "containerStatuses": statuses,
                "ephemeralContainerStatuses": eph_statuses,
            },
        }

    def log(self, namespace: str, name: str, query: dict[str, str]) -> tuple[int, bytes]:
        pod = self.pod(namespace, name)
        if pod is None:
            return 404, b""
        cname = query.get("container") or pod["spec"]["containers"][0]["name"]
        status = next(s for s in pod["status"]["containerStatuses"] if s["name"] == cname)
        if query.get("previous") == "true" and status["restartCount"] == 0:
            return 400, b"previous terminated container not found"
        st = self.cri.container_status(status["containerID"].split("://", 1)[1], verbose=False)
        out = bytearray()
        with contextlib.suppress(OSError):
            for line in Path(st.log_path).read_bytes().splitlines():
                # CRI log format: <RFC3339Nano> <stream> <P|F> <message>
                parts = line.split(b" ", 3)
                if len(parts) < 4:
                    continue
                prefix = parts[0] + b" " if query.get("timestamps") == "true" else b""
                out += prefix + parts[3] + (b"\n" if parts[2] == b"F" else b"")
        limit = int(query.get("limitBytes") or 0)
        return 200, bytes(out[:limit] if limit else out)

    def exec_url(self, namespace: str, name: str, query: dict[str, list[str]]) -> str | None:
        pod = self.pod(namespace, name)
        if pod is None:
            return None
        cname = (query.get("container") or [pod["spec"]["containers"][0]["name"]])[0]
        every = pod["status"]["containerStatuses"] + pod["status"]["ephemeralContainerStatuses"]
        status = next(s for s in every if s["name"] == cname)
        pb2 = self.cri.pb2

        def flag(k: str) -> bool:
            return (query.get(k) or ["false"])[0].lower() in ("true", "1")

        resp = self.cri.call(
            "Exec",
            pb2.ExecRequest(
                container_id=status["containerID"].split("://", 1)[1],
                cmd=query.get("command") or [],
                tty=flag("tty"),
                stdin=flag("stdin"),
                stdout=flag("stdout"),
                stderr=flag("stderr"),
            ),
        )
        return str(resp.url)

    def add_ephemeral(self, namespace: str, name: str, body: dict[str, Any]) -> bool:
        """PATCH pods/{name}/ephemeralcontainers: start each new one in the pod sandbox,
        sharing the PID namespace of its target container (CRI NamespaceMode TARGET), as the
        kubelet does for ``kubectl debug --target``."""
        sb = self._sandbox(namespace, name)
        pod = self.pod(namespace, name)
        if sb is None or pod is None:
            return False
        pb2 = self.cri.pb2
        known = {e[0] for e in self.ephemeral.get((namespace, name), [])}
        status = self.cri.call(
            "PodSandboxStatus", pb2.PodSandboxStatusRequest(pod_sandbox_id=sb.id, verbose=True)
        )
        info = json.loads(status.info.get("info") or "{}")
        log_dir = (info.get("config") or {}).get("log_directory", "")
        for spec in (body.get("spec") or {}).get("ephemeralContainers") or []:
            if spec["name"] in known:
                continue
            target = next(
                s
                for s in pod["status"]["containerStatuses"]
                if s["name"] == spec.get("targetContainerName")
            )
            target_id = target["containerID"].split("://", 1)[1]
            ns_opts = pb2.NamespaceOption(
                network=pb2.NamespaceMode.NODE, pid=pb2.NamespaceMode.TARGET, target_id=target_id
            )
            sandbox_config = pb2.PodSandboxConfig(
                metadata=pb2.PodSandboxMetadata(
                    name=name, uid=sb.metadata.uid, namespace=namespace
                ),
                log_directory=log_dir,
                linux=pb2.LinuxPodSandboxConfig(
                    security_context=pb2.LinuxSandboxSecurityContext(
                        namespace_options=pb2.NamespaceOption(network=pb2.NamespaceMode.NODE)
                    )
                ),
            )
            cid = self.cri.call(
                "CreateContainer",
                pb2.CreateContainerRequest(
                    pod_sandbox_id=sb.id,
                    config=pb2.ContainerConfig(
                        metadata=pb2.ContainerMetadata(name=spec["name"]),
                        image=pb2.ImageSpec(image=self.image_ref(spec["image"])),
                        command=spec.get("command") or [],
                        log_path=f"{spec['name']}/0.log",
                        linux=pb2.LinuxContainerConfig(
                            security_context=pb2.LinuxContainerSecurityContext(
                                namespace_options=ns_opts
                            )
                        ),
                    ),
                    sandbox_config=sandbox_config,
                ),
                timeout=60,
            ).container_id
            self.cri.call("StartContainer", pb2.StartContainerRequest(container_id=cid))
            self.ephemeral.setdefault((namespace, name), []).append((spec["name"], cid, spec))
        return True


class _Handler(BaseHTTPRequestHandler):
    api: ApiServerDouble
    protocol_version = "HTTP/1.1"
    # Unbuffered: after the upgrade request's headers, every byte belongs to the spliced
    # stream, so none may sit in a read buffer of ours.
    rbufsize = 0

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, message: str) -> None:
        self._json(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": message,
                "code": code,
                "reason": "NotFound" if code == 404 else "BadRequest",
            },
        )

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        self.api.requests.append(("PATCH", url.path))
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if (
            len(parts) == 7
            and parts[:3] == ["api", "v1", "namespaces"]
            and parts[4] == "pods"
            and parts[6] == "ephemeralcontainers"
        ) and self.api.add_ephemeral(parts[3], parts[5], body):
            self._json(200, self.api.pod(parts[3], parts[5]) or {})
            return
        self._status(404, f"the test API server does not serve PATCH {url.path}")

    def _route(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        flat = {k: v[-1] for k, v in q.items()}
        parts = [p for p in url.path.split("/") if p]
        self.api.requests.append((method, url.path))
        routes: dict[tuple[str, ...], Callable[[], None]] = {
            ("version",): lambda: self._json(
                200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-podmortem-test-double"}
            ),
            ("api",): lambda: self._json(
                200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            ),
            ("apis",): lambda: self._json(
                200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
            ),
            ("api", "v1"): lambda: self._json(
                200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": RESOURCES}
            ),
        }
        if tuple(parts) in routes:
            routes[tuple(parts)]()
            return
        if url.path in self.api.objects:
            self._json(200, self.api.objects[url.path])
            return
        if len(parts) >= 6 and parts[:3] == ["api", "v1", "namespaces"]:
            ns, kind, name = parts[3], parts[4], parts[5]
            sub = parts[6] if len(parts) > 6 else ""
            if kind == "pods" and not sub:
                pod = self.api.pod(ns, name)
                if pod is None:
                    self._status(404, f'pods "{name}" not found')
                else:
                    self._json(200, pod)
                return
            if kind == "pods" and sub == "log":
                code, body = self.api.log(ns, name, flat)
                if code != 200:
                    self._status(code, body.decode())
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if kind == "pods" and sub == "exec":
                self._exec(ns, name, q)
                return
            if kind == "serviceaccounts":
                self._json(
                    200,
                    {
                        "apiVersion": "v1",
                        "kind": "ServiceAccount",
                        "metadata": {"name": name, "namespace": ns},
                    },
                )
                return
        if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "events":
            self._json(
                200,
                {"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": self.api.events},
            )
            return
        self._status(404, f"the test API server does not serve {url.path}")

    def _exec(self, ns: str, name: str, q: dict[str, list[str]]) -> None:
        """Splice the upgrade request to containerd's streaming server (what the API server
        and kubelet do for pods/exec); the protocol itself is containerd's."""
        target = self.api.exec_url(ns, name, q)
        if target is None:
            self._status(404, f'pods "{name}" not found')
            return
        up = urllib.parse.urlsplit(target)
        upstream = socket.create_connection((up.hostname or "127.0.0.1", up.port or 80))
        head = [f"{self.command} {up.path}?{urllib.parse.urlsplit(self.path).query} HTTP/1.1"]
        for k, v in self.headers.items():
            if k.lower() != "host":
                head.append(f"{k}: {v}")
        head.append(f"Host: {up.netloc}")
        upstream.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        client = self.connection
        self.close_connection = True

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        t.start()
        pump(client, upstream)
        t.join(timeout=60)
        upstream.close()

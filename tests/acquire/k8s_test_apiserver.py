"""A test double of the Kubernetes API server, for the acquisition tests: NOT an API server.

No kube-apiserver, kubelet, k3s, kind or envtest can be installed on the development and CI
machines (no registry ships them), so the Kubernetes backend is tested against this: a small
HTTP server that serves the few read endpoints acquisition uses, built live from the real
containerd's CRI (pods from pod sandboxes and their containers, logs from the CRI log files),
and that hands ``pods/{name}/exec`` to containerd's real streaming server the way the API
server and kubelet do: ``Exec`` over CRI returns a one-time streaming URL, and the client's
upgrade request (WebSocket or SPDY) is spliced byte for byte to it. The real ``kubectl`` and
the official Python client therefore run real exec protocols into real containers.

Jobs (for the node agent) really run: ``POST .../jobs`` creates one pod for the Job, started
in a background thread as the kubelet would: a pod sandbox and its containers on the real
containerd through CRI, with the template's ``hostPath`` volumes turned into CRI mounts (type
``Socket``/``Directory`` checked), ``emptyDir`` volumes into folders of the double's own
(the kubelet's ``pods/<uid>/volumes/kubernetes.io~empty-dir``), ``hostPID`` into CRI
NamespaceOption NODE, ``privileged``, ``readOnlyRootFilesystem`` and ``runAsUser`` as given.
Every pod and Job status is read back from CRI (container state, exit code), never invented.
Pods can be listed by label selector (equality terms only), Jobs read and deleted
(``propagationPolicy`` Background or Foreground removes the Job's pod sandbox; Orphan keeps it).

How the test image of the node agent works: no registry is reachable, so the agent image is
a tiny rootfs built by the tests (no programs of its own) whose ``/usr``, Python installation
and podmortem checkout are the host's, bind-mounted read-only by this double when it starts a
container from that image (``image_mounts``); it runs the host's Python and the podmortem
under test. A real agent image carries them itself.

What it does not do: authentication, authorisation, admission, watches, Job controller
semantics beyond one pod per Job (no retries, no ``activeDeadlineSeconds``, no TTL), pod
networking (every pod uses the node's network), or any endpoint not listed in ``_route``.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import socket
import stat
import string
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
        "verbs": ["get", "list"],  # list: by label selector (equality terms)
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


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class JobPod:
    """A pod the double started for a Job: its template, and where CRI has it."""

    namespace: str
    name: str
    uid: str
    job: str
    job_uid: str
    spec: dict[str, Any]
    labels: dict[str, str]
    sandbox_id: str | None = None
    container_ids: dict[str, str] = field(default_factory=dict)
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # container -> reason
    volume_dirs: list[Path] = field(default_factory=list)
    created: str = field(default_factory=_now)


class ApiServerDouble:
    """``with ApiServerDouble(cri) as api: api.kubeconfig`` (a file for kubectl and the client)."""

    def __init__(
        self,
        cri: Any,
        workdir: Path,
        node_name: str | None = None,
        image_ref: Callable[[str], str] = lambda image: image,
        *,
        image_mounts: Mapping[str, Sequence[str]] | None = None,
        namespaces: Sequence[str] = ("default", "podmortem", "podmortem-test"),
    ) -> None:
        """``image_ref`` maps an image name in a pod spec to containerd's reference;
        ``image_mounts`` names host folders bind-mounted read-only (same path) into every
        container of an image (the test image of the node agent, see the module docstring)."""
        self.cri = cri
        self.image_mounts = {k: list(v) for k, v in (image_mounts or {}).items()}
        self.namespaces = set(namespaces)
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.job_pods: dict[tuple[str, str], JobPod] = {}
        self.deleted_jobs: list[tuple[str, str, str]] = []  # (namespace, name, propagation)
        self.sandboxes: list[str] = []  # every pod sandbox started for a Job, in order
        # Test hooks: called with (namespace, pod, command) before an exec is handed to CRI
        # (e.g. to corrupt the agent's case on the node), and a byte limit for an exec's
        # stream from containerd to the client (to cut a transfer short).
        self.exec_hooks: list[Callable[[str, str, list[str]], None]] = []
        self.cut_exec_after: Callable[[str, str, list[str]], int | None] = lambda n, p, c: None
        self._threads: list[threading.Thread] = []
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
        for t in list(self._threads):
            t.join(timeout=60)
        # Whatever a test left (a kept Job): its pods go, as a cluster teardown would.
        for jp in list(self.job_pods.values()):
            self._remove_job_pod(jp)

    # ------------------------------------------------------------- CRI -> objects

    def _sandbox(self, namespace: str, name: str) -> Any:
        pb2 = self.cri.pb2
        resp = self.cri.call("ListPodSandbox", pb2.ListPodSandboxRequest())
        for sb in resp.items:
            if (sb.metadata.namespace, sb.metadata.name) == (namespace, name) and sb.state == 0:
                return sb
        return None

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        jp = self.job_pods.get((namespace, name))
        if jp is not None:
            return self._job_pod_object(jp)
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
        for hook in self.exec_hooks:
            hook(namespace, name, list(query.get("command") or []))
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

    # ------------------------------------------------------------------- Jobs

    def create_job(self, namespace: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST .../jobs: store the Job, start its one pod in the background."""
        if namespace not in self.namespaces:
            return 404, _status_doc(404, f'namespaces "{namespace}" not found')
        meta = dict(body.get("metadata") or {})
        name = meta.get("name") or (
            str(meta.get("generateName") or "job-")
            + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        )
        if (namespace, name) in self.jobs:
            return 409, _status_doc(409, f'jobs.batch "{name}" already exists')
        uid = str(uuid.uuid4())
        meta.update(name=name, namespace=namespace, uid=uid, creationTimestamp=_now())
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": body["spec"]}
        self.jobs[(namespace, name)] = job
        template = body["spec"]["template"]
        pod_name = f"{name}-{''.join(random.choices(string.ascii_lowercase + string.digits, k=5))}"
        labels = {
            **dict((template.get("metadata") or {}).get("labels") or {}),
            "job-name": name,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "batch.kubernetes.io/controller-uid": uid,
        }
        jp = JobPod(
            namespace=namespace,
            name=pod_name,
            uid=str(uuid.uuid4()),
            job=name,
            job_uid=uid,
            spec=dict(template["spec"]),
            labels=labels,
        )
        self.job_pods[(namespace, pod_name)] = jp
        t = threading.Thread(target=self._start_job_pod, args=(jp,), daemon=True)
        self._threads.append(t)
        t.start()
        return 201, self.job_object(namespace, name) or {}

    def job_object(self, namespace: str, name: str) -> dict[str, Any] | None:
        job = self.jobs.get((namespace, name))
        if job is None:
            return None
        active = succeeded = failed = 0
        for jp in self.job_pods.values():
            if (jp.namespace, jp.job) != (namespace, name):
                continue
            phase = self._job_pod_object(jp)["status"]["phase"]
            if phase == "Succeeded":
                succeeded += 1
            elif phase == "Failed":
                failed += 1
            else:
                active += 1
        status: dict[str, Any] = {"active": active, "succeeded": succeeded, "failed": failed}
        if succeeded or failed:
            status["conditions"] = [
                {"type": "Complete" if succeeded else "Failed", "status": "True"}
            ]
        return {**job, "status": status}

    def delete_job(self, namespace: str, name: str, propagation: str) -> bool:
        job = self.jobs.pop((namespace, name), None)
        if job is None:
            return False
        self.deleted_jobs.append((namespace, name, propagation))
        if propagation in ("Background", "Foreground"):
            # The garbage collector deletes the Job's pods; the kubelet stops them.
            for jp in [
                p for p in self.job_pods.values() if (p.namespace, p.job) == (namespace, name)
            ]:
                t = threading.Thread(target=self._remove_job_pod, args=(jp,), daemon=True)
                self._threads.append(t)
                t.start()
        return True

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Pods of a namespace matching an equality label selector (``a=b,c=d``)."""
        want: dict[str, str] = {}
        for term in filter(None, selector.split(",")):
            k, _, v = term.partition("=")
            want[k.strip()] = v.strip().lstrip("=")
        out = []
        names = {n for (ns, n) in self.job_pods if ns == namespace}
        pb2 = self.cri.pb2
        for sb in self.cri.call("ListPodSandbox", pb2.ListPodSandboxRequest()).items:
            if sb.metadata.namespace == namespace and sb.state == 0:
                names.add(sb.metadata.name)
        for n in sorted(names):
            pod = self.pod(namespace, n)
            if pod is None:
                continue
            labels = pod["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in want.items()):
                out.append(pod)
        return out

    def empty_dir(self, namespace: str, pod: str, volume: str) -> Path:
        """Where an emptyDir of a Job pod is on the node (for tests that tamper with it)."""
        jp = self.job_pods[(namespace, pod)]
        return self.workdir / "kubelet" / jp.uid / "volumes" / "kubernetes.io~empty-dir" / volume

    def _start_job_pod(self, jp: JobPod) -> None:
        pb2 = self.cri.pb2
        spec = jp.spec
        host_pid = bool(spec.get("hostPID"))
        containers = list(spec.get("containers") or [])
        privileged = any((c.get("securityContext") or {}).get("privileged") for c in containers)
        pid_mode = pb2.NamespaceMode.NODE if host_pid else pb2.NamespaceMode.CONTAINER
        log_dir = self.workdir / "kubelet-logs" / f"{jp.namespace}_{jp.name}_{jp.uid}"
        log_dir.mkdir(parents=True, exist_ok=True)
        sandbox_config = pb2.PodSandboxConfig(
            metadata=pb2.PodSandboxMetadata(name=jp.name, uid=jp.uid, namespace=jp.namespace),
            log_directory=str(log_dir),
            labels=jp.labels,
            linux=pb2.LinuxPodSandboxConfig(
                security_context=pb2.LinuxSandboxSecurityContext(
                    privileged=privileged,
                    namespace_options=pb2.NamespaceOption(
                        network=pb2.NamespaceMode.NODE, pid=pid_mode
                    ),
                )
            ),
        )
        try:
            jp.sandbox_id = self.cri.call(
                "RunPodSandbox", pb2.RunPodSandboxRequest(config=sandbox_config), timeout=60
            ).pod_sandbox_id
            self.sandboxes.append(jp.sandbox_id)
        except Exception as exc:
            for c in containers:
                jp.waiting[c["name"]] = ("CreatePodSandboxError", str(exc)[:300])
            return
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for c in containers:
            if (jp.namespace, jp.name) not in self.job_pods:
                return  # deleted meanwhile
            try:
                mounts = self._mounts(jp, c, volumes)
            except ValueError as exc:
                jp.waiting[c["name"]] = ("CreateContainerConfigError", str(exc))
                continue
            image = self.image_ref(c["image"])
            if not self.cri.call(
                "ImageStatus", pb2.ImageStatusRequest(image=pb2.ImageSpec(image=image))
            ).HasField("image"):
                jp.waiting[c["name"]] = (
                    "ErrImagePull",
                    f"image {c['image']!r} not present on the node (no registry here)",
                )
                continue
            for host in self.image_mounts.get(c["image"], []):
                mounts.append(pb2.Mount(container_path=host, host_path=host, readonly=True))
            sc = c.get("securityContext") or {}
            linux_sc = pb2.LinuxContainerSecurityContext(
                privileged=bool(sc.get("privileged")),
                readonly_rootfs=bool(sc.get("readOnlyRootFilesystem")),
                namespace_options=pb2.NamespaceOption(network=pb2.NamespaceMode.NODE, pid=pid_mode),
            )
            if sc.get("runAsUser") is not None:
                linux_sc.run_as_user.value = int(sc["runAsUser"])
            try:
                cid = self.cri.call(
                    "CreateContainer",
                    pb2.CreateContainerRequest(
                        pod_sandbox_id=jp.sandbox_id,
                        config=pb2.ContainerConfig(
                            metadata=pb2.ContainerMetadata(name=c["name"]),
                            image=pb2.ImageSpec(image=image),
                            command=list(c.get("command") or []),
                            args=list(c.get("args") or []),
                            envs=[
                                pb2.KeyValue(key=e["name"], value=str(e.get("value", "")))
                                for e in c.get("env") or []
                            ],
                            mounts=mounts,
                            log_path=f"{c['name']}/0.log",
                            linux=pb2.LinuxContainerConfig(security_context=linux_sc),
                        ),
                        sandbox_config=sandbox_config,
                    ),
                    timeout=60,
                ).container_id
                jp.container_ids[c["name"]] = cid
                self.cri.call("StartContainer", pb2.StartContainerRequest(container_id=cid))
            except Exception as exc:
                jp.waiting[c["name"]] = ("CreateContainerError", str(exc)[:300])

    def _mounts(self, jp: JobPod, c: dict[str, Any], volumes: dict[str, Any]) -> list[Any]:
        """volumeMounts -> CRI mounts, checking hostPath types as the kubelet does."""
        pb2 = self.cri.pb2
        out = []
        for vm in c.get("volumeMounts") or []:
            vol = volumes.get(vm["name"])
            if vol is None:
                raise ValueError(f"volume {vm['name']!r} not found")
            if "hostPath" in vol:
                host = vol["hostPath"]["path"]
                kind = vol["hostPath"].get("type") or ""
                try:
                    mode = Path(host).stat().st_mode
                except OSError as exc:
                    raise ValueError(f"hostPath {host}: {exc.strerror}") from exc
                if kind == "Socket" and not stat.S_ISSOCK(mode):
                    raise ValueError(f"hostPath type check failed: {host} is not a socket")
                if kind == "Directory" and not stat.S_ISDIR(mode):
                    raise ValueError(f"hostPath type check failed: {host} is not a directory")
            elif "emptyDir" in vol:
                d = self.empty_dir(jp.namespace, jp.name, vm["name"])
                d.mkdir(parents=True, exist_ok=True)
                jp.volume_dirs.append(d)
                host = str(d)
            else:
                raise ValueError(f"volume {vm['name']!r}: only hostPath and emptyDir here")
            out.append(
                pb2.Mount(
                    container_path=vm["mountPath"],
                    host_path=host,
                    readonly=bool(vm.get("readOnly")),
                )
            )
        return out

    def _job_pod_object(self, jp: JobPod) -> dict[str, Any]:
        """A Job's pod: spec from the template, status from CRI."""
        statuses = []
        phases = []
        for c in jp.spec.get("containers") or []:
            # imageID is "" until the container exists (the client requires the field).
            st: dict[str, Any] = {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "restartCount": 0,
            }
            cid = jp.container_ids.get(c["name"])
            if cid is None:
                reason, msg = jp.waiting.get(c["name"], ("ContainerCreating", ""))
                st["state"] = {"waiting": {"reason": reason, "message": msg}}
                st["ready"] = False
                phases.append("Pending")
            else:
                cs = self.cri.container_status(cid, verbose=False)
                st.update(containerID=f"containerd://{cid}", imageID=cs.image_ref)
                if cs.state == "CONTAINER_RUNNING":
                    st["state"] = {"running": {"startedAt": _ts(cs.started_at_ns)}}
                    phases.append("Running")
                elif cs.state == "CONTAINER_EXITED":
                    st["state"] = {
                        "terminated": {
                            "exitCode": cs.exit_code,
                            "reason": cs.reason or ("Completed" if cs.exit_code == 0 else "Error"),
                        }
                    }
                    phases.append("Succeeded" if cs.exit_code == 0 else "Failed")
                else:
                    st["state"] = {"waiting": {"reason": "ContainerCreating"}}
                    phases.append("Pending")
                st["ready"] = cs.state == "CONTAINER_RUNNING"
            statuses.append(st)
        if "Pending" in phases:
            phase = "Pending"
        elif "Running" in phases:
            phase = "Running"
        elif "Failed" in phases:
            phase = "Failed"
        else:
            phase = "Succeeded"
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": jp.name,
                "namespace": jp.namespace,
                "uid": jp.uid,
                "creationTimestamp": jp.created,
                "labels": dict(jp.labels),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": jp.job,
                        "uid": jp.job_uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {**jp.spec, "nodeName": jp.spec.get("nodeName") or self.node},
            "status": {
                "phase": phase,
                "containerStatuses": statuses,
                "ephemeralContainerStatuses": [],
            },
        }

    def _remove_job_pod(self, jp: JobPod) -> None:
        self.job_pods.pop((jp.namespace, jp.name), None)
        # The sandbox may still be starting in its thread: wait for it to be known.
        deadline = time.monotonic() + 60
        while jp.sandbox_id is None and not jp.waiting and time.monotonic() < deadline:
            time.sleep(0.05)
        if jp.sandbox_id is not None:
            pb2 = self.cri.pb2
            with contextlib.suppress(Exception):
                self.cri.call(
                    "StopPodSandbox",
                    pb2.StopPodSandboxRequest(pod_sandbox_id=jp.sandbox_id),
                    timeout=60,
                )
                self.cri.call(
                    "RemovePodSandbox",
                    pb2.RemovePodSandboxRequest(pod_sandbox_id=jp.sandbox_id),
                    timeout=60,
                )
        for d in jp.volume_dirs:
            shutil.rmtree(d, ignore_errors=True)

    def sandbox_exists(self, sandbox_id: str) -> bool:
        pb2 = self.cri.pb2
        return any(
            sb.id == sandbox_id
            for sb in self.cri.call("ListPodSandbox", pb2.ListPodSandboxRequest()).items
        )


def _status_doc(code: int, message: str) -> dict[str, Any]:
    reasons = {404: "NotFound", 409: "AlreadyExists"}
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "code": code,
        "reason": reasons.get(code, "BadRequest"),
    }


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
        self._json(code, _status_doc(code, message))

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        if (
            len(parts) == 6
            and parts[:4] == ["apis", "batch", "v1", "namespaces"]
            and parts[5] == "jobs"
        ):
            self.api.requests.append(("POST", url.path))
            body = json.loads(
                self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}"
            )
            code, doc = self.api.create_job(parts[4], body)
            self._json(code, doc)
            return
        self._route("POST")

    def do_DELETE(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        self.api.requests.append(("DELETE", url.path))
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        # The policy may come as a query parameter or in the DeleteOptions body; a Job
        # deleted without one orphans its pods (the batch API's historical default).
        policy = q.get("propagationPolicy") or body.get("propagationPolicy") or "Orphan"
        if (
            len(parts) == 7
            and parts[:4] == ["apis", "batch", "v1", "namespaces"]
            and parts[5] == "jobs"
        ):
            if self.api.delete_job(parts[4], parts[6], policy):
                self._json(
                    200,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Success",
                        "details": {"name": parts[6], "group": "batch", "kind": "jobs"},
                    },
                )
            else:
                self._status(404, f'jobs.batch "{parts[6]}" not found')
            return
        self._status(404, f"the test API server does not serve DELETE {url.path}")

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
        if (
            len(parts) == 7
            and parts[:4] == ["apis", "batch", "v1", "namespaces"]
            and parts[5] == "jobs"
        ):
            job = self.api.job_object(parts[4], parts[6])
            if job is None:
                self._status(404, f'jobs.batch "{parts[6]}" not found')
            else:
                self._json(200, job)
            return
        if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            items = self.api.list_pods(parts[3], flat.get("labelSelector", ""))
            self._json(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
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
        try:
            target = self.api.exec_url(ns, name, q)
        except Exception as exc:  # no such container, not running: CRI says why
            self._status(400, f"exec: {str(exc)[:300]}")
            return
        if target is None:
            self._status(404, f'pods "{name}" not found')
            return
        cut = self.api.cut_exec_after(ns, name, list(q.get("command") or []))
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

        def pump(src: socket.socket, dst: socket.socket, limit: int | None = None) -> None:
            sent = 0
            try:
                while data := src.recv(65536):
                    if limit is not None and sent + len(data) > limit:
                        dst.sendall(data[: limit - sent])
                        # A transfer cut short: the client sees the connection end mid-stream.
                        with contextlib.suppress(OSError):
                            dst.shutdown(socket.SHUT_RDWR)
                        with contextlib.suppress(OSError):
                            src.shutdown(socket.SHUT_RDWR)
                        return
                    dst.sendall(data)
                    sent += len(data)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=pump, args=(upstream, client, cut), daemon=True)
        t.start()
        pump(client, upstream)
        t.join(timeout=60)
        upstream.close()

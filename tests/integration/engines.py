"""Where the real engines are, and how tests start and remove containers on them.

The engines are started by ``scripts/engines.sh start`` (``eval "$(scripts/engines.sh env)"``
exports the variables read here; without them the same defaults as the script are used).

Containers started here carry the label ``podmortem.test=1`` and run ``sleep`` from the
offline-built ``podmortem-test/busybox`` image. Every start has a matching removal that the
fixtures in ``conftest.py`` call at teardown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

    from podmortem.acquire.cri_proto import CriClient

TEST_LABEL = "podmortem.test"
SLEEP_COMMAND: tuple[str, ...] = ("sleep", "3600")
CRI_NAMESPACE = "podmortem-test"  # the Kubernetes namespace written into CRI pod metadata


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def in_ci() -> bool:
    """CI sets CI=true: there, an engine that should run but does not is a failure."""
    return _truthy(os.environ.get("CI"))


@dataclass(frozen=True)
class EngineEndpoints:
    """Sockets and images of the test engines (defaults match scripts/engines.sh)."""

    docker_host: str = "unix:///run/podmortem-ci/docker.sock"
    podman_sock: str = "/run/podmortem-ci/podman.sock"
    cri_endpoint: str = "unix:///run/podmortem-ci/containerd/containerd.sock"
    cri_proto: str = "/var/lib/podmortem-ci/cri/api.proto"
    image: str = "podmortem-test/busybox:latest"
    pause_image: str = "podmortem-test/pause:latest"
    run_dir: Path = field(default=Path("/run/podmortem-ci"))

    @classmethod
    def from_env(cls) -> EngineEndpoints:
        d = cls()
        env = os.environ.get
        # DOCKER_HOST is deliberately not read: a developer's own Docker must never be used
        # (tests create and delete containers); only PODMORTEM_DOCKER_HOST redirects.
        return cls(
            docker_host=env("PODMORTEM_DOCKER_HOST", d.docker_host),
            podman_sock=env("PODMORTEM_PODMAN_SOCK", d.podman_sock),
            cri_endpoint=env("PODMORTEM_CRI_ENDPOINT", d.cri_endpoint),
            cri_proto=env("PODMORTEM_CRI_PROTO", d.cri_proto),
            image=env("PODMORTEM_TEST_IMAGE", d.image),
            pause_image=env("PODMORTEM_PAUSE_IMAGE", d.pause_image),
            run_dir=Path(env("PODMORTEM_CI_RUN", str(d.run_dir))),
        )


def platform_skip_reason() -> str | None:
    """Why no engine can exist on this machine at all (then skipping is right even in CI)."""
    if not sys.platform.startswith("linux"):
        return f"real container engines need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the test engines run as root (scripts/engines.sh); not root here"
    return None


def engine_unavailable(engine: str, why: str) -> NoReturn:
    """Skip locally; fail in CI, where scripts/engines.sh must have started every engine."""
    message = (
        f"{engine} is not available: {why}. Start the engines with "
        "`scripts/engines.sh install && scripts/engines.sh start`."
    )
    if in_ci():
        pytest.fail(f"[CI] {message}", pytrace=False)
    pytest.skip(message)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------------------------
# Docker and Podman (both through the docker SDK)
# ---------------------------------------------------------------------------------------------


def _unix_socket_answers(base_url: str) -> str | None:
    """None if something accepts connections on the unix socket, else why not."""
    path = base_url.removeprefix("unix://")
    if not base_url.startswith("unix://"):
        return None  # tcp etc.: let the SDK try
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(path)
        except OSError as exc:
            return f"cannot connect to {path}: {exc.strerror or exc}"
    return None


def connect_docker_api(base_url: str, engine: str) -> docker.DockerClient:
    """A docker SDK client for ``base_url`` that has answered a ping, else skip/fail."""
    import docker  # only when a fixture needs it

    # Probe first: a DockerClient whose constructor fails (version="auto" connects at once)
    # leaks its socket, and tests turn the ResourceWarning into an error.
    why = _unix_socket_answers(base_url)
    if why:
        engine_unavailable(engine, why)
    try:
        # version="auto": Debian's dockerd speaks API 1.41 and Podman 4.3's compat API also
        # reports 1.41; newer SDK defaults would be refused.
        client = docker.DockerClient(base_url=base_url, version="auto", timeout=60)
    except docker.errors.DockerException as exc:
        engine_unavailable(engine, f"{base_url}: {exc}")
    try:
        client.ping()
    except docker.errors.DockerException as exc:
        client.close()
        engine_unavailable(engine, f"{base_url}: {exc}")
    return client


def run_sleeping_container(
    client: docker.DockerClient,
    image: str,
    *,
    command: Sequence[str] = SLEEP_COMMAND,
    name: str | None = None,
    **kwargs: Any,
) -> Container:
    """Start a detached container and wait until it runs."""
    labels = {TEST_LABEL: "1", **kwargs.pop("labels", {})}
    container = client.containers.run(
        image,
        list(command),
        detach=True,
        name=name or unique_name("pm-test"),
        labels=labels,
        **kwargs,
    )
    deadline = time.monotonic() + 20
    while True:
        container.reload()
        if container.status == "running":
            return container
        if time.monotonic() > deadline or container.status in {"exited", "dead"}:
            logs = container.logs().decode(errors="replace")
            raise RuntimeError(f"container {container.name} is {container.status}: {logs}")
        time.sleep(0.05)


def remove_container(container: Container) -> None:
    """Force-remove (SIGKILL): ``sleep`` as PID 1 ignores SIGTERM, a stop would wait 10 s."""
    try:
        container.remove(force=True, v=True)
    except Exception as exc:  # already gone is fine; anything else is worth a message
        if "No such container" not in str(exc) and "404" not in str(exc):
            raise


def kill_leftover_conmon(container_id: str) -> None:
    """Podman 4.3 leaves a ``conmon`` per compat-API exec running (``--exit-delay 300``).

    They are identified by the container id on their command line, and killed by PID.
    """
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.readlink(proc / "exe") != "/usr/bin/conmon":
                continue
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if container_id.encode() in argv:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# containerd CRI
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CriPod:
    """A pod sandbox with one running container, started through CRI."""

    sandbox_id: str
    container_id: str
    pod_name: str
    container_name: str
    log_directory: Path


def cri_image_ref(image: str) -> str:
    """containerd stores ``ctr import``-ed short names under docker.io/."""
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if "/" in image else f"docker.io/library/{image}"


def start_cri_pod(
    cri: CriClient,
    image: str,
    log_root: Path,
    *,
    command: Sequence[str] = SLEEP_COMMAND,
    name: str | None = None,
) -> CriPod:
    """RunPodSandbox (host network) + CreateContainer + StartContainer.

    Host network because a pod network needs a CNI plugin and an interface, and these
    machines must not route anywhere; with the node's network no CNI is called. No hostname
    is set: CRI rejects a hostname for host-network pods.
    """
    pb2 = cri.pb2
    pod_name = name or unique_name("pm-pod")
    uid = uuid.uuid4().hex
    log_directory = log_root / f"{CRI_NAMESPACE}_{pod_name}_{uid}"
    log_directory.mkdir(parents=True, exist_ok=True)
    labels = {TEST_LABEL: "1"}
    # As the kubelet does for a pod without shareProcessNamespace: each container gets its own
    # PID namespace (CRI's enum default, 0, is POD: a namespace shared with the pause process).
    pid_mode = pb2.NamespaceMode.CONTAINER
    sandbox_config = pb2.PodSandboxConfig(
        metadata=pb2.PodSandboxMetadata(name=pod_name, uid=uid, namespace=CRI_NAMESPACE),
        log_directory=str(log_directory),
        labels=labels,
        linux=pb2.LinuxPodSandboxConfig(
            security_context=pb2.LinuxSandboxSecurityContext(
                namespace_options=pb2.NamespaceOption(network=pb2.NamespaceMode.NODE, pid=pid_mode)
            )
        ),
    )
    sandbox_id = cri.call(
        "RunPodSandbox", pb2.RunPodSandboxRequest(config=sandbox_config), timeout=60
    ).pod_sandbox_id
    container_name = "main"
    try:
        container_id = cri.call(
            "CreateContainer",
            pb2.CreateContainerRequest(
                pod_sandbox_id=sandbox_id,
                config=pb2.ContainerConfig(
                    metadata=pb2.ContainerMetadata(name=container_name),
                    image=pb2.ImageSpec(image=cri_image_ref(image)),
                    command=list(command),
                    log_path=f"{container_name}/0.log",
                    labels=labels,
                    linux=pb2.LinuxContainerConfig(
                        security_context=pb2.LinuxContainerSecurityContext(
                            namespace_options=pb2.NamespaceOption(
                                network=pb2.NamespaceMode.NODE, pid=pid_mode
                            )
                        )
                    ),
                ),
                sandbox_config=sandbox_config,
            ),
            timeout=60,
        ).container_id
        cri.call("StartContainer", pb2.StartContainerRequest(container_id=container_id))
    except BaseException:
        remove_cri_pod(cri, sandbox_id)
        raise
    return CriPod(
        sandbox_id=sandbox_id,
        container_id=container_id,
        pod_name=pod_name,
        container_name=container_name,
        log_directory=log_directory,
    )


def remove_cri_pod(cri: CriClient, sandbox_id: str) -> None:
    """StopPodSandbox kills its containers (no grace period), RemovePodSandbox deletes all."""
    pb2 = cri.pb2
    cri.call("StopPodSandbox", pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=60)
    cri.call("RemovePodSandbox", pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=60)

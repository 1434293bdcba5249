"""Smoke tests: each real engine runs the test image and executes commands in it.

Every later integration test builds on these three paths (Docker API, Podman compat API,
containerd CRI over gRPC); when one of them fails here, read this failure first.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from docker.models.containers import Container

    from podmortem.acquire.cri_proto import CriClient

# pytest imports this directory either as a package (if tests/__init__.py files exist) or
# with the directory itself on sys.path (the default, rootdir-less "prepend" mode).
if TYPE_CHECKING or not __package__:
    import engines
else:
    from . import engines

pytestmark = pytest.mark.integration


def _ps_lines(output: bytes) -> list[str]:
    return output.decode().strip().splitlines()


def _exec(container: Container, cmd: list[str]) -> tuple[int | None, bytes]:
    """exec_run without stream/demux: the output is one bytes object."""
    result = container.exec_run(cmd)
    assert isinstance(result.output, bytes)
    return result.exit_code, result.output


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_exec_in_running_container(engine: str, request: pytest.FixtureRequest) -> None:
    container: Container = request.getfixturevalue(f"{engine}_container")
    assert container.status == "running"

    code, hostname = _exec(container, ["cat", "/etc/hostname"])
    assert code == 0
    # Both engines name the container's UTS namespace after the short container id.
    assert hostname.decode().strip() == str(container.id)[:12]

    code, ps = _exec(container, ["ps"])
    assert code == 0
    lines = _ps_lines(ps)
    # Own PID namespace: our command is PID 1 (busybox ps: "PID USER COMMAND").
    assert lines[1].split()[0] == "1"
    assert lines[1].endswith("sleep 3600"), lines


def test_docker_exec_exit_code_and_labels(docker_container: Container) -> None:
    result = docker_container.exec_run(["sh", "-c", "echo out; echo err >&2; exit 3"], demux=True)
    assert result.exit_code == 3
    assert tuple(result.output) == (b"out\n", b"err\n")  # demux: (stdout, stderr)
    assert docker_container.labels[engines.TEST_LABEL] == "1"


def test_cri_version(cri_client: CriClient) -> None:
    version = cri_client.version()
    assert version.runtime_name == "containerd"
    assert version.runtime_api_version == "v1"


def test_cri_exec_sync(cri_client: CriClient, cri_pod: engines.CriPod) -> None:
    # Host-network pod: the UTS namespace is the node's, so /etc/hostname is the node's name.
    result = cri_client.exec_sync(cri_pod.container_id, ["cat", "/etc/hostname"], timeout=10)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.decode().strip() == socket.gethostname()

    ps = cri_client.exec_sync(cri_pod.container_id, ["ps"], timeout=10)
    assert ps.exit_code == 0, ps.stderr
    lines = _ps_lines(ps.stdout)
    # PID namespace per container (as the kubelet sets it): sleep is PID 1 and the sandbox's
    # pause process is not visible.
    assert lines[1].split()[0] == "1"
    assert lines[1].endswith("sleep 3600"), lines
    assert not any("2147483647" in line for line in lines), lines

    failed = cri_client.exec_sync(cri_pod.container_id, ["sh", "-c", "exit 7"], timeout=10)
    assert failed.exit_code == 7


def test_cri_list_and_status(cri_client: CriClient, cri_pod: engines.CriPod) -> None:
    listed = {c.id: c for c in cri_client.list_containers(pod_sandbox_id=cri_pod.sandbox_id)}
    assert cri_pod.container_id in listed
    entry = listed[cri_pod.container_id]
    assert entry.state == "CONTAINER_RUNNING"
    assert entry.name == cri_pod.container_name
    assert entry.labels[engines.TEST_LABEL] == "1"

    status = cri_client.container_status(cri_pod.container_id)
    assert status.state == "CONTAINER_RUNNING"
    assert status.started_at_ns > 0
    # containerd's verbose info gives the host PID of the container's init process: the
    # entry point for reading /proc from the node.
    assert status.pid is not None
    with open(f"/proc/{status.pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"3600"]


def test_cri_unknown_container_is_a_clear_error(cri_client: CriClient) -> None:
    from podmortem.acquire.cri_proto import CriError

    with pytest.raises(CriError) as excinfo:
        cri_client.container_status("0" * 64)
    assert excinfo.value.code == "NOT_FOUND"

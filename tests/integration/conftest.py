"""Fixtures for tests against real engines: Docker, Podman (compat API) and containerd CRI.

Start the engines first::

    scripts/engines.sh install && scripts/engines.sh start
    eval "$(scripts/engines.sh env)"     # optional: the defaults below match the script

Every test in this directory is marked ``integration``. A fixture skips only when no engine can
exist here (not Linux, not root); an engine that is merely not running skips locally but FAILS
when ``CI=true``, so a broken setup script cannot turn the suite green by skipping it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# pytest imports this directory either as a package (if tests/__init__.py files exist) or
# with the directory itself on sys.path (the default, rootdir-less "prepend" mode).
if TYPE_CHECKING or not __package__:
    import engines
else:
    from . import engines

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

    from podmortem.acquire.cri_proto import CriClient

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items: mark only the ones under this directory.
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def engine_endpoints() -> engines.EngineEndpoints:
    reason = engines.platform_skip_reason()
    if reason:
        pytest.skip(reason)
    return engines.EngineEndpoints.from_env()


@pytest.fixture(scope="session")
def docker_client(engine_endpoints: engines.EngineEndpoints) -> Iterator[docker.DockerClient]:
    """docker SDK client of the test dockerd (never the developer's own Docker)."""
    client = engines.connect_docker_api(engine_endpoints.docker_host, "Docker")
    yield client
    client.close()


@pytest.fixture(scope="session")
def podman_client(engine_endpoints: engines.EngineEndpoints) -> Iterator[docker.DockerClient]:
    """docker SDK client of Podman's Docker-compatible API socket."""
    client = engines.connect_docker_api(f"unix://{engine_endpoints.podman_sock}", "Podman")
    yield client
    client.close()


@pytest.fixture(scope="session")
def cri_client(engine_endpoints: engines.EngineEndpoints) -> Iterator[CriClient]:
    """CRI client (gRPC, compiled api.proto) of the test containerd's CRI plugin."""
    try:
        from podmortem.acquire.cri_proto import CriClient
        from podmortem.errors import PodmortemError
    except ImportError as exc:
        engines.engine_unavailable("CRI", f"podmortem is not importable: {exc}")
    try:
        client = CriClient(engine_endpoints.cri_endpoint, proto=engine_endpoints.cri_proto)
    except PodmortemError as exc:
        engines.engine_unavailable("CRI", exc.message)
    try:
        client.version()
    except PodmortemError as exc:
        client.close()
        engines.engine_unavailable("containerd CRI", exc.message)
    yield client
    client.close()


# --- containers: factories (any command/options) and ready-made sleeping containers ---------

DockerFactory = Callable[..., "Container"]


def _docker_factory(
    client: docker.DockerClient, image: str, podman: bool
) -> Iterator[DockerFactory]:
    started: list[Container] = []

    def make(command: Sequence[str] = engines.SLEEP_COMMAND, **kwargs: Any) -> Container:
        container = engines.run_sleeping_container(client, image, command=command, **kwargs)
        started.append(container)
        return container

    yield make
    for container in reversed(started):
        engines.remove_container(container)
        if podman:
            engines.kill_leftover_conmon(str(container.id))


@pytest.fixture
def make_docker_container(
    docker_client: docker.DockerClient, engine_endpoints: engines.EngineEndpoints
) -> Iterator[DockerFactory]:
    """``make_docker_container(command=..., **containers.run kwargs)``; removed at teardown."""
    yield from _docker_factory(docker_client, engine_endpoints.image, podman=False)


@pytest.fixture
def make_podman_container(
    podman_client: docker.DockerClient, engine_endpoints: engines.EngineEndpoints
) -> Iterator[DockerFactory]:
    """Same as ``make_docker_container``, on Podman."""
    yield from _docker_factory(podman_client, engine_endpoints.image, podman=True)


@pytest.fixture
def docker_container(make_docker_container: DockerFactory) -> Container:
    """A running busybox ``sleep 3600`` on Docker."""
    return make_docker_container()


@pytest.fixture
def podman_container(make_podman_container: DockerFactory) -> Container:
    """A running busybox ``sleep 3600`` on Podman."""
    return make_podman_container()


CriFactory = Callable[..., engines.CriPod]


@pytest.fixture
def make_cri_pod(
    cri_client: CriClient,
    engine_endpoints: engines.EngineEndpoints,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CriFactory]:
    """``make_cri_pod(command=..., name=...)``: host-network pod + one container, via CRI."""
    log_root = tmp_path_factory.mktemp("cri-pod-logs")
    started: list[engines.CriPod] = []

    def make(
        command: Sequence[str] = engines.SLEEP_COMMAND, name: str | None = None
    ) -> engines.CriPod:
        pod = engines.start_cri_pod(
            cri_client, engine_endpoints.image, log_root, command=command, name=name
        )
        started.append(pod)
        return pod

    yield make
    for pod in reversed(started):
        engines.remove_cri_pod(cri_client, pod.sandbox_id)


@pytest.fixture
def cri_pod(make_cri_pod: CriFactory) -> engines.CriPod:
    """A running busybox ``sleep 3600`` in a host-network CRI pod."""
    return make_cri_pod()

"""Images held by a local runtime: ``docker://NAME``, ``podman://NAME``,
``containerd://[NAMESPACE/]NAME``. Each is exported through the runtime's own API (the
Docker Engine API ``GET /images/{name}/get``, which Podman's compat socket also serves;
``ctr images export`` for containerd) and streamed into a sink (a case artifact or a
temporary file), then analysed like any archive."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from podmortem.errors import AcquisitionError, CapabilityUnavailable, InputError

SCHEMES = ("docker", "podman", "containerd")
CHUNK = 1 << 20


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class RuntimeRef:
    scheme: str
    name: str

    @property
    def display(self) -> str:
        return f"{self.scheme}://{self.name}"


def parse_ref(spec: str) -> RuntimeRef | None:
    scheme, sep, rest = spec.partition("://")
    if not sep or scheme not in SCHEMES:
        return None
    if not rest or any(c in rest for c in "\0\n\r"):
        raise InputError(f"malformed image reference {spec!r}")
    return RuntimeRef(scheme, rest)


@dataclass(frozen=True)
class Endpoints:
    docker_host: str = "unix:///var/run/docker.sock"
    podman_sock: str = "/run/podman/podman.sock"
    containerd_address: str = "/run/containerd/containerd.sock"
    containerd_namespace: str = "default"  # Kubernetes nodes keep images in "k8s.io"

    @classmethod
    def from_env(cls) -> Endpoints:
        """Defaults, overridden by PODMORTEM_DOCKER_HOST (else DOCKER_HOST),
        PODMORTEM_PODMAN_SOCK, PODMORTEM_CONTAINERD_ADDRESS (or PODMORTEM_CONTAINERD_SOCK, as
        scripts/engines.sh exports it) and PODMORTEM_CONTAINERD_NAMESPACE."""
        env = os.environ.get
        d = cls()
        return cls(
            docker_host=env("PODMORTEM_DOCKER_HOST") or env("DOCKER_HOST") or d.docker_host,
            podman_sock=env("PODMORTEM_PODMAN_SOCK") or d.podman_sock,
            containerd_address=env("PODMORTEM_CONTAINERD_ADDRESS")
            or env("PODMORTEM_CONTAINERD_SOCK")
            or d.containerd_address,
            containerd_namespace=env("PODMORTEM_CONTAINERD_NAMESPACE") or d.containerd_namespace,
        )


def _docker_chunks(base_url: str, name: str, engine: str) -> Iterator[bytes]:
    try:
        import docker
        from docker.errors import DockerException, ImageNotFound
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise CapabilityUnavailable("the docker SDK is not installed") from exc
    if base_url.startswith("unix://") and not os.path.exists(base_url[len("unix://") :]):
        # checked first: the SDK leaks its socket when the connection attempt fails
        raise CapabilityUnavailable(f"{engine} API at {base_url} is not reachable (no socket)")
    client = None
    try:
        client = docker.DockerClient(base_url=base_url, timeout=600)
        client.ping()
    except DockerException as exc:
        if client is not None:
            client.close()
        raise CapabilityUnavailable(f"{engine} API at {base_url} is not reachable: {exc}") from exc
    try:
        try:
            image = client.images.get(name)
        except ImageNotFound as exc:
            raise InputError(f"{engine} has no image {name!r}") from exc
        # keep the tag in manifest.json's RepoTags; Podman qualifies short names
        # (docker.io/..., localhost/...), so match the tag the engine itself reports
        tags = [str(t) for t in image.tags]
        named: str | bool = next(
            (t for t in tags if t == name or t.endswith("/" + name)), bool(tags)
        )
        yield from image.save(chunk_size=CHUNK, named=named)
    except DockerException as exc:
        raise AcquisitionError(f"{engine} could not export {name!r}: {exc}") from exc
    finally:
        client.close()


def _containerd_chunks(address: str, namespace: str, name: str) -> Iterator[bytes]:
    cmd = ["ctr", "-a", address, "-n", namespace, "images", "export", "-", name]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError as exc:
        raise CapabilityUnavailable("ctr (containerd's client) is not installed") from exc
    assert proc.stdout is not None and proc.stderr is not None  # noqa: S101 - PIPE given
    try:
        while True:
            b = proc.stdout.read(CHUNK)
            if not b:
                break
            yield b
    finally:
        proc.stdout.close()
        err = proc.stderr.read(4096).decode("utf-8", "replace").strip()
        proc.stderr.close()
        rc = proc.wait(timeout=60)
    if rc != 0:
        raise AcquisitionError(f"ctr images export {name!r} failed ({rc}): {err[:300]}")


def export(ref: RuntimeRef, sink: Sink, endpoints: Endpoints) -> tuple[int, str]:
    """Stream the image into ``sink``; returns (bytes, the command for the custody log)."""
    chunks: Iterator[bytes]
    if ref.scheme == "docker":
        chunks = _docker_chunks(endpoints.docker_host, ref.name, "Docker")
        command = f"docker API GET /images/{ref.name}/get ({endpoints.docker_host})"
    elif ref.scheme == "podman":
        sock = endpoints.podman_sock
        base = sock if "://" in sock else f"unix://{sock}"
        chunks = _docker_chunks(base, ref.name, "Podman")
        command = f"podman compat API GET /images/{ref.name}/get ({base})"
    else:
        ns = endpoints.containerd_namespace
        chunks = _containerd_chunks(endpoints.containerd_address, ns, ref.name)
        command = f"ctr -n {ns} images export - {ref.name}"
    total = 0
    for b in chunks:
        sink.write(b)
        total += len(b)
    return total, command


ExportFn = Callable[[RuntimeRef, Sink, Endpoints], tuple[int, str]]

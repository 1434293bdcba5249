"""Runtime backends behind one Protocol (:class:`podmortem.acquire.runtimes.base.Runtime`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from podmortem.acquire.runtimes.base import Runtime
from podmortem.acquire.target import TargetRef
from podmortem.errors import InputError


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where each runtime's API is; defaults are the engines' own defaults."""

    docker: str = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    podman: str = os.environ.get("PODMAN_HOST", "unix:///run/podman/podman.sock")
    cri: str = os.environ.get(
        "CONTAINER_RUNTIME_ENDPOINT", "unix:///run/containerd/containerd.sock"
    )
    kube_context: str | None = None
    kubeconfig: str | None = None
    # Kubernetes targets look their container up in this local CRI to get the node view; None
    # means "not on the node": the API and in-container views only.
    node_cri: str | None = None
    # Image for an ephemeral debug container when a pod's image has no ps (opt-in: it
    # changes the pod spec for good).
    debug_image: str | None = None
    # Kubernetes targets off their node: the node-agent Job's configuration
    # (a ``podmortem.acquire.node_agent.AgentConfig``); None means no agent.
    node_agent: Any = None


def open_runtime(ref: TargetRef, endpoints: Endpoints) -> Runtime:
    """A connected backend for ``ref`` (imports each SDK only when needed)."""
    if ref.scheme in ("docker", "podman"):
        from podmortem.acquire.runtimes import docker

        url = endpoints.docker if ref.scheme == "docker" else endpoints.podman
        return docker.DockerRuntime(docker.connect(url, ref.scheme), ref.ref, engine=ref.scheme)
    if ref.scheme == "cri":
        from podmortem.acquire.cri_proto import CriClient
        from podmortem.acquire.runtimes.cri import CriRuntime

        return CriRuntime(CriClient(endpoints.cri), ref.ref)
    if ref.scheme == "k8s":
        from podmortem.acquire.runtimes.kubernetes import KubernetesRuntime

        return KubernetesRuntime.connect(
            ref,
            context=endpoints.kube_context,
            kubeconfig=endpoints.kubeconfig,
            cri_endpoint=endpoints.node_cri,
            debug_image=endpoints.debug_image,
            agent=endpoints.node_agent,
        )
    raise InputError(f"unknown target scheme {ref.scheme!r}")

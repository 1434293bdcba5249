"""Target names as the user writes them: ``docker://NAME|ID``, ``podman://NAME|ID``,
``cri://CONTAINER_ID``, ``k8s://NAMESPACE/POD[/CONTAINER]``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from podmortem.errors import InputError

SCHEMES = ("docker", "podman", "cri", "k8s")
# Docker names: [a-zA-Z0-9][a-zA-Z0-9_.-]*; ids are hex. Kubernetes names are DNS labels or
# subdomains. Anything else is refused before it reaches an API or a path.
_CONTAINER_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,253}$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class TargetRef:
    scheme: str
    ref: str  # name or id; for k8s the pod name
    namespace: str = ""
    container: str = ""

    def __str__(self) -> str:
        if self.scheme == "k8s":
            tail = f"/{self.container}" if self.container else ""
            return f"k8s://{self.namespace}/{self.ref}{tail}"
        return f"{self.scheme}://{self.ref}"


def parse_target(text: str) -> TargetRef:
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in SCHEMES:
        raise InputError(
            f"target {text[:120]!r} must look like docker://NAME, podman://NAME, cri://ID or "
            "k8s://NAMESPACE/POD[/CONTAINER]"
        )
    if scheme == "k8s":
        parts = rest.split("/")
        if len(parts) not in (2, 3) or not all(_K8S_NAME.match(p) for p in parts):
            raise InputError(f"target {text[:120]!r}: expected k8s://NAMESPACE/POD[/CONTAINER]")
        return TargetRef(
            "k8s", parts[1], namespace=parts[0], container=parts[2] if len(parts) == 3 else ""
        )
    if not _CONTAINER_REF.match(rest):
        raise InputError(f"target {text[:120]!r}: {rest[:60]!r} is not a container name or id")
    return TargetRef(scheme, rest)

"""Live evidence acquisition from running containers (Docker, Podman, containerd CRI,
Kubernetes): volatile state first, from the node, sealed into a case within a time budget.

Public API::

    from podmortem.acquire import Options, acquire, parse_target
    doc = acquire(case, [parse_target("docker://web")], open_runtime, Options(budget=30))
"""

from podmortem.acquire.collector import Options, TargetCollector, TargetResult
from podmortem.acquire.session import acquire
from podmortem.acquire.target import TargetRef, parse_target

__all__ = ["Options", "TargetCollector", "TargetRef", "TargetResult", "acquire", "parse_target"]

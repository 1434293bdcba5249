"""The words the cloud procedures speak: the target, a step's outcome, and a recorded call.

A procedure is a list of steps (defined as data in ``playbooks/*.yaml``); running one step
against a live cluster yields an :class:`Outcome`. Every API call a step makes, read or
write, is a :class:`CallRecord`, and the step's outcome and calls become one custody record.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

Provider = Literal["eks", "aks", "gke"]
PROVIDERS: tuple[Provider, ...] = ("eks", "aks", "gke")
# Where a target lives: a managed cluster of one provider, or a cluster reached only through
# its Kubernetes API (``watch`` without --provider): then only the ``k8s.*`` steps exist.
KUBERNETES: Final = "kubernetes"
Platform = Literal["eks", "aks", "gke", "kubernetes"]
Phase = Literal["preserve", "contain"]
PHASES: tuple[Phase, ...] = ("preserve", "contain")


class Status(enum.StrEnum):
    """What a step did, or (dry run) would do."""

    WOULD_CHANGE = "would-change"  # dry run: the step would act
    CHANGED = "changed"
    UNCHANGED = "unchanged"  # already in the wanted state: nothing to do (idempotency)
    NOT_APPLICABLE = "not-applicable"  # nothing to act on (no Auto Scaling group, no pod)
    NOT_PERMITTED = "not-permitted"  # the provider refused or cannot do it (Auto Mode, locks)
    FAILED = "failed"

    @property
    def acted(self) -> bool:
        return self is Status.CHANGED


@dataclass(slots=True)
class Target:
    """What the investigator pointed at, and what was resolved from it.

    ``provider`` is ``kubernetes`` when no cloud is configured (Kubernetes steps only).

    ``pod`` is ``namespace/name``. ``instance`` is the provider's id for the node's machine:
    an EC2 instance id, an Azure scale-set VM (``<vmss>/<instance id>``), a GCE instance name.
    ``zone`` and ``group`` are filled by resolution (GCE zone, node resource group...)."""

    provider: Platform
    cluster: str
    pod: str | None = None
    node: str | None = None
    instance: str | None = None
    zone: str | None = None
    provider_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def namespace(self) -> str | None:
        return self.pod.split("/", 1)[0] if self.pod else None

    @property
    def pod_name(self) -> str | None:
        return self.pod.split("/", 1)[1] if self.pod else None

    def key(self) -> dict[str, str | None]:
        """The identity used to match custody records on ``release``."""
        return {
            "provider": self.provider,
            "cluster": self.cluster,
            "pod": self.pod,
            "node": self.node,
            "instance": self.instance,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class CallRecord:
    """One API call: what was sent, what came back, when, and how long it took."""

    service: str
    method: str
    params: dict[str, Any]
    started: str
    duration_s: float
    write: bool
    response: Any = None
    response_sha256: str | None = None
    response_truncated: bool = False
    error: str | None = None
    error_code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Outcome:
    """The result of one step. ``undo`` holds the state ``release`` needs to put things
    back (the prior security groups, the labels that were removed...)."""

    status: Status
    reason: str = ""
    undo: dict[str, Any] | None = None
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StepReport:
    """One step as run: its definition's id, the outcome and every call it made."""

    step_id: str
    phase: str
    title: str
    outcome: Outcome
    calls: list[CallRecord]
    custody_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step_id,
            "phase": self.phase,
            "title": self.title,
            "status": str(self.outcome.status),
            "reason": self.outcome.reason,
            "result": self.outcome.result,
            "undo": self.outcome.undo,
            "calls": [c.to_dict() for c in self.calls],
            "custody_hash": self.custody_hash,
        }

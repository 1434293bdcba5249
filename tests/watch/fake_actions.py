"""A stand-in for the acquisition and cloud libraries in tests that kill the process: each
step leaves the same custody records the real ones do (``acquisition_started`` ...
``acquisition_sealed``, ``cloud_step``) and an artifact, so the test can count effects."""

from __future__ import annotations

import time
from typing import Any

from podmortem.case.store import Case


class RecordingActions:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[tuple[str, str]] = []

    def acquire(self, case: Case, namespace: str, pod: str) -> dict[str, Any]:
        self.calls.append(("acquire", f"{namespace}/{pod}"))
        case.log_action("acquisition_started", {"targets": [f"k8s://{namespace}/{pod}"]})
        time.sleep(self.delay)
        case.add_bytes("evidence/ps.txt", f"{namespace}/{pod}\n".encode(), source="node")
        case.log_action("acquisition_sealed", {"complete": True})
        return {"complete": True}

    def preserve(self, case: Case, namespace: str, pod: str) -> list[dict[str, Any]]:
        self.calls.append(("preserve", f"{namespace}/{pod}"))
        case.log_action("cloud_step", {"step": "k8s.autoscaler-protection", "pod": pod})
        return [{"step": "k8s.autoscaler-protection", "status": "changed"}]

    def contain(self, case: Case, namespace: str, pod: str) -> list[dict[str, Any]]:
        self.calls.append(("contain", f"{namespace}/{pod}"))
        case.log_action("cloud_step", {"step": "k8s.quarantine", "pod": pod})
        return [{"step": "k8s.quarantine", "status": "changed"}]

"""The response steps, done by the other capabilities' libraries: ``podmortem.acquire`` for
the evidence, ``podmortem.cloud`` (:class:`~podmortem.cloud.executor.Procedure`) for the
autoscaler/cloud protection and the containment. Nothing here talks to an API itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from podmortem.acquire.collector import Options
from podmortem.acquire.session import RuntimeFactory, acquire
from podmortem.acquire.target import parse_target
from podmortem.case.store import Case
from podmortem.cloud.executor import Procedure
from podmortem.cloud.model import Phase, Target
from podmortem.errors import InputError

ProcedureFactory = Callable[[Case], Procedure]


class LibraryActions:
    """``target_template`` turns the pod an audit event names into an acquisition target:
    ``k8s://{namespace}/{pod}`` in a cluster; ``docker://{pod}`` maps pods to local
    containers (the engines of the tests and the benchmark)."""

    def __init__(
        self,
        open_runtime: RuntimeFactory,
        *,
        options: Options,
        target_template: str = "k8s://{namespace}/{pod}",
        procedure: ProcedureFactory | None = None,
        cloud_target: Mapping[str, Any] | None = None,
    ) -> None:
        if "{pod}" not in target_template:
            raise InputError("the acquisition target template must contain {pod}")
        self.open_runtime = open_runtime
        self.options = options
        self.template = target_template
        self.procedure = procedure
        self.cloud_target = dict(cloud_target or {})

    def acquire(self, case: Case, namespace: str, pod: str) -> dict[str, Any]:
        ref = parse_target(self.template.format(namespace=namespace, pod=pod))
        doc = acquire(case, [ref], self.open_runtime, self.options)
        return {
            "target": str(ref),
            "complete": bool(doc.get("complete")),
            "artifacts": len(doc.get("artifacts", [])),
            "findings": len(doc.get("findings", [])),
            "caveats": len(doc.get("caveats", [])),
        }

    def preserve(self, case: Case, namespace: str, pod: str) -> list[dict[str, Any]]:
        return self._phase(case, namespace, pod, "preserve")

    def contain(self, case: Case, namespace: str, pod: str) -> list[dict[str, Any]]:
        return self._phase(case, namespace, pod, "contain")

    def _phase(self, case: Case, namespace: str, pod: str, phase: Phase) -> list[dict[str, Any]]:
        if self.procedure is None or not self.cloud_target.get("provider"):
            case.log_action(
                "watch_step_skipped",
                {
                    "phase": phase,
                    "pod": f"{namespace}/{pod}",
                    "reason": "no cloud provider/cluster configured (--provider, --cluster)",
                },
            )
            return []
        proc = self.procedure(case)
        target = Target(
            provider=self.cloud_target["provider"],
            cluster=str(self.cloud_target.get("cluster", "")),
            pod=f"{namespace}/{pod}",
        )
        proc.resolve(target)
        reports = proc.run(target, [phase], execute=True)
        return [{"step": r.step_id, "status": str(r.outcome.status)} for r in reports]

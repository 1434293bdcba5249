"""The response steps, done by the other capabilities' libraries: ``podmortem.acquire`` for
the evidence, ``podmortem.cloud`` (:class:`~podmortem.cloud.executor.Procedure`) for the
autoscaler/cloud protection and the containment. Nothing here talks to an API itself.

Protection needs no cloud: with only the Kubernetes API the procedure is the ``k8s.*``
steps alone (case labels and annotations, Cluster Autoscaler and Karpenter annotations on
the pod and its node; with ``acquire+contain`` also detach, quarantine and cordon), run by
the same executor and recorded the same way as ``podmortem cloud preserve``. A provider
(``--provider``/``--cluster``) adds its cloud steps to the same procedure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from podmortem.acquire.collector import Options
from podmortem.acquire.session import RuntimeFactory, acquire
from podmortem.acquire.target import parse_target
from podmortem.case.store import Case
from podmortem.cloud.executor import Procedure
from podmortem.cloud.model import KUBERNETES, Phase, Provider, Target
from podmortem.errors import InputError

ProcedureFactory = Callable[[Case], Procedure]
NO_PROTECTION = (
    "no Kubernetes API or cloud provider configured: the acquisition target is not a"
    " Kubernetes pod (--target) and no --provider/--cluster was given"
)


class LibraryActions:
    """``target_template`` turns the pod an audit event names into an acquisition target:
    ``k8s://{namespace}/{pod}`` in a cluster; ``docker://{pod}`` maps pods to local
    containers (the engines of the tests and the benchmark).

    ``procedure`` builds the protection procedure for a response's case; its cloud step set
    is there only when ``provider`` is. Without a factory protection is skipped, and the
    custody log says why."""

    def __init__(
        self,
        open_runtime: RuntimeFactory,
        *,
        options: Options,
        target_template: str = "k8s://{namespace}/{pod}",
        procedure: ProcedureFactory | None = None,
        provider: Provider | None = None,
        cluster: str = "",
    ) -> None:
        if "{pod}" not in target_template:
            raise InputError("the acquisition target template must contain {pod}")
        self.open_runtime = open_runtime
        self.options = options
        self.template = target_template
        self.procedure = procedure
        self.provider = provider
        self.cluster = cluster

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
        if self.procedure is None:
            case.log_action(
                "watch_step_skipped",
                {"phase": phase, "pod": f"{namespace}/{pod}", "reason": NO_PROTECTION},
            )
            return []
        # The names come from an audit event (hostile input): Kubernetes names or nothing.
        parse_target(f"k8s://{namespace}/{pod}")
        proc = self.procedure(case)
        target = Target(
            provider=self.provider or KUBERNETES, cluster=self.cluster, pod=f"{namespace}/{pod}"
        )
        proc.resolve(target)
        reports = proc.run(target, [phase], execute=True)
        return [
            {"step": r.step_id, "status": str(r.outcome.status), "reason": r.outcome.reason}
            for r in reports
        ]

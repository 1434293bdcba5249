"""Running a procedure: each step inspects the live state, acts only with ``execute``, and
leaves one custody record holding the step's outcome and every API call it made (read or
write, with parameters, response and time). A refused or failed step is recorded with its
reason and the procedure goes on: one missing permission must not cost the other steps.

``release`` reads the custody log, not the cloud: it undoes exactly the changes this case
recorded (newest first), using the prior state each step saved, and records each undo.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from podmortem.case import Case, verify_case
from podmortem.case import paths as case_paths
from podmortem.case.custody import read_lines
from podmortem.cloud.calls import CallLog, ProviderRefused
from podmortem.cloud.model import Outcome, Phase, Status, StepReport, Target
from podmortem.cloud.playbook import StepSpec, procedure
from podmortem.errors import AcquisitionError, IntegrityError, PodmortemError

STEP_ACTION = "cloud_step"
RELEASE_ACTION = "cloud_release"
RESOLVE_ACTION = "cloud_target_resolved"


@dataclass(slots=True)
class StepContext:
    """What a step function gets: the case id for tags, the target, and the call log."""

    case_id: str
    target: Target
    calls: CallLog
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def execute(self) -> bool:
        return self.calls.execute


StepFn = Callable[[StepContext], Outcome]
UndoFn = Callable[[StepContext, Mapping[str, Any]], Outcome]


class StepSet(Protocol):
    """A provider module (or the Kubernetes containment) as the executor sees it."""

    @property
    def steps(self) -> Mapping[str, StepFn]: ...

    @property
    def undos(self) -> Mapping[str, UndoFn]: ...

    def resolve(self, target: Target, calls: CallLog) -> None: ...


class Procedure:
    """One provider's procedure against one target, recorded in ``case`` (if any).

    Either step set may be absent: without ``kube`` (``--no-kube``) the ``k8s.*`` steps are
    recorded as not applicable; without ``cloud`` (``watch`` with no provider configured,
    target provider ``kubernetes``) the procedure is the Kubernetes steps alone, run and
    recorded exactly as they are within a provider's procedure."""

    def __init__(
        self,
        cloud: StepSet | None,
        kube: StepSet | None,
        *,
        case: Case | None,
        case_id: str | None = None,
    ) -> None:
        self.cloud = cloud
        self.kube = kube
        self.case = case
        # Without a case (a plan) names derived from the case id show a placeholder.
        self.case_id = case.case_id if case is not None else (case_id or "CASE")

    # ------------------------------------------------------------------ resolve

    def resolve(self, target: Target) -> Target:
        """Fill in what the selectors imply (pod -> node -> instance, instance -> zone)."""
        calls = CallLog(execute=False)
        error: str | None = None
        failure: BaseException | None = None
        try:
            for steps in (self.kube, self.cloud):
                if steps is not None:
                    steps.resolve(target, calls)
        except ProviderRefused as exc:
            # Without resolution the target's identity (and its cluster membership) is
            # unverified: acting on it could change an unrelated machine. Record and stop.
            error = f"not permitted: {exc}"[:1000]
            failure = AcquisitionError(f"cannot resolve the target: {error}")
        except PodmortemError as exc:
            error = exc.message
            failure = exc
        except Exception as exc:  # the pod is gone, the API is down: recorded, then stop
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:1000]
            failure = AcquisitionError(f"cannot resolve the target: {error[:300]}")
        if self.case is not None:
            self.case.log_action(
                RESOLVE_ACTION,
                {
                    "target": target.to_dict(),
                    "calls": [c.to_dict() for c in calls.calls],
                    "error": error,
                },
            )
        if failure is not None:
            raise failure
        return target

    # ---------------------------------------------------------------------- run

    def specs(self, target: Target, phases: Iterable[Phase]) -> list[StepSpec]:
        wanted = set(phases)
        return [s for s in procedure(target.provider) if s.phase in wanted]

    def run(
        self,
        target: Target,
        phases: Iterable[Phase],
        *,
        execute: bool,
        on_step: Callable[[StepReport], None] | None = None,
    ) -> list[StepReport]:
        reports: list[StepReport] = []
        for spec in self.specs(target, phases):
            report = self._run_one(spec, target, execute)
            reports.append(report)
            if on_step is not None:
                on_step(report)
        return reports

    def _owner(self, step_id: str) -> StepSet | None:
        return self.kube if step_id.startswith("k8s.") else self.cloud

    @staticmethod
    def _absent(step_id: str) -> str:
        if step_id.startswith("k8s."):
            return "no Kubernetes API access configured"
        return "no cloud provider configured"

    def _run_one(self, spec: StepSpec, target: Target, execute: bool) -> StepReport:
        calls = CallLog(execute=execute)
        ctx = StepContext(case_id=self.case_id, target=target, calls=calls)
        owner = self._owner(spec.id)
        missing = [n for n in spec.needs if getattr(target, n) is None]
        if owner is None:
            outcome = Outcome(Status.NOT_APPLICABLE, self._absent(spec.id))
        elif missing:
            outcome = Outcome(Status.NOT_APPLICABLE, f"no {', '.join(missing)} selected/resolved")
        elif spec.id not in owner.steps:
            outcome = Outcome(Status.FAILED, f"no implementation for step {spec.id}")
        else:
            outcome = _guarded(lambda: owner.steps[spec.id](ctx))
        report = StepReport(spec.id, spec.phase, spec.title, outcome, calls.calls)
        if self.case is not None:
            details = report.to_dict()
            details.update(
                {"execute": execute, "target": target.to_dict(), "reversible": spec.reversible}
            )
            report.custody_hash = self.case.log_action(STEP_ACTION, details)
        return report

    # ------------------------------------------------------------------ release

    def pending_releases(self, target: Target, phases: Iterable[Phase]) -> list[dict[str, Any]]:
        """Changed, reversible steps recorded for this target and not released yet,
        newest first. Each item is the custody record's details plus its ``hash``."""
        if self.case is None:
            return []
        # The log decides what is changed back and where: a log that does not verify could
        # point the undo at anything, so nothing is released from it.
        report = verify_case(self.case.root)
        if not report.ok:
            raise IntegrityError(
                f"case {self.case.case_id} does not verify ({len(report.problems)} problem(s)); "
                "refusing to release from its custody log"
            )
        wanted = set(phases)
        data = (self.case.root / case_paths.CUSTODY).read_bytes()
        changed: list[dict[str, Any]] = []
        released: set[str] = set()
        for line in read_lines(data):
            rec = line.record
            if rec is None:
                continue
            d = rec.details
            if rec.action == RELEASE_ACTION and isinstance(d.get("releases"), str):
                if d.get("status") in (Status.CHANGED, Status.UNCHANGED):
                    released.add(d["releases"])
            elif (
                rec.action == STEP_ACTION
                and d.get("execute") is True
                and d.get("status") == Status.CHANGED
                and d.get("reversible") is True
                and isinstance(d.get("undo"), dict)
                and d.get("phase") in wanted
                and _same_target(d.get("target"), target)
            ):
                changed.append({**d, "hash": line.hash})
        return [c for c in reversed(changed) if c["hash"] not in released]

    def release(
        self,
        target: Target,
        phases: Iterable[Phase] = ("contain",),
        *,
        execute: bool,
        on_step: Callable[[StepReport], None] | None = None,
    ) -> list[StepReport]:
        reports: list[StepReport] = []
        titles = {s.id: s.title for s in procedure(target.provider)}
        for item in self.pending_releases(target, phases):
            step_id = str(item["step"])
            calls = CallLog(execute=execute)
            ctx = StepContext(case_id=self.case_id, target=target, calls=calls)
            owner = self._owner(step_id)
            if owner is None or step_id not in owner.undos:
                outcome = Outcome(Status.FAILED, f"cannot undo {step_id} here")
            else:
                outcome = _guarded(partial(owner.undos[step_id], ctx, item["undo"]))
            report = StepReport(
                step_id,
                str(item["phase"]),
                "undo: " + titles.get(step_id, step_id),
                outcome,
                calls.calls,
            )
            if self.case is not None and execute:
                details = report.to_dict()
                details.update({"releases": item["hash"], "target": target.to_dict()})
                report.custody_hash = self.case.log_action(RELEASE_ACTION, details)
            reports.append(report)
            if on_step is not None:
                on_step(report)
        return reports


def _guarded(fn: Callable[[], Outcome]) -> Outcome:
    """Run a step; a refusal or an error becomes its recorded outcome, never a crash of
    the whole procedure."""
    try:
        return fn()
    except ProviderRefused as exc:
        return Outcome(Status.NOT_PERMITTED, f"refused by the provider: {exc}"[:1000])
    except Exception as exc:  # any SDK or transport failure: recorded, the rest continue
        return Outcome(Status.FAILED, f"{type(exc).__name__}: {exc}"[:1000])


def _same_target(recorded: Any, target: Target) -> bool:
    if not isinstance(recorded, dict):
        return False
    if recorded.get("provider") != target.provider or recorded.get("cluster") != target.cluster:
        return False
    return any(
        getattr(target, k) is not None and recorded.get(k) == getattr(target, k)
        for k in ("instance", "node", "pod")
    )


def summarize(reports: Iterable[StepReport]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in reports:
        counts[str(r.outcome.status)] = counts.get(str(r.outcome.status), 0) + 1
    return counts

"""From a finding that names a pod to sealed evidence: open a case, acquire the pod (the
``acquire`` library, volatile tiers first), protect it from autoscalers (through the
Kubernetes API, and the cloud's API with a provider), and with ``acquire+contain`` isolate
it; every step in the case's custody log.

A noisy rule must not storm the cluster: at most ``max_responses`` per ``rate_window``
(wall clock) and one response per pod per ``cooldown``; the rest are recorded as
``rate-limited`` / ``cooldown`` with the finding that asked for them. ``dry_run`` records and
logs what would be done and touches nothing.

Responses are decided inside the chunk's transaction (keyed by finding id, so a replayed
chunk decides nothing again) and carried out afterwards; one that was interrupted by a crash
(status ``running``) is carried out again into a fresh case folder (``-a2``...), leaving the
partial one as it was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import duckdb

from podmortem.case import paths as case_paths
from podmortem.case.custody import read_lines
from podmortem.case.paths import safe_component
from podmortem.case.store import Case
from podmortem.errors import PodmortemError
from podmortem.findings import Finding, Severity
from podmortem.watch.detector import WatchFinding

Mode = Literal["none", "acquire", "acquire+contain"]
MODES: tuple[Mode, ...] = ("none", "acquire", "acquire+contain")
ACTIVE = ("pending", "running", "done", "failed")


class Actions(Protocol):
    """What a response does to a pod; each call records its own custody entries."""

    def acquire(self, case: Case, namespace: str, pod: str) -> dict[str, Any]: ...

    def preserve(self, case: Case, namespace: str, pod: str) -> list[dict[str, Any]]: ...

    def contain(self, case: Case, namespace: str, pod: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class ResponsePolicy:
    mode: Mode = "acquire"
    min_severity: Severity = Severity.HIGH
    dry_run: bool = False
    cooldown_s: float = 900.0
    max_responses: int = 5
    rate_window_s: float = 60.0


Log = Callable[..., None]


class Responder:
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        policy: ResponsePolicy,
        actions: Actions,
        case_root: Path,
        *,
        log: Log = lambda event, **kw: None,
        clock: Callable[[], float] = time.time,
        examiner: str = "podmortem-watch",
    ) -> None:
        self.con = con
        self.policy = policy
        self.actions = actions
        self.case_root = case_root
        self.log = log
        self.clock = clock
        self.examiner = examiner
        con.execute(
            "CREATE TABLE IF NOT EXISTS st.watch_actions (action_id VARCHAR, finding_id VARCHAR,"
            " pod VARCHAR, mode VARCHAR, status VARCHAR, decided_at DOUBLE, done_at DOUBLE,"
            " attempts INTEGER, case_dir VARCHAR, finding JSON, result JSON)"
        )

    # ------------------------------------------------------------------ decide

    def decide(self, findings: Sequence[WatchFinding]) -> list[dict[str, Any]]:
        """Record what to do for each new finding; call inside the chunk's transaction."""
        out: list[dict[str, Any]] = []
        p = self.policy
        for wf in findings:
            if p.mode == "none" or wf.pod is None or wf.finding.severity < p.min_severity:
                continue
            action_id = f"{wf.finding_id}:{p.mode}"
            if self._one("SELECT count(*) FROM st.watch_actions WHERE action_id = ?", action_id):
                continue  # decided before a restart
            now = self.clock()
            pod = "/".join(wf.pod)
            status = "dry-run" if p.dry_run else "pending"
            recent_pod = self._one(
                "SELECT count(*) FROM st.watch_actions WHERE pod = ? AND decided_at >= ?"
                " AND status IN ('pending', 'running', 'done', 'failed', 'dry-run')",
                pod,
                now - p.cooldown_s,
            )
            recent = self._one(
                "SELECT count(*) FROM st.watch_actions WHERE decided_at >= ?"
                " AND status IN ('pending', 'running', 'done', 'failed', 'dry-run')",
                now - p.rate_window_s,
            )
            if recent_pod and p.cooldown_s > 0:
                status = "cooldown"
            elif recent >= p.max_responses:
                status = "rate-limited"
            stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
            case_dir = (
                f"{stamp}-{safe_component(wf.pod[0])}-{safe_component(wf.pod[1])}"
                f"-{wf.finding_id[:8]}"
            )
            self.con.execute(
                "INSERT INTO st.watch_actions VALUES (?, ?, ?, ?, ?, ?, NULL, 0, ?, ?, NULL)",
                [
                    action_id,
                    wf.finding_id,
                    pod,
                    p.mode,
                    status,
                    now,
                    case_dir,
                    json.dumps(wf.finding.to_dict(), default=str),
                ],
            )
            decision: dict[str, Any] = {
                "action_id": action_id,
                "finding_id": wf.finding_id,
                "pod": pod,
                "mode": p.mode,
                "status": status,
                "case": str(self.case_root / case_dir),
            }
            if status == "dry-run":
                decision["would"] = self.plan(p.mode)
            out.append(decision)
        return out

    @staticmethod
    def plan(mode: Mode) -> list[str]:
        steps = [
            "open a case",
            "acquire the pod (volatile tiers first)",
            "protect it and its node (preserve: case marks, autoscaler annotations,"
            " cloud protection with --provider)",
        ]
        return steps + (["isolate it (contain)"] if mode == "acquire+contain" else [])

    # -------------------------------------------------------------- carry out

    def pending(self) -> list[tuple[Any, ...]]:
        return self.con.execute(
            "SELECT action_id, finding_id, pod, mode, attempts, case_dir, finding, decided_at"
            " FROM st.watch_actions WHERE status IN ('pending', 'running')"
            " ORDER BY decided_at, action_id"
        ).fetchall()

    def carry_out(self) -> list[dict[str, Any]]:
        """Run every pending (or interrupted) response; each is marked done when it is."""
        results = []
        for action_id, fid, pod, mode, attempts, case_dir, fjson, decided in self.pending():
            attempt = int(attempts) + 1
            # Durable before acting: a crash from here on shows as 'running' at restart.
            self.con.execute(
                "UPDATE st.watch_actions SET status = 'running', attempts = ? WHERE action_id = ?",
                [attempt, action_id],
            )
            t0 = time.monotonic()
            result = self._respond(
                self.case_root / case_dir, str(fid), str(pod), mode, fdoc=json.loads(fjson)
            )
            result["attempt"] = attempt
            result["response_s"] = round(time.monotonic() - t0, 3)
            result["decided_to_sealed_s"] = round(result["sealed_at"] - float(decided), 3)
            self.con.execute(
                "UPDATE st.watch_actions SET status = ?, done_at = ?, result = ?"
                " WHERE action_id = ?",
                [result["status"], self.clock(), json.dumps(result, default=str), action_id],
            )
            self.log("response", action_id=action_id, **result)
            results.append(result)
        return results

    def _open_case(self, folder: Path) -> tuple[Case, set[str]]:
        """The response's case, and the steps already done in it (from its custody log).

        A response interrupted by a crash is resumed, not repeated: a step is done when
        the custody log says so (``watch_step_done``; for the acquisition also the
        library's own ``acquisition_sealed``). An acquisition that started but was not
        sealed left partial artifacts under fixed names: it is redone in a fresh case
        (``-a2``...), and the partial one is kept as it is and named in the new one."""
        if not (folder / case_paths.MANIFEST).exists():
            self.case_root.mkdir(parents=True, exist_ok=True)
            return Case.init(folder, case_id=folder.name, examiner=self.examiner), set()
        case = Case.open(folder)
        records = [
            p.record
            for p in read_lines((folder / case_paths.CUSTODY).read_bytes())
            if p.record is not None
        ]
        actions = [r.action for r in records]
        done = {str(r.details.get("step")) for r in records if r.action == "watch_step_done"}
        if "acquisition_sealed" in actions:
            done.add("acquire")
        if "acquisition_started" in actions and "acquire" not in done:
            n = 2
            while (folder.parent / f"{folder.name}-a{n}").exists():
                n += 1
            fresh = Case.init(
                folder.parent / f"{folder.name}-a{n}",
                case_id=f"{folder.name}-a{n}",
                examiner=self.examiner,
            )
            fresh.log_action(
                "watch_resumed_after_interruption",
                {"partial_case": str(folder), "partial_custody_head": case.custody_head},
            )
            return fresh, set()
        case.log_action("watch_resumed_after_interruption", {"done": sorted(done)})
        return case, done

    def _respond(
        self, folder: Path, fid: str, pod: str, mode: str, *, fdoc: dict[str, Any]
    ) -> dict[str, Any]:
        namespace, name = pod.split("/", 1)
        t0 = time.monotonic()
        case, done = self._open_case(folder)
        if not done:
            case.log_action(
                "watch_trigger", {"finding_id": fid, "pod": pod, "mode": mode, "finding": fdoc}
            )
            from podmortem.case.index import store_findings

            store_findings(case, "watch", [Finding.from_dict(fdoc)])
        errors: list[str] = []
        acquired: dict[str, Any] = {}
        sealed_at, sealed_s = self.clock(), 0.0
        for step, fn in (
            ("acquire", self.actions.acquire),
            ("preserve", self.actions.preserve),
            *([("contain", self.actions.contain)] if mode == "acquire+contain" else []),
        ):
            if step not in done:
                try:
                    out: Any = fn(case, namespace, name)
                    case.log_action("watch_step_done", {"step": step, "result": out})
                    if step == "acquire":
                        acquired = out
                except PodmortemError as exc:
                    errors.append(f"{step}: {exc.message}")
                    case.log_action("watch_step_failed", {"step": step, "error": exc.message})
            if step == "acquire":
                sealed_at, sealed_s = self.clock(), time.monotonic() - t0
        status = "done" if not errors else "failed"
        case.log_action("watch_response_done", {"status": status, "errors": errors})
        return {
            "status": status,
            "case": str(case.root),
            "pod": pod,
            "finding_id": fid,
            "errors": errors,
            "acquire_s": round(sealed_s, 3),
            "sealed_at": sealed_at,
            "complete": bool(acquired.get("complete", False)),
            "custody_head": case.custody_head,
        }

    def _one(self, sql: str, *params: Any) -> int:
        row = self.con.execute(sql, list(params)).fetchone()
        return int(row[0]) if row else 0

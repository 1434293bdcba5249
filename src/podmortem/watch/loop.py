"""The long-running watch: poll each source, detect over each chunk, decide and carry out
responses, then save the sources' positions. The order is the exactly-once contract of
:mod:`podmortem.watch.state`."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from podmortem.audit.actors import ActorPolicy
from podmortem.audit.ruleset import RuleSet
from podmortem.errors import InputError
from podmortem.findings import Severity
from podmortem.watch.detector import IncrementalDetector
from podmortem.watch.health import Health
from podmortem.watch.jsonlog import JsonLog
from podmortem.watch.responder import Actions, Responder, ResponsePolicy
from podmortem.watch.sources.base import Source
from podmortem.watch.state import StateFile

DEFAULT_CHUNK_BYTES = 16 << 20
STATE_FILE = "state.json"
STATE_DB = "watch.duckdb"


@dataclass(slots=True)
class Counters:
    chunks: int = 0
    events: int = 0
    duplicate_events: int = 0
    findings: int = 0
    responses: int = 0
    started: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunks": self.chunks,
            "events": self.events,
            "duplicate_events": self.duplicate_events,
            "findings": self.findings,
            "responses": self.responses,
        }


class Watcher:
    def __init__(
        self,
        sources: Sequence[Source],
        *,
        state_dir: Path,
        rules: RuleSet,
        policy: ResponsePolicy,
        actions: Actions,
        case_root: Path,
        log: JsonLog | None = None,
        health: Health | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        poll_interval: float = 0.2,
        report_min_severity: Severity = Severity.INFORMATIONAL,
        actor_policy: ActorPolicy | None = None,
        memory_limit: str = "1GB",
    ) -> None:
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise InputError("the same source is given twice")
        self.sources = list(sources)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state = StateFile(state_dir / STATE_FILE)
        self.log = log or JsonLog()
        self.health = health or Health()
        self.chunk_bytes = chunk_bytes
        self.poll_interval = poll_interval
        self.report_min_severity = report_min_severity
        self.counters = Counters()
        self.con = duckdb.connect()
        self.con.execute(f"SET memory_limit = '{memory_limit}'")
        self.con.execute("SET enable_progress_bar = false")
        db = str(state_dir / STATE_DB).replace("'", "''")
        self.con.execute(f"ATTACH '{db}' AS st")
        scratch = state_dir / "scratch"
        scratch.mkdir(exist_ok=True)
        self.detector = IncrementalDetector(self.con, rules, policy=actor_policy, scratch=scratch)
        self.responder = Responder(self.con, policy, actions, case_root, log=self.log)
        self.positions: dict[str, Any] = {}

    def start(self) -> None:
        doc = self.state.load()
        self.positions = dict(doc["positions"])
        for s in self.sources:
            s.seek(self.positions.get(s.name))
        self.log(
            "watch_started",
            sources=[s.name for s in self.sources],
            resumed={k: v for k, v in self.positions.items()},
        )
        # Responses decided before a crash and not finished: do them now.
        for _ in self.responder.carry_out():
            self.counters.responses += 1

    def step(self) -> bool:
        """One pass over the sources; True when any of them gave records."""
        busy = False
        for s in self.sources:
            chunk = s.poll(self.chunk_bytes)
            if chunk is None:
                continue
            for note in chunk.notes:
                self.log("source_note", source=s.name, **note)
            if chunk.records == 0 and not chunk.position:
                continue
            busy = busy or chunk.records > 0
            start = self.positions.get(s.name, {}).get("offset")
            res = self.detector.process(chunk.data, source=s.name, offset=start)
            self.con.execute("BEGIN TRANSACTION")
            try:
                self.detector.persist()
                decisions = self.responder.decide(res.new_findings)
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            c = self.counters
            c.chunks += 1
            c.events += res.events
            c.duplicate_events += res.duplicate_events
            c.findings += len(res.new_findings)
            for cav in res.caveats:
                self.log("caveat", source=s.name, kind=cav.kind, message=cav.message)
            for wf in res.new_findings:
                if wf.finding.severity >= self.report_min_severity:
                    self.log("finding", source=s.name, **wf.to_dict())
            for d in decisions:
                self.log("response_decided", **d)
            c.responses += len(self.responder.carry_out())
            s.commit(chunk.position)
            if chunk.position:
                self.positions[s.name] = chunk.position
            self.state.save(self.positions)
            self.log(
                "chunk",
                source=s.name,
                events=res.events,
                duplicates=res.duplicate_events,
                hits=res.hits,
                new_findings=len(res.new_findings),
                updated_findings=res.updated_findings,
                window_rows=res.window_rows,
            )
        self.health.beat(**self.counters.to_dict())
        return busy

    def run(self, stop: threading.Event, *, exit_when_idle: bool = False) -> Counters:
        self.start()
        while not stop.is_set():
            busy = self.step()
            if not busy:
                if exit_when_idle:
                    break
                stop.wait(self.poll_interval)
        self.close()
        return self.counters

    def close(self) -> None:
        for s in self.sources:
            s.close()
        self.con.close()
        self.log("watch_stopped", **self.counters.to_dict())

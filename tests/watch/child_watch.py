"""Run a watcher over one file until it is idle (the process the kill -9 test kills).

usage: child_watch.py FILE STATE_DIR CASE_ROOT CHUNK_BYTES DELAY"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fake_actions import RecordingActions

from podmortem.audit.analyze import load_rules
from podmortem.findings import Severity
from podmortem.watch.jsonlog import JsonLog
from podmortem.watch.loop import Watcher
from podmortem.watch.responder import ResponsePolicy
from podmortem.watch.sources.tail import TailSource


def main() -> None:
    file, state, cases, chunk, delay = sys.argv[1:6]
    Path(state).mkdir(parents=True, exist_ok=True)
    w = Watcher(
        [TailSource(Path(file))],
        state_dir=Path(state),
        rules=load_rules(),
        # No wall-clock limits: the decisions must not depend on how long the run took.
        policy=ResponsePolicy(
            mode="acquire+contain",
            min_severity=Severity.HIGH,
            cooldown_s=0.0,
            max_responses=1_000_000,
        ),
        actions=RecordingActions(float(delay)),
        case_root=Path(cases),
        log=JsonLog(open(Path(state) / "log.jsonl", "a")),  # noqa: SIM115 - lives as long as the process
        chunk_bytes=int(chunk),
        poll_interval=0.05,
    )
    w.run(threading.Event(), exit_when_idle=True)


if __name__ == "__main__":
    main()

"""Targets for acquisition tests without a container engine: real processes in their own PID,
network and mount namespaces (``unshare``), which is what a container is to the node's /proc.

The integration tests against Docker, Podman and containerd reuse the harness fixtures of
``tests/integration/conftest.py`` (imported in ``test_live_engines.py``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from acquire_targets import NsTarget, children, wait_for


@pytest.fixture
def make_ns_target(tmp_path: Path) -> Iterator[Callable[[str], NsTarget]]:
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("namespaced test targets need Linux, root and unshare")
    started: list[subprocess.Popen[bytes]] = []

    def make(script: str, env: dict[str, str] | None = None) -> NsTarget:
        ready = tmp_path / f"ready-{len(started)}"
        # The script signals readiness by creating $READY; it must end in a long sleep.
        outer = subprocess.Popen(
            [
                "unshare",
                "--pid",
                "--net",
                "--mount",
                "--fork",
                "--mount-proc",
                "--kill-child",
                "/bin/sh",
                "-c",
                script,
            ],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "READY": str(ready), **(env or {})},
            start_new_session=True,
        )
        started.append(outer)
        wait_for(lambda: ready.exists() and bool(children(outer.pid)))
        return NsTarget(pid=children(outer.pid)[0], outer=outer, workdir=tmp_path)

    yield make
    for p in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)

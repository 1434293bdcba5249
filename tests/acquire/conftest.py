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
        pid = children(outer.pid)[0]
        # Every script ends in `exec ...`: wait until the shell has become that program.
        wait_for(lambda: not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/bin/sh"))
        return NsTarget(pid=pid, outer=outer, workdir=tmp_path)

    yield make
    for p in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)


# --- the harness fixtures of tests/integration/conftest.py, for test_live_engines.py ----------
# tests/ is not a package, so that conftest is loaded by path under a private name; its
# helper module `engines` is importable once its folder is on sys.path.
def _load_integration_fixtures() -> object:
    import importlib.util

    folder = Path(__file__).resolve().parents[1] / "integration"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(
        "podmortem_integration_fixtures", folder / "conftest.py"
    )
    if spec is None or spec.loader is None:  # pragma: no cover
        raise ImportError("tests/integration/conftest.py not loadable")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_fx = _load_integration_fixtures()
engine_endpoints = _fx.engine_endpoints  # type: ignore[attr-defined]
docker_client = _fx.docker_client  # type: ignore[attr-defined]
podman_client = _fx.podman_client  # type: ignore[attr-defined]
cri_client = _fx.cri_client  # type: ignore[attr-defined]
make_docker_container = _fx.make_docker_container  # type: ignore[attr-defined]
make_podman_container = _fx.make_podman_container  # type: ignore[attr-defined]
make_cri_pod = _fx.make_cri_pod  # type: ignore[attr-defined]

"""End to end on namespaced processes (what a container is to the node), through the same
collectors and session the engines use; the runtime is a bare process (nsenter exec)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from acquire_targets import NsTarget

from podmortem.acquire import Options, acquire
from podmortem.acquire.runtimes.base import ExecOutput
from podmortem.acquire.runtimes.process import ProcessRuntime
from podmortem.acquire.target import TargetRef
from podmortem.case import Case, verify_case

BUSYBOX = "/bin/busybox"
PORT = 4444

PLANTED = f"""
mount -t tmpfs tmpfs /dev/shm
printf 'staged' > /dev/shm/loot
mkdir -p /tmp/pm-stage-$$ && cp {BUSYBOX} /tmp/pm-stage-$$/nc
/tmp/pm-stage-$$/nc -ll -p {PORT} -e /bin/cat &
sleep 0.2; rm -rf /tmp/pm-stage-$$
sleep 3000 &
touch $READY
exec sleep 3001
"""


def _need_busybox() -> None:
    if not Path(BUSYBOX).is_file():
        pytest.skip("busybox (Debian busybox-static) is needed to plant a listener")


def _run(case_dir: Path, runtime: ProcessRuntime, budget: float = 20.0, **opts: object) -> dict:
    case = Case.init(case_dir, case_id="T-1", examiner="pytest")
    ref = TargetRef("docker", f"ns-{runtime.pid}")
    return acquire(case, [ref], lambda _r: runtime, Options(budget=budget, **opts))  # type: ignore[arg-type]


def test_planted_state_found_and_case_verifies(
    make_ns_target: Callable[..., NsTarget], tmp_path: Path
) -> None:
    _need_busybox()
    t = make_ns_target(PLANTED, env={"DB_PASSWORD": "hunter2"})
    doc = _run(tmp_path / "case", ProcessRuntime(t.pid))
    rules = {f["rule_id"] for f in doc["findings"]}
    assert {
        "acquire.deleted-executable",
        "acquire.listener-from-deleted-binary",
        "acquire.secret-in-environment",
        "acquire.ram-backed-file",
    } <= rules
    assert "acquire.hidden-process" not in rules  # the real ps sees everything
    secrets = [f for f in doc["findings"] if f["rule_id"] == "acquire.secret-in-environment"]
    # Inherited by every process of the tree, reported once with all holders.
    assert len(secrets) == 1 and len(secrets[0]["extra"]["pids"]) >= 3
    nc = [p for p in doc["processes"] if p["exe_deleted"]]
    assert len(nc) == 1 and nc[0]["cmdline"][1:4] == ["-ll", "-p", str(PORT)]
    assert (
        nc[0]["exe_sha256"] == __import__("hashlib").sha256(Path(BUSYBOX).read_bytes()).hexdigest()
    )
    assert {p["ns_pid"] for p in doc["processes"]} >= {1}
    lis = [s for s in doc["sockets"] if s["local_port"] == PORT]
    assert lis and lis[0]["state"] == "LISTEN" and lis[0]["pid"] == nc[0]["pid"]
    # The JSON contract of the issue.
    assert set(doc) >= {
        "targets",
        "elapsed_s",
        "complete",
        "caveats",
        "processes",
        "sockets",
        "fs_changes",
        "artifacts",
        "findings",
    }
    assert set(doc["processes"][0]) >= {
        "pid",
        "ns_pid",
        "ppid",
        "cmdline",
        "exe",
        "exe_deleted",
        "exe_sha256",
    }
    assert set(lis[0]) >= {
        "proto",
        "local_address",
        "local_port",
        "remote_address",
        "remote_port",
        "state",
        "pid",
    }
    arts = {a["path"]: a for a in doc["artifacts"]}
    env_art = next(a for p, a in arts.items() if p.endswith("t1/environ.json"))
    assert env_art["sensitive"] and env_art["source"] == "node"
    assert any(
        p.endswith("t1/in-container/ps.txt") and a["source"] == "in-container"
        for p, a in arts.items()
    )
    assert any("t3/ram/dev_shm/loot" in p for p in arts)
    # No finding carries the secret's value.
    assert "hunter2" not in json.dumps(doc["findings"])
    report = verify_case(tmp_path / "case")
    assert report.ok, report.problems
    assert os.path.exists(f"/proc/{t.pid}")  # the target still runs
    assert doc["elapsed_s"] < 5


class TrojanedPs(ProcessRuntime):
    """The container's ps hides lines mentioning 3000 (as a trojaned ps or rootkit does)."""

    def exec(self, cmd: Sequence[str], *, timeout: float, max_bytes: int) -> ExecOutput:
        out = super().exec(cmd, timeout=timeout, max_bytes=max_bytes)
        kept = b"\n".join(ln for ln in out.stdout.split(b"\n") if b"3000" not in ln)
        return ExecOutput(out.rc, kept, out.stderr, out.truncated, out.timed_out, out.error)


def test_process_hidden_from_the_container_view(
    make_ns_target: Callable[..., NsTarget], tmp_path: Path
) -> None:
    t = make_ns_target("sleep 3000 & touch $READY; exec sleep 3001")
    doc = _run(tmp_path / "case", TrojanedPs(t.pid))
    hidden = [f for f in doc["findings"] if f["rule_id"] == "acquire.hidden-process"]
    assert len(hidden) == 1
    host_pid = hidden[0]["extra"]["host_pid"]
    assert Path(f"/proc/{host_pid}/cmdline").read_bytes().split(b"\0")[1] == b"3000"


class NoShell(ProcessRuntime):
    def exec(self, cmd: Sequence[str], *, timeout: float, max_bytes: int) -> ExecOutput:
        return ExecOutput(127, b'exec: "ps": executable file not found in $PATH\n', b"")


def test_image_without_shell_still_gets_the_node_view(
    make_ns_target: Callable[..., NsTarget], tmp_path: Path
) -> None:
    t = make_ns_target("touch $READY; exec sleep 3001")
    doc = _run(tmp_path / "case", NoShell(t.pid))
    kinds = {c["kind"] for c in doc["caveats"]}
    assert "in-container-view-unavailable" in kinds
    assert [p["ns_pid"] for p in doc["processes"]] == [1]
    assert doc["targets"][0]["node_view"] and not doc["targets"][0]["in_container_view"]


class HangingExec(ProcessRuntime):
    def exec(self, cmd: Sequence[str], *, timeout: float, max_bytes: int) -> ExecOutput:
        return super().exec(["sleep", "600"], timeout=timeout, max_bytes=max_bytes)


def test_hanging_exec_is_bounded_by_the_budget(
    make_ns_target: Callable[..., NsTarget], tmp_path: Path
) -> None:
    t = make_ns_target("touch $READY; exec sleep 3001")
    start = time.monotonic()
    doc = _run(tmp_path / "case", HangingExec(t.pid), budget=2.0)
    assert time.monotonic() - start < 6
    kinds = {c["kind"] for c in doc["caveats"]}
    assert "in-container-view-unavailable" in kinds
    assert doc["processes"]  # the node view came first and is kept
    assert verify_case(tmp_path / "case").ok


class FloodingPs(ProcessRuntime):
    def exec(self, cmd: Sequence[str], *, timeout: float, max_bytes: int) -> ExecOutput:
        script = "yes \"$(printf '\\033]0;pwn\\007')$(head -c 5000 /dev/zero | tr '\\0' A)\""
        return super().exec(["sh", "-c", script], timeout=1.0, max_bytes=max_bytes)


def test_flooding_output_is_cut(make_ns_target: Callable[..., NsTarget], tmp_path: Path) -> None:
    t = make_ns_target("touch $READY; exec sleep 3001")
    doc = _run(tmp_path / "case", FloodingPs(t.pid), max_exec_output=64 * 1024)
    ps = next(a for a in doc["artifacts"] if a["path"].endswith("in-container/ps.txt"))
    assert ps["size"] <= 64 * 1024 + 64
    assert verify_case(tmp_path / "case").ok


class KilledDuringExec(ProcessRuntime):
    def __init__(self, pid: int, outer: int) -> None:
        super().__init__(pid)
        self.outer = outer

    def exec(self, cmd: Sequence[str], *, timeout: float, max_bytes: int) -> ExecOutput:
        os.killpg(self.outer, signal.SIGKILL)  # the container dies mid-acquisition
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{self.pid}") and time.monotonic() < deadline:
            time.sleep(0.02)
        return ExecOutput(None, b"", b"", error="container is not running")


def test_target_killed_mid_acquisition_gives_a_sealed_partial_case(
    make_ns_target: Callable[..., NsTarget], tmp_path: Path
) -> None:
    t = make_ns_target("printf x > /tmp/pm-x-$$; sleep 3000 & touch $READY; exec sleep 3001")
    doc = _run(tmp_path / "case", KilledDuringExec(t.pid, t.outer.pid))
    assert not doc["complete"]
    assert "target-exited" in {c["kind"] for c in doc["caveats"]}
    assert len(doc["processes"]) == 2  # T1 was taken before it died
    report = verify_case(tmp_path / "case")
    assert report.ok, report.problems
    custody = (tmp_path / "case" / "custody.jsonl").read_text().splitlines()
    assert json.loads(custody[-1])["action"] == "acquisition_sealed"


def test_unreachable_runtime_is_a_caveat_not_a_crash(tmp_path: Path) -> None:
    from podmortem.errors import CapabilityUnavailable

    def refuse(_ref: TargetRef) -> ProcessRuntime:
        raise CapabilityUnavailable("docker API at unix:///nope is not reachable")

    case = Case.init(tmp_path / "case", case_id="T-2", examiner="pytest")
    doc = acquire(case, [TargetRef("docker", "x")], refuse, Options(budget=5))
    assert not doc["complete"] and doc["caveats"][0]["kind"] == "step-failed"
    assert verify_case(tmp_path / "case").ok


def test_node_scope_files_once_per_case(
    make_ns_target: Callable[..., NsTarget], tmp_path: Path
) -> None:
    t = make_ns_target("touch $READY; exec sleep 3001")
    case = Case.init(tmp_path / "case", case_id="T-3", examiner="pytest")
    for _ in range(2):  # a second run into the same case
        acquire(
            case, [TargetRef("docker", "x")], lambda _r: ProcessRuntime(t.pid), Options(budget=10)
        )
    paths = [a.path for a in case.artifacts]
    assert paths.count("artifacts/node/version") == 1
    assert (tmp_path / "case" / "artifacts" / "node" / "version").read_bytes().startswith(b"Linux")
    assert verify_case(tmp_path / "case").ok


def test_cli_refuses_a_bad_target_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [
            str(Path(sys.executable).parent / "podmortem"),
            "acquire",
            "docker://../../etc",
            "--case",
            str(tmp_path / "case"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 3
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert not (tmp_path / "case").exists()  # refused before anything was written

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from acquire_targets import NsTarget, wait_for

from podmortem.acquire.node import procfs

SLEEP = shutil.which("sleep") or "/bin/sleep"


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def linux_root() -> None:
    if os.geteuid() != 0 or not Path("/proc/self/status").exists():
        pytest.skip("needs Linux /proc as root")


def test_read_process_of_a_sleep(linux_root: None) -> None:
    p = subprocess.Popen([SLEEP, "30"], env={"PM_SECRET_TOKEN": "x"})
    try:
        # Until the child has exec'd, /proc shows the forked Python; the kernel switches exe
        # before it sets up the new argument pages (cmdline reads empty in between).
        wait_for(lambda: Path(f"/proc/{p.pid}/cmdline").read_bytes().startswith(SLEEP.encode()))
        rec = procfs.read_process(p.pid, btime=procfs.boot_time())
        assert rec.cmdline == [SLEEP, "30"]
        assert rec.ppid == os.getpid()
        assert rec.ns_pid == p.pid  # same PID namespace as us
        assert rec.exe == os.path.realpath(SLEEP) and not rec.exe_deleted
        assert rec.start_time and rec.start_time.startswith(time.strftime("%Y-", time.gmtime()))
        assert "cap_sys_admin" in rec.capabilities["eff"]
        assert set(rec.namespaces) >= {"pid", "net", "mnt"}
        env, truncated = procfs.read_environ(p.pid)
        assert env == {"PM_SECRET_TOKEN": "x"} and not truncated
        sha, size = procfs.hash_executable(p.pid)
        assert sha == _sha(os.path.realpath(SLEEP)) and size == os.path.getsize(SLEEP)
    finally:
        p.kill()
        p.wait()


def test_deleted_executable_is_hashed_and_copied(linux_root: None, tmp_path: Path) -> None:
    copy = tmp_path / "implant"
    shutil.copy(SLEEP, copy)
    expected = _sha(str(copy))
    p = subprocess.Popen([str(copy), "30"])
    try:
        wait_for(lambda: os.readlink(f"/proc/{p.pid}/exe") == str(copy))
        copy.unlink()
        rec = procfs.read_process(p.pid, btime=procfs.boot_time())
        assert rec.exe_deleted and rec.exe == f"{copy} (deleted)"
        chunks: list[bytes] = []
        sha, _ = procfs.hash_executable(p.pid, sink=chunks.append)
        assert sha == expected == hashlib.sha256(b"".join(chunks)).hexdigest()
    finally:
        p.kill()
        p.wait()


def test_memfd_executable(linux_root: None) -> None:
    fd = os.memfd_create("payload", 0)
    os.write(fd, Path(os.path.realpath(SLEEP)).read_bytes())
    p = subprocess.Popen([f"/proc/self/fd/{fd}", "30"], pass_fds=(fd,))
    os.close(fd)
    try:
        wait_for(lambda: os.readlink(f"/proc/{p.pid}/exe").startswith("/memfd:"))
        rec = procfs.read_process(p.pid, btime=procfs.boot_time())
        assert rec.exe_memfd and rec.exe.startswith("/memfd:payload")
        assert procfs.hash_executable(p.pid)[0] == _sha(os.path.realpath(SLEEP))
    finally:
        p.kill()
        p.wait()


def test_gone_process_raises(linux_root: None) -> None:
    p = subprocess.Popen([SLEEP, "0"])
    p.wait()
    with pytest.raises(procfs.ProcessGoneError):
        procfs.read_process(p.pid, btime=0.0)
    with pytest.raises(procfs.ProcessGoneError):
        procfs.container_pids(p.pid)


def test_container_pids_by_pid_namespace_with_nspid(
    make_ns_target: Callable[..., NsTarget],
) -> None:
    t = make_ns_target(f"{SLEEP} 300 & {SLEEP} 301 & touch $READY; exec {SLEEP} 302")

    def settled() -> bool:
        # Three processes, and the namespace's init has exec'd sleep (before that it is
        # still the shell: under load the exec can lag the two background sleeps).
        pids = procfs.container_pids(t.pid)[0]
        return len(pids) == 3 and procfs.read_process(t.pid, btime=0.0).cmdline == [SLEEP, "302"]

    wait_for(settled)
    pids, how = procfs.container_pids(t.pid)
    assert how == "pid-namespace"
    recs = [procfs.read_process(p, btime=procfs.boot_time()) for p in pids]
    by_ns = {r.ns_pid: r for r in recs}
    assert by_ns[1].pid == t.pid and by_ns[1].cmdline == [SLEEP, "302"]
    assert sorted(r.cmdline[1] for r in recs) == ["300", "301", "302"]
    assert all(len(r.nspid_chain) == 2 and r.nspid_chain[0] == r.pid for r in recs)
    assert os.getpid() not in pids


def test_container_pids_falls_back_to_cgroup_in_host_pid_namespace(linux_root: None) -> None:
    p = subprocess.Popen([SLEEP, "30"])
    try:
        wait_for(lambda: os.readlink(f"/proc/{p.pid}/exe") == os.path.realpath(SLEEP))
        pids, how = procfs.container_pids(p.pid)
        assert how == "cgroup" and p.pid in pids
    finally:
        p.kill()
        p.wait()


def test_cap_names() -> None:
    assert procfs.cap_names("0000000000000001") == ["cap_chown"]
    assert procfs.cap_names("0000000000200000") == ["cap_sys_admin"]
    assert procfs.cap_names("zz") == []

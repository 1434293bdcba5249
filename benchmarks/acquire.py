"""Benchmark: seconds to a sealed case for 1 and for 10 running containers (no --memory).

Side by side, in one run, on the test Docker engine (``scripts/engines.sh start``):

* floor      the cost of just reading the same data from the node, no hashing, no case:
             /proc/<pid>/{status,cmdline,environ,fd/*,net/*,mountinfo} of every container
             process, the files of the overlay upperdir and of /dev/shm (plain Python reads);
* podmortem  ``podmortem acquire docker://C1 ... --case DIR --json OUT``, wall clock of the
             whole command (interpreter start and imports included), all targets at once;
* docker-exec the way existing tools collect the same information: a sequential script of
             ``docker inspect/top/logs/diff`` and ``docker exec`` of ps, cat /proc/net/*,
             environ, mountinfo, passwd/shadow/crontabs and the /dev/shm listing per
             container, each output hashed with sha256sum (UAC- and docker-forensics-style).

Targets: 1 container < 3 s, 10 containers < 10 s on 2 cores. Writes
``benchmarks/results/acquire.json``. Run: ``.venv/bin/python benchmarks/acquire.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOCKER_HOST = os.environ.get("PODMORTEM_DOCKER_HOST", "unix:///run/podmortem-ci/docker.sock")
IMAGE = os.environ.get("PODMORTEM_TEST_IMAGE", "podmortem-test/busybox:latest")
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
PODMORTEM = str(Path(sys.executable).parent / "podmortem")
# A little state worth collecting in each container: a secret, a listener, staged files.
PLANT = (
    "echo 'svc:x:0:0::/root:/bin/sh' >> /etc/passwd; head -c 200000 /dev/urandom > /tmp/blob; "
    "echo staged > /dev/shm/payload; nc -ll -p 8080 -e /bin/cat & exec sleep 3600"
)
PEER_EXECS = (
    ["ps", "-o", "pid,ppid,user,args"],
    ["cat", "/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp", "/proc/net/udp6", "/proc/net/unix"],
    ["cat", "/proc/1/environ"],
    ["cat", "/proc/1/mountinfo"],
    ["cat", "/etc/passwd", "/etc/shadow", "/etc/group"],
    [
        "sh",
        "-c",
        "cat /etc/crontab /var/spool/cron/crontabs/* /root/.ssh/authorized_keys "
        "/root/.ash_history 2>/dev/null; true",
    ],
    ["ls", "-la", "/dev/shm", "/tmp"],
    ["cat", "/etc/resolv.conf", "/etc/hosts"],
)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([DOCKER, "-H", DOCKER_HOST, *args], capture_output=True, check=check)


def start(n: int) -> list[str]:
    names = []
    for _ in range(n):
        name = f"pm-bench-{uuid.uuid4().hex[:8]}"
        docker(
            "run",
            "-d",
            "--name",
            name,
            "--label",
            "podmortem.test=1",
            "-e",
            "DB_PASSWORD=hunter2",
            IMAGE,
            "sh",
            "-c",
            PLANT,
        )
        names.append(name)
    time.sleep(1.0)
    return names


def remove(names: list[str]) -> None:
    if names:
        docker("rm", "-f", *names, check=False)


def floor(names: list[str]) -> float:
    """Just read what podmortem reads, from the node."""
    t = time.monotonic()
    for name in names:
        doc = json.loads(docker("inspect", name).stdout)[0]
        pid = doc["State"]["Pid"]
        upper = doc["GraphDriver"]["Data"]["UpperDir"]
        ns = os.readlink(f"/proc/{pid}/ns/pid")
        pids = [p for p in os.listdir("/proc") if p.isdigit() and _ns(p) == ns]
        for p in pids:
            for f in ("status", "stat", "cmdline", "environ", "mountinfo", "cgroup"):
                _read(f"/proc/{p}/{f}")
            for fd in _listdir(f"/proc/{p}/fd"):
                _readlink(f"/proc/{p}/fd/{fd}")
            _read(f"/proc/{p}/exe")
        for table in ("tcp", "tcp6", "udp", "udp6", "unix", "raw", "packet", "dev", "route"):
            _read(f"/proc/{pid}/net/{table}")
        for root in (upper, f"/proc/{pid}/root/dev/shm"):
            for dirpath, _dirs, files in os.walk(root):
                for fn in files:
                    _read(os.path.join(dirpath, fn))
    return time.monotonic() - t


def _ns(p: str) -> str:
    try:
        return os.readlink(f"/proc/{p}/ns/pid")
    except OSError:
        return ""


def _read(path: str) -> None:
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        while fh.read(1 << 20):
            pass


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _readlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.readlink(path)


def podmortem(names: list[str], work: Path) -> tuple[float, dict[str, Any]]:
    case = work / f"case-{uuid.uuid4().hex[:6]}"
    out = work / f"{case.name}.json"
    t = time.monotonic()
    r = subprocess.run(
        [
            PODMORTEM,
            "acquire",
            *[f"docker://{n}" for n in names],
            "--case",
            str(case),
            "--json",
            str(out),
            "--docker-host",
            DOCKER_HOST,
            "--budget",
            "60",
        ],
        capture_output=True,
        check=False,
    )
    wall = time.monotonic() - t
    if r.returncode:
        raise SystemExit(f"podmortem failed: {r.stderr.decode()[-2000:]}")
    doc = json.loads(out.read_text())
    verify = subprocess.run(
        [PODMORTEM, "case", "verify", str(case)], capture_output=True, check=False
    )
    return wall, {
        "in_process_s": doc["elapsed_s"],
        "complete": doc["complete"],
        "artifacts": len(doc["artifacts"]),
        "processes": len(doc["processes"]),
        "sockets": len(doc["sockets"]),
        "fs_changes": len(doc["fs_changes"]),
        "findings": len(doc["findings"]),
        "verified": verify.returncode == 0,
    }


def cli_startup() -> float:
    """``podmortem version``: interpreter start plus the CLI's imports (every capability),
    the fixed part of any podmortem command's wall clock."""
    t = time.monotonic()
    subprocess.run([PODMORTEM, "version"], capture_output=True, check=True)
    return time.monotonic() - t


def peer(names: list[str], work: Path) -> float:
    """Sequential docker CLI collection, outputs saved and hashed."""
    outdir = work / f"peer-{uuid.uuid4().hex[:6]}"
    outdir.mkdir()
    t = time.monotonic()
    for name in names:
        d = outdir / name
        d.mkdir()
        steps: list[list[str]] = [
            ["inspect", name],
            ["top", name],
            ["logs", "-t", name],
            ["diff", name],
        ]
        steps += [["exec", name, *cmd] for cmd in PEER_EXECS]
        for i, step in enumerate(steps):
            r = docker(*step, check=False)
            (d / f"{i:02d}-{step[0]}.out").write_bytes(r.stdout + r.stderr)
    files = sorted(str(p.relative_to(outdir)) for p in outdir.rglob("*") if p.is_file())
    with open(outdir / "hash_list.sha256", "wb") as fh:
        subprocess.run(["sha256sum", *files], cwd=outdir, stdout=fh, check=True)
    return time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell (median reported)")
    ap.add_argument("--many", type=int, default=10, help="containers in the parallel run")
    args = ap.parse_args()
    if docker("version", check=False).returncode:
        raise SystemExit(f"no Docker at {DOCKER_HOST}: run scripts/engines.sh start first")
    work = Path(tempfile.mkdtemp(prefix="pm-bench-acquire-"))
    names: list[str] = []
    rows: list[dict[str, Any]] = []
    try:
        names = start(args.many)
        startup = round(statistics.median(cli_startup() for _ in range(args.repeat)), 3)
        for n in (1, args.many):
            targets = names[:n]
            fl = [floor(targets) for _ in range(args.repeat)]
            pm = [podmortem(targets, work) for _ in range(args.repeat)]
            pe = [peer(targets, work) for _ in range(args.repeat)]
            rows.append(
                {
                    "containers": n,
                    "floor_s": round(statistics.median(fl), 3),
                    "podmortem_s": round(statistics.median(w for w, _ in pm), 3),
                    "podmortem_in_process_s": round(
                        statistics.median(d["in_process_s"] for _, d in pm), 3
                    ),
                    "docker_exec_script_s": round(statistics.median(pe), 3),
                    "podmortem_cli_startup_s": startup,
                    "target_s": 3.0 if n == 1 else 10.0,
                    "podmortem_detail": pm[-1][1],
                }
            )
    finally:
        remove(names)
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{'containers':>10} {'floor s':>9} {'podmortem s':>12} {'(startup)':>10} "
        f"{'(in-proc)':>10} {'docker exec script s':>21} {'target s':>9}  met"
    )
    for r in rows:
        met = "yes" if r["podmortem_s"] < r["target_s"] else "NO"
        print(
            f"{r['containers']:>10} {r['floor_s']:>9.3f} {r['podmortem_s']:>12.3f} "
            f"{r['podmortem_cli_startup_s']:>10.3f} {r['podmortem_in_process_s']:>10.3f} "
            f"{r['docker_exec_script_s']:>21.3f} {r['target_s']:>9.1f}  {met}"
        )
    result = {
        "benchmark": "acquire",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "repeat": args.repeat,
        "rows": rows,
        "notes": "podmortem_s is the wall clock of the CLI (startup included); the peer collects"
        " less (no exe hashes, no upperdir walk/archive, no fd/socket join).",
    }
    out = REPO / "benchmarks" / "results" / "acquire.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus; wrote {out}")


if __name__ == "__main__":
    main()

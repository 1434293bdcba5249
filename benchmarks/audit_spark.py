"""Benchmark: when does Spark pay off? The embedded engine and Spark ``local[2]`` on the same
events, the Parquet export, and both engines reading that Parquet, from one run.

One command::

    .venv/bin/python benchmarks/audit_spark.py [--events 250000] [--data DIR] [--master local[2]]

1. Generates ``--events`` realistic events across the four sources with
   ``benchmarks/gen_audit.py`` (or reuses ``--data``, a folder of its files).
2. Each measurement runs in a fresh process (its own peak RSS; Spark's JVM start counted
   apart from the analysis):
   - floor: reading the files' bytes (gzip peeled), nothing else; and Spark's own text
     reader counting the lines of the same files (the Spark floor: JVM, Hadoop, tasks);
   - ``embedded``: ``audit analyze`` with the embedded engine (DuckDB), every built-in rule
     and the correlations, without the attack reconstruction (Spark does not do it);
   - ``spark``: ``audit analyze --engine spark`` on the same files;
   - ``export-parquet``: readers + deduplication + the partitioned Parquet write (and the
     write alone);
   - ``embedded-parquet`` and ``spark-parquet``: each engine analysing that Parquet.
3. Checks that both engines found the same findings (count and audit IDs) on the same input,
   prints a table, writes ``benchmarks/results/audit_spark.json``.

The default (250k events) runs in about three minutes on a 2-core machine; the numbers for
the README use ``--events 1000000``. Spark in local mode on 2 cores is not where it shines:
the point of the table is the fixed cost (JVM, task scheduling, the Python workers, the staging
write) against the embedded engine, i.e. how much data a cluster must take off one machine
before it is worth it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "audit_spark.json"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _descendants() -> list[int]:
    """Live descendants of this process (Spark's JVM and its Python workers are; getrusage
    counts children only once they have exited, and the JVM is still running)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, frontier = [], [os.getpid()]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        frontier += kids
    return out


def _tree() -> tuple[float, float]:
    """(CPU seconds, summed peak RSS in MB) of the live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu = rss = 0.0
    for pid in _descendants():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    rss += int(line.split()[1]) / 1024.0
        except (OSError, ValueError, IndexError):
            continue
    return cpu, rss


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime + _tree()[0]


def _files(data: Path) -> list[Path]:
    return sorted(p for p in data.iterdir() if p.is_file())


def _summary(result: Any) -> dict[str, Any]:
    return {
        "events": result.events_read,
        "findings": len(result.findings),
        "audit_ids": sorted(sorted(f.evidence) for f in result.findings),
        "steps": {k: round(v, 3) for k, v in {**result.seconds, **result.engine.seconds}.items()},
    }


# ------------------------------------------------------------------ measurements (subprocess)


def m_floor(data: Path, **_: Any) -> dict[str, Any]:
    n = 0
    t = time.perf_counter()
    for p in _files(data):
        with open(p, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        with gzip.open(p, "rb") if gz else open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                n += len(chunk)
    return {"seconds": time.perf_counter() - t, "bytes": n}


def m_spark_floor(data: Path, master: str, **_: Any) -> dict[str, Any]:
    from podmortem.audit.spark.session import session

    t0 = time.perf_counter()
    spark = session(master)
    start = time.perf_counter() - t0
    t = time.perf_counter()
    lines = spark.read.text([str(p) for p in _files(data)]).count()
    return {"seconds": time.perf_counter() - t, "jvm_start": start, "lines": lines}


def m_embedded(data: Path, **_: Any) -> dict[str, Any]:
    from podmortem.audit.analyze import analyze

    t = time.perf_counter()
    result = analyze([str(data)], reconstruction=False)
    return {"seconds": time.perf_counter() - t, **_summary(result)}


def m_spark(data: Path, master: str, **_: Any) -> dict[str, Any]:
    from podmortem.audit.spark.engine import analyze_spark
    from podmortem.audit.spark.session import session

    t0 = time.perf_counter()
    spark = session(master)
    start = time.perf_counter() - t0
    t = time.perf_counter()
    result = analyze_spark([str(data)], spark=spark)
    return {"seconds": time.perf_counter() - t, "jvm_start": start, **_summary(result)}


def m_export(data: Path, out: Path, **_: Any) -> dict[str, Any]:
    from podmortem.audit.analyze import DEFAULT_MEMORY_LIMIT, load_inputs
    from podmortem.audit.parquet import export, scratch_connection

    t = time.perf_counter()
    con, tmp = scratch_connection(DEFAULT_MEMORY_LIMIT)
    loaded = load_inputs(con, [str(data)])
    t_write = time.perf_counter()
    result = export(con, out, loaded)
    write = time.perf_counter() - t_write
    con.close()
    tmp.cleanup()
    size = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    return {
        "seconds": time.perf_counter() - t,
        "write_seconds": write,
        "events": result.events,
        "parquet_files": len(result.files),
        "parquet_mb": round(size / 1e6, 1),
    }


MEASURES = {
    "floor": m_floor,
    "spark-floor": m_spark_floor,
    "embedded": m_embedded,
    "spark": m_spark,
    "export-parquet": m_export,
    "embedded-parquet": m_embedded,
    "spark-parquet": m_spark,
}


def _run(name: str, data: Path, master: str, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--measure", name, "--data", str(data), "--master", master]
    cmd += ["--out", str(out)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"], "wall": wall}
    doc: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    doc["wall"] = wall
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=250_000)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--measure", choices=sorted(MEASURES))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    if args.measure:  # child process: one measurement, one JSON line
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        c0 = _cpu()
        doc = MEASURES[args.measure](data=args.data, master=args.master, out=args.out)
        doc["cpu_seconds"] = round(_cpu() - c0, 2)
        doc["rss_mb"] = round(_rss_mb(), 1)
        doc["children_rss_mb"] = round(_tree()[1], 1)  # JVM + workers, summed peaks
        print(json.dumps(doc))
        return

    with tempfile.TemporaryDirectory(prefix="podmortem-bench-spark-") as tmp:
        data = args.data
        if data is None:
            sys.path.insert(0, str(HERE))
            from gen_audit import generate

            data = Path(tmp) / "data"
            generate(data, args.events)
        pq = Path(tmp) / "parquet"
        results: dict[str, Any] = {}
        for name in ("floor", "spark-floor", "embedded", "spark", "export-parquet"):
            print(f"  {name} ...", file=sys.stderr, flush=True)
            results[name] = _run(name, data, args.master, pq)
        for name in ("embedded-parquet", "spark-parquet"):
            print(f"  {name} ...", file=sys.stderr, flush=True)
            results[name] = _run(name, pq, args.master, pq)
        events = int(results["embedded"].get("events") or 0)
        same = {
            "files": results["embedded"].get("audit_ids") == results["spark"].get("audit_ids"),
            "parquet": results["embedded-parquet"].get("audit_ids")
            == results["spark-parquet"].get("audit_ids"),
        }
        for r in results.values():
            r.pop("audit_ids", None)
        doc = {
            "events": events,
            "master": args.master,
            "cores": os.cpu_count(),
            "load_average": os.getloadavg(),
            "same_findings": same,
            "results": results,
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{events} events, Spark master {args.master}, load {os.getloadavg()[0]:.1f}")
    print(f"{'measure':18} {'seconds':>8} {'events/s':>10} {'CPU s':>7} {'RSS MB':>8}  notes")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:18} failed: {r['error']}")
            continue
        secs = float(r["seconds"])
        rate = f"{events / secs:10.0f}" if secs > 0 else f"{'-':>10}"
        rss = float(r.get("rss_mb", 0)) + float(r.get("children_rss_mb", 0))
        notes = []
        if "jvm_start" in r:
            notes.append(f"+{r['jvm_start']:.1f}s JVM start")
        if "write_seconds" in r:
            notes.append(f"write alone {r['write_seconds']:.1f}s, {r['parquet_mb']} MB")
        if "findings" in r:
            notes.append(f"{r['findings']} findings")
        print(
            f"{name:18} {secs:8.1f} {rate} {r['cpu_seconds']:7.1f} {rss:8.0f}  {', '.join(notes)}"
        )
    print(f"same findings: {same}")
    print(f"JSON: {RESULTS}")


if __name__ == "__main__":
    main()

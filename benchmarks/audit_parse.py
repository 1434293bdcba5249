"""Parse-only benchmark of the audit-log readers (``podmortem.audit.sources.load``).

For each source format it generates realistic events (``benchmarks/gen_audit.py``) and
measures, each in a fresh subprocess (so peak memory is per run):

- ``floor``: just reading the bytes (decompressing, splitting lines): nothing is cheaper
- ``duckdb-count``: native JSONL only, DuckDB's typed JSON reader counting rows (the ceiling
  of any loader built on it)
- ``podmortem``: ``load()`` into an in-memory ``audit_events`` table, with ``raw`` kept and
  with ``keep_raw=False``
- ``peer``: the Zircolite way: stdlib ``json`` per record, nested fields flattened to dotted
  keys, rows inserted into SQLite (capped at ``--peer-cap`` events, rate extrapolated)

Run from the repository root::

    .venv/bin/python benchmarks/audit_parse.py                 # 200k events, ~2-3 minutes
    .venv/bin/python benchmarks/audit_parse.py --events 1000000 --data /tmp/audit-1m

Prints a table and writes ``benchmarks/results/audit_parse.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.gen_audit import write_aks, write_eks, write_gke, write_native  # noqa: E402

FORMATS = {
    "native-jsonl": ("native.jsonl", write_native),
    "native-jsonl-gz": ("native.jsonl.gz", lambda p, n: write_native(p, n, compress=True)),
    "eks-firehose-gz": ("eks-firehose.gz", write_eks),
    "aks-blob-jsonl": ("aks-blob.jsonl", write_aks),
    "gke-jsonl": ("gke.jsonl", write_gke),
}


# ---- the measured jobs (run in a subprocess) ------------------------------------------


def _open(path: Path) -> Any:
    with path.open("rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")


def job_floor(path: Path) -> int:
    """Bytes after decompression, split into lines: the least any reader must do."""
    n = 0
    with _open(path) as f:
        while chunk := f.read(1 << 22):
            n += len(chunk.split(b"\n"))
    return n


def job_duckdb_count(path: Path) -> int:
    import duckdb

    from podmortem.audit.sources.mapping import EVENT_COLUMNS

    con = duckdb.connect()
    row = con.execute(
        "SELECT count(*) FROM read_json(?, format='newline_delimited', records=true, "  # noqa: S608
        f"columns={EVENT_COLUMNS})",
        [str(path)],
    ).fetchone()
    return int(row[0]) if row else 0


def job_podmortem(path: Path, keep_raw: bool) -> int:
    import duckdb

    from podmortem.audit.sources import load

    con = duckdb.connect()
    return load(con, [path], keep_raw=keep_raw).events_read


def _flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}{k}.", out)
    else:
        out[prefix[:-1]] = json.dumps(obj) if isinstance(obj, list) else obj


def _peer_events(path: Path) -> Any:
    """The inner native events of any of the generated formats, with stdlib json."""
    with _open(path) as f:
        data_iter: Any = f
        if "eks-firehose" in path.name:
            text = f.read().decode()
            dec = json.JSONDecoder()
            i = 0
            while i < len(text):
                doc, i = dec.raw_decode(text, i)
                for le in (
                    doc.get("logEvents", []) if doc.get("messageType") == "DATA_MESSAGE" else []
                ):
                    yield json.loads(le["message"])
            return
        for line in data_iter:
            rec = json.loads(line)
            if "properties" in rec:
                if rec.get("category") in ("kube-audit", "kube-audit-admin"):
                    yield json.loads(rec["properties"]["log"])
            else:
                yield rec


def job_peer(path: Path, cap: int) -> int:
    db = sqlite3.connect(":memory:")
    cols: dict[str, None] = {}
    db.execute("CREATE TABLE logs (row_id INTEGER PRIMARY KEY)")
    n = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        for row in batch:
            for k in row:
                if k not in cols:
                    cols[k] = None
                    db.execute(f'ALTER TABLE logs ADD COLUMN "{k}" TEXT')
            keys = list(row)
            db.execute(
                f"INSERT INTO logs ({','.join(chr(34) + k + chr(34) for k in keys)}) "  # noqa: S608 - fixed SQL text, values bound
                f"VALUES ({','.join('?' * len(keys))})",
                [
                    v if isinstance(v, (str, int, float)) or v is None else str(v)
                    for v in row.values()
                ],
            )
        batch.clear()

    for ev in _peer_events(path):
        flat: dict[str, Any] = {}
        _flatten(ev, "", flat)
        batch.append(flat)
        n += 1
        if len(batch) >= 5000:
            flush()
        if n >= cap:
            break
    flush()
    db.commit()
    return n


def child(args: list[str]) -> None:
    kind, path = args[0], Path(args[1])
    import duckdb  # noqa: F401 - imports are not what is measured

    import podmortem.audit.sources  # noqa: F401

    t = time.perf_counter()
    if kind == "floor":
        n = job_floor(path)
    elif kind == "duckdb-count":
        n = job_duckdb_count(path)
    elif kind == "podmortem":
        n = job_podmortem(path, keep_raw=True)
    elif kind == "podmortem-noraw":
        n = job_podmortem(path, keep_raw=False)
    else:
        n = job_peer(path, int(args[2]))
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"n": n, "seconds": dt, "peak_rss": rss}))


# ---- the driver ---------------------------------------------------------------------------


def run_child(kind: str, path: Path, extra: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), *extra],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(HERE.parent / "src")},
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def calibrate() -> float:
    """Seconds for a fixed pure-Python loop: tells a loaded machine from a fast one."""
    t = time.perf_counter()
    sum(range(10_000_000))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description="audit readers: parse-only throughput")
    ap.add_argument("--events", type=int, default=200_000, help="events per format")
    ap.add_argument("--data", type=Path, help="folder for generated data (reused if present)")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--peer-cap", type=int, default=50_000)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "audit_parse.json")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    tmp = None
    if args.data is None:
        tmp = tempfile.TemporaryDirectory(prefix="podmortem-bench-")
        args.data = Path(tmp.name)
    args.data.mkdir(parents=True, exist_ok=True)
    calib_before = calibrate()
    results: list[dict[str, Any]] = []
    for fmt in args.formats.split(","):
        name, writer = FORMATS[fmt]
        path = args.data / f"{args.events}-{name}"
        if not path.exists():
            t = time.perf_counter()
            writer(path, args.events)
            print(
                f"generated {fmt}: {args.events} events in {time.perf_counter() - t:.1f}s",
                file=sys.stderr,
            )
        kinds = ["floor"]
        if fmt.startswith("native"):
            kinds.append("duckdb-count")
        kinds += ["podmortem", "podmortem-noraw", "peer"]
        for kind in kinds:
            extra = [str(args.peer_cap)] if kind == "peer" else []
            r = run_child(kind, path, extra)
            if kind == "floor":
                r["n"] = args.events  # the floor reads every event's bytes
            rate = r["n"] / r["seconds"] if r["seconds"] else 0.0
            results.append(
                {
                    "format": fmt,
                    "method": kind,
                    "events": r["n"],
                    "seconds": round(r["seconds"], 3),
                    "events_per_s": round(rate),
                    "peak_rss_mb": round(r["peak_rss"] / 2**20, 1),
                    "file_mb": round(path.stat().st_size / 1e6, 1),
                }
            )
            print(
                f"{fmt:18} {kind:16} {r['n']:>9} ev {r['seconds']:8.2f}s "
                f"{rate:>11,.0f} ev/s  peak {r['peak_rss'] / 2**20:7.0f} MB",
                flush=True,
            )
    calib_after = calibrate()
    doc = {
        "benchmark": "audit_parse",
        "events_per_format": args.events,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "calibration_s": [round(calib_before, 3), round(calib_after, 3)],
            "calibration_note": "sum(range(1e7)); about 0.2 s on an idle core",
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(
        f"\ncalibration {calib_before:.2f}s / {calib_after:.2f}s (idle core ~0.2s); "
        f"results in {args.out}"
    )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

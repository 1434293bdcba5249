"""Benchmark: Kubernetes audit-log analysis, end to end, against the floor and a peer.

One command, one run::

    .venv/bin/python benchmarks/audit.py [--events 1000000] [--data DIR] [--peer-events 100000]
        [--repeat 3] [--separate]

1. Generates ``--events`` realistic events across the four sources (native JSONL, EKS
   Firehose gzip, AKS blob, GKE LogEntries) with ``benchmarks/gen_audit.py``, or reuses
   ``--data``.
2. For each source file, in a fresh process each (so peak memory is per measurement):
   - floor: the cost of just reading the data. ``python-json``: decompress, split the
     envelope and parse every record and embedded message with orjson, nothing else;
     ``duckdb-json`` (native only): DuckDB's JSON reader loading the native schema.
3. podmortem on all four files in one run (the 1M-event headline, with its peak RSS), as
   ``podmortem audit analyze`` does it: readers (``audit.sources.load``, each file timed),
   then every built-in rule, the 16 SigmaHQ rules and the correlations (``engine.run``) once
   over everything. Per source: its load time plus its share of the rules' time. The
   original records are copied into ``raw`` only if a rule reads them, as ``analyze``
   does; a second run copies them all (``--keep-raw``), to show what that costs.
   ``--separate`` also runs podmortem on each file alone. Then the ``podmortem audit
   analyze`` command on the same files, as a user runs it (start-up, rule loading and the
   attack reconstruction included), with its CPU time and the time of each step.
4. Peer, on the first ``--peer-events`` native events: the Zircolite approach, i.e. events
   flattened into a SQLite table and the same SigmaHQ rules converted with pySigma's SQLite
   backend; and podmortem with only those SigmaHQ rules on the same events, side by side.

The input files are read once first, so that every measurement reads them from the page
cache. Every measurement runs ``--repeat`` times (3), each in a fresh process; the table gives
the run of median time and, in brackets, the fastest and slowest. Prints the table and
writes ``benchmarks/results/audit.json``. Numbers depend on the machine
and on what else runs on it; the JSON records the load average seen during the run.
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
REPO = HERE.parent
SIGMA_DIR = (
    Path(os.environ.get("PODMORTEM_CORPUS", REPO / ".." / "shared" / "corpus"))
    / "k8s-audit"
    / "sigma-rules"
)
RESULTS = HERE / "results" / "audit.json"
FILES = {
    "native": "native.jsonl",
    "eks": "eks-firehose.gz",
    "aks": "aks-blob.jsonl",
    "gke": "gke.jsonl",
}


# --------------------------------------------------------------------------- measurements
# Each runs in its own process (``--measure``) and prints one JSON object.


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _open(path: Path) -> Any:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def measure_floor_python(path: Path, source: str) -> dict[str, Any]:
    """Parse every record (and embedded message) with orjson; count; nothing else."""
    import orjson

    n = 0
    t = time.perf_counter()
    with _open(path) as fh:
        if source == "eks":
            # Firehose concatenates JSON objects without a delimiter
            data = fh.read().decode()
            dec = json.JSONDecoder()
            i = 0
            while i < len(data):
                obj, end = dec.raw_decode(data, i)
                i = end
                while i < len(data) and data[i].isspace():
                    i += 1
                if obj.get("messageType") != "DATA_MESSAGE":
                    continue  # CONTROL_MESSAGE health checks carry no events
                for le in obj.get("logEvents") or ():
                    orjson.loads(le["message"])
                    n += 1
        else:
            for line in fh:
                if not line.strip():
                    continue
                rec = orjson.loads(line)
                if source == "aks":
                    if rec.get("category") not in ("kube-audit", "kube-audit-admin"):
                        continue
                    log = rec["properties"]["log"]
                    if isinstance(log, str):
                        orjson.loads(log)
                n += 1
    return {"events": n, "seconds": time.perf_counter() - t, "rss_mb": _rss_mb()}


def measure_floor_duckdb(path: Path) -> dict[str, Any]:
    """DuckDB's JSON reader given the native Event schema, loading it into a table."""
    import duckdb

    columns = {
        "auditID": "VARCHAR",
        "stage": "VARCHAR",
        "level": "VARCHAR",
        "verb": "VARCHAR",
        "requestURI": "VARCHAR",
        "user": "JSON",
        "impersonatedUser": "JSON",
        "sourceIPs": "VARCHAR[]",
        "userAgent": "VARCHAR",
        "objectRef": "JSON",
        "responseStatus": "JSON",
        "requestObject": "JSON",
        "responseObject": "JSON",
        "annotations": "JSON",
        "requestReceivedTimestamp": "VARCHAR",
        "stageTimestamp": "VARCHAR",
    }
    con = duckdb.connect()
    t = time.perf_counter()
    sql = (
        "CREATE TABLE t AS SELECT * FROM read_json(?, format='newline_delimited',"  # noqa: S608
        f" columns={columns!r}, ignore_errors=true, maximum_object_size=16777216)"
    )
    con.execute(sql, [str(path)])
    row = con.execute("SELECT count(*) FROM t").fetchone()
    return {
        "events": int(row[0]) if row else 0,
        "seconds": time.perf_counter() - t,
        "rss_mb": _rss_mb(),
    }


def _rules(sigma_only: bool) -> Any:
    from podmortem.audit.ruleset import RuleSet, load_builtin, load_dir

    rules = RuleSet() if sigma_only else load_builtin()
    if SIGMA_DIR.is_dir():
        rules.extend(load_dir(SIGMA_DIR, "sigma"))
    return rules


def measure_podmortem(
    paths: list[Path], sigma_only: bool = False, keep_raw: bool | None = None
) -> dict[str, Any]:
    """What ``analyze`` does: a scratch DuckDB file under a memory limit, the readers,
    then every rule and correlation once over everything. Each file is loaded (and timed)
    in turn into the same table, so per-source load rates come from the same run.
    ``keep_raw`` None: as ``analyze`` decides (the original record copied only when a rule
    reads it); True: as with ``--keep-raw``."""

    from podmortem.audit import engine
    from podmortem.audit.analyze import DEFAULT_MEMORY_LIMIT, scratch_connection
    from podmortem.audit.sources import load

    rules = _rules(sigma_only)
    with tempfile.TemporaryDirectory(prefix="podmortem-bench-db-") as scratch:
        con = scratch_connection(scratch)
        con.execute(f"SET memory_limit = '{DEFAULT_MEMORY_LIMIT}'")
        per_file: dict[str, dict[str, float]] = {}
        c0 = time.process_time()  # CPU time (all threads): robust on a busy machine
        t0 = time.perf_counter()
        total = 0
        for p in paths:
            t = time.perf_counter()
            loaded = load(con, [p], keep_raw=rules.reads_raw if keep_raw is None else keep_raw)
            per_file[p.name] = {
                "events": loaded.events_read,
                "load_seconds": time.perf_counter() - t,
            }
            total += loaded.events_read
        t1 = time.perf_counter()
        c1 = time.process_time()
        res = engine.run(con, rules)
        t2 = time.perf_counter()
        c2 = time.process_time()
        con.close()
    return {
        "events": total,
        "seconds": t2 - t0,
        "load_seconds": t1 - t0,
        "rules_seconds": t2 - t1,
        "load_cpu_seconds": c1 - c0,
        "rules_cpu_seconds": c2 - c1,
        "per_file": per_file,
        "rules": len(rules.rules),
        "findings": len(res.findings),
        "matches": sum(res.hits_per_rule.values()),
        "sigma_matches": {k: v for k, v in res.hits_per_rule.items() if "-" in k},
        "rss_mb": _rss_mb(),
    }


def measure_peer(path: Path, limit: int) -> dict[str, Any]:
    """Zircolite's approach: flatten each event into a row of a SQLite table (every field a
    column, COLLATE NOCASE), then run the SigmaHQ rules converted by pySigma's SQLite
    backend. Rules are loaded unchanged, as podmortem loads them."""
    import sqlite3

    import orjson
    from sigma.backends.sqlite import sqliteBackend
    from sigma.collection import SigmaCollection

    def flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                flatten(v, f"{prefix}.{k}" if prefix else k, out)
        elif isinstance(obj, list):
            out[prefix] = orjson.dumps(obj).decode()
        else:
            out[prefix] = obj

    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    keys: dict[str, None] = {}
    with _open(path) as fh:
        for line in fh:
            if len(rows) >= limit:
                break
            flat: dict[str, Any] = {}
            flatten(orjson.loads(line), "", flat)
            rows.append(flat)
            keys.update(dict.fromkeys(flat))
    db = sqlite3.connect(":memory:")
    cols = list(keys)
    db.execute("CREATE TABLE logs (" + ", ".join(f'"{c}" TEXT COLLATE NOCASE' for c in cols) + ")")
    db.executemany(
        f"INSERT INTO logs VALUES ({','.join('?' * len(cols))})",  # noqa: S608
        (
            tuple(str(v).lower() if isinstance(v, bool) else v for v in (r.get(c) for c in cols))
            for r in rows
        ),
    )
    t1 = time.perf_counter()
    backend = sqliteBackend()
    matches: dict[str, int] = {}
    errors: dict[str, str] = {}
    for f in sorted(SIGMA_DIR.glob("*.yml")):
        coll = SigmaCollection.from_yaml(f.read_text())
        rule = coll.rules[0]
        try:
            queries = backend.convert(coll)
            n = 0
            for q in queries:
                n += len(db.execute(q).fetchall())
            matches[str(rule.id)] = n
        except Exception as exc:
            errors[f.name] = f"{type(exc).__name__}: {exc}"[:200]
    t2 = time.perf_counter()
    return {
        "events": len(rows),
        "seconds": t2 - t0,
        "load_seconds": t1 - t0,
        "rules_seconds": t2 - t1,
        "rules": len(matches),
        "rule_errors": errors,
        "matches": sum(matches.values()),
        "sigma_matches": matches,
        "rss_mb": _rss_mb(),
    }


def _measure_main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "floor-python":
        out = measure_floor_python(Path(argv[1]), argv[2])
    elif kind == "floor-duckdb":
        out = measure_floor_duckdb(Path(argv[1]))
    elif kind == "podmortem":
        out = measure_podmortem([Path(p) for p in argv[1:]])
    elif kind == "podmortem-keep-raw":
        out = measure_podmortem([Path(p) for p in argv[1:]], keep_raw=True)
    elif kind == "podmortem-sigma":
        out = measure_podmortem([Path(argv[1])], sigma_only=True)
    elif kind == "peer":
        out = measure_peer(Path(argv[1]), int(argv[2]))
    else:
        raise SystemExit(f"unknown measurement {kind}")
    print(json.dumps(out))


# --------------------------------------------------------------------------- driver


def _run(*args: str) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if result.get("seconds"):
        result["events_per_s"] = round(result["events"] / result["seconds"])
    return result


def _warm(paths: list[Path]) -> None:
    """Read every input once before measuring, so that each measurement reads it from the
    page cache: after a memory-hungry job (a test run) the first read of a file came from
    disk, and one floor took 16 s instead of 0.8 s."""
    for path in paths:
        with open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median time (the whole run, so that its parts add up), with the fastest
    and slowest times beside it: these machines are shared, and one run can be a third
    slower than the next."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return failed[0]
    ordered = sorted(runs, key=lambda r: float(r.get("seconds", 0.0)))
    mid = dict(ordered[len(ordered) // 2])
    if len(runs) > 1:
        mid["spread_seconds"] = [ordered[0]["seconds"], ordered[-1]["seconds"]]
        mid["runs"] = len(runs)
    return mid


def _run_cli(paths: list[Path], out: Path) -> dict[str, Any]:
    """``podmortem audit analyze`` itself, as a user runs it: interpreter start, rule
    loading, readers, rules, correlations and the attack reconstruction, JSON written."""
    exe = Path(sys.executable).parent / "podmortem"
    cmd = [str(exe), "audit", "analyze", *map(str, paths), "--json", str(out)]
    before = os.times()
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t
    after = os.times()
    if proc.returncode not in (0, 1) or not out.exists():
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    doc = json.loads(out.read_text())
    events = int(doc.get("events_read", 0))
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return {
        "events": events,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "events_per_s": round(events / seconds) if seconds else 0,
        "steps": doc.get("seconds", {}),
        "findings": len(doc.get("findings", [])),
        "rss_mb": None,
    }


def _sample(path: Path, n: int, out: Path) -> Path:
    with open(path, "rb") as src, open(out, "wb") as dst:
        for i, line in enumerate(src):
            if i >= n:
                break
            dst.write(line)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--data", type=Path, help="reuse files written by gen_audit.py")
    ap.add_argument("--peer-events", type=int, default=100_000)
    ap.add_argument(
        "--separate", action="store_true", help="also run podmortem on each source on its own"
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each measurement, each in a fresh process; the median is reported",
    )
    args = ap.parse_args()
    repeat = max(1, args.repeat)

    def run(*a: str) -> dict[str, Any]:
        return _median([_run(*a) for _ in range(repeat)])

    sys.path.insert(0, str(HERE))
    tmp = tempfile.TemporaryDirectory(prefix="podmortem-bench-")
    data = args.data
    t_gen = 0.0
    if data is None:
        from gen_audit import generate  # benchmarks/gen_audit.py

        data = Path(tmp.name)
        t = time.perf_counter()
        generate(data, args.events)
        t_gen = time.perf_counter() - t
    paths = {src: data / name for src, name in FILES.items() if (data / name).exists()}
    _warm(list(paths.values()))
    load_before = os.getloadavg()

    rows: list[dict[str, Any]] = []
    for src, path in paths.items():
        size = path.stat().st_size
        floor = run("floor-python", str(path), src)
        rows.append({"source": src, "what": "floor: python-json", "bytes": size, **floor})
        if src == "native":
            duck = run("floor-duckdb", str(path))
            rows.append({"source": src, "what": "floor: duckdb-json", "bytes": size, **duck})
        if args.separate:
            pm = run("podmortem", str(path))
            rows.append({"source": src, "what": "podmortem (own run)", "bytes": size, **pm})
    total = run("podmortem", *[str(p) for p in paths.values()])
    if "per_file" in total:
        # Per source, from the single run: its load time plus its share (by events) of the
        # time the rules took over everything.
        for src, path in paths.items():
            pf = total["per_file"].get(path.name)
            if not pf or not total["events"]:
                continue
            share = total["rules_seconds"] * pf["events"] / total["events"]
            secs = pf["load_seconds"] + share
            rows.append(
                {
                    "source": src,
                    "what": "podmortem end to end",
                    "events": pf["events"],
                    "seconds": secs,
                    "load_seconds": pf["load_seconds"],
                    "rules_seconds": share,
                    "events_per_s": round(pf["events"] / secs) if secs else 0,
                    "rss_mb": None,
                }
            )
    rows.append({"source": "all four", "what": "podmortem end to end (one run)", **total})
    kept = run("podmortem-keep-raw", *[str(p) for p in paths.values()])
    rows.append({"source": "all four", "what": "same, with --keep-raw", **kept})
    cli = _median(
        [_run_cli(list(paths.values()), Path(tmp.name) / "analyze.json") for _ in range(repeat)]
    )
    rows.append({"source": "all four", "what": "podmortem audit analyze (CLI)", **cli})

    peer_rows: list[dict[str, Any]] = []
    if "native" in paths and SIGMA_DIR.is_dir():
        sample = _sample(paths["native"], args.peer_events, Path(tmp.name) / "peer.jsonl")
        peer = run("peer", str(sample), str(args.peer_events))
        peer_rows.append({"what": "peer: pySigma sqlite (Zircolite-style)", **peer})
        pms = run("podmortem-sigma", str(sample))
        peer_rows.append({"what": "podmortem, SigmaHQ rules only", **pms})
    load_after = os.getloadavg()

    def fmt(r: dict[str, Any]) -> str:
        if "error" in r:
            return f"  ERROR {r['error']}"
        extra = ""
        if "rules_seconds" in r:
            extra = f"  (load {r['load_seconds']:.2f}s, rules {r['rules_seconds']:.2f}s"
            if "rules_cpu_seconds" in r:
                extra += (
                    f"; CPU load {r['load_cpu_seconds']:.1f}s rules {r['rules_cpu_seconds']:.1f}s"
                )
            extra += ")"
        if "cpu_seconds" in r:
            steps = r.get("steps") or {}
            extra = (
                f"  (CPU {r['cpu_seconds']:.1f}s; "
                + ", ".join(
                    f"{k} {v:.1f}s" for k, v in steps.items() if isinstance(v, (int, float))
                )
                + ")"
            )
        rss = f"{r['rss_mb']:7.0f} MB" if r.get("rss_mb") is not None else "      -   "
        spread = r.get("spread_seconds")
        runs = f"  [{spread[0]:.2f}-{spread[1]:.2f}s]" if spread else ""
        return (
            f"{r.get('events', 0):>9} ev  {r.get('seconds', 0):7.2f}s"
            f"  {r.get('events_per_s', 0):>9} ev/s  {rss}{extra}{runs}"
        )

    print(
        f"\nKubernetes audit analysis benchmark ({os.cpu_count()} CPUs,"
        f" load average {load_before[0]:.1f} -> {load_after[0]:.1f};"
        f" median of {repeat} run(s) each, [fastest-slowest])"
    )
    if t_gen:
        print(f"generated {args.events} events in {t_gen:.1f}s")
    print(f"{'source':9} {'what':34} {'events':>12} {'time':>8} {'rate':>14} {'peak RSS':>10}")
    for r in rows:
        print(f"{r['source']:9} {r['what']:34} {fmt(r)}")
    if peer_rows:
        print(f"\nsame SigmaHQ rules, first {args.peer_events} native events:")
        for r in peer_rows:
            print(f"  {r['what']:42} {fmt(r)}  matches {r.get('matches', '?')}")
            if r.get("rule_errors"):
                print(f"    rules that failed: {len(r['rule_errors'])}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "audit",
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "cpus": os.cpu_count(),
                "repeat": repeat,
                "load_average": {"before": load_before, "after": load_after},
                "events_generated": args.events if t_gen else None,
                "generate_seconds": round(t_gen, 2),
                "rows": rows,
                "peer": peer_rows,
                "targets": {
                    "native_end_to_end_events_per_s": 250_000,
                    "wrapped_end_to_end_events_per_s": 100_000,
                    "peak_rss_mb_1m_events": 2048,
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten {RESULTS.relative_to(REPO)}")
    tmp.cleanup()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        _measure_main(sys.argv[2:])
    else:
        main()

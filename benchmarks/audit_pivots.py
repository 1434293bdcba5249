"""Benchmark: the reconstruction pivots over a case index of one million audit events.

One command, one run::

    .venv/bin/python benchmarks/audit_pivots.py [--events 1000000] [--data DIR] [--repeat 3]

1. Writes ``--events`` native audit events with ``benchmarks/gen_audit.py`` (by default a
   tenth of them, repeated ten times with unique auditIDs, one day apart: generating a
   million distinct events takes minutes, repeating them seconds) and appends the attack
   scenario of ``tests/audit/scenarios.py`` (needles to find: the stolen token, the
   secret it read), or reuses ``--data`` (a folder holding ``native.jsonl``).
2. Loads them into a DuckDB file the way ``podmortem audit analyze --case`` fills the case's
   ``index.duckdb``: ``audit.sources.load`` (raw records not kept: pivots never read them)
   and ``reconstruct(persist=True)``, which keeps the request table for the pivots.
3. Times, each in a fresh read-only connection, ``--repeat`` times (median and worst):
   - floor: a bare ``SELECT count(*)`` of the table, and a one-column scan
     (``count(*) WHERE username = ?``): what any pivot must at least pay;
   - every pivot: actor (the stolen service account; a busy controller), object (the
     secret; a lease renewed all day), credential (the stolen JTI);
   - the actor pivot end to end through the CLI (process start, imports, output).
4. Peer: ``jq`` selecting the same actor's events from the same JSONL (``jq -c 'select(
   .user.username == NAME)'``), and ``grep -F -c`` as the cheapest text search.

Prints a table and writes ``benchmarks/results/audit_pivots.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "audit_pivots.json"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "audit"))

import duckdb  # noqa: E402
import gen_audit  # noqa: E402
import scenarios  # noqa: E402

from podmortem.audit.reconstruct import pivots, reconstruct  # noqa: E402
from podmortem.audit.sources import load  # noqa: E402

STOLEN = "system:serviceaccount:shop:web"


def _scenario_file(folder: Path) -> Path:
    path = folder / "scenario.jsonl"
    path.write_text(
        "".join(
            json.dumps(ev, separators=(",", ":")) + "\n"
            for ev in scenarios.story_events("attack", "native")
        ),
        encoding="utf-8",
    )
    return path


def _data(folder: Path, events: int, replicas: int) -> tuple[Path, float]:
    """The JSONL the peers read: ``events`` generated events, or ``events / replicas``
    generated and repeated ``replicas`` times (auditIDs made unique, each copy moved to
    the next day): the same volume and mix, written in seconds instead of minutes. The
    scenario follows, once."""
    path = folder / "native.jsonl"
    if path.exists():
        return path, 0.0
    t = time.perf_counter()
    if replicas <= 1:
        gen_audit.write_native(path, events)
    else:
        base = folder / "base.jsonl"
        gen_audit.write_native(base, events // replicas)
        lines = base.read_bytes().splitlines(keepends=True)
        with path.open("wb") as out:
            for k in range(replicas):
                day = f'"2024-05-{k + 1:02d}T'.encode()
                rid = f'"auditID":"r{k}-'.encode()
                out.write(
                    b"".join(
                        ln.replace(b'"auditID":"', rid).replace(b'"2024-05-01T', day)
                        for ln in lines
                    )
                )
        base.unlink()
    with path.open("ab") as out:
        out.write(_scenario_file(folder).read_bytes())
    return path, time.perf_counter() - t


def _index(folder: Path, jsonl: Path) -> tuple[Path, float, int]:
    """Load and reconstruct into a file, as ``audit analyze --case`` does (without rules:
    pivots read no findings)."""
    idx = folder / "index.duckdb"
    t = time.perf_counter()
    if not idx.exists():
        con = duckdb.connect(str(idx))
        load(con, [jsonl], keep_raw=False)
        reconstruct(con, persist=True)
        con.close()
    con = duckdb.connect(str(idx), read_only=True)
    row = con.execute("SELECT count(*) FROM audit_events").fetchone()
    con.close()
    return idx, time.perf_counter() - t, int(row[0]) if row else 0


def _timed(idx: Path, repeat: int, fn: Any) -> dict[str, Any]:
    """Wall and CPU time (this process, DuckDB's threads included): on a shared machine
    the wall time is mostly waiting for a core, the CPU time is what the pivot costs."""
    times, cpus, answer = [], [], None
    for _ in range(repeat):
        con = duckdb.connect(str(idx), read_only=True)
        t, c = time.perf_counter(), time.process_time()
        answer = fn(con)
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
        con.close()
    return {
        "median_s": statistics.median(times),
        "max_s": max(times),
        "cpu_s": statistics.median(cpus),
        "answer": answer,
    }


def _busiest(idx: Path) -> tuple[str, str]:
    con = duckdb.connect(str(idx), read_only=True)
    actor = con.execute(
        "SELECT username FROM audit_events GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()
    obj = con.execute(
        "SELECT coalesce(obj_namespace, '-') || '/' || obj_resource || '/' || obj_name"
        " FROM audit_events WHERE obj_name IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()
    con.close()
    return str(actor[0]) if actor else "", str(obj[0]) if obj else ""


def _peer(cmd: list[str], *, counts: bool) -> dict[str, Any]:
    """Run a peer once; ``counts``: it prints a count, else count its output lines."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, check=False)
    dt = time.perf_counter() - t
    out = proc.stdout.decode("utf-8", "replace")
    return {"median_s": dt, "max_s": dt, "answer": out.strip() if counts else len(out.splitlines())}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--data", type=Path, help="reuse (or create) this folder")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--replicas",
        type=int,
        default=10,
        help="generate events/N distinct events and repeat them N times (1: generate all)",
    )
    ap.add_argument("--no-peer", action="store_true")
    args = ap.parse_args()
    tmp = None
    folder = args.data
    if folder is None:
        tmp = tempfile.mkdtemp(prefix="podmortem-pivots-")
        folder = Path(tmp)
    folder.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    try:
        jsonl, t_gen = _data(folder, args.events, args.replicas)
        idx, t_load, n = _index(folder, jsonl)
        busy_actor, busy_obj = _busiest(idx)
        rows: list[dict[str, Any]] = []

        def add(what: str, kind: str, r: dict[str, Any]) -> None:
            rows.append({"what": what, "kind": kind, **r})

        add(
            "SELECT count(*)",
            "floor",
            _timed(
                idx,
                args.repeat,
                lambda c: c.execute("SELECT count(*) FROM audit_events").fetchone()[0],
            ),
        )
        add(
            "count(*) WHERE username = ?",
            "floor",
            _timed(
                idx,
                args.repeat,
                lambda c: c.execute(
                    "SELECT count(*) FROM audit_events WHERE username = ?", [STOLEN]
                ).fetchone()[0],
            ),
        )
        add(
            f"actor {STOLEN}",
            "pivot",
            _timed(idx, args.repeat, lambda c: pivots.actor(c, STOLEN).requests_total),
        )
        add(
            f"actor {busy_actor} (busiest)",
            "pivot",
            _timed(idx, args.repeat, lambda c: pivots.actor(c, busy_actor).requests_total),
        )
        add(
            "object shop/secrets/payments-db",
            "pivot",
            _timed(
                idx,
                args.repeat,
                lambda c: pivots.object_(c, "shop/secrets/payments-db").requests_total,
            ),
        )
        add(
            f"object {busy_obj} (busiest)",
            "pivot",
            _timed(idx, args.repeat, lambda c: pivots.object_(c, busy_obj).requests_total),
        )
        add(
            f"credential {scenarios.WEB_JTI[:16]}...",
            "pivot",
            _timed(
                idx, args.repeat, lambda c: len(pivots.credential(c, scenarios.WEB_JTI).credentials)
            ),
        )
        # The floor of any CLI answer: starting Python and importing podmortem's CLI.
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "podmortem", "version"], capture_output=True, check=False
        )
        dt = time.perf_counter() - t
        add(
            "CLI: podmortem version (process start)",
            "floor",
            {"median_s": dt, "max_s": dt, "answer": ""},
        )
        t = time.perf_counter()
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "podmortem",
                "audit",
                "actor",
                STOLEN,
                "--index",
                str(idx),
                "--json",
            ],
            capture_output=True,
            check=False,
        )
        dt = time.perf_counter() - t
        add(
            "CLI: podmortem audit actor (process)",
            "pivot",
            {
                "median_s": dt,
                "max_s": dt,
                "answer": json.loads(cli.stdout)["requests_total"]
                if cli.returncode == 0
                else cli.stderr.decode()[-200:],
            },
        )
        if not args.no_peer:
            if shutil.which("jq"):
                add(
                    f"jq select(.user.username == {STOLEN})",
                    "peer",
                    _peer(
                        ["jq", "-c", f'select(.user.username == "{STOLEN}")', str(jsonl)],
                        counts=False,
                    ),
                )
            add(
                "grep -F -c (text search, no parsing)",
                "peer",
                _peer(["grep", "-F", "-c", f'"username":"{STOLEN}"', str(jsonl)], counts=True),
            )
        load_after = os.getloadavg()
        print(
            f"\nPivots over {n:,} audit events ({os.cpu_count()} CPUs, load"
            f" {load_before[0]:.1f} -> {load_after[0]:.1f}); data generated in {t_gen:.1f}s,"
            f" index built in {t_load:.1f}s"
        )
        print(f"{'kind':6} {'what':58} {'median':>9} {'worst':>9} {'cpu':>7}  answer")
        for r in rows:
            cpu = f"{r['cpu_s']:7.3f}" if "cpu_s" in r else f"{'':7}"
            print(
                f"{r['kind']:6} {r['what'][:58]:58} {r['median_s']:9.3f}"
                f" {r['max_s']:9.3f} {cpu}  {r['answer']}"
            )
        slowest = max(
            r["max_s"] for r in rows if r["kind"] == "pivot" and not r["what"].startswith("CLI")
        )
        verdict = "under" if slowest < 1 else "OVER"
        print(f"slowest library pivot: {slowest:.3f}s ({verdict} one second)")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(
            json.dumps(
                {
                    "events": n,
                    "cpus": os.cpu_count(),
                    "load_before": load_before,
                    "load_after": load_after,
                    "generate_s": t_gen,
                    "index_s": t_load,
                    "replicas": args.replicas,
                    "rows": rows,
                    "slowest_pivot_s": slowest,
                },
                indent=2,
                default=str,
            )
            + "\n",
            encoding="utf-8",
        )
        print(f"JSON written to {RESULTS.relative_to(REPO)}")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Report benchmark: building and rendering the investigation report of a large case, side by
side with the floor and a peer, in one run.

The case: ``--events`` audit events (native JSONL from ``gen_audit.py``, loaded by the audit
engine: setup, not measured), an acquisition document with ``--processes`` processes and
``--files`` writable-layer changes around exec sessions, the example image's analysis, and
the custody log all that produced.

- **floor**: just reading the same data: ``SELECT *`` of the audit and findings tables,
  ``json.load`` of the documents, reading the custody log (what any report must at least do);
- **podmortem**: ``report.build`` (load, timeline, correlation, summary; artifact
  verification off and on) and each renderer (HTML with Plotly inlined, Markdown, JSON);
- **peer**: the charting library used the usual way: a Plotly figure of the same timeline
  points written with ``write_html(include_plotlyjs=True)`` (chart only: no correlation,
  tables or escaping of anything but what Plotly itself escapes).

    .venv/bin/python benchmarks/report.py [--events 20000] [--processes 2000] [--files 10000]
        [--browser]     # also time loading both pages in headless chromium (about +1 min)

Prints a table and writes ``benchmarks/results/report.json``. Default run: about a minute.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples"))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def build_case(root: Path, events: int, processes: int, files: int) -> Any:
    import compromised_image
    from benchmarks.gen_audit import generate

    from podmortem.audit.analyze import analyze
    from podmortem.case import Case
    from podmortem.investigate import Plan, investigate

    data = generate(root / "audit", events, {"native": 1.0})
    case = Case.init(root / "case", case_id="BENCH", examiner="bench")
    img = compromised_image.build(root / "img.tar")
    investigate(case, Plan(images=[str(img.path)], budget=600))
    analyze([str(data["native"][0])], case=case)
    # An acquisition document: exec sessions every 30 s, each spawning processes and writing
    # files; the pod name matches generated exec events only by chance (correlation work
    # is still done for every process and file).
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    target = "docker://bench"
    procs = [
        {
            "target": target,
            "pid": 1000 + i,
            "ns_pid": i + 1,
            "ppid": 999 if i % 10 == 0 else 1000 + i - 1,
            "cmdline": ["sh", "-c", f"job {i}"],
            "exe": "/bin/busybox" if i % 3 else f"/tmp/.x/bin{i}",
            "start_time": (t0 + timedelta(seconds=i * 3)).isoformat(),
        }
        for i in range(processes)
    ]
    changes = [
        {
            "target": target,
            "path": f"/tmp/.x/f{i}",
            "change": "added",
            "type": "file",
            "mtime": (t0 + timedelta(seconds=i)).isoformat(),
            "sha256": "0" * 64,
            "size": 1,
        }
        for i in range(files)
    ]
    doc = {
        "targets": [
            {
                "target": target,
                "complete": True,
                "identity": {
                    "pid": 1000,
                    "image": compromised_image.TAG,
                    "image_digest": "sha256:0",
                    "labels": {
                        "io.kubernetes.pod.name": "payments-0",
                        "io.kubernetes.pod.namespace": "prod",
                        "io.kubernetes.container.name": "app",
                    },
                },
            }
        ],
        "processes": procs,
        "sockets": [],
        "fs_changes": changes,
    }
    case.add_bytes("targets/bench/acquisition.json", json.dumps(doc).encode(), source="analysis")
    return case


def floor(case: Any) -> int:
    from podmortem.case import index

    con = index.connect(case, read_only=True)
    try:
        n = len(con.execute("SELECT * FROM audit_events").fetchall())
        n += len(con.execute("SELECT * FROM findings").fetchall())
    finally:
        con.close()
    for a in case.artifacts:
        if a.path.endswith(".json"):
            json.loads((case.root / a.path).read_bytes())
    n += len((case.root / "custody.jsonl").read_bytes().splitlines())
    return n


def peer(points: list[dict[str, Any]], out: Path) -> int:
    import plotly.graph_objects as go

    fig = go.Figure()
    for source in sorted({p["s"] for p in points}):
        mine = [p for p in points if p["s"] == source]
        fig.add_trace(
            go.Scattergl(
                x=[p["t"] for p in mine],
                y=[source] * len(mine),
                text=[p["l"] for p in mine],
                mode="markers",
                name=source,
            )
        )
    fig.write_html(out, include_plotlyjs=True)
    return out.stat().st_size


def browser_load(page: Path) -> float:
    """Seconds from navigation until Plotly has drawn (headless Debian chromium)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            pg = b.new_page(viewport={"width": 1400, "height": 1000})
            t0 = time.perf_counter()
            pg.goto(page.as_uri(), wait_until="load", timeout=600_000)
            pg.wait_for_function(
                "document.querySelector('.plotly .main-svg') !== null", timeout=600_000
            )
            return time.perf_counter() - t0
        finally:
            b.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--processes", type=int, default=2_000)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument(
        "--browser",
        action="store_true",
        help="also time loading both HTML files in headless Debian chromium",
    )
    args = ap.parse_args()

    from podmortem import report
    from podmortem.report import html, markdown

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pm-bench-report-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        case = build_case(root, args.events, args.processes, args.files)
        setup = time.perf_counter() - t0

        sec, n = _time(lambda: floor(case))
        rows.append(
            {"what": "floor: read tables, documents, custody log", "seconds": sec, "records": n}
        )
        sec, rep = _time(lambda: report.build(case, verify=False))
        rows.append(
            {
                "what": "podmortem: build (timeline + links + summary)",
                "seconds": sec,
                "entries": len(rep.entries),
                "links": len(rep.links),
            }
        )
        sec, _ = _time(lambda: report.build(case, verify=True), repeat=1)
        rows.append({"what": "podmortem: build + verify every artifact", "seconds": sec})
        for name, fn in (
            ("html", html.render),
            ("markdown", markdown.render),
            ("json", report.render_json),
        ):
            sec, text = _time(lambda fn=fn: fn(rep))
            rows.append(
                {"what": f"podmortem: render {name}", "seconds": sec, "bytes": len(text.encode())}
            )
        points = html.chart_data(rep, limit=10**9)["points"]  # all of them, as the peer would
        sec, size = _time(lambda: peer(points, root / "peer.html"))
        rows.append(
            {
                "what": "peer: plotly figure.write_html, chart only",
                "seconds": sec,
                "bytes": size,
                "points": len(points),
            }
        )
        if args.browser:
            ours = root / "report.html"
            ours.write_text(html.render(rep))
            for name, page in (("podmortem", ours), ("peer", root / "peer.html")):
                rows.append(
                    {
                        "what": f"{name}: chromium load until the chart is drawn",
                        "seconds": browser_load(page),
                    }
                )

    width = max(len(r["what"]) for r in rows)
    print(
        f"report benchmark: {args.events} audit events, {args.processes} processes, "
        f"{args.files} file changes (setup {setup:.1f} s)"
    )
    for r in rows:
        extra = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("what", "seconds"))
        print(f"  {r['what']:<{width}}  {r['seconds']:8.3f} s  {extra}")
    out = REPO / "benchmarks" / "results" / "report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "report",
                "when": datetime.now(UTC).isoformat(),
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": __import__("os").cpu_count(),
                },
                "params": vars(args),
                "setup_s": round(setup, 3),
                "max_rss_mb": round(_rss_mb(), 1),
                "rows": [{**r, "seconds": round(r["seconds"], 4)} for r in rows],
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

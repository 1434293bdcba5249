"""Benchmark of ``podmortem audit hunt``: turning the rules into cloud log-engine queries, and
what verifying those queries costs.

Measured side by side, in this process, best of ``--repeat`` runs:

- ``floor``: reading the rule files and parsing their YAML with libyaml (``CSafeLoader``):
  nothing that converts these rules is cheaper
- ``podmortem-load``: ``load_rules()`` (the same loader as ``audit analyze``: parse, compile
  to DuckDB SQL, resolve correlations)
- ``podmortem-<provider>``: ``plan_hunt()`` for eks, aks and gke (every rule in every language
  of the provider, with --since and --cluster), queries per second and printed bytes
- ``peer``: pySigma's published SQLite backend (``pySigma-backend-sqlite``) converting the same
  rule files: a maintained pySigma 2 backend doing the same kind of work for one language
- ``verify-kql``: Microsoft's Kusto language service binding every printed KQL query (only when
  ``npm ci --prefix tests/audit/hunt/kusto`` has been run), the slowest check of the tests

Rules: the built-in rules plus the SigmaHQ Kubernetes rules of the public corpus when present
(``../shared/corpus`` or ``$PODMORTEM_CORPUS``). Run from the repository root::

    .venv/bin/python benchmarks/audit_hunt.py             # about a minute
    .venv/bin/python benchmarks/audit_hunt.py --repeat 5 --no-verify

Prints a table and writes ``benchmarks/results/audit_hunt.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "audit" / "hunt"))


def rule_dirs() -> tuple[Path, Path | None]:
    builtin = REPO / "src" / "podmortem" / "audit" / "rules"
    env = os.environ.get("PODMORTEM_CORPUS")
    corpus = Path(env) if env else (REPO / ".." / "shared" / "corpus").resolve()
    sigma = corpus / "k8s-audit" / "sigma-rules"
    return builtin, sigma if sigma.is_dir() else None


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def calibrate() -> float:
    t = time.perf_counter()
    sum(range(10_000_000))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description="audit hunt: rules to cloud queries")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-verify", action="store_true", help="skip the Kusto service timing")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "audit_hunt.json")
    args = ap.parse_args()

    import yaml
    from sigma.collection import SigmaCollection

    from podmortem.audit.hunt import load_rules, plan_hunt

    builtin, sigma = rule_dirs()
    files = sorted(builtin.glob("*.yml")) + (sorted(sigma.glob("*.yml")) if sigma else [])
    n_files = len(files)
    calib_before = calibrate()
    results: list[dict[str, Any]] = []

    def row(method: str, seconds: float, items: int, unit: str, **extra: Any) -> None:
        rate = items / seconds if seconds else 0.0
        results.append(
            {
                "method": method,
                "seconds": round(seconds, 4),
                unit: items,
                f"{unit}_per_s": round(rate, 1),
                **extra,
            }
        )
        more = " ".join(f"{k}={v}" for k, v in extra.items())
        print(f"{method:22} {seconds:8.3f}s {items:>6} {unit:8} {rate:>10,.1f}/s  {more}")

    def floor() -> int:
        docs = []
        for p in files:
            docs += [d for d in yaml.load_all(p.read_bytes(), Loader=yaml.CSafeLoader) if d]
        return len(docs)

    secs, n = best(floor, args.repeat)
    row("floor", secs, n, "rules", files=n_files)

    def load() -> Any:
        return load_rules(sigma_dirs=[sigma] if sigma else [])

    secs, rules = best(load, args.repeat)
    row("podmortem-load", secs, len(rules.rules), "rules", errors=len(rules.errors))

    kql: dict[str, str] = {}
    for provider in ("eks", "aks", "gke"):

        def hunt(p: str = provider) -> Any:
            return plan_hunt(p, rules, since="24h", cluster="prod-1")

        secs, plan = best(hunt, args.repeat)
        qs = [q for h in plan.hunts for q in h.queries]
        printed = [q.query for q in qs if q.query]
        row(
            f"podmortem-{provider}",
            secs,
            len(qs),
            "queries",
            expressible=len(printed),
            kbytes=round(sum(map(len, printed)) / 1000, 1),
        )
        if provider == "aks":
            kql = {
                f"{h.rule.rule_id}/{q.target}": q.query
                for h in plan.hunts
                for q in h.queries
                if q.query
            }

    try:
        from sigma.backends.sqlite import sqliteBackend
    except ImportError:
        sqliteBackend = None  # noqa: N806 - the class, or its absence

    def peer() -> tuple[int, int]:
        assert sqliteBackend is not None
        texts = [p.read_text("utf-8") for p in files]
        coll = SigmaCollection.from_yaml("\n---\n".join(texts), collect_errors=True)
        backend = sqliteBackend()
        ok = failed = 0
        for rule in coll:
            try:
                backend.convert_rule(rule)
                ok += 1
            except Exception:  # the peer's failures are counted, not fatal
                failed += 1
        return ok, failed

    if sqliteBackend is None:
        print("peer-pysigma-sqlite: skipped (pip install pySigma-backend-sqlite)")
    else:
        secs, (ok, failed) = best(peer, args.repeat)
        row("peer-pysigma-sqlite", secs, ok + failed, "queries", expressible=ok)

    if not args.no_verify:
        from kusto_check import PACKAGE, diagnostics

        if PACKAGE.is_dir():
            t = time.perf_counter()
            got = diagnostics(kql)
            secs = time.perf_counter() - t
            bad = sum(1 for v in got.values() if v)
            row("verify-kql", secs, len(kql), "queries", with_diagnostics=bad)
        else:
            print("verify-kql: skipped (run npm ci --prefix tests/audit/hunt/kusto)")

    calib_after = calibrate()
    doc = {
        "benchmark": "audit_hunt",
        "rule_files": n_files,
        "sigmahq_rules": bool(sigma),
        "repeat": args.repeat,
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


if __name__ == "__main__":
    main()

"""The incremental detector gives the findings ``audit analyze`` gives over the whole log,
however the log is cut into chunks; a replayed chunk changes nothing."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from burst import T0, burst, event, lines

from podmortem.audit.analyze import analyze, load_rules
from podmortem.watch.detector import IncrementalDetector, pod_of

RULES = load_rules()


def run_chunks(
    tmp_path: Path, data: bytes, cuts: list[int]
) -> tuple[dict[tuple[str, str, str], int], IncrementalDetector]:
    con = duckdb.connect()
    con.execute(f"ATTACH '{tmp_path / 'st.duckdb'}' AS st")
    det = IncrementalDetector(con, RULES, scratch=tmp_path)
    bounds = [0, *cuts, len(data)]
    for a, b in itertools.pairwise(bounds):
        det.process(data[a:b], source="test", offset=a)
        con.execute("BEGIN")
        det.persist()
        con.execute("COMMIT")
    rows = con.execute("SELECT fkey, requests FROM st.watch_findings").fetchall()
    return {tuple(k.split("\x1f")): int(n) for k, n in rows}, det  # type: ignore[misc]


def line_cuts(data: bytes, n: int, seed: int) -> list[int]:
    ends = [i + 1 for i, c in enumerate(data) if c == 0x0A][:-1]
    return sorted(random.Random(seed).sample(ends, n))


@pytest.mark.parametrize("seed", [1, 2])
def test_same_findings_as_audit_analyze_whatever_the_chunks(tmp_path: Path, seed: int) -> None:
    data = lines(burst(1500, pods=6))
    f = tmp_path / "audit.log"
    f.write_bytes(data)
    whole = analyze([f], rules=RULES, reconstruction=False)
    want = {
        (x.rule_id, str(x.extra["actor"]), str(x.extra["object"])): int(x.extra["requests"])
        for x in whole.engine.findings
        if "correlation" not in x.extra
    }
    corr_want = {x.rule_id for x in whole.engine.findings if "correlation" in x.extra}
    got, _ = run_chunks(tmp_path, data, line_cuts(data, 6, seed))
    got_det = {k: v for k, v in got.items() if k[0] not in corr_want}
    assert got_det == want
    assert {k[0] for k in got} - set(want_rules(want)) == corr_want
    assert "k8s_forbidden_burst" in corr_want


def want_rules(want: dict[tuple[str, str, str], int]) -> set[str]:
    return {k[0] for k in want}


def test_correlation_across_chunks(tmp_path: Path) -> None:
    # 25 forbidden requests 2 s apart, one per chunk: only the window sees the burst.
    evs = [
        event(
            i,
            T0 + timedelta(seconds=2 * i),
            user="mallory",
            verb="list",
            resource="secrets",
            name=None,
            code=403,
        )
        for i in range(25)
    ]
    data = lines(evs)
    cuts = [i + 1 for i, c in enumerate(data) if c == 0x0A][:-1]
    got, _ = run_chunks(tmp_path, data, cuts)
    assert any(k[0] == "k8s_forbidden_burst" and k[1] == "mallory" for k in got)


def test_replayed_chunk_counts_nothing_twice(tmp_path: Path) -> None:
    data = lines(burst(600, pods=3))
    half = data.rfind(b"\n", 0, len(data) // 2) + 1
    (tmp_path / "a").mkdir()
    once, _ = run_chunks(tmp_path / "a", data, [half])
    (tmp_path / "b").mkdir()
    con = duckdb.connect()
    con.execute(f"ATTACH '{tmp_path / 'b' / 'st.duckdb'}' AS st")
    det = IncrementalDetector(con, RULES, scratch=tmp_path / "b")
    for a, b in ((0, half), (0, len(data))):  # the first chunk again, inside a longer one
        res = det.process(data[a:b], source="t", offset=a)
        con.execute("BEGIN")
        det.persist()
        con.execute("COMMIT")
    assert res.duplicate_events > 0
    rows = dict(con.execute("SELECT fkey, requests FROM st.watch_findings").fetchall())
    assert {tuple(k.split("\x1f")): v for k, v in rows.items()} == once


def test_pod_named_by_a_finding() -> None:
    from podmortem.findings import Finding, Severity

    def f(obj: str) -> Finding:
        return Finding("r", "t", Severity.HIGH, extra={"object": obj})

    assert pod_of(f("pods/exec default/web-1")) == ("default", "web-1")
    assert pod_of(f("pods kube-system/coredns-5d78c9869d-abcde")) == (
        "kube-system",
        "coredns-5d78c9869d-abcde",
    )
    assert pod_of(f("pods default/*")) is None
    assert pod_of(f("secrets default/db")) is None
    assert pod_of(f("pods/exec default/web-1 ; rm -rf /")) is None
    assert pod_of(f("pods/exec ../../etc/passwd")) is None


def test_window_is_bounded_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from podmortem.watch import detector

    monkeypatch.setattr(detector, "MAX_WINDOW_ROWS", 100)
    con = duckdb.connect()
    con.execute(f"ATTACH '{tmp_path / 'st.duckdb'}' AS st")
    det = IncrementalDetector(con, RULES, scratch=tmp_path)
    res = det.process(lines(burst(1200, pods=4)), source="t", offset=0)
    con.execute("BEGIN")
    det.persist()
    con.execute("COMMIT")
    assert res.window_rows <= 100
    assert any(c.kind == "watch-window-capped" for c in res.caveats)
    n = con.execute("SELECT count(*) FROM st.watch_window").fetchone()
    assert n is not None and n[0] <= 100


def test_keyword_rule_fires_as_in_audit_analyze(tmp_path: Path) -> None:
    """A Sigma keyword rule searches the original record: the detector keeps it for such
    rule sets (and only then), so watch mode finds what `audit analyze` finds."""
    folder = tmp_path / "kw"
    folder.mkdir()
    (folder / "kw.yml").write_text(
        "title: keyword\nid: 6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b\nstatus: test\n"
        "logsource: {product: kubernetes, service: audit}\n"
        "detection:\n  keywords: [mallory]\n  condition: keywords\nlevel: high\n"
    )
    rules = load_rules(builtin=False, sigma_dirs=[folder])
    assert rules.reads_raw and not RULES.reads_raw
    data = lines([event(1, T0), event(2, T0, user="mallory@example.com")])
    con = duckdb.connect()
    con.execute(f"ATTACH '{tmp_path / 'st.duckdb'}' AS st")
    det = IncrementalDetector(con, rules, scratch=tmp_path)
    det.process(data, source="test", offset=0)
    con.execute("BEGIN")
    det.persist()
    con.execute("COMMIT")
    got = [
        r[0].split("\x1f")[1] for r in con.execute("SELECT fkey FROM st.watch_findings").fetchall()
    ]
    assert got == ["mallory@example.com"]


def test_state_written_before_a_column_was_added(tmp_path: Path) -> None:
    """A watch state from an earlier version (its window table without log_name) is
    carried on: the column is added and rows move by name, none into another's place."""
    from podmortem.audit.model import COLUMNS
    from podmortem.watch.detector import WINDOW

    state = tmp_path / "st.duckdb"
    old = duckdb.connect(str(state))
    cols = ", ".join(f'"{c}" {t}' for c, t, _ in COLUMNS if c != "log_name")
    old.execute(f"CREATE TABLE {WINDOW} ({cols}, ident VARCHAR)")
    old.close()
    con = duckdb.connect()
    con.execute(f"ATTACH '{state}' AS st")
    det = IncrementalDetector(con, RULES, scratch=tmp_path)
    det.process(lines(burst(300, pods=2)), source="feed", offset=0)
    con.execute("BEGIN")
    det.persist()
    con.execute("COMMIT")
    query = f"SELECT DISTINCT source_file, provider FROM st.{WINDOW}"  # noqa: S608 - constant
    rows = con.execute(query).fetchall()
    assert rows == [("feed@0", "native")]

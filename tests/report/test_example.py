"""Issue 7, done-when 1 (offline part): the bundled example's report shows the whole attack
in order, with links across sources. The live part is in test_live.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from podmortem import report
from podmortem.case import Case
from podmortem.report import links


@pytest.fixture(scope="module")
def doc(offline_case: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("out")
    written = report.write(
        report.build(Case.open(offline_case)),
        json_path=out / "r.json",
        html=out / "r.html",
        markdown=out / "r.md",
    )
    d = json.loads(written["json"].read_text())
    d["_html"] = written["html"].read_text()
    d["_md"] = written["markdown"].read_text()
    return d


def _index(doc: dict, pred) -> int:  # type: ignore[no-untyped-def, type-arg]
    hits = [i for i, e in enumerate(doc["timeline"]) if pred(e)]
    assert hits, "milestone missing from the timeline"
    return hits[0]


def test_the_whole_attack_in_order(doc: dict) -> None:  # type: ignore[type-arg]
    s = lambda e: e["summary"]  # noqa: E731
    milestones = [
        _index(doc, lambda e: e["kind"] == "layer" and "i.sh" in s(e)),  # implanted layer
        _index(doc, lambda e: e["kind"] == "api-request" and "create shop/pods/payments" in s(e)),
        _index(doc, lambda e: "selfsubjectrulesreviews" in s(e)),  # discovery, stolen token
        _index(doc, lambda e: "get shop/secrets/db-credentials" in s(e)),
        _index(doc, lambda e: e["kind"] == "exec" and "payments-5d8f7b9c4-kq2rz" in s(e)),
        _index(doc, lambda e: "create shop/pods/debug-tools" in s(e)),  # escape to the node
        _index(doc, lambda e: "clusterrolebindings/web-admin" in s(e)),  # persistence
        _index(doc, lambda e: s(e).startswith("delete shop/events")),  # covering tracks
    ]
    assert milestones == sorted(milestones)
    times = [doc["timeline"][i]["time"] for i in milestones]
    assert times == sorted(times)


def test_both_provider_formats_feed_one_timeline(doc: dict) -> None:  # type: ignore[type-arg]
    parsers = {
        p["parser"] for e in doc["timeline"] if e["source"] == "audit" for p in e["provenance"]
    }
    assert any("eks" in p for p in parsers) and any("native" in p for p in parsers)
    ids = [e["id"] for e in doc["timeline"] if e["source"] == "audit"]
    assert len(ids) == len(set(ids)) == 10  # the exec in both files counted once


def test_cross_source_links(doc: dict) -> None:  # type: ignore[type-arg]
    rel = {
        (lk["relation"], lk["source"].split(":")[0], lk["target"].split(":")[0])
        for lk in doc["links"]
    }
    assert (links.RAN_IMAGE, "image", "audit") in rel  # image -> the pod created with it
    assert (links.EVIDENCE_OF, "finding", "audit") in rel


def test_audit_reconstruction_in_the_narrative(doc: dict) -> None:  # type: ignore[type-arg]
    (thread,) = doc["attack_threads"]
    assert thread["credential_misuse"] is True
    assert thread["members"] == ["system:serviceaccount:shop:web from 203.0.113.77"]
    stolen = [e for e in doc["timeline"] if e["kind"] == "audit.reconstruct"]
    assert stolen and "used away from what it is bound to" in stolen[0]["summary"]
    assert any(
        lk["source"] == stolen[0]["id"] and lk["relation"] == links.EVIDENCE_OF
        for lk in doc["links"]
    )
    assert any("misused credential" in w for w in doc["summary"]["what_happened"])


def test_summary_narrative_matrix(doc: dict) -> None:  # type: ignore[type-arg]
    s = doc["summary"]
    assert s["since"].startswith("2026-11-12T08:00")  # the implant layer (claimed build time)
    assert "shop/payments-5d8f7b9c4-kq2rz" in s["affected"]["pods"]
    assert s["affected"]["images"] == ["registry.example.com/shop/payments:1.4.2"]
    tactics = [n["tactic"] for n in doc["narrative"]]
    for t in ("execution", "persistence", "privilege-escalation", "credential-access"):
        assert t in tactics
    order = [
        "initial-access",
        "execution",
        "persistence",
        "privilege-escalation",
        "defense-evasion",
        "credential-access",
        "discovery",
        "lateral-movement",
        "collection",
        "command-and-control",
        "exfiltration",
        "impact",
        "unmapped",
    ]
    assert tactics == sorted(tactics, key=order.index)
    techniques = {t["id"] for col in doc["attack_matrix"] for t in col["techniques"]}
    assert {"T1609", "T1611", "T1098.006", "T1496", "T1574.006"} <= techniques
    layers = doc["images"][0]["layers"]
    implant = [f["title"] for f in layers[2]["findings"]]
    assert "Cryptocurrency miner binary" in implant and layers[3]["findings"] == []
    secret = [f for f in layers[1]["findings"] if f["subject"] == "/app/.env"]
    assert secret and secret[0]["hidden_by_layer"] == 3  # deleted is not gone
    assert doc["custody"]["status"] == "intact"
    assert all(r["status"] == "verified" for r in doc["evidence"])
    assert any(g.startswith("No live acquisition") for g in doc["evidence_gaps"])


def test_html_is_self_contained(doc: dict) -> None:  # type: ignore[type-arg]
    html = doc["_html"]
    assert "Content-Security-Policy" in html and "default-src &#39;none&#39;" in html
    # nothing is loaded from anywhere: no src/href to a URL, no <link>, no @import
    assert not re.search(
        r"""<(script|img|iframe|link)[^>]+(src|href)\s*=\s*["']?(https?:)?//""", html, re.I
    )
    assert "<link" not in html.lower() and "@import" not in html
    assert "Plotly" in html and len(html) > 1_000_000  # the charting library is inlined
    for section in (
        "summary",
        "narrative",
        "timeline",
        "matrix",
        "findings",
        "runtime",
        "images",
        "gaps",
        "evidence",
    ):
        assert f'id="{section}"' in html


def test_markdown_has_every_section(doc: dict) -> None:  # type: ignore[type-arg]
    for title in (
        "## Executive summary",
        "## Attack narrative by ATT&CK tactic",
        "## ATT&CK matrix",
        "## Case timeline",
        "### Cross-source links",
        "## Findings",
        "## Runtime picture",
        "## Image layers",
        "## Evidence gaps and caveats",
        "## Evidence table",
    ):
        assert title in doc["_md"]


def test_audit_timeline_cap_is_a_caveat(
    offline_case: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from podmortem.report import evidence

    monkeypatch.setattr(evidence, "MAX_AUDIT_ROWS", 3)
    rep = report.build(Case.open(offline_case), verify=False)
    assert len([e for e in rep.entries if e.source == "audit"]) == 3
    cut = [c for _, c in rep.caveats if c.kind == "timeline-truncated"]
    assert cut and "first 3 of 10 audit requests" in cut[0].message


def test_long_timelines_draw_the_relevant_entries(
    offline_case: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from podmortem.report import html

    rep = report.build(Case.open(offline_case), verify=False)
    monkeypatch.setattr(html, "MAX_CHART_POINTS", 25)
    chart = html.chart_data(rep)
    assert (
        len(chart["points"]) == 25
        and chart["omitted"] == len([e for e in rep.entries if e.time]) - 25
    )
    kept = {rep.entries[p["i"]].id for p in chart["points"]}
    findings = {e.id for e in rep.entries if e.severity is not None}
    assert findings <= kept  # findings first, the custody log last
    assert not any(rep.entries[p["i"]].source == "custody" for p in chart["points"])
    page = html.render(rep)
    undated = len([e for e in rep.entries if e.time is None])  # always listed
    assert page.count('<tr id="e') == 25 + undated and 'id="chart-omitted"' in page

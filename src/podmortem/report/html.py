"""The self-contained HTML report: one file, all CSS and JavaScript inlined (Plotly's own
bundle for the timeline chart), a Content-Security-Policy that forbids every network fetch,
so opening it loads nothing from anywhere.

Escaping, in three places, because evidence is written by attackers:
- HTML text and attributes: Jinja2 autoescaping, after :func:`podmortem.escape.for_plain`
  (run by ``finalize`` on every value) has made control characters and bidi overrides visible;
- the chart's data: JSON inside ``<script type="application/json">``, where ``<``, ``>``,
  ``&`` and the JavaScript line separators are written as ``\\uXXXX`` so no evidence string
  can close the element or open a comment;
- chart labels: Plotly reads a small HTML subset in hover text, so labels are HTML-escaped
  before they go into the JSON (Plotly shows the entity as the literal character).
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

from podmortem.escape import for_html, for_plain
from podmortem.report.model import Report

MAX_LABEL = 300
FINALIZE_LIMIT = 4096  # for_plain's default cut
MAX_CHART_POINTS = 5_000
# The only policy the report needs: inline script and style, data: images (Plotly's
# "download plot" writes one), nothing fetched. A report that tries to reach the network is
# blocked by the browser, and the browser test would see the violation.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; connect-src 'none'; form-action 'none'; "
    "base-uri 'none'"
)


def script_json(data: Any) -> Markup:
    """JSON that is safe inside a ``<script>`` element (HTML spec "script data" state)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    for ch, rep in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(ch, rep)
    return Markup(text)  # noqa: S704 - every character that matters in script data is escaped


@functools.cache
def _plotly_js() -> str:
    # plotly's Python package ships the minified bundle; reading it directly avoids
    # importing plotly's Python side at all.
    js = resources.files("plotly").joinpath("package_data", "plotly.min.js").read_text("utf-8")
    if "</script" in js.lower():  # would end our inline element early
        raise RuntimeError("plotly.min.js contains '</script'; cannot inline it")
    return js


def _finalize(value: Any) -> Any:
    if isinstance(value, Markup) or value is None:
        return "" if value is None else value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        # Fast path: str.isprintable() is False for every control, format (bidi override)
        # and separator character for_plain would rewrite, so such strings need no work.
        if len(value) <= FINALIZE_LIMIT and value.isprintable():
            return value
        return for_plain(value)
    return value


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("podmortem.report", "templates"),
        autoescape=True,
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["t"] = lambda d: d.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z" if d else ""
    env.filters["v"] = lambda x: "" if x is None else str(x)  # evidence value, None as blank
    env.filters["short"] = lambda s, n=16: (str(s)[:n] + "\u2026") if s and len(str(s)) > n else s
    return env


def _relevance(e: Any, linked: set[str]) -> int:
    """Which dated entries the chart keeps first when there are too many to draw: findings,
    then entries a cross-source link names, then runtime and image state, execs, other API
    requests, and the custody log last."""
    if e.severity is not None:
        return 0
    if e.id in linked:
        return 1
    return {"runtime": 2, "image": 2, "audit": 3 if e.kind == "exec" else 4}.get(e.source, 5)


def chart_data(report: Report, limit: int | None = None) -> dict[str, Any]:
    """Points for the timeline chart: dated entries only, labels pre-escaped for Plotly.
    An SVG chart of tens of thousands of points takes a browser minutes to draw and to
    filter, so past ``limit`` only the most relevant are drawn (the table lists all)."""
    limit = MAX_CHART_POINTS if limit is None else limit
    dated = [(i, e) for i, e in enumerate(report.entries) if e.time is not None]
    omitted = 0
    if len(dated) > limit:
        linked = {x for lk in report.links for x in (lk.source, lk.target)}
        keep = sorted(dated, key=lambda ie: (_relevance(ie[1], linked), ie[0]))[:limit]
        omitted = len(dated) - limit
        dated = sorted(keep, key=lambda ie: ie[0])
    points = []
    for i, e in dated:
        assert e.time is not None  # noqa: S101 - filtered above
        points.append(
            {
                "i": i,
                "t": e.time.isoformat(),
                "s": e.source,
                "a": for_plain(e.actor or "(none)"),  # the same text as the filter's value
                "k": e.kind,
                "sev": str(e.severity) if e.severity is not None else "",
                "l": for_html(f"{e.kind}: {e.summary}", MAX_LABEL),
                "sub": for_html(e.subject, MAX_LABEL),
            }
        )
    return {
        "points": points,
        "shown": [i for i, _ in dated],
        "omitted": omitted,
        "sources": sorted({p["s"] for p in points}),
        "actors": sorted({p["a"] for p in points}),
    }


def render(report: Report) -> str:
    tmpl = _env().get_template("report.html.j2")
    chart = chart_data(report)
    # The table follows the chart's selection (plus undated entries) when the timeline is
    # too long for a browser to lay out and filter quickly; Markdown and JSON keep all.
    if chart["omitted"]:
        shown = set(chart["shown"])
        shown |= {i for i, e in enumerate(report.entries) if e.time is None}
    else:
        shown = set(range(len(report.entries)))
    rows = [(i, e) for i, e in enumerate(report.entries) if i in shown]
    entry_index = {e.id: i for i, e in enumerate(report.entries)}
    links_by_entry: dict[str, list[tuple[str, Any]]] = {}
    for lk in report.links:
        links_by_entry.setdefault(lk.source, []).append((lk.target, lk))
        links_by_entry.setdefault(lk.target, []).append((lk.source, lk))
    return tmpl.render(
        r=report,
        csp=CSP,
        entry_index=entry_index,
        links_by_entry=links_by_entry,
        chart=script_json({k: v for k, v in chart.items() if k != "shown"}),
        chart_omitted=chart["omitted"],
        rows=rows,
        shown=shown,
        actors=sorted({e.actor or "(none)" for e in report.entries}),
        sources=sorted({e.source for e in report.entries}),
        plotly_js=Markup(_plotly_js()),  # noqa: S704 - a vetted library bundle, not evidence
    )

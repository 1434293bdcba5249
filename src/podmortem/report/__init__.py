"""Investigation reports: one case timeline correlated across sources, rendered as
self-contained HTML, Markdown and JSON.

::

    report = build(Case.open(DIR))          # podmortem.report.model.Report
    write(report, html=Path("r.html"), markdown=Path("r.md"), json_path=Path("r.json"))
"""

from __future__ import annotations

import json
from pathlib import Path

from podmortem.report.model import Report, build

__all__ = ["Report", "build", "render_json", "write"]


def render_json(report: Report) -> str:
    # ensure_ascii: control characters and bidi overrides from evidence arrive as \\u escapes.
    return json.dumps(report.to_dict(), indent=1, ensure_ascii=True, default=str) + "\n"


def write(
    report: Report,
    *,
    html: Path | None = None,
    markdown: Path | None = None,
    json_path: Path | None = None,
) -> dict[str, Path]:
    """Render the requested formats; returns format -> path written."""
    from podmortem.report import html as html_render
    from podmortem.report import markdown as md_render

    done: dict[str, Path] = {}
    for fmt, path, fn in (
        ("html", html, html_render.render),
        ("markdown", markdown, md_render.render),
        ("json", json_path, render_json),
    ):
        if path is None:
            continue
        text = fn(report)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        done[fmt] = path
    return done

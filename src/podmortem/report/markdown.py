"""The Markdown report: the same content as the HTML one, minus the interactive chart.

Markdown renders inline HTML and gives meaning to many punctuation characters, so every
value from the evidence is made plain (:func:`podmortem.escape.for_plain`), HTML-escaped, and
has its Markdown metacharacters backslash-escaped: a pod named ``<img src=x onerror=...>`` or
``[click](javascript:...)`` stays text in any Markdown viewer, and ``|`` cannot break a table.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from datetime import datetime

from podmortem.escape import for_plain
from podmortem.report.model import Report

_MD_META = re.compile(r"([\\`*_{}\[\]()#+\-!|~>])")
MAX_CELL = 400


def md(value: object, limit: int = MAX_CELL) -> str:
    if value is None:
        return ""
    text = html.escape(for_plain(value, limit), quote=False)
    return _MD_META.sub(r"\\\1", text)


def _t(d: datetime | None) -> str:
    return d.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z" if d else "undated"


def _table(head: list[str], rows: Iterable[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out.extend("| " + " | ".join(r) + " |" for r in rows)
    return out


def render(r: Report) -> str:
    s = r.summary
    out = [
        f"# Investigation report: {md(r.case_id)}",
        "",
        f"Examiner {md(r.examiner)}, generated {_t(r.generated_at)} by podmortem. "
        f"Custody log **{md(r.custody['status'])}** ({r.custody['records']} records, head "
        f"`{md(r.custody['head'])}`).",
        "",
        "## Executive summary",
        "",
    ]
    out += [f"- {md(line)}" for line in s.what]
    out += [
        "",
        f"**Since** {_t(s.since)}; **last activity** {_t(s.last)}; "
        f"**confidence** {md(s.confidence)} "
        f"({'; '.join(md(x) for x in s.confidence_reasons)}).",
        "",
    ]
    for kind, names in s.affected.items():
        out.append(f"- **{md(kind)}**: " + ", ".join(md(n) for n in names))
    out += ["", "## Attack narrative by ATT&CK tactic", ""]
    for n, th in enumerate(r.threads, 1):
        misuse = " (misused credential)" if th["credential_misuse"] else ""
        out += [
            f"### API attack thread {n}: {md(', '.join(th['members']))}{misuse}",
            "",
            f"From {md(th['start'])} to {md(th['end'])}, reconstructed from the audit log.",
            "",
        ]
        for i, link in enumerate(th["kill_chain"], 1):
            out.append(f"{i}. **{md(link['tactic_name'])}**")
            out += [
                f"    - {md(st['time'])} {md(st['severity'])} {md(st['title'])}: "
                f"{md(st['summary'])}"
                for st in link["steps"]
            ]
        out.append("")
    out += ["### All findings, by tactic", ""]
    for tactic, fvs in r.narrative:
        out += [f"#### {md(tactic.name)}", ""]
        for i, fv in enumerate(fvs, 1):
            f = fv.finding
            out.append(
                f"{i}. {_t(fv.when)} **{md(f.severity)}** {md(f.title)}"
                + (f" ({md(f.subject)})" if f.subject else "")
                + (f": {md(f.summary)}" if f.summary else "")
            )
        out.append("")
    out += ["## ATT&CK matrix", ""]
    out += _table(
        ["Tactic", "Techniques (findings)"],
        (
            [md(t.name), ", ".join(f"{md(tq.id)} {md(tq.name)} ({n})" for tq, n in tqs)]
            for t, tqs in r.matrix
        ),
    )
    index = {e.id: i for i, e in enumerate(r.entries)}
    out += ["", "## Case timeline", ""]
    out += _table(
        ["#", "Time (UTC)", "Source", "Kind", "Actor", "What", "Provenance"],
        (
            [
                str(i),
                _t(e.time),
                e.source,
                md(e.kind),
                md(e.actor),
                md(e.summary),
                "<br>".join(
                    md(f"{p.parser} {p.artifact or ''} {' / '.join(p.location)}")
                    for p in e.provenance
                ),
            ]
            for i, e in enumerate(r.entries)
        ),
    )
    out += ["", "### Cross-source links", ""]
    out += _table(
        ["From", "Relation", "To", "Confidence", "Why"],
        (
            [
                f"#{index[lk.source]}" if lk.source in index else md(lk.source),
                md(lk.relation),
                f"#{index[lk.target]}" if lk.target in index else md(lk.target),
                md(lk.confidence),
                md(lk.reason),
            ]
            for lk in r.links
        ),
    )
    out += ["", "## Findings", ""]
    out += _table(
        ["Severity", "Time", "Finding", "Subject", "Techniques", "Evidence"],
        (
            [
                md(fv.finding.severity),
                _t(fv.when),
                f"**{md(fv.finding.title)}** {md(fv.finding.summary)}",
                md(fv.finding.subject),
                md(", ".join(fv.finding.techniques)),
                "<br>".join(md(x, 200) for x in fv.finding.evidence[:10]),
            ]
            for fv in r.findings
        ),
    )
    out += ["", "## Runtime picture", ""]
    for t in r.runtime:
        out += [f"### {md(t['target'])} {md(t['pod'])}", "", "Processes:", ""]
        out += _table(
            ["PID", "PPID", "Started", "Command", "Executable"],
            (
                [
                    md(p.get("pid")),
                    md(p.get("ppid")),
                    md(p.get("start_time")),
                    "&nbsp;" * 2 * int(p["depth"]) + md(" ".join(map(str, p.get("cmdline") or []))),
                    md(p.get("exe")),
                ]
                for p in t["processes"]
            ),
        )
        out += ["", "Changed files:", ""]
        out += _table(
            ["Change", "Path", "Modified", "SHA-256"],
            (
                [md(f.get("change")), md(f.get("path")), md(f.get("mtime")), md(f.get("sha256"))]
                for f in t["files"][:2000]
            ),
        )
        out.append("")
    out += ["## Image layers", ""]
    for img in r.images:
        out += [f"### {md(img['label'])}", ""]
        out += _table(
            ["Layer", "Created (claimed)", "Created by", "+/~/-", "Findings"],
            (
                [
                    md(lay.get("index")),
                    md(lay.get("created")),
                    md(lay.get("created_by")),
                    f"{lay['added']}/{lay['modified']}/{lay['deleted']}",
                    "<br>".join(
                        f"{md(f['severity'])} {md(f['title'])} {md(f['subject'])}"
                        + (
                            f" (hidden by layer {f['hidden_by_layer']})"
                            if f["hidden_by_layer"] is not None
                            else ""
                        )
                        for f in lay["findings"]
                    ),
                ]
                for lay in img["layers"]
            ),
        )
        out.append("")
    out += ["## Evidence gaps and caveats", ""]
    out += [f"- {md(g)}" for g in r.gaps] or ["- none"]
    out.append("")
    out += _table(
        ["From", "Kind", "Caveat"], ([md(a), md(c.kind), md(c.message)] for a, c in r.caveats)
    )
    out += [
        "",
        "## Evidence table",
        "",
        f"Custody chain **{md(r.custody['status'])}**. Check independently: "
        "`cd CASE && sha256sum -c hash_list.sha256`.",
        "",
    ]
    out += _table(
        ["Artifact", "SHA-256", "Size", "Source", "Collected", "Status"],
        (
            [
                md(a.path),
                f"`{md(a.sha256)}`",
                str(a.size),
                md(a.source),
                md(a.collected_at),
                md(a.status),
            ]
            for a in r.evidence
        ),
    )
    return "\n".join(out) + "\n"

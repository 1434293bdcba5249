"""``podmortem report DIR --html OUT --md OUT --json OUT``: render the investigation report
of any case. The case is only read: nothing is added to it or to its custody log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from podmortem.errors import InputError
from podmortem.escape import for_terminal

console = Console(highlight=False)


def register(root: typer.Typer) -> None:
    root.command("report")(report)


def report(
    directory: Annotated[Path, typer.Argument(help="Case folder.")],
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
    md: Annotated[Path | None, typer.Option("--md", help="Write the Markdown report here.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON here.")
    ] = None,
    no_verify: Annotated[
        bool,
        typer.Option("--no-verify", help="Skip re-hashing every artifact for the evidence table."),
    ] = False,
) -> None:
    """Render an investigation report (self-contained HTML, Markdown, JSON) from a case."""
    from podmortem import report as report_mod
    from podmortem.case import Case

    if html is None and md is None and json_out is None:
        raise InputError("say where to write the report: --html OUT, --md OUT and/or --json OUT")
    case = Case.open(directory)
    rep = report_mod.build(case, verify=not no_verify)
    written = report_mod.write(rep, html=html, markdown=md, json_path=json_out)
    print_summary(console, rep)
    for fmt, path in written.items():
        console.print(f"{fmt} report: {for_terminal(path)}")


def print_summary(out: Console, rep: object) -> None:
    """A few lines for the terminal; every evidence string through ``for_terminal``."""
    from podmortem.report.model import Report

    assert isinstance(rep, Report)  # noqa: S101 - typed loosely to keep CLI import light
    s = rep.summary
    out.print(
        f"case {for_terminal(rep.case_id)}: {len(rep.findings)} findings, "
        f"{len(rep.entries)} timeline entries, {len(rep.links)} cross-source links, "
        f"confidence {s.confidence}; custody {rep.custody['status']}"
    )
    for line in s.what[:8]:
        out.print(f"  - {for_terminal(line, 300)}")
    if s.since:
        out.print(f"  since {s.since.isoformat()}")
    for gap in rep.gaps:
        out.print(f"  gap: {for_terminal(gap, 300)}")

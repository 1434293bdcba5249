"""``podmortem case``: create, verify and export evidence cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from podmortem.case import Case, export_case, verify_case
from podmortem.errors import IntegrityError
from podmortem.escape import for_terminal

app = typer.Typer(help="Create, verify and export evidence cases.", no_args_is_help=True)
console = Console(highlight=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="case")


@app.command("init")
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new case (new or empty).")],
    case_id: Annotated[str, typer.Option("--case-id", help="Case number or name.")],
    examiner: Annotated[str, typer.Option("--examiner", help="Who is collecting the evidence.")],
    description: Annotated[str, typer.Option("--description", help="Free text.")] = "",
) -> None:
    """Create a new case. Refuses, touching nothing, if the folder already holds one."""
    case = Case.init(directory, case_id=case_id, examiner=examiner, description=description)
    console.print(
        f"created case {for_terminal(case.case_id)} in {for_terminal(directory)}\n"
        f"custody head {case.custody_head}"
    )


@app.command("add")
def add(
    directory: Annotated[Path, typer.Argument(help="Case folder.")],
    file: Annotated[Path, typer.Argument(help="File to add as evidence (copied, hashed).")],
    name: Annotated[str | None, typer.Option("--name", help="Path inside artifacts/.")] = None,
    sensitive: Annotated[bool, typer.Option("--sensitive", help="Holds secrets.")] = False,
) -> None:
    """Add a file from disk as an artifact (source ``file``)."""
    from podmortem.case.paths import safe_component
    from podmortem.errors import InputError

    if not file.is_file():
        raise InputError(f"{file} is not a readable file")
    case = Case.open(directory)
    rec = case.add_file(
        name or f"files/{safe_component(file.name)}",
        file,
        source="file",
        command=f"case add {file}",
        sensitive=sensitive,
    )
    console.print(f"{rec.sha256}  {for_terminal(rec.path)}  ({rec.size} bytes)")


@app.command("verify")
def verify(
    directory: Annotated[Path, typer.Argument(help="Case folder.")],
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            help="A custody head written down earlier; fail if the log no longer contains it.",
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the full account as JSON.")
    ] = None,
) -> None:
    """Recompute every hash and the custody chain. Exit 0 when intact, 1 otherwise."""
    report = verify_case(directory, expect_head=expect_head)
    if json_out:
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    for w in report.warnings:
        console.print(f"[yellow]WARNING[/] {for_terminal(w)}")
    for p in report.problems:
        console.print(f"[red]FAIL[/] {for_terminal(p)}")
    summary = (
        f"{report.artifacts_checked} artifacts ({report.bytes_hashed} bytes) and "
        f"{report.custody_records} custody records checked; head {report.custody_head}"
    )
    if not report.ok:
        raise IntegrityError(
            f"case {report.case_id} FAILED verification: "
            f"{len(report.problems)} problem(s); {summary}"
        )
    console.print(f"[green]OK[/] case {for_terminal(report.case_id)} intact: {summary}")


@app.command("export")
def export(
    directory: Annotated[Path, typer.Argument(help="Case folder.")],
    out: Annotated[Path, typer.Argument(help="Archive to write (.tar, or .tar.zst).")],
    zstd: Annotated[
        bool | None, typer.Option("--zstd/--no-zstd", help="Compress (default: by suffix).")
    ] = None,
) -> None:
    """Write the case as a tar (optionally zstd) and record the archive's hash."""
    case = Case.open(directory)
    det = export_case(case, out, zstd=zstd)
    console.print(
        f"{det['sha256']}  {for_terminal(out)}  ({det['size']} bytes, recorded in the custody log)"
    )


@app.command("show")
def show(directory: Annotated[Path, typer.Argument(help="Case folder.")]) -> None:
    """List the case's artifacts."""
    case = Case.open(directory)
    m = case.manifest
    console.print(
        f"case {for_terminal(m['case_id'])} examiner {for_terminal(m['examiner'])}"
        f" created {m.get('created_at')}"
    )
    for a in case.artifacts:
        flag = " [sensitive]" if a.sensitive else ""
        err = f" error={for_terminal(a.error)}" if a.error else ""
        console.print(
            f"{a.sha256[:16]}  {a.size:>10}  {a.source:<12} {for_terminal(a.path)}{flag}{err}",
            markup=False,
        )

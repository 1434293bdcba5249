"""Command groups whose capability has not landed yet: they say so, and exit non-zero."""

from __future__ import annotations

import typer
from rich.console import Console

NOT_AVAILABLE = 4


def pending_group(name: str, what: str) -> typer.Typer:
    help_text = f"{what} NOT AVAILABLE in this version: this capability has not landed yet."
    group = typer.Typer(help=help_text, invoke_without_command=True)

    @group.callback()
    def _callback(ctx: typer.Context) -> None:
        Console(stderr=True).print(
            f"podmortem {name}: not available in this version ({what.lower().rstrip('.')})",
            markup=False,
        )
        raise typer.Exit(NOT_AVAILABLE)

    return group

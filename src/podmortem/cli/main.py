"""Entry point: ``podmortem``. Each capability registers its commands from its own module."""

from __future__ import annotations

import os
import sys
import traceback

import typer
from rich.console import Console

import podmortem
from podmortem.cli import acquire, audit, case, cloud, image, investigate, report, watch
from podmortem.errors import PodmortemError
from podmortem.escape import for_plain

app = typer.Typer(
    name="podmortem",
    help="Forensic investigation of compromised containers and Kubernetes workloads.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (case, acquire, audit, image, cloud, report, investigate, watch):
    module.register(app)


@app.command("version")
def version() -> None:
    """Print the podmortem version."""
    typer.echo(podmortem.__version__)


def run() -> None:
    """Console-script entry: run the app, turn podmortem errors into one line and an exit
    code, and never show a traceback for bad input (set PODMORTEM_DEBUG=1 to see one).

    Click (inside Typer) handles usage errors itself (exit 2) and exits with each command's
    code; everything else that escapes a command arrives here."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        app()
    except PodmortemError as exc:
        err.print(f"podmortem: error: {for_plain(exc.message)}", markup=False)
        if os.environ.get("PODMORTEM_DEBUG"):
            traceback.print_exc()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("podmortem: interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:  # a true bug: say so in one line, keep the traceback opt-in
        err.print(
            f"podmortem: internal error: {type(exc).__name__}: {for_plain(exc)}"
            " (set PODMORTEM_DEBUG=1 for a traceback, and please report it)",
            markup=False,
        )
        if os.environ.get("PODMORTEM_DEBUG"):
            traceback.print_exc()
        sys.exit(70)

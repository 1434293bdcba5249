"""``podmortem image``: placeholder until the capability lands."""

from __future__ import annotations

import typer

from podmortem.cli._pending import pending_group


def register(root: typer.Typer) -> None:
    root.add_typer(
        pending_group(
            "image", "Container image analysis (layers, whiteouts, indicators, packages, SBOM)."
        ),
        name="image",
    )

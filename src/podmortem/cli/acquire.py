"""``podmortem acquire``: placeholder until the capability lands."""

from __future__ import annotations

import typer

from podmortem.cli._pending import pending_group


def register(root: typer.Typer) -> None:
    root.add_typer(
        pending_group(
            "acquire",
            "Live evidence acquisition (Docker, Podman, containerd, Kubernetes).",
        ),
        name="acquire",
    )

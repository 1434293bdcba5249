"""``podmortem audit``: placeholder until the capability lands."""

from __future__ import annotations

import typer

from podmortem.cli._pending import pending_group


def register(root: typer.Typer) -> None:
    root.add_typer(
        pending_group("audit", "Kubernetes audit-log analysis (EKS, AKS, GKE, self-managed)."),
        name="audit",
    )

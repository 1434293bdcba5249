"""Container image analysis: find what a compromised base image or layer added, changed and
hid.

Data flows one way::

    readers/ (docker save in three layouts, OCI layout/archive, runtime export)
      -> stream (digest, decompress, diff_id) -> tarstream (bounded tar reader)
      -> layers (Entry per member, hostile checks, indicator hooks)
      -> merge (whiteouts, hidden versions) -> packages (inventory, integrity)
      -> catalog (Hit -> Finding) -> report / sbom / index

Public entry points: :func:`analyze` (one image), :func:`diff_analyses`, :func:`report_dict`,
:func:`build_sbom`, :class:`Limits`. Submodules are imported lazily, so ``import
podmortem.image`` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Analysis", "Limits", "analyze", "build_sbom", "diff_analyses", "report_dict"]

_WHERE = {
    "Analysis": "podmortem.image.analysis",
    "analyze": "podmortem.image.analysis",
    "Limits": "podmortem.image.limits",
    "diff_analyses": "podmortem.image.diff",
    "report_dict": "podmortem.image.report",
    "build_sbom": "podmortem.image.sbom",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'podmortem.image' has no attribute {name!r}")

"""Audit-log readers: every EKS, AKS, GKE and native export format into one normalized
DuckDB table (``podmortem.audit.model``), recognised from content, never from file names.

::

    from podmortem.audit.sources import load
    result = load(con, ["evidence/"], table="audit_events")
"""

from __future__ import annotations

from podmortem.audit.sources.loader import load
from podmortem.audit.sources.tally import LoadResult

__all__ = ["LoadResult", "load"]

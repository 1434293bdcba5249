"""The evidence locker: write-once artifacts, a hash-chained custody log, verification,
export, and an embedded index."""

from podmortem.case.export import export_case
from podmortem.case.store import ArtifactRecord, ArtifactWriter, Case
from podmortem.case.verify import Issue, VerifyReport, verify_case

__all__ = [
    "ArtifactRecord",
    "ArtifactWriter",
    "Case",
    "Issue",
    "VerifyReport",
    "export_case",
    "verify_case",
]

"""Sources of audit records for watch mode: a file being appended to (with rotation and
truncation), the API server's audit webhook (spooled to such a file), CloudWatch Logs (EKS),
Log Analytics (AKS) and Cloud Logging (GKE)."""

from podmortem.watch.sources.base import Chunk, Source

__all__ = ["Chunk", "Source"]

"""Investigation procedures for EKS, AKS and GKE: plan, preserve, contain, release, collect
the control-plane audit logs, and check a cluster's forensic readiness.

Playbooks and control mappings are data (``playbooks/``, ``readiness/``); providers implement
the steps by id; :class:`~podmortem.cloud.executor.Procedure` runs them and records every
API call in the case's custody log.
"""

from podmortem.cloud.executor import Procedure
from podmortem.cloud.model import Outcome, Status, StepReport, Target

__all__ = ["Outcome", "Procedure", "Status", "StepReport", "Target"]

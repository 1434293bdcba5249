"""Caveat kinds of acquisition: stable strings that JSON consumers and tests match on."""

from __future__ import annotations

BUDGET_EXHAUSTED = "budget-exhausted"
TARGET_EXITED = "target-exited"
PROCESS_EXITED = "process-exited"
STEP_FAILED = "step-failed"
UNSUPPORTED = "unsupported"
NO_NODE_VIEW = "node-view-unavailable"
NO_EXEC_VIEW = "in-container-view-unavailable"
TRUNCATED = "truncated"
HOST_NETWORK = "host-network-namespace"
RESTARTED = "container-restarted"
LAYER_MISMATCH = "runtime-diff-mismatch"
SIDE_EFFECT = "acquisition-side-effect"
# The node-agent Job (Kubernetes, off the pod's node) delivered nothing usable, or what it
# delivered failed verification and was rejected: either way the node view is missing.
NODE_AGENT_FAILED = "node-agent-failed"
NODE_AGENT_INTEGRITY = "node-agent-integrity"
# Caveats that mean evidence the run should have had is missing.
GAP_KINDS = frozenset(
    {
        BUDGET_EXHAUSTED,
        TARGET_EXITED,
        STEP_FAILED,
        NO_NODE_VIEW,
        NODE_AGENT_FAILED,
        NODE_AGENT_INTEGRITY,
    }
)
IN_CONTAINER_ONLY = "in-container-only"
MALFORMED = "malformed-record"
UNREADABLE = "unreadable"

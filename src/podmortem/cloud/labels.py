"""The names podmortem puts on cloud and Kubernetes objects, made valid for each system.

A case id is free text chosen by the examiner; Kubernetes label values, GCP labels, firewall
and snapshot names each have their own grammar, so the id is squeezed into each. The full
case id always goes where free text is allowed (annotations, tags, descriptions).
"""

from __future__ import annotations

import hashlib
import re

LABEL_CASE = "podmortem.io/case"
LABEL_QUARANTINE = "podmortem.io/quarantine"
LABEL_DETACHED = "podmortem.io/detached-from"
ANNOTATION_CASE = "podmortem.io/case"
ANNOTATION_ORIGINAL_LABELS = "podmortem.io/original-labels"
TAG_CASE = "podmortem:case"
TAG_SOURCE = "podmortem:source"

_K8S_VALUE = re.compile(r"[^A-Za-z0-9_.-]")
_GCP = re.compile(r"[^a-z0-9-]")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def k8s_label_value(text: str) -> str:
    """A valid label value (<= 63 chars, alphanumeric at both ends) that stays unique for
    different case ids: if anything had to change, a short hash of the original is added."""
    clean = _K8S_VALUE.sub("-", text).strip("-_.")
    if clean == text and len(clean) <= 63:
        return clean
    return (clean[:54].strip("-_.") + "-" + _short_hash(text)).strip("-")


def gcp_name(prefix: str, text: str, limit: int = 63) -> str:
    """A GCE resource name: ``[a-z]([-a-z0-9]*[a-z0-9])?``, at most 63 characters."""
    clean = _GCP.sub("-", text.lower())
    clean = re.sub("-+", "-", clean).strip("-")
    name = f"{prefix}-{clean}" if clean else prefix
    if len(name) > limit or clean != text.lower():
        room = limit - len(prefix) - 10
        name = f"{prefix}-{clean[:room].strip('-')}-{_short_hash(text)}".replace("--", "-")
    return name.strip("-")


def gcp_label_value(text: str) -> str:
    """A GCP label value: lowercase letters, digits, ``_`` and ``-``, at most 63."""
    clean = re.sub(r"[^a-z0-9_-]", "-", text.lower())
    if clean == text.lower() and len(clean) <= 63:
        return clean
    return clean[:54] + "-" + _short_hash(text)


def azure_name(prefix: str, text: str, limit: int = 80) -> str:
    """An Azure resource name (snapshots, NSGs): letters, digits, ``_ . -``, <= 80."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "-", text)
    name = f"{prefix}-{clean}"
    if len(name) > limit or clean != text:
        name = f"{prefix}-{clean[: limit - len(prefix) - 10]}-{_short_hash(text)}"
    return name.rstrip(".-")

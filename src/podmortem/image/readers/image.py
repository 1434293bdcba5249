"""The resolved image every reader produces: where its blobs are, its config, its layers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from podmortem.errors import InputError
from podmortem.findings import Caveat, Finding
from podmortem.image.indicators import redact
from podmortem.image.limits import Limits
from podmortem.image.model import Layer
from podmortem.image.readers.store import BlobStore, read_small

# Layer media types we parse; anything else is reported and left alone (image-formats.md).
LAYER_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "",  # docker save's manifest.json names no media type: sniffing decides
    }
)


@dataclass
class ResolvedImage:
    source: str
    layout: str
    store: BlobStore
    config: dict[str, Any]
    config_digest: str
    manifest_digest: str | None
    tags: list[str]
    platform: str
    layers: list[Layer]
    layer_names: list[str]  # store names to open, one per layer
    findings: list[Finding] = field(default_factory=list)
    caveats: list[Caveat] = field(default_factory=list)
    available_tags: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.store.close()


def load_json(store: BlobStore, name: str, limits: Limits) -> tuple[Any, bytes]:
    raw = read_small(store, name, limits.max_json_bytes)
    try:
        return json.loads(raw), raw
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{name} in {store.description} is not valid JSON: {exc}") from exc


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def apply_config(layers: list[Layer], config: dict[str, Any]) -> list[str]:
    """Fill diff_ids and history into ``layers``; returns problems found on the way."""
    problems: list[str] = []
    rootfs = config.get("rootfs") if isinstance(config.get("rootfs"), dict) else {}
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        diff_ids = []
        problems.append("config has no rootfs.diff_ids")
    if len(diff_ids) != len(layers):
        problems.append(f"config lists {len(diff_ids)} diff_ids for {len(layers)} layers")
    for layer, d in zip(layers, diff_ids, strict=False):
        layer.diff_id = str(d)
    # History entries without empty_layer map one to one, in order, onto layers; history is
    # optional and may disagree, so a mismatch is noted, never trusted blindly.
    history = config.get("history")
    if isinstance(history, list):
        non_empty = [h for h in history if isinstance(h, dict) and not h.get("empty_layer")]
        if len(non_empty) != len(layers):
            problems.append(
                f"history has {len(non_empty)} non-empty entries for {len(layers)} layers"
            )
        for layer, h in zip(layers, non_empty, strict=False):
            # secrets typed into RUN lines live on in history: every consumer of the layer
            # list (report, index, timeline) gets the redacted text; rules read the config
            layer.created_by = redact(str(h.get("created_by") or ""))
            layer.created = str(h.get("created") or "")
            layer.comment = str(h.get("comment") or "")
    return problems


def platform_of(config: dict[str, Any]) -> str:
    parts = [str(config.get("os") or ""), str(config.get("architecture") or "")]
    if config.get("variant"):
        parts.append(str(config["variant"]))
    return "/".join(p for p in parts if p) or "unknown"

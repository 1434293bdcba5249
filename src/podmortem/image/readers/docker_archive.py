"""``docker save`` archives in their three layouts. ``manifest.json`` is the only file all
three share, so it is the authority (early Docker 25 wrote broken ``index.json`` files):

- legacy (Docker <= 24): ``<v1id>/layer.tar`` (uncompressed), ``<config-hex>.json``;
- Docker 25+: an OCI layout inside, ``blobs/sha256/<diff_id hex>`` uncompressed;
- containerd image store (Docker 29 default): compressed blobs and a nested index.

Blob digests and diff_ids are then verified against what we compute, never trusted.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from podmortem.errors import InputError
from podmortem.image.catalog import Notes
from podmortem.image.limits import Limits
from podmortem.image.model import Layer
from podmortem.image.readers.image import (
    ResolvedImage,
    apply_config,
    load_json,
    platform_of,
    sha256_digest,
)
from podmortem.image.readers.oci import find_manifest_for_config
from podmortem.image.readers.store import BlobStore, normalise

_BLOB = re.compile(r"^blobs/(sha256|sha512)/([a-f0-9]{64,128})$")
_LEGACY_CONFIG = re.compile(r"^([a-f0-9]{64})\.json$")


def _strings(value: Any) -> list[str]:
    """A list of strings from a manifest.json field that should be one (hostile input)."""
    return [str(x) for x in value] if isinstance(value, list) else []


def _pick(entries: list[dict[str, Any]], tag: str | None) -> dict[str, Any]:
    if tag:
        for e in entries:
            tags = _strings(e.get("RepoTags"))
            if any(t == tag or t.endswith("/" + tag) or t.split("/")[-1] == tag for t in tags):
                return e
            if any(t.rsplit(":", 1)[-1] == tag for t in tags):
                return e
        known = sorted({t for e in entries for t in _strings(e.get("RepoTags"))})
        raise InputError(f"no image tagged {tag!r} in this archive (tags: {', '.join(known)})")
    if len(entries) > 1:
        listing = ", ".join(",".join(_strings(e.get("RepoTags"))) or "?" for e in entries)
        raise InputError(
            f"this archive holds {len(entries)} images; pick one with --tag ({listing})"
        )
    return entries[0]


def resolve_docker_archive(
    store: BlobStore, limits: Limits, notes: Notes, tag: str | None
) -> ResolvedImage:
    doc, _ = load_json(store, "manifest.json", limits)
    if not isinstance(doc, list) or not doc or not all(isinstance(e, dict) for e in doc):
        raise InputError("manifest.json is not a list of image entries")
    entry = _pick(doc, tag)
    config_name = normalise(str(entry.get("Config", "")))
    layer_names = [normalise(n) for n in _strings(entry.get("Layers"))]
    if not config_name or not store.exists(config_name):
        raise InputError(f"manifest.json names a config {config_name!r} that is not in the archive")
    config, raw = load_json(store, config_name, limits)
    if not isinstance(config, dict):
        raise InputError("the image config is not a JSON object")
    config_digest = sha256_digest(raw)
    claimed = _BLOB.match(config_name) or _LEGACY_CONFIG.match(posixpath.basename(config_name))
    if claimed:
        want = "sha256:" + claimed.groups()[-1]
        if want != config_digest:
            notes.hit(
                "image.integrity.blob_digest_mismatch",
                f"config {config_name} hashes to {config_digest}",
                extra={"blob": want},
                evidence=(f"expected {want}", f"computed {config_digest}"),
            )
    manifest_digest, manifest = find_manifest_for_config(store, config_digest, limits)
    media = []
    if manifest and isinstance(manifest.get("layers"), list):
        media = [str(d.get("mediaType", "")) for d in manifest["layers"] if isinstance(d, dict)]
    layers: list[Layer] = []
    compressed_blobs = False
    for i, name in enumerate(layer_names):
        m = _BLOB.match(name)
        digest = f"{m.group(1)}:{m.group(2)}" if m else ""
        layers.append(
            Layer(
                index=i,
                digest=digest,
                media_type=media[i] if len(media) == len(layer_names) else "",
                size=store.size(name) if store.exists(name) else 0,
            )
        )
        if "gzip" in layers[-1].media_type or "zstd" in layers[-1].media_type:
            compressed_blobs = True
    for problem in apply_config(layers, config):
        notes.caveat("config-mismatch", problem)
    if layer_names and all(n.endswith("/layer.tar") for n in layer_names):
        layout = "docker-archive (legacy)"
    elif compressed_blobs:
        layout = "docker-archive (containerd image store)"
    else:
        layout = "docker-archive (OCI layout)"
    tags = _strings(entry.get("RepoTags"))
    return ResolvedImage(
        source=notes.source,
        layout=layout,
        store=store,
        config=config,
        config_digest=config_digest,
        manifest_digest=manifest_digest,
        tags=tags,
        platform=platform_of(config),
        layers=layers,
        layer_names=layer_names,
        available_tags=sorted({t for e in doc for t in _strings(e.get("RepoTags"))}),
    )

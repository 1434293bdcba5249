"""OCI image layouts (a directory or an ``oci-archive`` tar) and the OCI layout that Docker
25+ and the containerd image store put inside ``docker save`` archives.

``index.json`` entries may be nested indexes (a multi-platform image, or the containerd
store's index-of-index); attestation manifests (``vnd.docker.reference.type:
attestation-manifest``, platform ``unknown/unknown``) are never an image to analyse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
from podmortem.image.readers.store import BlobStore, blob_name

INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
)
REF_ANNOTATIONS = ("org.opencontainers.image.ref.name", "io.containerd.image.name")


@dataclass
class Candidate:
    descriptor: dict[str, Any]
    tags: list[str] = field(default_factory=list)
    platform: str = ""

    @property
    def digest(self) -> str:
        return str(self.descriptor.get("digest", ""))


def _platform(desc: dict[str, Any]) -> str:
    p = desc.get("platform")
    if not isinstance(p, dict):
        return ""
    parts = [str(p.get("os") or ""), str(p.get("architecture") or "")]
    if p.get("variant"):
        parts.append(str(p["variant"]))
    return "/".join(parts)


def _is_attestation(desc: dict[str, Any]) -> bool:
    ann = desc.get("annotations") if isinstance(desc.get("annotations"), dict) else {}
    return (
        ann.get("vnd.docker.reference.type") == "attestation-manifest"  # type: ignore[union-attr]
        or _platform(desc) == "unknown/unknown"
    )


def _ref_names(desc: dict[str, Any]) -> list[str]:
    ann = desc.get("annotations")
    if not isinstance(ann, dict):
        return []
    names = [str(ann[k]) for k in REF_ANNOTATIONS if ann.get(k)]
    return list(dict.fromkeys(names))  # both annotations usually carry the same name


def verified_json(store: BlobStore, digest: str, limits: Limits, notes: Notes) -> dict[str, Any]:
    doc, raw = load_json(store, blob_name(digest), limits)
    got = sha256_digest(raw) if digest.startswith("sha256:") else digest
    if got != digest:
        notes.hit(
            "image.integrity.blob_digest_mismatch",
            f"blob {digest} hashes to {got}",
            extra={"blob": digest},
            evidence=(f"expected {digest}", f"computed {got}"),
        )
    if not isinstance(doc, dict):
        raise InputError(f"{digest} is not a JSON object")
    return doc


def candidates(
    store: BlobStore, index: dict[str, Any], limits: Limits, notes: Notes
) -> list[Candidate]:
    """Every image manifest reachable from ``index`` (nested indexes followed, bounded)."""
    out: list[Candidate] = []

    def walk(doc: dict[str, Any], tags: list[str], depth: int) -> None:
        if depth > limits.max_index_depth:
            notes.caveat("index-depth", f"index nesting deeper than {limits.max_index_depth}")
            return
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            return
        for desc in manifests:
            if not isinstance(desc, dict) or _is_attestation(desc):
                continue
            names = _ref_names(desc) or tags
            mt = str(desc.get("mediaType", ""))
            if mt in INDEX_TYPES:
                try:
                    sub = verified_json(store, str(desc.get("digest", "")), limits, notes)
                except InputError as exc:
                    notes.caveat("index-unreadable", f"nested index unreadable: {exc.message}")
                    continue
                walk(sub, names, depth + 1)
            elif mt in MANIFEST_TYPES or not mt:
                out.append(Candidate(desc, names, _platform(desc)))
            else:
                notes.caveat("unknown-media-type", f"index entry of media type {mt[:80]!r} skipped")

    walk(index, [], 0)
    return out


def _tag_matches(tag: str, names: list[str]) -> bool:
    return any(n == tag or n.endswith("/" + tag) or n.endswith(":" + tag) for n in names)


def choose(cands: list[Candidate], tag: str | None, platform: str | None) -> Candidate:
    pool = cands
    if tag:
        pool = [c for c in pool if _tag_matches(tag, c.tags)]
        if not pool:
            known = sorted({t for c in cands for t in c.tags})
            raise InputError(f"no image tagged {tag!r} here (tags: {', '.join(known) or 'none'})")
    if platform:
        pool = [c for c in pool if c.platform == platform or c.platform.startswith(platform + "/")]
        if not pool:
            known = sorted({c.platform or "unspecified" for c in cands})
            raise InputError(f"no image for platform {platform!r} (have: {', '.join(known)})")
    if not pool:
        raise InputError("the index names no image manifest")
    if len({c.digest for c in pool}) > 1:
        # Several images: prefer the usual server platform, else make the user choose.
        amd = [c for c in pool if c.platform.startswith("linux/amd64")]
        if len({c.digest for c in amd}) == 1:
            return amd[0]
        listing = ", ".join(
            f"{c.platform or '?'} {','.join(c.tags) or c.digest[:19]}" for c in pool
        )
        raise InputError(f"several images here; pick one with --tag or --platform ({listing})")
    return pool[0]


def layers_from_manifest(manifest: dict[str, Any]) -> tuple[list[Layer], list[str]]:
    layers: list[Layer] = []
    names: list[str] = []
    raw = manifest.get("layers")
    if not isinstance(raw, list):
        raise InputError("image manifest has no layers list")
    for i, desc in enumerate(raw):
        if not isinstance(desc, dict):
            raise InputError("image manifest layer entry is not an object")
        digest = str(desc.get("digest", ""))
        try:
            names.append(blob_name(digest))
        except InputError:
            names.append("")  # reported as a missing layer; the other layers still count
        size = desc.get("size")
        layers.append(
            Layer(
                index=i,
                digest=digest[:200],
                media_type=str(desc.get("mediaType", "")),
                size=size if isinstance(size, int) and size >= 0 else 0,
            )
        )
    return layers, names


def resolve_oci(
    store: BlobStore,
    *,
    layout: str,
    limits: Limits,
    notes: Notes,
    tag: str | None,
    platform: str | None,
) -> ResolvedImage:
    index, _ = load_json(store, "index.json", limits)
    if not isinstance(index, dict):
        raise InputError("index.json is not a JSON object")
    cands = candidates(store, index, limits, notes)
    chosen = choose(cands, tag, platform)
    manifest = verified_json(store, chosen.digest, limits, notes)
    cdesc = manifest.get("config")
    if not isinstance(cdesc, dict):
        raise InputError("image manifest has no config descriptor")
    config_digest = str(cdesc.get("digest", ""))
    config = verified_json(store, config_digest, limits, notes)
    layers, names = layers_from_manifest(manifest)
    for problem in apply_config(layers, config):
        notes.caveat("config-mismatch", problem)
    return ResolvedImage(
        source=notes.source,
        layout=layout,
        store=store,
        config=config,
        config_digest=config_digest,
        manifest_digest=chosen.digest,
        tags=chosen.tags,
        platform=chosen.platform or platform_of(config),
        layers=layers,
        layer_names=names,
        available_tags=sorted({t for c in cands for t in c.tags}),
    )


def find_manifest_for_config(
    store: BlobStore, config_digest: str, limits: Limits
) -> tuple[str | None, dict[str, Any] | None]:
    """In a docker save with an OCI layout inside: the manifest whose config is ours."""
    if not store.exists("index.json"):
        return None, None
    scratch = Notes(store.description)
    try:
        index, _ = load_json(store, "index.json", limits)
        if not isinstance(index, dict):
            return None, None
        for c in candidates(store, index, limits, scratch):
            try:
                m = verified_json(store, c.digest, limits, scratch)
            except InputError:
                continue
            cd = m.get("config")
            if isinstance(cd, dict) and cd.get("digest") == config_digest:
                return c.digest, m
    except InputError:
        # Early Docker 25 wrote broken index.json files: manifest.json is the authority.
        return None, None
    return None, None

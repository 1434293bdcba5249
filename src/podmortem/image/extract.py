"""Pull one file out of an image, as the merged view shows it or as one layer wrote it,
streamed from the layer into a case artifact whose hash is checked against the analysis."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from pathlib import Path

from podmortem.case import ArtifactRecord, Case
from podmortem.case.paths import safe_component
from podmortem.errors import InputError
from podmortem.image.analysis import Analysis
from podmortem.image.catalog import Notes
from podmortem.image.layers import member_path
from podmortem.image.limits import DEFAULT_LIMITS, Limits
from podmortem.image.model import Entry
from podmortem.image.readers import open_image
from podmortem.image.stream import BoundedReader, open_layer
from podmortem.image.tarstream import TarWalker


@dataclass(frozen=True)
class Extracted:
    entry: Entry
    record: ArtifactRecord


def choose_version(a: Analysis, path: str, layer: int | None) -> tuple[Entry, int]:
    """The version to extract and which occurrence of the path in its layer it is (a layer
    may write a path twice; the last copy is the one that counts)."""
    path = posixpath.normpath("/" + path.lstrip("/"))
    if layer is None:
        entry = a.view.files.get(path)
        if entry is None:
            raise InputError(f"{path} is not in the merged image (try --layer N for hidden ones)")
    else:
        if not 0 <= layer < len(a.layers):
            raise InputError(f"the image has layers 0..{len(a.layers) - 1}, not {layer}")
        found = [e for e in a.versions if e.layer == layer and e.path == path]
        if not found:
            raise InputError(f"layer {layer} does not write {path}")
        entry = found[-1]
    if entry.kind == "hardlink":
        same = [e for e in a.versions if e.layer == entry.layer and e.path == entry.link]
        if not same:
            raise InputError(f"{path} is a hardlink to {entry.link}, which its layer lacks")
        entry = same[-1]
    if entry.kind != "file":
        target = f" -> {entry.link}" if entry.link else ""
        raise InputError(f"{path} is a {entry.kind}{target}, not a regular file")
    occurrence = sum(1 for e in a.versions if e.layer == entry.layer and e.path == entry.path)
    return entry, occurrence


def extract_file(
    image_path: Path,
    a: Analysis,
    path: str,
    case: Case,
    *,
    layer: int | None = None,
    tag: str | None = None,
    platform: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Extracted:
    entry, occurrence = choose_version(a, path, layer)
    notes = Notes(str(image_path))
    img = open_image(image_path, notes, limits=limits, tag=tag, platform=platform)
    try:
        name = img.layer_names[entry.layer]
        lay = img.layers[entry.layer]
        _kind, src = open_layer(img.store.open(name))
        walker = TarWalker(
            BoundedReader(src, limits.layer_allowance(lay.size or img.store.size(name))),
            max_header_bytes=limits.max_header_bytes,
        )
        seen = 0
        rel = (
            f"image/extract/layer{entry.layer}/"
            + "/".join(safe_component(p) for p in entry.path.strip("/").split("/"))[:900]
        )
        for m in walker:
            if member_path(m.name)[0] != entry.path or m.type not in ("file", "sparse"):
                continue
            seen += 1
            if seen < occurrence:
                continue
            h = hashlib.sha256()
            with case.artifact(
                rel,
                source="analysis",
                command=f"image extract {image_path} {entry.path} --layer {entry.layer}",
                sensitive=True,
            ) as w:
                w.extra = {
                    "image_path": entry.path,
                    "layer_index": entry.layer,
                    "layer_diff_id": lay.effective_diff_id,
                    "expected_sha256": entry.sha256,
                }
                for chunk in walker.chunks():
                    w.write(bytes(chunk))
                    h.update(chunk)
                if h.hexdigest() != entry.sha256:
                    w.error = f"content hashes to {h.hexdigest()}, the analysis saw {entry.sha256}"
            return Extracted(entry, case.get(rel))
    finally:
        img.close()
    raise InputError(f"{entry.path} was not found again in layer {entry.layer}")

"""One image, end to end: resolve it, stream every layer once, merge, take the package
inventory, check integrity, and turn hits into findings that name the layer that added the
content and the layer that hid it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podmortem.findings import Caveat, Finding
from podmortem.image.catalog import Hit, Notes, to_finding
from podmortem.image.indicators import Indicators
from podmortem.image.layers import Plan, read_layer
from podmortem.image.limits import DEFAULT_LIMITS, Limits
from podmortem.image.merge import MergedView, apply_layer
from podmortem.image.model import Entry, Layer, chain_ids
from podmortem.image.packages import CAPTURE, Inventory, build_inventory, check_integrity
from podmortem.image.readers import ResolvedImage, open_image
from podmortem.image.readers.image import LAYER_MEDIA_TYPES
from podmortem.image.yara_scan import YaraScanner


class _Inspector:
    """Decides per file how much content to keep, and applies indicators as files pass."""

    def __init__(
        self, notes: Notes, indicators: Indicators, limits: Limits, yara: YaraScanner | None
    ) -> None:
        self.notes = notes
        self.ind = indicators
        self.limits = limits
        self.yara = yara
        self.captured: dict[str, tuple[Entry, bytes]] = {}
        self.capture_skipped: list[str] = []
        self.captured_bytes = 0
        self._planned: tuple[Entry | None, bool] = (None, False)
        self._plans: dict[tuple[int, int, int, tuple[bytes, ...]], Plan] = {}

    def _captures(self, entry: Entry) -> bool:
        return entry.path in self.ind.account_files or CAPTURE.match(entry.path) is not None

    def plan(self, entry: Entry) -> Plan:
        wanted = self._captures(entry)
        self._planned = (entry, wanted)  # visit() of the same file follows
        capture = self.limits.capture_bytes if wanted else 0
        head = self.limits.scan_head_bytes if self.ind.wants_content(entry) else 0
        yara = self.limits.yara_max_bytes if self.yara else 0
        key = (head, capture, yara, self.ind.needles_for(entry))
        plan = self._plans.get(key)
        if plan is None:  # a handful of distinct plans: build each once, not once per file
            plan = self._plans[key] = Plan(head, capture, yara, key[3])
        return plan

    def visit(self, entry: Entry, data: bytes, complete: bool) -> None:
        if entry.kind in ("whiteout", "opaque"):
            return
        head = data[: self.limits.scan_head_bytes]
        self.ind.scan_entry(entry, head, self.notes)
        if entry.kind != "file":
            return
        planned = self._planned
        wanted = planned[1] if planned[0] is entry else self._captures(entry)
        if wanted:
            prev = self.captured.get(entry.path)
            total = self.captured_bytes + len(data) - (len(prev[1]) if prev else 0)
            if complete and total <= self.limits.capture_total_bytes:
                self.captured[entry.path] = (entry, data)
                self.captured_bytes = total
            else:
                self.capture_skipped.append(entry.path)
        if self.yara is not None:
            self.yara.scan(entry, data[: self.limits.yara_max_bytes], complete, self.notes)


@dataclass
class Analysis:
    image: ResolvedImage
    layers: list[Layer]
    view: MergedView
    versions: list[Entry]
    inventory: Inventory
    findings: list[Finding]
    caveats: list[Caveat]
    base_layers: int = 0
    base_source: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def diff_ids(self) -> list[str]:
        return [layer.effective_diff_id for layer in self.layers]


def _shared_base(derived: list[str], base: list[str]) -> int:
    """How many bottom layers two images share, by ChainID (same diff_ids in the same
    order from the bottom; blob digests differ between compressions, ChainIDs do not)."""
    n = 0
    for a, b in zip(chain_ids(derived), chain_ids(base), strict=False):
        if a != b or not a:
            break
        n += 1
    return n


def base_diff_ids(
    path: Path, *, tag: str | None, platform: str | None, limits: Limits
) -> list[str]:
    """The base image's diff_ids from its config (its layers need not be read)."""
    notes = Notes(str(path))
    img = open_image(path, notes, limits=limits, tag=tag, platform=platform)
    try:
        return [layer.diff_id for layer in img.layers]
    finally:
        img.close()


def analyze(
    path: Path,
    *,
    source: str | None = None,
    tag: str | None = None,
    platform: str | None = None,
    base: list[str] | None = None,
    base_source: str | None = None,
    yara: YaraScanner | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Analysis:
    """Analyse the image at ``path`` (archive or OCI layout). ``base`` is the diff_id list
    of a base image: the layers shared with it are attributed to the base."""
    t0 = time.monotonic()
    notes = Notes(source or str(path))
    indicators = Indicators.default()
    img = open_image(path, notes, limits=limits, tag=tag, platform=platform)
    try:
        return _analyze(img, notes, indicators, base, base_source, yara, limits, t0)
    finally:
        img.close()


def _analyze(  # noqa: PLR0917 - private continuation of analyze()
    img: ResolvedImage,
    notes: Notes,
    indicators: Indicators,
    base: list[str] | None,
    base_source: str | None,
    yara: YaraScanner | None,
    limits: Limits,
    t0: float,
) -> Analysis:
    timings: dict[str, float] = {"resolve": time.monotonic() - t0}
    indicators.scan_config(img.config, notes)
    inspector = _Inspector(notes, indicators, limits, yara)
    view = MergedView()
    versions: list[Entry] = []
    deadline = t0 + limits.time_budget_s
    members_left = limits.max_members
    stored = tar_bytes = 0
    for layer, name in zip(img.layers, img.layer_names, strict=True):
        if layer.media_type not in LAYER_MEDIA_TYPES:
            notes.hit(
                "image.archive.unknown_layer_format",
                f"layer {layer.index} has media type {layer.media_type[:100]!r}; not parsed",
                layer=layer.index,
            )
            continue
        if not name or not img.store.exists(name):
            notes.hit(
                "image.archive.missing_layer",
                f"layer {layer.index} blob {name} is not in the image",
                layer=layer.index,
            )
            continue
        if layer.size == 0:
            layer.size = img.store.size(name)
        read = read_layer(
            img.store.open(name),
            layer,
            limits=limits,
            notes=notes,
            inspector=inspector,
            deadline=deadline,
            member_budget=members_left,
        )
        members_left = max(0, members_left - len(read.entries))
        stored += read.stored_bytes
        tar_bytes += read.tar_bytes
        layer.computed_digest = read.digest
        layer.computed_diff_id = read.diff_id
        layer.compression = read.compression
        layer.read_complete = read.complete
        layer.entries = len(read.entries)
        if layer.digest and layer.digest.startswith("sha256:") and layer.digest != read.digest:
            notes.hit(
                "image.integrity.blob_digest_mismatch",
                f"layer {layer.index} blob is named {layer.digest} but hashes to {read.digest}",
                layer=layer.index,
                evidence=(f"expected {layer.digest}", f"computed {read.digest}"),
                extra={"blob": layer.digest},
            )
        if read.diff_id and layer.diff_id and read.diff_id != layer.diff_id:
            notes.hit(
                "image.integrity.diff_id_mismatch",
                f"layer {layer.index} uncompressed hashes to {read.diff_id}, the config"
                f" declares {layer.diff_id}",
                layer=layer.index,
                evidence=(f"declared {layer.diff_id}", f"computed {read.diff_id}"),
            )
        apply_layer(view, layer, read.entries)
        versions.extend(read.entries)
        if time.monotonic() > deadline:
            notes.caveat("time-budget", f"time budget exhausted after layer {layer.index}")
    timings["layers"] = time.monotonic() - t0 - timings["resolve"]
    for layer, cid in zip(
        img.layers, chain_ids([x.effective_diff_id for x in img.layers]), strict=True
    ):
        layer.chain_id = cid

    # Only package databases still visible in the merged view describe the image.
    files = {p: d for p, (e, d) in inspector.captured.items() if view.files.get(p) is e}
    for p in inspector.capture_skipped[:50]:
        notes.caveat("capture-size", f"{p} is over the capture bounds; not parsed")
    if len(inspector.capture_skipped) > 50:
        notes.caveat(
            "capture-size", f"{len(inspector.capture_skipped) - 50} more files over the bounds"
        )
    inventory = build_inventory(files, view, notes)
    check_integrity(inventory, view, versions, notes)
    timings["packages"] = time.monotonic() - t0 - timings["layers"] - timings["resolve"]

    base_layers = 0
    if base is not None:
        base_layers = _shared_base([x.effective_diff_id for x in img.layers], base)
        if base_layers == 0:
            notes.caveat(
                "base-not-shared",
                "the --base image shares no bottom layer with this image (by ChainID); every"
                " layer is attributed to this image",
            )
    findings = _findings(notes.hits, img, base_layers, base is not None)
    timings["total"] = time.monotonic() - t0
    return Analysis(
        image=img,
        layers=img.layers,
        view=view,
        versions=versions,
        inventory=inventory,
        findings=findings,
        caveats=list(notes.caveats),
        base_layers=base_layers,
        base_source=base_source,
        timings=timings,
        stats={
            "stored_bytes": stored,
            "tar_bytes": tar_bytes,
            "entries": len(versions),
            "visible_paths": len(view.files),
            "yara_files_scanned": yara.scanned if yara else 0,
        },
    )


def _findings(
    hits: list[Hit], img: ResolvedImage, base_layers: int, with_base: bool
) -> list[Finding]:
    diff_ids = [x.effective_diff_id for x in img.layers]
    seen: set[tuple[Any, ...]] = set()
    out: list[Finding] = []
    for h in hits:
        if h.entry is not None and isinstance(h.entry, Entry):
            h.hidden_by = h.entry.hidden_by
            h.hidden_how = h.entry.hidden_how
            # big files are hashed on a helper thread: their digest exists only now
            h.sha256 = h.entry.sha256 or h.sha256
        if with_base and h.layer is not None:
            h.extra["attributed_to"] = "base" if h.layer < base_layers else "derived"
        k = h.key()
        if k in seen:
            continue
        seen.add(k)
        out.append(to_finding(h, diff_ids, img.source))
    out.sort(
        key=lambda f: (
            -int(f.severity),
            f.extra.get("layer_index") if f.extra.get("layer_index") is not None else -1,
            f.extra.get("path") or "",
            f.rule_id,
        )
    )
    return out

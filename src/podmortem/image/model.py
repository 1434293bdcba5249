"""What an image is made of, as the analysis sees it: the image's identity, its layers, and
one :class:`Entry` per member of every layer (metadata and hashes, never content)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Entry:
    """One path as one layer wrote it. ``path`` is absolute and normalised (``/etc/passwd``);
    whiteouts keep the path they delete, opaque markers the directory they empty."""

    path: str
    kind: str  # file dir symlink hardlink char block fifo other whiteout opaque
    layer: int
    size: int = 0
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime: float = 0.0
    link: str = ""
    sha256: str | None = None
    md5: str | None = None
    sha1: str | None = None
    is_elf: bool = False
    is_script: bool = False
    is_text: bool = False  # no NUL in the first KiB, not ELF
    # (needle, byte offset) for whole-file needle scans of executables
    needles_found: tuple[tuple[bytes, int], ...] = ()
    # Filled by the merge: the layer that deleted or replaced this version, and how.
    hidden_by: int | None = None
    hidden_how: str = ""

    @property
    def executable(self) -> bool:
        return self.kind == "file" and bool(self.mode & 0o111)

    @property
    def setid(self) -> bool:
        return self.kind == "file" and bool(self.mode & 0o6000)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "layer_index": self.layer,
            "size": self.size,
            "mode": f"{self.mode:04o}",
            "uid": self.uid,
            "gid": self.gid,
            "link": self.link or None,
            "sha256": self.sha256,
            "hidden_by_layer": self.hidden_by,
        }


@dataclass(slots=True)
class Layer:
    index: int
    digest: str  # blob digest as the manifest names it
    media_type: str = ""
    size: int = 0  # blob size
    diff_id: str = ""  # as the config declares it
    computed_digest: str = ""
    computed_diff_id: str = ""
    chain_id: str = ""
    compression: str = ""
    created_by: str = ""
    created: str = ""
    comment: str = ""
    entries: int = 0
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    read_complete: bool = False

    @property
    def effective_diff_id(self) -> str:
        """The diff_id we trust: the one we computed, else the declared one."""
        return self.computed_diff_id or self.diff_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "digest": self.digest,
            "media_type": self.media_type,
            "size": self.size,
            "compression": self.compression,
            "diff_id": self.effective_diff_id,
            "declared_diff_id": self.diff_id,
            "chain_id": self.chain_id,
            "created_by": self.created_by,
            "created": self.created,
            "read_complete": self.read_complete,
            "entries": self.entries,
            "added": self.added,
            "modified": self.modified,
            "deleted": self.deleted,
        }


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID(L0) = diff_id(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + diff_id(Ln))."""
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out

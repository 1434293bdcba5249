"""``case export``: the whole case as one tar (optionally zstd), hashed as it is written.

The archive's SHA-256 is recorded in the custody log *after* the archive is written (it
cannot contain its own hash), and beside it as ``OUT.sha256`` in coreutils format.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path
from typing import IO, Any

import zstandard

from podmortem.case import paths
from podmortem.case.store import Case
from podmortem.errors import InputError


class _HashingFile:
    """A write-only file object that hashes and counts what passes to the real file."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self._fh.write(data)

    def flush(self) -> None:
        self._fh.flush()


def export_case(case: Case, out: Path | str, *, zstd: bool | None = None) -> dict[str, Any]:
    out = Path(out)
    if zstd is None:
        zstd = out.name.endswith((".zst", ".zstd"))
    out_abs = out.resolve()
    if out_abs.is_relative_to(case.root.resolve()):
        raise InputError("the export must be written outside the case folder")
    if out.exists():
        raise InputError(f"{out} already exists; refusing to overwrite")
    prefix = case.case_id.replace("/", "_") or "case"
    with open(out, "xb") as raw:
        hashing = _HashingFile(raw)
        if zstd:
            cctx = zstandard.ZstdCompressor(level=10, threads=-1)
            with cctx.stream_writer(hashing, closefd=False) as zw:  # type: ignore[arg-type]
                _write_tar(case.root, prefix, zw)
        else:
            _write_tar(case.root, prefix, hashing)
        raw.flush()
        os.fsync(raw.fileno())
    digest = hashing.sha.hexdigest()
    (out.parent / (out.name + ".sha256")).write_text(f"{digest}  {out.name}\n")
    details = {
        "archive": out.name,
        "sha256": digest,
        "size": hashing.size,
        "compression": "zstd" if zstd else "none",
        "custody_head_at_export": case.custody_head,
    }
    case.log_action("case_exported", details)
    return details


def _write_tar(root: Path, prefix: str, fileobj: Any) -> None:
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                full = Path(dirpath) / name
                rel = full.relative_to(root).as_posix()
                if rel == paths.LOCK or rel.endswith(".tmp"):
                    continue
                if full.is_symlink():
                    continue  # a case never holds links; verify reports them
                tar.add(full, arcname=f"{prefix}/{rel}", recursive=False)

"""Names inside a case folder, and the rules artifact paths must follow.

Artifact paths are often derived from hostile evidence (a file path inside a container, a
pod name), so they are checked here once: relative, no ``..``, no control characters, no
backslashes (they would need escaping in ``hash_list.sha256``), bounded length.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from podmortem.errors import InputError

MANIFEST = "case.json"
CUSTODY = "custody.jsonl"
HASH_LIST = "hash_list.sha256"
INDEX = "index.duckdb"
LOCK = ".lock"
PARTIAL_DIR = ".partial"
ARTIFACT_DIR = "artifacts"

# Files the store owns besides artifacts; everything else in the folder must be recorded.
STORE_FILES = frozenset({MANIFEST, CUSTODY, HASH_LIST, LOCK})
# The index is derived data, rebuilt by analyses; it is never evidence itself.
DERIVED_FILES = frozenset({INDEX, INDEX + ".wal"})

MAX_PATH = 1024
MAX_COMPONENT = 200
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")
_COMPONENT_UNSAFE = re.compile(r"[^A-Za-z0-9._+@=,-]")


def check_artifact_path(rel: str) -> str:
    """Return the normalised relative path (under ``artifacts/``) or raise InputError."""
    if not rel or len(rel) > MAX_PATH or _UNSAFE.search(rel):
        raise InputError(f"unsafe artifact path {rel!r}")
    p = PurePosixPath(rel)
    if p.is_absolute() or any(part in ("..", ".", "") for part in p.parts):
        raise InputError(f"unsafe artifact path {rel!r}")
    if any(len(part) > MAX_COMPONENT for part in p.parts):
        raise InputError(f"artifact path component too long in {rel[:80]!r}")
    if p.parts[0].startswith(".") or p.name.endswith(".part"):
        raise InputError(f"reserved artifact path {rel!r}")
    return str(p)


def safe_component(text: str, limit: int = 120) -> str:
    """Turn any string (a container name, an evidence path) into one safe path component."""
    cleaned = _COMPONENT_UNSAFE.sub("_", text).strip("._") or "_"
    return cleaned[:limit]

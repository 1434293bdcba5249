"""Birth time (``statx(2)`` ``STATX_BTIME``): when a file was created, which no ``stat`` field
gives and which survives later writes and ``touch``. Python's ``os`` has no statx, so glibc's
wrapper (2.28+) is called through ctypes; without it, or on a filesystem that does not record
birth, the answer is None."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from datetime import UTC, datetime
from typing import Any

STATX_BTIME = 0x800
AT_SYMLINK_NOFOLLOW = 0x100
AT_STATX_DONT_SYNC = 0x4000
_BUF = 256
# struct statx: stx_mask at 0; struct statx_timestamp stx_btime at 80 (tv_sec s64, tv_nsec u32)
_MASK = struct.Struct("=I")
_TS = struct.Struct("=qI")


def _load() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.statx
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


_statx = _load()


def birth_time(dir_fd: int, name: str) -> str | None:
    """ISO-8601 UTC birth time of ``name`` in ``dir_fd`` (not following a symlink), or None."""
    if _statx is None:
        return None
    buf = ctypes.create_string_buffer(_BUF)
    rc = _statx(
        dir_fd,
        os.fsencode(name),
        AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC,
        STATX_BTIME,
        buf,
    )
    if rc != 0:
        return None
    (mask,) = _MASK.unpack_from(buf.raw, 0)
    if not mask & STATX_BTIME:
        return None
    sec, nsec = _TS.unpack_from(buf.raw, 80)
    return datetime.fromtimestamp(sec + nsec / 1e9, UTC).isoformat()

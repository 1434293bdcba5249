"""rpm: ``rpmdb.sqlite`` (Fedora 36+, RHEL 9). The ``Packages`` table holds one rpm header
blob per package; the header is an index of (tag, type, offset, count) entries over a data
store. We read names, versions and per-file digests from it, in memory: the database is
deserialised with ``sqlite3``, never written to disk."""

from __future__ import annotations

import sqlite3
import struct
from typing import Any

from podmortem.image.packages.model import Package

PATHS = ("/var/lib/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite")
# Older releases (RHEL <= 8, SUSE) keep BerkeleyDB or NDB files: detected, not parsed.
LEGACY_PATHS = (
    "/var/lib/rpm/Packages",
    "/var/lib/rpm/Packages.db",
    "/usr/lib/sysimage/rpm/Packages",
    "/usr/lib/sysimage/rpm/Packages.db",
)

NAME, VERSION, RELEASE, EPOCH, ARCH = 1000, 1001, 1002, 1003, 1022
FILEDIGESTS, DIRINDEXES, BASENAMES, DIRNAMES, FILEDIGESTALGO = 1035, 1116, 1117, 1118, 5011
_ALGOS = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512"}
MAX_ENTRIES = 100_000


class HeaderError(ValueError):
    pass


def parse_header(blob: bytes) -> dict[int, Any]:
    if len(blob) < 8:
        raise HeaderError("header too short")
    il, dl = struct.unpack(">II", blob[:8])
    if il > MAX_ENTRIES or 8 + il * 16 + dl > len(blob):
        raise HeaderError("header sizes exceed the blob")
    store = blob[8 + il * 16 : 8 + il * 16 + dl]
    out: dict[int, Any] = {}
    for i in range(il):
        tag, typ, off, count = struct.unpack(">iIiI", blob[8 + i * 16 : 24 + i * 16])
        if off < 0 or off > len(store) or count > MAX_ENTRIES * 10:
            continue
        if typ in (6, 9):  # STRING, I18NSTRING (first)
            end = store.find(b"\0", off)
            out[tag] = store[off : end if end >= 0 else len(store)].decode("utf-8", "replace")
        elif typ == 8:  # STRING_ARRAY
            vals = []
            pos = off
            for _ in range(count):
                end = store.find(b"\0", pos)
                if end < 0:
                    break
                vals.append(store[pos:end].decode("utf-8", "replace"))
                pos = end + 1
            out[tag] = vals
        elif typ == 4:  # INT32
            n = min(count, (len(store) - off) // 4)
            out[tag] = list(struct.unpack(f">{n}i", store[off : off + 4 * n]))
    return out


def parse(data: bytes, database: str, distro: str = "redhat") -> list[Package]:
    buf = bytearray(data)
    if len(buf) >= 20 and buf[:16] == b"SQLite format 3\0":
        buf[18] = buf[19] = 1  # WAL mode cannot be deserialised; the file itself is complete
    con = sqlite3.connect(":memory:")
    try:
        con.deserialize(bytes(buf))
        rows = con.execute("SELECT blob FROM Packages").fetchall()
    except sqlite3.DatabaseError as exc:
        raise HeaderError(f"rpmdb.sqlite unreadable: {exc}") from exc
    finally:
        con.close()
    out = []
    for (blob,) in rows:
        try:
            h = parse_header(bytes(blob))
        except HeaderError:
            continue
        name = h.get(NAME)
        if not isinstance(name, str) or name == "gpg-pubkey":
            continue
        version = f"{h.get(VERSION, '')}-{h.get(RELEASE, '')}"
        epoch = h.get(EPOCH)
        if isinstance(epoch, list) and epoch and epoch[0]:
            version = f"{epoch[0]}:{version}"
        pkg = Package(name, version, "rpm", str(h.get(ARCH, "")), distro, database)
        algo_v = h.get(FILEDIGESTALGO)
        algo = _ALGOS.get(algo_v[0] if isinstance(algo_v, list) and algo_v else 1, "md5")
        bases, dirs, idx = h.get(BASENAMES) or [], h.get(DIRNAMES) or [], h.get(DIRINDEXES) or []
        digests = h.get(FILEDIGESTS) or []
        for i, base in enumerate(bases):
            if i < len(idx) and 0 <= idx[i] < len(dirs):
                path = dirs[idx[i]] + base
                pkg.files[path] = (algo, digests[i] if i < len(digests) else "")
        out.append(pkg)
    return out

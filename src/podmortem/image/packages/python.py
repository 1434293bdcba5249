"""Python distributions: ``*.dist-info/METADATA`` for name and version, ``RECORD`` for the
files (paths relative to the directory holding the dist-info; sha256 as urlsafe base64)."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import posixpath
from collections.abc import Mapping

from podmortem.image.packages.model import Package


def parse(files: Mapping[str, bytes]) -> list[Package]:
    out = []
    for path in sorted(files):
        if not path.endswith(".dist-info/METADATA"):
            continue
        dist = posixpath.dirname(path)
        meta = files[path].decode("utf-8", "replace")
        name = version = ""
        for line in meta.splitlines():
            if not line.strip():
                break
            if line.startswith("Name:"):
                name = line[5:].strip()
            elif line.startswith("Version:"):
                version = line[8:].strip()
        if not name:
            continue
        pkg = Package(name, version, "pypi", database=path)
        record = files.get(dist + "/RECORD")
        if record:
            root = posixpath.dirname(dist)
            for row in csv.reader(io.StringIO(record.decode("utf-8", "replace"))):
                if not row:
                    continue
                rel = row[0]
                digest = ""
                if len(row) > 1 and row[1].startswith("sha256="):
                    b64 = row[1][7:]
                    try:
                        digest = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
                    except (binascii.Error, ValueError):
                        digest = ""
                pkg.files[posixpath.normpath(posixpath.join(root, rel))] = ("sha256", digest)
        out.append(pkg)
    return out

"""apk: ``/lib/apk/db/installed``. One record per package separated by blank lines; ``P``
name, ``V`` version, ``A`` arch, ``F`` directory, ``R`` file in it, ``Z`` the file's
checksum as ``Q1`` + base64(sha1)."""

from __future__ import annotations

import base64
import binascii

from podmortem.image.packages.model import Package

INSTALLED = "/lib/apk/db/installed"


def parse(data: bytes, distro: str = "alpine") -> list[Package]:
    out: list[Package] = []
    pkg: Package | None = None
    directory = ""
    current = ""
    for raw in data.decode("utf-8", "replace").splitlines():
        if not raw.strip():
            pkg, directory, current = None, "", ""
            continue
        key, sep, value = raw.partition(":")
        if not sep or len(key) != 1:
            continue
        if key == "P":
            pkg = Package(
                name=value, version="", ecosystem="apk", distro=distro, database=INSTALLED
            )
            out.append(pkg)
        elif pkg is None:
            continue
        elif key == "V":
            pkg.version = value
        elif key == "A":
            pkg.arch = value
        elif key == "F":
            directory = "/" + value.strip("/")
        elif key == "R":
            current = (directory.rstrip("/") + "/" + value) if directory else "/" + value
            pkg.files[current] = ("sha1", "")
        elif key == "Z" and current and value.startswith("Q1"):
            try:
                digest = base64.b64decode(value[2:], validate=True).hex()
            except (binascii.Error, ValueError):
                continue
            pkg.files[current] = ("sha1", digest)
    return out

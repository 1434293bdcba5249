"""Package inventory (dpkg, apk, rpm sqlite, Python dist-info) read from the merged image,
and integrity: files whose content differs from their package's record, executables and
setuid files that no package owns."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from podmortem.image.catalog import Notes, rules
from podmortem.image.merge import MergedView
from podmortem.image.model import Entry
from podmortem.image.packages import apk, dpkg, python, rpm
from podmortem.image.packages.model import Package

__all__ = ["CAPTURE", "Inventory", "Package", "build_inventory", "check_integrity"]

# Files read whole (bounded) while streaming, because the inventory needs their content.
CAPTURE = re.compile(
    r"^(?:/var/lib/dpkg/(?:status|status\.d/[^/]+|info/[^/]+\.(?:md5sums|list)|alternatives/[^/]+)"
    r"|/lib/apk/db/installed"
    r"|/var/lib/rpm/rpmdb\.sqlite|/usr/lib/sysimage/rpm/rpmdb\.sqlite"
    r"|/var/lib/rpm/Packages(?:\.db)?|/usr/lib/sysimage/rpm/Packages(?:\.db)?"
    r"|.*/[^/]+\.dist-info/(?:METADATA|RECORD)"
    r"|/etc/os-release|/usr/lib/os-release)$"
)


@dataclass
class Inventory:
    packages: list[Package] = field(default_factory=list)
    owner: dict[str, tuple[Package, str, str]] = field(default_factory=dict)
    alternatives: dict[str, str] = field(default_factory=dict)
    distro: str = ""
    databases: list[str] = field(default_factory=list)


def os_id(files: Mapping[str, bytes]) -> str:
    for p in ("/etc/os-release", "/usr/lib/os-release"):
        if p in files:
            for line in files[p].decode("utf-8", "replace").splitlines():
                if line.startswith("ID="):
                    return line[3:].strip().strip('"').lower()
    return ""


class Canon:
    """Resolve symlinked directories in a path the way the container would see it, so that
    ``/bin/ls`` (what dpkg recorded) and ``/usr/bin/ls`` (where merged-/usr keeps it) meet."""

    def __init__(self, view: MergedView) -> None:
        self._links = {
            p: e.link for p, e in view.files.items() if e.kind == "symlink" and p.count("/") <= 3
        }
        self._cache: dict[str, str] = {}

    def dir(self, d: str) -> str:
        if d in self._cache:
            return self._cache[d]
        cur = "/"
        parts = [p for p in d.split("/") if p]
        hops = 0
        i = 0
        while i < len(parts):
            nxt = posixpath.join(cur, parts[i])
            target = self._links.get(nxt)
            if target is not None and hops < 16:
                hops += 1
                base = "/" if target.startswith("/") else cur
                cur = posixpath.normpath(posixpath.join(base, target))
            else:
                cur = nxt
            i += 1
        self._cache[d] = cur
        return cur

    def path(self, p: str) -> str:
        # posixpath.join(self.dir(dirname(p)), basename(p)), spelled out: it runs for every
        # file of every package record, twice
        i = p.rfind("/") + 1
        head, base = p[:i], p[i:]
        if head and head != "/" * len(head):
            head = head.rstrip("/")
        d = self.dir(head)
        return d + base if d.endswith("/") else d + "/" + base


def build_inventory(files: Mapping[str, bytes], view: MergedView, notes: Notes) -> Inventory:
    inv = Inventory(distro=os_id(files))
    dpkg_files = {p: d for p, d in files.items() if p.startswith("/var/lib/dpkg/")}
    if any(p == "/var/lib/dpkg/status" or "/status.d/" in p for p in dpkg_files):
        inv.packages += dpkg.parse(dpkg_files, inv.distro or "debian")
        inv.alternatives = dpkg.alternatives(dpkg_files)
        inv.databases.append("dpkg")
    if apk.INSTALLED in files:
        inv.packages += apk.parse(files[apk.INSTALLED], inv.distro or "alpine")
        inv.databases.append("apk")
    for p in rpm.PATHS:
        if p in files:
            try:
                inv.packages += rpm.parse(files[p], p, inv.distro or "redhat")
                inv.databases.append("rpm")
            except rpm.HeaderError as exc:
                notes.caveat("package-db", f"{p}: {exc}")
    for p in rpm.LEGACY_PATHS:
        if p in files:
            notes.caveat(
                "package-db",
                f"{p} is an rpm BerkeleyDB/NDB database, which podmortem does not read: rpm"
                " packages of this image are missing from the inventory",
            )
    py = python.parse(files)
    if py:
        inv.packages += py
        inv.databases.append("python")
    canon = Canon(view)
    for pkg in inv.packages:
        for path, (algo, digest) in pkg.files.items():
            key = canon.path(path)
            prev = inv.owner.get(key)
            if prev is None or (digest and not prev[2]):
                inv.owner[key] = (pkg, algo, digest)
    inv.packages.sort(key=lambda p: (p.ecosystem, p.name, p.version))
    return inv


def _actual(entry: Entry, algo: str) -> str | None:
    return {"md5": entry.md5, "sha1": entry.sha1, "sha256": entry.sha256}.get(algo)


def check_integrity(
    inv: Inventory, view: MergedView, versions: Iterable[Entry], notes: Notes
) -> None:
    """Every regular-file version (visible or hidden) against the package records."""
    canon = Canon(view)
    scope = tuple(rules()["image.integrity.unowned_executable"].params.get("scope") or ())
    have_db = bool(inv.databases)
    if not have_db:
        notes.caveat(
            "no-package-database",
            "no dpkg, apk, rpm or Python package database in the image: ownership and"
            " checksum checks could not run",
        )
    for e in versions:
        if e.kind not in ("file", "hardlink") or e.sha256 is None:
            continue
        key = canon.path(e.path)
        owned = inv.owner.get(key)
        if owned is not None:
            pkg, algo, digest = owned
            actual = _actual(e, algo)
            if digest and actual and actual != digest:
                notes.hit(
                    "image.integrity.checksum_mismatch",
                    f"{e.path} does not match what package {pkg.name} {pkg.version} records"
                    f" ({algo} {digest}, {pkg.ecosystem} database)",
                    path=e.path,
                    layer=e.layer,
                    sha256=e.sha256,
                    entry=e,
                    evidence=(f"recorded {algo} {digest}", f"actual {algo} {actual}"),
                    extra={"package": pkg.name, "package_version": pkg.version},
                )
            continue
        alt = inv.alternatives.get(key) or inv.alternatives.get(e.path)
        if alt is not None:
            # dpkg manages this path as an update-alternatives symlink: a regular file here
            # replaced the link.
            notes.hit(
                "image.integrity.checksum_mismatch",
                f"{e.path} should be the update-alternatives link for {alt!r} but is a file",
                path=e.path,
                layer=e.layer,
                sha256=e.sha256,
                entry=e,
                evidence=(f"alternative {alt}",),
            )
            continue
        if not have_db:
            continue
        if e.setid:
            notes.hit(
                "image.integrity.setid_added",
                f"{e.path} is {'setuid' if e.mode & 0o4000 else 'setgid'} and no package owns it",
                path=e.path,
                layer=e.layer,
                sha256=e.sha256,
                entry=e,
                evidence=(f"mode {e.mode:04o}", f"uid {e.uid}"),
            )
        if (e.is_elf or (e.mode & 0o111 and e.is_script)) and key.startswith(scope):
            notes.hit(
                "image.integrity.unowned_executable",
                f"{e.path} is an executable no package owns",
                path=e.path,
                layer=e.layer,
                sha256=e.sha256,
                entry=e,
                evidence=("ELF" if e.is_elf else "script", f"mode {e.mode:04o}"),
            )

"""dpkg: ``/var/lib/dpkg/status`` (and ``status.d/*`` in distroless images), per-package
``info/<pkg>[:<arch>].md5sums`` and ``.list``, and update-alternatives state.

md5sums paths are relative and name the path the .deb shipped (``bin/ls``); on merged-/usr
images the file lives at ``/usr/bin/ls``: callers canonicalise both sides before comparing.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping

from podmortem.image.packages.model import Package

DPKG = "/var/lib/dpkg"


def paragraphs(text: str) -> Iterator[dict[str, str]]:
    cur: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if cur:
                yield cur
            cur, last = {}, ""
            continue
        if line[0] in " \t" and last:
            cur[last] += "\n" + line.strip()
            continue
        key, sep, value = line.partition(":")
        if sep:
            last = key.strip()
            cur[last] = value.strip()
    if cur:
        yield cur


def _pkg_of_info(name: str) -> str:
    base = posixpath.basename(name).rsplit(".", 1)[0]
    return base.split(":", 1)[0]


def parse(files: Mapping[str, bytes], distro: str) -> list[Package]:
    """``files`` maps absolute paths to content for everything under /var/lib/dpkg."""
    found: dict[str, Package] = {}
    # distroless names status.d files freely ("base" for base-files): remember which
    # package each file described, so its .md5sums finds the package
    by_stem: dict[str, str] = {}
    sources = [p for p in files if p == f"{DPKG}/status"]
    sources += sorted(
        p for p in files if p.startswith(f"{DPKG}/status.d/") and not p.endswith(".md5sums")
    )
    for src in sources:
        for para in paragraphs(files[src].decode("utf-8", "replace")):
            name = para.get("Package")
            status = para.get("Status", "install ok installed")
            if not name or not status.endswith(" installed"):
                continue
            if src != f"{DPKG}/status":
                by_stem[posixpath.basename(src)] = name
            found[name] = Package(
                name=name,
                version=para.get("Version", ""),
                ecosystem="deb",
                arch=para.get("Architecture", ""),
                distro=distro,
                database=src,
            )
    for path, data in files.items():
        if path.endswith(".list") and path.startswith(f"{DPKG}/info/"):
            pkg = found.get(_pkg_of_info(path))
            if pkg:
                for raw in data.decode("utf-8", "replace").splitlines():
                    line = raw.strip()
                    if line and line != "/." and line not in pkg.files:
                        pkg.files[line] = ("md5", "")
    for path, data in files.items():
        if not path.endswith(".md5sums"):
            continue
        if not (path.startswith(f"{DPKG}/info/") or path.startswith(f"{DPKG}/status.d/")):
            continue
        stem = _pkg_of_info(path)
        pkg = found.get(stem) or found.get(by_stem.get(stem, ""))
        if not pkg:
            continue
        for line in data.decode("utf-8", "replace").splitlines():
            digest, _, rel = line.strip().partition(" ")
            rel = rel.strip()
            if len(digest) == 32 and rel:
                pkg.files["/" + rel.lstrip("/")] = ("md5", digest.lower())
    return list(found.values())


def alternatives(files: Mapping[str, bytes]) -> dict[str, str]:
    """Link paths managed by update-alternatives -> alternative name (``/usr/bin/awk`` and
    ``/etc/alternatives/awk`` -> ``awk``); these are symlinks dpkg never lists."""
    out: dict[str, str] = {}
    for path, data in files.items():
        if not path.startswith(f"{DPKG}/alternatives/"):
            continue
        name = posixpath.basename(path)
        lines = data.decode("utf-8", "replace").splitlines()
        if len(lines) < 2:
            continue
        out[lines[1].strip()] = name
        out[f"/etc/alternatives/{name}"] = name
        # slave pairs (name, link) follow until a blank line
        i = 2
        while i + 1 < len(lines) and lines[i].strip():
            slave, link = lines[i].strip(), lines[i + 1].strip()
            out[link] = slave
            out[f"/etc/alternatives/{slave}"] = slave
            i += 2
    return out

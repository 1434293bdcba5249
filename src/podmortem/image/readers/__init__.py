"""Readers for every way an image reaches us; each resolves to a :class:`ResolvedImage`.

``open_image`` dispatches on what the path is: a ``docker save`` archive (``manifest.json``
present, any of the three layouts), an ``oci-archive`` tar or an OCI layout directory
(``oci-layout`` + ``index.json``). Runtime references (``docker://``...) are exported to a
file first by :mod:`podmortem.image.readers.runtime`.
"""

from __future__ import annotations

from pathlib import Path

from podmortem.errors import InputError
from podmortem.image.catalog import Notes
from podmortem.image.limits import DEFAULT_LIMITS, Limits
from podmortem.image.readers.docker_archive import resolve_docker_archive
from podmortem.image.readers.image import ResolvedImage
from podmortem.image.readers.oci import resolve_oci
from podmortem.image.readers.store import BlobStore, DirStore, TarStore

__all__ = ["ResolvedImage", "open_image"]


def open_image(
    path: Path,
    notes: Notes,
    *,
    limits: Limits = DEFAULT_LIMITS,
    tag: str | None = None,
    platform: str | None = None,
) -> ResolvedImage:
    store: BlobStore
    if path.is_dir():
        store = DirStore(path)
        kind = "oci-layout directory"
    elif path.is_file():
        store = TarStore(path, limits)
        kind = "oci-archive"
        for name in store.unsafe[:20]:
            notes.hit(
                "image.archive.path_traversal",
                f"the image archive has a member named {name[:200]!r}; it is never used as a"
                " path on disk",
                evidence=(repr(name[:200]),),
                extra={"archive_member": name[:200]},
            )
        for name in store.duplicates[:20]:
            notes.hit(
                "image.archive.duplicate_member",
                f"the image archive holds {name!r} more than once; the last copy is used",
                evidence=(name,),
            )
    else:
        raise InputError(f"{path} is neither an image archive nor an OCI layout directory")
    try:
        # manifest.json is docker save's (also when someone unpacked the archive to a folder)
        if store.exists("manifest.json"):
            return resolve_docker_archive(store, limits, notes, tag)
        if store.exists("index.json"):
            if not store.exists("oci-layout"):
                notes.caveat("oci-layout", "index.json without an oci-layout file")
            return resolve_oci(
                store, layout=kind, limits=limits, notes=notes, tag=tag, platform=platform
            )
        raise InputError(
            f"{path} has neither manifest.json (docker save) nor index.json (OCI layout)"
        )
    except BaseException:
        store.close()
        raise

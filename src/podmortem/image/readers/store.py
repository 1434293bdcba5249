"""Blob stores: the files of an image archive (a tar) or an OCI layout (a directory), read
in place. An outer tar is indexed once (headers only, seeking over content) and members are
read through ``pread``; nothing is extracted, and no name in the archive is ever used as a
path on disk."""

from __future__ import annotations

import os
import posixpath
import re
import stat
import tarfile
from pathlib import Path
from typing import IO, Protocol

from podmortem.errors import InputError
from podmortem.image.limits import Limits
from podmortem.image.stream import Readable, file_region, read_exact, sniff

_HEX = re.compile(r"^[a-f0-9]{32,128}$")


class BlobStore(Protocol):
    """Named files of an image container (``manifest.json``, ``blobs/sha256/<hex>``)."""

    description: str

    def exists(self, name: str) -> bool: ...

    def size(self, name: str) -> int: ...

    def open(self, name: str) -> Readable: ...

    def names(self) -> list[str]: ...

    def close(self) -> None: ...


def blob_name(digest: str) -> str:
    """``sha256:<hex>`` -> ``blobs/sha256/<hex>``; hostile digests are refused."""
    alg, _, hexpart = digest.partition(":")
    if alg not in ("sha256", "sha512") or not _HEX.match(hexpart):
        raise InputError(f"malformed digest {digest[:100]!r}")
    return f"blobs/{alg}/{hexpart}"


def normalise(name: str) -> str:
    n = posixpath.normpath("/" + name.replace("\\", "/")).lstrip("/")
    return "" if n == "." else n


def read_small(store: BlobStore, name: str, limit: int) -> bytes:
    size = store.size(name)
    if size > limit:
        raise InputError(f"{name} is {size} bytes, over the {limit}-byte bound for metadata")
    return read_exact(store.open(name), size)


class DirStore:
    """An OCI image layout directory. Symlinks are not followed out of the directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.description = f"OCI layout directory {root}"
        self._open: list[IO[bytes]] = []

    def _path(self, name: str) -> Path:
        rel = normalise(name)
        p = (self.root / rel).resolve()
        if p != self.root and self.root not in p.parents:
            raise InputError(f"{name!r} resolves outside the image directory")
        return p

    def exists(self, name: str) -> bool:
        try:
            return self._path(name).is_file()
        except InputError:
            return False

    def size(self, name: str) -> int:
        try:
            st = self._path(name).stat()
        except OSError as exc:
            raise InputError(f"{name} is missing from {self.description}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{name} is not a regular file")
        return st.st_size

    def open(self, name: str) -> Readable:
        try:
            fh = open(self._path(name), "rb")  # noqa: SIM115 - closed with the store
        except OSError as exc:
            raise InputError(f"{name} is missing from {self.description}") from exc
        self._open.append(fh)
        return fh

    def names(self) -> list[str]:
        out = []
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                out.append(os.path.relpath(os.path.join(dirpath, f), self.root))
        return sorted(out)

    def close(self) -> None:
        for fh in self._open:
            fh.close()
        self._open.clear()


class TarStore:
    """An image archive (``docker save``, ``oci-archive``). Members are located by one
    header pass; symlinks and hardlinks between members (legacy ``docker save`` links
    shared layers) are resolved inside the archive only."""

    def __init__(self, path: Path, limits: Limits) -> None:
        self.path = path
        self.description = f"image archive {path}"
        self.duplicates: list[str] = []
        self.unsafe: list[str] = []
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        head = read_exact(self._fh, 512)
        self._fh.seek(0)
        kind = sniff(head)
        if kind in ("gzip", "zstd", "bzip2", "xz"):
            self._fh.close()
            raise InputError(
                f"{path} is a {kind}-compressed archive; decompress it first (members of an"
                " image archive must be read in place, which needs a plain tar)"
            )
        if kind != "tar":
            self._fh.close()
            raise InputError(f"{path} is not a tar archive nor an OCI layout directory")
        self._members: dict[str, tuple[int, int, str, str]] = {}
        try:
            tf = tarfile.open(fileobj=self._fh, mode="r:")  # noqa: SIM115
            count = 0
            while True:
                ti = tf.next()
                if ti is None:
                    break
                count += 1
                if count > limits.max_archive_members:
                    raise InputError(
                        f"{path} has more than {limits.max_archive_members} members; not an"
                        " image archive (or a hostile one)"
                    )
                name = normalise(ti.name)
                if ".." in ti.name.split("/") or ti.name.startswith("/"):
                    self.unsafe.append(ti.name)
                if ti.isdir() or not name:
                    continue
                if name in self._members:
                    self.duplicates.append(name)
                kind_ = (
                    "file"
                    if ti.isreg()
                    else "symlink"
                    if ti.issym()
                    else "hardlink"
                    if ti.islnk()
                    else "other"
                )
                self._members[name] = (ti.offset_data, ti.size, kind_, ti.linkname)
                tf.members.clear()  # type: ignore[attr-defined]  # we keep our own index
        except tarfile.TarError as exc:
            self._fh.close()
            raise InputError(f"{path} is not a readable tar archive: {exc}") from exc
        except BaseException:
            self._fh.close()
            raise

    def _resolve(self, name: str) -> tuple[int, int]:
        cur = normalise(name)
        for _ in range(16):
            m = self._members.get(cur)
            if m is None:
                raise InputError(f"{name} is missing from {self.description}")
            offset, size, kind, link = m
            if kind == "file":
                return offset, size
            if kind == "symlink":
                cur = normalise(posixpath.join(posixpath.dirname(cur), link))
            elif kind == "hardlink":
                cur = normalise(link)
            else:
                raise InputError(f"{name} is not a regular file in {self.description}")
        raise InputError(f"{name}: too many links in {self.description}")

    def exists(self, name: str) -> bool:
        try:
            self._resolve(name)
        except InputError:
            return False
        return True

    def size(self, name: str) -> int:
        return self._resolve(name)[1]

    def open(self, name: str) -> Readable:
        offset, size = self._resolve(name)
        return file_region(self._fh, offset, size)

    def names(self) -> list[str]:
        return sorted(self._members)

    def close(self) -> None:
        self._fh.close()

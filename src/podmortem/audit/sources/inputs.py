"""Input paths to byte streams: files, folders (recursive), ``-`` for standard input; plain,
gzip or zstd recognised by their magic bytes, never by the file name.

Folders are evidence: a symbolic link inside one could point anywhere on the examiner's
machine, so links met while walking are not followed (they are reported). A path the user
names explicitly is read as given.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from podmortem.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Firehose may gzip records that CloudWatch already gzipped: unwrap a few layers, no more.
MAX_LAYERS = 3
STDIN_NAME = "-"


@dataclass(frozen=True, slots=True)
class InputFile:
    """One file to read: ``name`` as the examiner knows it, ``path`` where the bytes are."""

    name: str
    path: Path


@dataclass(frozen=True, slots=True)
class Skipped:
    """A path met while expanding folders that was not read, and why."""

    name: str
    reason: str


def expand(
    inputs: Sequence[str | Path], spool_dir: Path, stdin: BinaryIO | None = None
) -> tuple[list[InputFile], list[Skipped]]:
    """Resolve inputs to files in a stable order. ``-`` is spooled to ``spool_dir`` so that
    it can be read more than once (sniffing, then DuckDB's reader)."""
    files: list[InputFile] = []
    skipped: list[Skipped] = []
    seen_stdin = False
    for item in inputs:
        text = str(item)
        if text == STDIN_NAME:
            if seen_stdin:
                continue
            seen_stdin = True
            target = spool_dir / "stdin.spool"
            src = stdin if stdin is not None else sys.stdin.buffer
            with target.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            files.append(InputFile(name=STDIN_NAME, path=target))
            continue
        path = Path(text)
        if path.is_dir():
            files.extend(_walk(path, skipped))
        elif path.is_file():
            files.append(InputFile(name=text, path=path))
        elif path.exists():
            skipped.append(Skipped(text, "not a regular file"))
        else:
            raise InputError(f"no such file or folder: {text}")
    return files, skipped


def _walk(root: Path, skipped: list[Skipped]) -> Iterator[InputFile]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for d in list(dirnames):
            if os.path.islink(os.path.join(dirpath, d)):
                skipped.append(Skipped(os.path.join(dirpath, d), "symbolic link not followed"))
                dirnames.remove(d)
        for fname in sorted(filenames):
            full = os.path.join(dirpath, fname)
            if os.path.islink(full):
                skipped.append(Skipped(full, "symbolic link not followed"))
            elif os.path.isfile(full):
                yield InputFile(name=full, path=Path(full))
            else:
                skipped.append(Skipped(full, "not a regular file"))


def layers(path: Path) -> list[str]:
    """The compression layers of a file, outermost first (``[]`` for plain)."""
    found: list[str] = []
    with open_layers(path, found):
        pass
    return found


@contextmanager
def open_layers(path: Path, found: list[str] | None = None) -> Iterator[IO[bytes]]:
    """Open ``path`` and peel compression layers recognised by magic bytes.

    The returned stream is buffered with ``peek`` available. A broken compressed stream
    raises ``OSError``/``EOFError`` while reading, which the caller turns into a caveat.
    """
    raw = path.open("rb", buffering=0)
    stack: list[Any] = [raw]
    try:
        stream: io.BufferedReader = io.BufferedReader(raw, 1 << 20)
        stack.append(stream)
        for _ in range(MAX_LAYERS):
            head = stream.peek(4)[:4]
            if head[:2] == GZIP_MAGIC:
                kind = "gzip"
                # GzipFile reads concatenated members, as Firehose and `cat a.gz b.gz` make.
                inner: Any = gzip.GzipFile(fileobj=stream, mode="rb")
            elif head == ZSTD_MAGIC:
                import zstandard

                kind = "zstd"
                inner = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
            else:
                break
            if found is not None:
                found.append(kind)
            stack.append(inner)
            stream = io.BufferedReader(inner, 1 << 20)
            stack.append(stream)
        yield stream
    finally:
        for s in reversed(stack):
            with contextlib.suppress(OSError, EOFError, ValueError):
                s.close()

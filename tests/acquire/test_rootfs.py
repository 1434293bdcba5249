"""Reading through /proc/<pid>/root must never leave the container's root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from podmortem.acquire.node.rootfs import read_in_root


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("inside\n")
    outside = tmp_path / "node-secret"
    outside.write_text("NODE KEY\n")
    return root, outside


def test_plain_file(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    assert read_in_root(root, "/etc/hostname", 100).data == b"inside\n"


def test_absolute_symlink_resolves_inside_the_root(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    # A naive open() would follow this to the node's file.
    (root / "etc" / "passwd").symlink_to(outside)
    with pytest.raises(FileNotFoundError):
        read_in_root(root, "/etc/passwd", 100)
    # ... but a file at that path inside the root is what the container sees.
    inner = root / str(outside).lstrip("/")
    inner.parent.mkdir(parents=True)
    inner.write_text("container view\n")
    assert read_in_root(root, "/etc/passwd", 100).data == b"container view\n"


def test_dotdot_cannot_climb_out(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    (root / "etc" / "up").symlink_to("../../../../../../" + str(outside).lstrip("/"))
    with pytest.raises(FileNotFoundError):
        read_in_root(root, "/etc/up", 100)
    with pytest.raises(FileNotFoundError):
        read_in_root(root, "/../../" + outside.name, 100)


def test_symlink_loop_and_fifo_and_limit(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "etc" / "a").symlink_to("b")
    (root / "etc" / "b").symlink_to("a")
    with pytest.raises(OSError, match="symbolic links"):
        read_in_root(root, "/etc/a", 100)
    os.mkfifo(root / "etc" / "fifo")
    with pytest.raises(OSError, match="not a regular file"):
        read_in_root(root, "/etc/fifo", 100)  # would block forever if opened
    (root / "etc" / "big").write_bytes(b"x" * 1000)
    b = read_in_root(root, "/etc/big", 10)
    assert b.data == b"x" * 10 and b.truncated

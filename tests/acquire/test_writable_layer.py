"""The upperdir walk against a real overlay mount: changes made through the merged view."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from podmortem.acquire.node import mounts, writable_layer


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[tuple[mounts.Overlay, Path]]:
    if os.geteuid() != 0:
        pytest.skip("mounting an overlay needs root")
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    (lower / "etc").mkdir()
    (lower / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (lower / "etc" / "motd").write_text("hello\n")
    (lower / "opt").mkdir()
    (lower / "opt" / "old").write_text("old\n")
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    r = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)],
        capture_output=True,
        check=False,
    )
    if r.returncode:
        pytest.skip(f"overlay mount not possible here: {r.stderr.decode()[:200]}")
    try:
        yield mounts.Overlay(str(upper), (str(lower),), str(work)), merged
    finally:
        subprocess.run(["umount", str(merged)], check=False)


def test_added_modified_deleted_opaque_and_archive(overlay: tuple[mounts.Overlay, Path]) -> None:
    ov, merged = overlay
    with open(merged / "etc" / "passwd", "a") as fh:
        fh.write("evil:x:0:0::/root:/bin/sh\n")
    (merged / "etc" / "motd").unlink()  # whiteout
    (merged / "tmp").mkdir()
    (merged / "tmp" / "dropper").write_bytes(b"\x7fELF payload")
    (merged / "tmp" / "link").symlink_to("/etc/shadow")
    # Replacing a lower directory makes the new one opaque.
    subprocess.run(["rm", "-rf", str(merged / "opt")], check=True)
    (merged / "opt").mkdir()
    (merged / "opt" / "new").write_text("new\n")

    buf = io.BytesIO()
    cap = writable_layer.capture(ov, buf)
    by = {c.path: c for c in cap.changes}
    assert cap.complete and not cap.errors
    assert by["/etc/passwd"].change == "modified"
    assert (
        by["/etc/passwd"].sha256
        == hashlib.sha256((merged / "etc" / "passwd").read_bytes()).hexdigest()
    )
    assert by["/etc/motd"].change == "deleted" and by["/etc/motd"].type == "whiteout"
    assert by["/tmp"].change == "added" and by["/tmp"].type == "dir"
    assert by["/tmp/dropper"].change == "added"
    if by["/tmp/dropper"].btime is not None:  # ext4/xfs/btrfs/tmpfs record it
        assert by["/tmp/dropper"].btime <= by["/tmp/dropper"].ctime
    assert by["/tmp/dropper"].sha256 == hashlib.sha256(b"\x7fELF payload").hexdigest()
    assert by["/tmp/link"].type == "symlink" and by["/tmp/link"].link_target == "/etc/shadow"
    assert by["/opt"].opaque and by["/opt"].change == "modified"
    assert by["/opt/new"].change == "added"
    assert "/etc" not in by  # a copied-up parent is not itself a change
    assert "/etc" in cap.copied_up

    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        names = {m.name: m for m in tar.getmembers()}
        assert names["etc/motd"].ischr() and (
            names["etc/motd"].devmajor,
            names["etc/motd"].devminor,
        ) == (0, 0)
        assert names["opt"].pax_headers.get("SCHILY.xattr.trusted.overlay.opaque") == "y"
        f = tar.extractfile("tmp/dropper")
        assert f is not None and f.read() == b"\x7fELF payload"
        assert names["tmp/link"].linkname == "/etc/shadow"


def test_archive_limit_still_hashes(overlay: tuple[mounts.Overlay, Path]) -> None:
    ov, merged = overlay
    (merged / "big").write_bytes(b"a" * 5000)
    buf = io.BytesIO()
    cap = writable_layer.capture(ov, buf, max_archive_bytes=100)
    by = {c.path: c for c in cap.changes}
    assert by["/big"].sha256 == hashlib.sha256(b"a" * 5000).hexdigest()
    assert not by["/big"].archived and cap.not_archived == ["/big"]


def test_stop_early_is_reported(overlay: tuple[mounts.Overlay, Path]) -> None:
    ov, merged = overlay
    for i in range(5):
        (merged / f"f{i}").write_text(str(i))
    cap = writable_layer.capture(ov, None, should_stop=lambda: True)
    assert not cap.complete and cap.changes == []


def test_cross_check_ignores_parent_dirs() -> None:
    ours = [
        writable_layer.FsChange("/tmp/x", "added", "file", "0o644", 0, 0, 1, "", "", ""),
        writable_layer.FsChange("/etc/motd", "deleted", "whiteout", "0o0", 0, 0, 0, "", "", ""),
    ]
    runtime = [("/tmp", "modified"), ("/tmp/x", "added"), ("/etc/motd", "deleted")]
    assert writable_layer.cross_check(ours, runtime) == {
        "only_runtime": [],
        "only_podmortem": [],
        "different_change": [],
    }
    assert (
        writable_layer.cross_check(ours, [("/var", "modified")], copied_up=frozenset({"/var"}))[
            "only_runtime"
        ]
        == []
    )
    check = writable_layer.cross_check(ours, [("/tmp/x", "modified"), ("/root/.ssh", "added")])
    assert check["only_runtime"] == ["/root/.ssh"]
    assert check["only_podmortem"] == ["/etc/motd"]
    assert check["different_change"] == ["/tmp/x"]


def test_mountinfo_overlay_and_tmpfs() -> None:
    data = (
        b"1 0 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/l/A:/l/B\\072x,"
        b"upperdir=/var/lib/d/up\\040dir,workdir=/w\n"
        b"2 1 0:51 / /dev/shm rw - tmpfs shm rw,size=65536k\n"
        b"3 1 0:52 / /dev rw - tmpfs tmpfs rw\n"
        b"broken line\n"
    )
    ms, bad = mounts.parse_mountinfo(data)
    assert bad == 1
    ov = mounts.root_overlay(ms)
    assert ov is not None and ov.upperdir == "/var/lib/d/up dir"
    assert ov.lowerdirs == ("/l/A", "/l/B:x")
    assert [m.mount_point for m in mounts.ram_backed(ms)] == ["/dev/shm"]


def test_budget_running_out_inside_a_big_file(overlay: tuple[mounts.Overlay, Path]) -> None:
    ov, merged = overlay
    (merged / "big").write_bytes(b"z" * (5 << 20))
    calls = iter(range(1_000_000))
    buf = io.BytesIO()
    cap = writable_layer.capture(ov, buf, should_stop=lambda: next(calls) > 3)
    big = next(c for c in cap.changes if c.path == "/big")
    assert big.sha256 is None and "budget ran out" in (big.error or "")
    assert not cap.complete and cap.cut_files == ["/big"]
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:  # the archive stays well-formed (zero padded)
        assert tar.getmember("big").size == 5 << 20

"""What arrives from a node agent is hostile (the node may be compromised): the unpacker, the
seal parser and the record reader, without a cluster."""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podmortem.acquire.node import procfs, sockets
from podmortem.acquire.node_agent import (
    SEALED,
    TransferRejectedError,
    _parse_sums,
    _record,
    _unpack,
)
from podmortem.errors import IntegrityError


def _tar(tmp: Path, members: list[tuple[str, bytes | str | None, bytes]]) -> Path:
    """(name, type, data): type b"0" file, b"5" dir, b"2" symlink (data = target), b"1"
    hardlink, b"3" char device, b"6" fifo."""
    path = tmp / "t.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            ti = tarfile.TarInfo(name)
            ti.type = kind if isinstance(kind, bytes) else tarfile.REGTYPE
            if ti.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                ti.linkname = data.decode()
                tar.addfile(ti)
            elif ti.type == tarfile.REGTYPE:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            else:
                tar.addfile(ti)
    return path


GOOD = [
    ("case", tarfile.DIRTYPE, b""),
    ("case/case.json", tarfile.REGTYPE, b"{}"),
    ("case/custody.jsonl", tarfile.REGTYPE, b""),
    ("case/.lock", tarfile.REGTYPE, b""),
    ("case/index.duckdb", tarfile.REGTYPE, b"derived"),
    ("case/.partial/abc.part", tarfile.REGTYPE, b"half"),
    ("case/artifacts/a/b.json", tarfile.REGTYPE, b"[1]"),
]


def test_a_case_unpacks_without_its_derived_and_partial_files(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    _unpack(_tar(tmp_path, GOOD), dest, 1 << 20)
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert got == ["case/artifacts/a/b.json", "case/case.json", "case/custody.jsonl"]
    assert (dest / "case/artifacts/a/b.json").read_bytes() == b"[1]"


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (("case/artifacts/link", tarfile.SYMTYPE, b"/etc/shadow"), "non-file"),
        (("case/artifacts/hard", tarfile.LNKTYPE, b"case/case.json"), "non-file"),
        (("case/artifacts/dev", tarfile.CHRTYPE, b""), "non-file"),
        (("case/artifacts/fifo", tarfile.FIFOTYPE, b""), "non-file"),
        (("case/../../etc/cron.d/x", tarfile.REGTYPE, b"x"), "unsafe name"),
        (("/etc/cron.d/x", tarfile.REGTYPE, b"x"), "unsafe name"),
        (("other/x", tarfile.REGTYPE, b"x"), "unsafe name"),
        (("case/a\x1b[2Jb", tarfile.REGTYPE, b"x"), "unsafe name"),
        (("case/case.json", tarfile.REGTYPE, b"{}"), "twice"),
        (("case/" + "a" * 300, tarfile.REGTYPE, b"x"), "unsafe name"),
    ],
)
def test_hostile_members_reject_the_whole_transfer(
    tmp_path: Path, member: tuple[str, bytes, bytes], why: str
) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(TransferRejectedError, match=why) as err:
        _unpack(_tar(tmp_path, [*GOOD, member]), dest, 1 << 20)
    assert isinstance(err.value, IntegrityError)  # exit status 1
    assert not (tmp_path / "etc").exists()
    assert not any(p.is_symlink() for p in dest.rglob("*"))


def test_truncated_tar_is_rejected(tmp_path: Path) -> None:
    path = _tar(tmp_path, [*GOOD, ("case/artifacts/big", tarfile.REGTYPE, os.urandom(50_000))])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(TransferRejectedError):
        _unpack(path, dest, 1 << 20)


def test_size_limit_holds(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    big = [*GOOD, ("case/artifacts/big", tarfile.REGTYPE, b"x" * 5000)]
    with pytest.raises(TransferRejectedError, match="limit"):
        _unpack(_tar(tmp_path, big), dest, 4096)


def test_tar_without_a_manifest_is_rejected(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(TransferRejectedError, match="manifest"):
        _unpack(_tar(tmp_path, [("case/artifacts/x", tarfile.REGTYPE, b"1")]), dest, 1 << 20)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(min_size=1, max_size=40),
            st.text(alphabet="./a\\", min_size=1, max_size=20).map(lambda t: "case/" + t),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_any_name_stays_inside_or_is_refused(
    tmp_path_factory: pytest.TempPathFactory, names: list[str]
) -> None:
    tmp = tmp_path_factory.mktemp("h")
    dest = tmp / "out"
    dest.mkdir()
    members = [("case/case.json", tarfile.REGTYPE, b"{}")] + [
        (n, tarfile.REGTYPE, b"x") for n in names
    ]
    try:
        path = _tar(tmp, members)
    except (ValueError, UnicodeError):
        return  # tarfile cannot even write it
    with contextlib.suppress(TransferRejectedError):
        _unpack(path, dest, 1 << 20)
    root = dest.resolve()
    for p in tmp.rglob("*"):
        if p.is_file() and p.name != "t.tar":
            assert p.resolve().is_relative_to(root)


def test_seal_parser_keeps_only_the_sealed_files() -> None:
    h = "a" * 64
    text = "\n".join(
        [
            f"{h}  {SEALED[0]}",
            f"{h}  {SEALED[1]}",
            f"{h}  ../etc/passwd",
            "garbage",
            f"{'b' * 63}  x",
        ]
    )
    assert _parse_sums(text) == {SEALED[0]: h, SEALED[1]: h}


def test_records_with_wrong_types_are_refused() -> None:
    good = {
        "proto": "tcp",
        "local_address": "10.0.0.1",
        "local_port": 80,
        "remote_address": "10.0.0.1",
        "remote_port": 0,
        "state": "LISTEN",
        "inode": 1,
        "pid": 7,
    }
    assert _record(sockets.SocketRecord, good) == sockets.SocketRecord(**good)
    for key, bad in (("local_port", "80"), ("inode", True), ("pid", 1 << 70), ("state", None)):
        assert _record(sockets.SocketRecord, {**good, key: bad}) is None
    assert _record(sockets.SocketRecord, {"proto": "tcp"}) is None  # required fields missing
    proc = {
        "pid": 5,
        "ns_pid": None,
        "ppid": 1,
        "nspid_chain": [5, 1],
        "name": "x",
        "state": "S",
        "uids": [0],
        "gids": [0],
        "cmdline": ["x"],
        "cwd": None,
        "exe": "/x",
        "exe_deleted": False,
        "exe_memfd": False,
    }
    assert _record(procfs.ProcessRecord, proc) is not None
    assert _record(procfs.ProcessRecord, {**proc, "cmdline": ["x", 3]}) is None
    assert _record(procfs.ProcessRecord, {**proc, "fds": "not a list"}) is None

"""The byte pipeline: sniffing by magic bytes, multi-member gzip, multi-frame zstd, padding,
truncation, and the tar reader's handling of GNU and pax names."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest
import zstandard

from podmortem.image.stream import CorruptStream, open_layer, sniff
from podmortem.image.tarstream import TarError, TarWalker

from .builders import F, layer_tar


def _read_all(raw: bytes) -> tuple[str, bytes]:
    kind, r = open_layer(io.BytesIO(raw))
    out = bytearray()
    while b := r.read(1 << 16):
        out += b
    return kind, bytes(out)


def test_sniff_by_magic_not_name() -> None:
    tar = layer_tar([F("/a", b"a")])
    assert sniff(tar) == "tar"
    assert sniff(gzip.compress(tar)) == "gzip"
    assert sniff(zstandard.ZstdCompressor().compress(tar)) == "zstd"
    assert sniff(bytes(1024)) == "tar"  # an empty layer
    assert sniff(b"BZh91AY&SY") == "bzip2"
    assert sniff(b"hello world" * 100) == "unknown"


def test_multi_member_gzip_and_padding() -> None:
    tar = layer_tar([F("/a", b"a" * 70_000), F("/b", b"b")])
    half = len(tar) // 2
    raw = gzip.compress(tar[:half]) + gzip.compress(tar[half:]) + bytes(4096)
    assert _read_all(raw) == ("gzip", tar)


def test_multi_frame_zstd() -> None:
    tar = layer_tar([F("/a", b"a" * 70_000)])
    c = zstandard.ZstdCompressor()
    raw = c.compress(tar[:1000]) + c.compress(tar[1000:])
    assert _read_all(raw) == ("zstd", tar)


@pytest.mark.parametrize("how", ["gzip", "zstd"])
def test_truncated_streams(how: str) -> None:
    tar = layer_tar([F("/a", bytes(range(256)) * 400)])
    raw = gzip.compress(tar) if how == "gzip" else zstandard.ZstdCompressor().compress(tar)
    with pytest.raises(CorruptStream):
        _read_all(raw[: len(raw) // 2] if how == "gzip" else raw[:-7] + b"\xff" * 7)


def test_gnu_and_pax_long_names_and_links() -> None:
    buf = io.BytesIO()
    long = "d/" * 80 + "file"
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        ti = tarfile.TarInfo(long)
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"abc"))
        ln = tarfile.TarInfo("l")
        ln.type, ln.linkname = tarfile.SYMTYPE, "t/" * 80 + "target"
        tf.addfile(ln)
    buf.seek(0)
    with tarfile.open(fileobj=buf, mode="a", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("p/" + "é" * 120)
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    w = TarWalker(io.BytesIO(buf.getvalue()))
    got = []
    for m in w:
        got.append((m.name, m.type, m.linkname, b"".join(bytes(c) for c in w.chunks())))
    assert got[0] == (long, "file", "", b"abc")
    assert got[1][2] == "t/" * 80 + "target"
    assert got[2][0] == "p/" + "é" * 120 and got[2][3] == b"x"
    assert w.ended_cleanly


def test_bad_header_is_a_tar_error() -> None:
    raw = bytearray(layer_tar([F("/a", b"a")]))
    raw[124:136] = b"zzzzzzzzzzz\0"
    raw[148:156] = b"%06o\0 " % (sum(raw[:148]) + 256 + sum(raw[156:512]))
    with pytest.raises(TarError):
        list(TarWalker(io.BytesIO(bytes(raw))))

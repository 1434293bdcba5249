"""Hostile archives: each case of the issue's safety list yields a finding or caveat, the
rest of the image is still analysed, nothing is written anywhere, memory stays bounded and
nothing hangs."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import tarfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podmortem.errors import InputError
from podmortem.image.analysis import Analysis, analyze
from podmortem.image.catalog import Notes
from podmortem.image.layers import read_layer
from podmortem.image.limits import DEFAULT_LIMITS, Limits
from podmortem.image.model import Layer

from .builders import LAYOUTS, F, Spec, compress, layer_tar, write_oci_dir

SENTINEL = F("/etc/after", b"still analysed\n")


def _rules(a: Analysis) -> dict[str, list[tuple[str | None, int | None]]]:
    out: dict[str, list[tuple[str | None, int | None]]] = {}
    for f in a.findings:
        out.setdefault(f.rule_id, []).append((f.extra.get("path"), f.extra.get("layer_index")))
    return out


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _analyze_layers(tmp_path: Path, layers: list[list[F]], **kw: object) -> Analysis:
    img = LAYOUTS["docker-legacy"](Spec(layers=layers), tmp_path)
    before = _tree(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        a = analyze(img, **kw)  # type: ignore[arg-type]
    finally:
        os.chdir(cwd)
    assert _tree(tmp_path) == before, "the analysis wrote files"
    return a


def test_path_traversal_and_absolute_names(tmp_path: Path) -> None:
    a = _analyze_layers(
        tmp_path,
        [
            [
                F("x", b"evil", name="../../../../etc/cron.d/evil"),
                F("y", b"abs", name="/etc/abs"),
                SENTINEL,
            ]
        ],
    )
    r = _rules(a)
    assert ("/etc/cron.d/evil", 0) in r["image.archive.path_traversal"]
    assert ("/etc/abs", 0) in r["image.archive.absolute_path"]
    # runtimes clamp '..' at the root: the content lands (and is analysed) inside the image
    assert a.view.files["/etc/cron.d/evil"].size == 4
    assert "/etc/after" in a.view.files
    assert not (tmp_path.parent / "etc").exists()


def test_links_pointing_outside(tmp_path: Path) -> None:
    a = _analyze_layers(
        tmp_path,
        [
            [
                F("/app", kind="dir"),
                F("/app/shadow", kind="symlink", link="../../../../etc/shadow"),
                F("/app/ok", kind="symlink", link="/etc/passwd"),
                F("/app/hl", kind="hardlink", link="../../host/etc/passwd", name="app/hl"),
                F("/app/hl2", kind="hardlink", link="app/missing", name="app/hl2"),
                SENTINEL,
            ]
        ],
    )
    r = _rules(a)
    assert r["image.archive.link_outside"] == [("/app/shadow", 0)]
    assert sorted(r["image.archive.hardlink_outside"]) == [("/app/hl", 0), ("/app/hl2", 0)]
    assert "/etc/after" in a.view.files


def test_device_nodes(tmp_path: Path) -> None:
    a = _analyze_layers(
        tmp_path,
        [
            [
                F("/dev/null", kind="char", devmajor=1, devminor=3),  # what rootfs tarballs ship
                F("/tmp/mem", kind="char", devmajor=1, devminor=1),
                F("/tmp/sda", kind="block", devmajor=8, devminor=0),
                F("/tmp/fifo", kind="fifo"),
                SENTINEL,
            ]
        ],
    )
    assert sorted(_rules(a)["image.archive.device_node"]) == [("/tmp/mem", 0), ("/tmp/sda", 0)]


def test_duplicate_entries_last_wins(tmp_path: Path) -> None:
    a = _analyze_layers(
        tmp_path,
        [[F("/etc/motd", b"first"), F("/etc/motd", b"second, bigger"), SENTINEL]],
    )
    assert _rules(a)["image.archive.duplicate_member"] == [("/etc/motd", 0)]
    assert a.view.files["/etc/motd"].size == len(b"second, bigger")


@pytest.mark.parametrize("how", ["gzip", "zstd"])
def test_decompression_bomb(tmp_path: Path, how: str) -> None:
    big = layer_tar([F("/zeros", b"\0" * (24 << 20))])
    spec = Spec(layers=[[SENTINEL], [F("/x", b"x")]])
    d = write_oci_dir(spec, tmp_path / "oci", "gzip")
    # swap layer 1 for the bomb, keeping the config's diff_id honest
    index = json.loads((d / "index.json").read_text())
    mdig = index["manifests"][0]["digest"][7:]
    manifest = json.loads((d / "blobs/sha256" / mdig).read_text())
    blob = compress(big, how)
    import hashlib

    bd = hashlib.sha256(blob).hexdigest()
    (d / "blobs/sha256" / bd).write_bytes(blob)
    manifest["layers"][1] = {
        "mediaType": f"application/vnd.oci.image.layer.v1.tar+{how}",
        "digest": "sha256:" + bd,
        "size": len(blob),
    }
    mraw = json.dumps(manifest).encode()
    md = hashlib.sha256(mraw).hexdigest()
    (d / "blobs/sha256" / md).write_bytes(mraw)
    index["manifests"][0]["digest"] = "sha256:" + md
    index["manifests"][0]["size"] = len(mraw)
    (d / "index.json").write_text(json.dumps(index))
    limits = replace(DEFAULT_LIMITS, min_layer_allowance=1 << 20, max_ratio=50)
    tracemalloc.start()
    t0 = time.monotonic()
    a = analyze(d, limits=limits)
    elapsed = time.monotonic() - t0
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert _rules(a)["image.archive.decompression_bomb"] == [(None, 1)]
    assert not a.layers[1].read_complete
    assert a.layers[1].computed_diff_id == ""  # never vouched for
    assert "/etc/after" in a.view.files  # layer 0 analysed
    assert peak < 48 << 20, f"peak memory {peak}"
    assert elapsed < 30


def test_many_tiny_files_are_bounded(tmp_path: Path) -> None:
    n = 30_000
    members = [F(f"/d/{i:06d}", b"") for i in range(n)]
    limits = replace(DEFAULT_LIMITS, max_members=5_000)
    t0 = time.monotonic()
    a = _analyze_layers(tmp_path, [members, [SENTINEL]], limits=limits)
    assert time.monotonic() - t0 < 60
    assert _rules(a)["image.archive.too_many_members"] == [(None, 0)]
    assert len(a.versions) <= 5_000
    assert any(c.kind == "member-budget" for c in a.caveats)  # layer 1: budget used up
    # the layer was still hashed to its end: its diff_id is verified
    assert a.layers[0].computed_diff_id == a.layers[0].diff_id
    assert not any(f.rule_id == "image.integrity.diff_id_mismatch" for f in a.findings)


def test_deeply_nested_and_long_paths(tmp_path: Path) -> None:
    deep = "/".join(["d"] * 300) + "/f"
    long = "a" * 5000
    a = _analyze_layers(
        tmp_path, [[F("x", b"deep", name=deep), F("y", b"long", name=long), SENTINEL]]
    )
    assert len(_rules(a)["image.archive.deep_path"]) == 2
    assert "/etc/after" in a.view.files


def _layer(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[Notes, bool]:
    notes = Notes("t")
    read = read_layer(io.BytesIO(raw), Layer(0, "", size=len(raw)), limits=limits, notes=notes)
    return notes, read.complete


def test_corrupt_and_truncated_layers() -> None:
    good = layer_tar([F("/a", b"a" * 5000), F("/b", b"b")])
    notes, complete = _layer(gzip.compress(good)[:-40])
    assert not complete
    assert any(h.rule_id == "image.archive.corrupt_layer" for h in notes.hits)
    bad = bytearray(good)
    bad[148:156] = b"0000000\0"  # header checksum
    notes, complete = _layer(bytes(bad))
    assert not complete
    assert any(h.rule_id == "image.archive.corrupt_layer" for h in notes.hits)
    notes, complete = _layer(good[:700])  # cut inside the first member's content
    assert not complete and any(h.rule_id == "image.archive.corrupt_layer" for h in notes.hits)


def test_oversized_pax_header_is_refused() -> None:
    raw = layer_tar([F("/a", b"a", name="x" * 70_000)])
    notes, complete = _layer(raw, replace(DEFAULT_LIMITS, max_header_bytes=4096))
    assert not complete
    assert any(h.rule_id == "image.archive.corrupt_layer" for h in notes.hits)


def test_unknown_formats_are_not_parsed(tmp_path: Path) -> None:
    notes, _ = _layer(bz2.compress(layer_tar([F("/a", b"a")])))
    assert [h.rule_id for h in notes.hits] == ["image.archive.unknown_layer_format"]
    spec = Spec(layers=[[SENTINEL], [F("/x", b"x")]])
    d = write_oci_dir(spec, tmp_path / "oci", "tar")
    index = json.loads((d / "index.json").read_text())
    mpath = d / "blobs/sha256" / index["manifests"][0]["digest"][7:]
    manifest = json.loads(mpath.read_text())
    manifest["layers"][1]["mediaType"] = "application/vnd.example.weird"
    missing = manifest["layers"][0]["digest"]
    mpath.write_text(json.dumps(manifest))  # the manifest digest no longer matches either
    a = analyze(d)
    r = _rules(a)
    assert ("image.archive.unknown_layer_format") in r
    assert "image.integrity.blob_digest_mismatch" in r
    (d / "blobs/sha256" / missing[7:]).unlink()
    a = analyze(d)
    assert _rules(a)["image.archive.missing_layer"] == [(None, 0)]


def test_time_budget_stops_analysis_not_hashing(tmp_path: Path) -> None:
    limits = replace(DEFAULT_LIMITS, time_budget_s=0.0)
    a = _analyze_layers(
        tmp_path, [[F(f"/f{i}", b"x") for i in range(600)], [SENTINEL]], limits=limits
    )
    assert any(c.kind == "time-budget" for c in a.caveats)
    assert a.layers[0].computed_diff_id == a.layers[0].diff_id


def test_hostile_outer_archive(tmp_path: Path) -> None:
    spec = Spec(layers=[[SENTINEL]])
    img = LAYOUTS["docker-oci"](spec, tmp_path)
    out = tmp_path / "hostile.tar"
    with tarfile.open(img) as src, tarfile.open(out, "w") as dst:
        for m in src.getmembers():
            fh = src.extractfile(m) if m.isfile() else None
            dst.addfile(m, fh)
        for name in ("../../escape", "/abs/path"):
            ti = tarfile.TarInfo(name)
            ti.size = 3
            dst.addfile(ti, io.BytesIO(b"bad"))
        ti = tarfile.TarInfo("manifest.json")  # a duplicate: the last copy is used
        data = (src.extractfile("manifest.json") or io.BytesIO()).read()
        ti.size = len(data)
        dst.addfile(ti, io.BytesIO(data))
    a = analyze(out)
    r = _rules(a)
    assert len(r["image.archive.path_traversal"]) == 2
    assert r["image.archive.duplicate_member"]
    assert "/etc/after" in a.view.files
    assert not (tmp_path.parent.parent / "escape").exists()
    many = tmp_path / "many.tar"
    with tarfile.open(many, "w") as tf:
        for i in range(60):
            tf.addfile(tarfile.TarInfo(f"f{i}"), io.BytesIO(b""))
    with pytest.raises(InputError, match="more than 50 members"):
        analyze(many, limits=replace(DEFAULT_LIMITS, max_archive_members=50))


GOOD = layer_tar(
    [
        F("/etc/a", b"alpha\n" * 50),
        F("/bin/b", b"\x7fELF" + b"\0" * 300, mode=0o755),
        F("/l", kind="symlink", link="/etc/a"),
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=8),
    st.sampled_from(["tar", "gzip", "zstd"]),
    st.integers(0, len(GOOD)),
)
def test_fuzzed_layers_never_crash(flips: list[tuple[int, int]], how: str, cut: int) -> None:
    raw = bytearray(GOOD)
    for pos, val in flips:
        raw[pos] = val
    blob = compress(bytes(raw[: max(cut, 1)]), how)
    notes, _complete = _layer(blob, replace(DEFAULT_LIMITS, min_layer_allowance=1 << 20))
    for h in notes.hits:
        assert h.rule_id.startswith("image.")


def _tar_headers(n: int) -> bytes:
    """``n`` empty regular files as raw ustar headers (tarfile is too slow for millions)."""
    tpl = bytearray(512)
    tpl[100:108] = b"0000644\0"
    tpl[108:116] = b"0000000\0"
    tpl[116:124] = b"0000000\0"
    tpl[124:136] = b"00000000000\0"
    tpl[136:148] = b"14000000000\0"
    tpl[156:157] = b"0"
    tpl[257:265] = b"ustar\x0000"
    out = bytearray()
    base = sum(tpl) - sum(tpl[148:156]) + 256 - sum(tpl[0:100])
    for i in range(n):
        name = b"f/%07d" % i
        block = bytearray(tpl)
        block[0 : len(name)] = name
        block[148:156] = b"%06o\0 " % (base + sum(name))
        out += block
    return bytes(out + bytes(1024))


@pytest.mark.slow
def test_a_million_tiny_files(tmp_path: Path) -> None:
    raw = _tar_headers(1_000_000)
    blob = compress(raw, "zstd")
    notes = Notes("t")
    limits = replace(DEFAULT_LIMITS, max_members=50_000, min_layer_allowance=1 << 30)
    tracemalloc.start()
    t0 = time.monotonic()
    read = read_layer(io.BytesIO(blob), Layer(0, "", size=len(blob)), limits=limits, notes=notes)
    elapsed = time.monotonic() - t0
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [h.rule_id for h in notes.hits] == ["image.archive.too_many_members"]
    assert len(read.entries) == 50_000
    import hashlib

    assert read.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()  # hashed to the end
    assert peak < (len(raw) + (200 << 20)), f"peak {peak >> 20} MiB"
    assert elapsed < 120


def test_cli_on_a_hostile_archive_writes_only_into_the_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from podmortem.case import Case
    from podmortem.cli import main

    work = tmp_path / "work"
    work.mkdir()
    img = LAYOUTS["docker-legacy"](
        Spec(
            layers=[
                [
                    F("x", b"evil", name="../../../../tmp/pwned"),
                    F("l", kind="symlink", link="../../../../etc/shadow", name="l"),
                    F("h", kind="hardlink", link="../../etc/passwd", name="h"),
                ]
            ]
        ),
        work,
    )
    case = tmp_path / "case"
    Case.init(case, case_id="H", examiner="t")
    before = _tree(tmp_path)
    monkeypatch.chdir(work)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "podmortem",
            "image",
            "analyze",
            str(img),
            "--case",
            str(case),
            "--json",
            str(work / "r.json"),
        ],
    )
    with pytest.raises(SystemExit) as exc:
        main.run()
        raise SystemExit(0)
    assert exc.value.code in (0, None)
    after = _tree(tmp_path)
    new = {p for p in after - before if not p.startswith("case")}
    assert new == {"work/r.json"}
    assert not Path("/tmp/pwned").exists()

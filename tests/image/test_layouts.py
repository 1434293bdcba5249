"""Every archive layout yields the same image, the same layers and the same findings, each
planted indicator found with the layer that introduced it (and the one that hid it)."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from podmortem.errors import InputError
from podmortem.image.analysis import Analysis, analyze
from podmortem.image.model import chain_ids

from .builders import LAYOUTS, F, Spec, compromised_spec, layer_tar, sha, write_docker_legacy


def _key(a: Analysis) -> set[tuple[object, ...]]:
    return {
        (
            f.rule_id,
            f.extra.get("path") or f.extra.get("config_key"),
            f.extra["layer_index"],
            f.extra["hidden_by_layer"],
        )
        for f in a.findings
    }


def _comparable(a: Analysis) -> list[tuple[object, ...]]:
    return sorted(
        (
            f.rule_id,
            f.extra.get("path"),
            f.extra.get("config_key"),
            f.extra["layer_index"],
            f.extra["layer_diff_id"],
            f.extra["hidden_by_layer"],
            f.evidence,
            f.summary,
        )
        for f in a.findings
    )


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_planted_indicator_found_with_its_layer(
    layout: str,
    compromised_images: dict[str, Path],
    expected_findings: list[tuple[str, str, int | None, int | None]],
) -> None:
    a = analyze(compromised_images[layout])
    got = _key(a)
    missing = [e for e in expected_findings if e not in got]
    assert not missing, f"{layout}: missing {missing}"
    unexpected = got - set(expected_findings)
    assert not unexpected, f"{layout}: unexpected {unexpected}"
    assert a.image.tags == ["example.org/test/compromised:1"]
    assert a.image.platform == "linux/amd64"
    assert all(x.read_complete for x in a.layers)
    assert [x.computed_diff_id for x in a.layers] == [x.diff_id for x in a.layers]
    assert not a.caveats


def test_findings_identical_across_layouts(compromised_images: dict[str, Path]) -> None:
    results = {name: _comparable(analyze(p)) for name, p in compromised_images.items()}
    reference = results["docker-legacy"]
    for name, r in results.items():
        assert r == reference, name


def test_layouts_are_recognised(compromised_images: dict[str, Path]) -> None:
    layouts = {n: analyze(p).image.layout for n, p in compromised_images.items()}
    assert layouts["docker-legacy"] == "docker-archive (legacy)"
    assert layouts["docker-oci"] == "docker-archive (OCI layout)"
    assert layouts["docker-containerd-gzip"] == "docker-archive (containerd image store)"
    assert layouts["oci-dir-zstd-nested"] == "oci-layout directory"
    assert layouts["oci-archive-zstd"] == "oci-archive"
    comp = {n: [x.compression for x in analyze(p).layers] for n, p in compromised_images.items()}
    assert set(comp["docker-containerd-zstd"]) == {"zstd"}
    assert set(comp["oci-dir-gzip"]) == {"gzip"}
    assert set(comp["docker-legacy"]) == {"tar"}


def test_layer_changes_and_identity(compromised_analysis: Analysis) -> None:
    a = compromised_analysis
    l2, l3, l4 = a.layers[2], a.layers[3], a.layers[4]
    assert "/etc/ld.so.preload" in l2.added
    assert {"/usr/bin/ls", "/etc/passwd", "/etc/shadow"} <= set(l2.modified)
    assert set(l3.added) >= {"/root/.ssh/id_rsa", "/opt/miner/xmrig", "/srv/data/token.env"}
    # explicit whiteout, opaque dir (marker after the layer's own file), dir -> symlink
    assert set(l4.deleted) == {"/root/.ssh/id_rsa", "/opt/miner/xmrig", "/srv/data/token.env"}
    assert "/opt/miner/README" in a.view.files  # same-layer content survives its opaque marker
    assert a.view.files["/srv/data"].kind == "symlink"
    assert "/root/.ssh/id_rsa" not in a.view.files
    assert a.layers[0].created_by.startswith("/bin/sh -c #(nop) ADD")
    assert [x.chain_id for x in a.layers] == chain_ids([x.diff_id for x in a.layers])
    assert a.image.manifest_digest and a.image.config_digest.startswith("sha256:")


def test_base_attribution(compromised_images: dict[str, Path], base_image: Path) -> None:
    from podmortem.image.analysis import base_diff_ids
    from podmortem.image.limits import DEFAULT_LIMITS

    base = base_diff_ids(base_image, tag=None, platform=None, limits=DEFAULT_LIMITS)
    a = analyze(compromised_images["docker-containerd-zstd"], base=base, base_source="base")
    assert a.base_layers == 2
    assert all(
        f.extra.get("attributed_to") == "derived"
        for f in a.findings
        if f.extra["layer_index"] is not None
    )
    unrelated = analyze(compromised_images["docker-legacy"], base=["sha256:" + "0" * 64])
    assert unrelated.base_layers == 0
    assert any(c.kind == "base-not-shared" for c in unrelated.caveats)


def test_tampered_layer_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    spec, _ = compromised_spec()
    d = LAYOUTS["oci-dir-tar"](spec, tmp_path)
    index = json.loads((d / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    manifest = json.loads((d / "blobs/sha256" / manifest_digest[7:]).read_text())
    victim = d / "blobs/sha256" / manifest["layers"][1]["digest"][7:]
    data = bytearray(victim.read_bytes())
    pos = data.find(b"base\n")
    data[pos : pos + 5] = b"evil\n"  # same size, same tar structure, different content
    victim.write_bytes(bytes(data))
    a = analyze(d)
    rules = {(f.rule_id, f.extra["layer_index"]) for f in a.findings}
    assert ("image.integrity.blob_digest_mismatch", 1) in rules
    assert ("image.integrity.diff_id_mismatch", 1) in rules
    assert a.layers[4].read_complete  # the rest of the image was still analysed


def test_tampered_config_is_reported(tmp_path: Path) -> None:
    spec, _ = compromised_spec()
    d = LAYOUTS["oci-dir-gzip"](spec, tmp_path)
    index = json.loads((d / "index.json").read_text())
    manifest = json.loads((d / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    cfg_path = d / "blobs/sha256" / manifest["config"]["digest"][7:]
    cfg_path.write_bytes(cfg_path.read_bytes().replace(b'"amd64"', b'"arm64"'))
    a = analyze(d)
    assert any(f.rule_id == "image.integrity.blob_digest_mismatch" for f in a.findings)


def test_legacy_archive_with_linked_shared_layers(tmp_path: Path) -> None:
    same = [F("/etc/x", b"x")]
    spec = Spec(layers=[same, [F("/etc/y", b"y")], same])
    a = analyze(write_docker_legacy(spec, tmp_path / "i.tar"))
    assert len(a.layers) == 3
    assert a.layers[0].computed_diff_id == a.layers[2].computed_diff_id
    with tarfile.open(tmp_path / "i.tar") as tf:
        assert any(m.issym() for m in tf.getmembers())


def test_multi_image_archive_needs_a_tag(tmp_path: Path) -> None:
    spec, _ = compromised_spec()
    p = write_docker_legacy(spec, tmp_path / "i.tar")
    # rewrite manifest.json with a second entry
    with tarfile.open(p) as tf:
        members = {
            m.name: (m, tf.extractfile(m).read() if m.isfile() else None) for m in tf.getmembers()
        }  # type: ignore[union-attr]
    manifest = json.loads(members["manifest.json"][1])
    second = dict(manifest[0], RepoTags=["example.org/other:2"])
    out = tmp_path / "two.tar"
    import io

    with tarfile.open(out, "w") as tf:
        for name, (m, content) in members.items():
            data = content
            if name == "manifest.json":
                data = json.dumps([manifest[0], second]).encode()
                m.size = len(data)
            tf.addfile(m, io.BytesIO(data) if data is not None else None)
    with pytest.raises(InputError, match="pick one with --tag"):
        analyze(out)
    assert analyze(out, tag="example.org/other:2").image.tags == ["example.org/other:2"]
    assert analyze(out, tag="1").image.tags == ["example.org/test/compromised:1"]
    with pytest.raises(InputError, match="no image tagged"):
        analyze(out, tag="nope")


def test_platform_selection_in_a_multi_platform_index(tmp_path: Path) -> None:
    spec, _ = compromised_spec()
    d = LAYOUTS["oci-dir-gzip"](spec, tmp_path)
    index = json.loads((d / "index.json").read_text())
    arm = dict(index["manifests"][0], platform={"os": "linux", "architecture": "arm64"})
    arm["annotations"] = {"org.opencontainers.image.ref.name": "example.org/test/compromised:arm"}
    index["manifests"].append(arm)
    (d / "index.json").write_text(json.dumps(index))
    assert analyze(d).image.platform == "linux/amd64"  # the usual server platform by default
    assert analyze(d, platform="linux/arm64").image.platform == "linux/arm64"
    with pytest.raises(InputError, match="no image for platform"):
        analyze(d, platform="linux/s390x")


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InputError):
        analyze(tmp_path / "x.txt")
    with pytest.raises(InputError):
        analyze(tmp_path / "missing.tar")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"neither manifest\.json"):
        analyze(empty)
    gz = tmp_path / "i.tar.gz"
    import gzip

    gz.write_bytes(gzip.compress(layer_tar([F("/a", b"a")])))
    with pytest.raises(InputError, match="decompress it first"):
        analyze(gz)


def test_directory_copy_is_read_in_place(
    tmp_path: Path, compromised_images: dict[str, Path]
) -> None:
    src = compromised_images["oci-dir-zstd-nested"]
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    before = sorted(p.name for p in dst.rglob("*"))
    analyze(dst)
    assert sorted(p.name for p in dst.rglob("*")) == before
    assert sha(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_unpacked_docker_save_folder(tmp_path: Path, compromised_images: dict[str, Path]) -> None:
    d = tmp_path / "unpacked"
    d.mkdir()
    with tarfile.open(compromised_images["docker-legacy"]) as tf:
        tf.extractall(d, filter="data")
    a = analyze(d)
    assert a.image.layout == "docker-archive (legacy)"
    assert _comparable(a) == _comparable(analyze(compromised_images["docker-legacy"]))

"""A real Debian rootfs (the benchmark's debootstrap image, when it has been built on this
machine): no false positives, the same package count syft finds, and a trojaned ``ls`` in
an upper layer caught through merged-/usr (dpkg records ``bin/ls``)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from podmortem.image.analysis import analyze

from .builders import F, layer_tar

CACHE = Path(os.environ.get("PODMORTEM_BENCH_CACHE", "/tmp/podmortem-bench"))
ARCHIVE = CACHE / "debian-bookworm-minbase.docker.tar"


@pytest.fixture(scope="module")
def debian() -> Path:
    if not ARCHIVE.is_file():
        pytest.skip(f"{ARCHIVE} not built (run benchmarks/image.py once)")
    return ARCHIVE


def test_clean_debian_has_no_findings(debian: Path) -> None:
    a = analyze(debian)
    assert a.findings == []
    assert not a.caveats
    names = {p.name for p in a.inventory.packages}
    assert {"coreutils", "dpkg", "libc6", "bash"} <= names
    assert len(names) > 80


def test_trojaned_ls_on_top_of_debian(debian: Path, tmp_path: Path) -> None:
    with tarfile.open(debian) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = json.load(tf.extractfile(manifest["Config"]))  # type: ignore[arg-type]
        base = tf.getmember(manifest["Layers"][0])
        base_fh = tf.extractfile(base)
        assert base_fh is not None
        with tarfile.open(fileobj=base_fh) as layer:
            names = set(layer.getnames())
            ls_fh = layer.extractfile(next(n for n in ("usr/bin/ls", "./usr/bin/ls") if n in names))
            assert ls_fh is not None
            ls = ls_fh.read()
        upper = layer_tar([F("/usr/bin/ls", ls + b"\0implant", mode=0o755)])
        config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(upper).hexdigest())
        config["history"].append({"created_by": "COPY ls /usr/bin/ls"})
        raw_config = json.dumps(config).encode()
        config_name = hashlib.sha256(raw_config).hexdigest() + ".json"
        out = tmp_path / "trojan.tar"
        with tarfile.open(out, "w") as dst:
            base_fh = tf.extractfile(base)
            dst.addfile(base, base_fh)
            new = {
                "upper/layer.tar": upper,
                config_name: raw_config,
                "manifest.json": json.dumps(
                    [
                        {
                            "Config": config_name,
                            "RepoTags": ["t:1"],
                            "Layers": [manifest["Layers"][0], "upper/layer.tar"],
                        }
                    ]
                ).encode(),
            }
            for name, data in new.items():
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                dst.addfile(ti, io.BytesIO(data))
    a = analyze(out)
    assert [(f.rule_id, f.extra["path"], f.extra["layer_index"]) for f in a.findings] == [
        ("image.integrity.checksum_mismatch", "/usr/bin/ls", 1)
    ]

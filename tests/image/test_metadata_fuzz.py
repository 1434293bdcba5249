"""Hostile image metadata (index, manifest, config, manifest.json): any JSON value in any
field either analyses or fails with one InputError, never another exception."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podmortem.errors import InputError
from podmortem.image.analysis import analyze

from .builders import LAYOUTS, F, Spec

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def oci_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = Spec(layers=[[F("/etc/a", b"a")], [F("/etc/b", b"b")]], cmd=["/bin/sh"])
    return LAYOUTS["oci-dir-gzip"](spec, tmp_path_factory.mktemp("tpl"))


def _blob(d: Path, digest: str) -> Path:
    return d / "blobs" / "sha256" / digest.split(":", 1)[1]


def _mutate(doc: Any, path: list[Any], value: Any) -> Any:
    cur = doc
    for key in path[:-1]:
        cur = cur[key]
    cur[path[-1]] = value
    return doc


TARGETS = [
    ("index", ["manifests", 0, "digest"]),
    ("index", ["manifests", 0, "mediaType"]),
    ("index", ["manifests", 0, "platform"]),
    ("index", ["manifests"]),
    ("manifest", ["layers", 0, "size"]),
    ("manifest", ["layers", 0, "digest"]),
    ("manifest", ["layers", 1, "mediaType"]),
    ("manifest", ["layers"]),
    ("manifest", ["config"]),
    ("config", ["rootfs"]),
    ("config", ["rootfs", "diff_ids"]),
    ("config", ["history"]),
    ("config", ["config"]),
    ("config", ["config", "Env"]),
    ("config", ["config", "Cmd"]),
    ("config", ["os"]),
]


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(TARGETS), json_values)
def test_any_metadata_value_is_handled(
    oci_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
    target: tuple[str, list[Any]],
    value: Any,
) -> None:
    d = tmp_path_factory.mktemp("fz") / "oci"
    shutil.copytree(oci_template, d)
    index = json.loads((d / "index.json").read_text())
    mdig = index["manifests"][0]["digest"]
    manifest = json.loads(_blob(d, mdig).read_text())
    config = json.loads(_blob(d, manifest["config"]["digest"]).read_text())
    which, path = target
    if which == "config":
        raw = json.dumps(_mutate(config, path, value)).encode()
        cd = "sha256:" + hashlib.sha256(raw).hexdigest()
        _blob(d, cd).write_bytes(raw)
        manifest["config"]["digest"] = cd
    if which in ("config", "manifest"):
        if which == "manifest":
            manifest = _mutate(manifest, path, value)
        raw = json.dumps(manifest).encode()
        md = "sha256:" + hashlib.sha256(raw).hexdigest()
        _blob(d, md).write_bytes(raw)
        index["manifests"][0]["digest"] = md
    if which == "index":
        index = _mutate(index, path, value)
    (d / "index.json").write_text(json.dumps(index))
    try:
        a = analyze(d)
    except InputError:
        return
    assert a.layers is not None


class Template:
    """The archive's files, with a short repr (hypothesis prints its arguments)."""

    def __init__(self, files: dict[str, bytes], manifest: Any) -> None:
        self.files = files
        self.manifest = manifest

    def __repr__(self) -> str:
        return f"Template({len(self.files)} files)"


@pytest.fixture(scope="module")
def docker_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    import tarfile

    spec = Spec(layers=[[F("/etc/a", b"a")], [F("/etc/b", b"b")]])
    p = LAYOUTS["docker-oci"](spec, tmp_path_factory.mktemp("dtpl"))
    files = {}
    with tarfile.open(p) as tf:
        for m in tf.getmembers():
            fh = tf.extractfile(m) if m.isfile() else None
            if fh is not None:
                files[m.name] = fh.read()
    return Template(files, json.loads(files["manifest.json"]))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(["Config", "RepoTags", "Layers", None]), json_values)
def test_any_manifest_json_value_is_handled(
    docker_template: Template,
    tmp_path_factory: pytest.TempPathFactory,
    key: str | None,
    value: Any,
) -> None:
    import io
    import tarfile

    files, manifest = docker_template.files, docker_template.manifest
    doc = json.loads(json.dumps(manifest))
    if key is None:
        doc = value
    else:
        doc[0][key] = value
    out = tmp_path_factory.mktemp("dfz") / "i.tar"
    with tarfile.open(out, "w") as tf:
        for name, data in {**files, "manifest.json": json.dumps(doc).encode()}.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    try:
        analyze(out)
    except InputError:
        return

"""Whiteout semantics: hand-written cases from the OCI layer spec, and a property test that
compares the streaming reader + merge against a direct reference model of the spec."""

from __future__ import annotations

import io
import posixpath

from hypothesis import given, settings
from hypothesis import strategies as st

from podmortem.image.catalog import Notes
from podmortem.image.layers import read_layer
from podmortem.image.limits import DEFAULT_LIMITS
from podmortem.image.merge import MergedView, apply_layer
from podmortem.image.model import Entry, Layer

from .builders import F, layer_tar


def merge(layers: list[list[F]]) -> tuple[MergedView, list[Layer], list[Entry]]:
    view = MergedView()
    metas = []
    versions: list[Entry] = []
    for i, members in enumerate(layers):
        raw = layer_tar(members, dot_prefix=i % 2 == 1)
        meta = Layer(i, "", size=len(raw))
        read = read_layer(io.BytesIO(raw), meta, limits=DEFAULT_LIMITS, notes=Notes("t"))
        apply_layer(view, meta, read.entries)
        metas.append(meta)
        versions += read.entries
    return view, metas, versions


def test_whiteout_deletes_lower_but_not_same_layer() -> None:
    view, layers, versions = merge(
        [
            [F("/a", kind="dir"), F("/a/x", b"1"), F("/a/y", b"2"), F("/b", b"3")],
            [F("/a/x", b"new"), F("/a/x", kind="whiteout"), F("/b", kind="whiteout")],
        ]
    )
    assert view.files["/a/x"].sha256 is not None and view.files["/a/x"].layer == 1
    assert "/b" not in view.files and "/a/y" in view.files
    assert layers[1].deleted == ["/a/x", "/b"]
    old_x = next(e for e in versions if e.path == "/a/x" and e.layer == 0)
    assert (old_x.hidden_by, old_x.hidden_how) == (1, "whiteout")


def test_opaque_applies_first_whatever_the_order() -> None:
    view, _layers, _ = merge(
        [
            [F("/d", kind="dir"), F("/d/old", b"o"), F("/d/sub", kind="dir"), F("/d/sub/f", b"f")],
            [F("/d/new", b"n"), F("/d", kind="opaque")],
        ]
    )
    assert sorted(p for p in view.files if p.startswith("/d/")) == ["/d/new"]
    assert "/d" in view.files


def test_whiteout_of_directory_removes_tree_and_plnk_is_ignored() -> None:
    view, layers, _ = merge(
        [
            [F("/t", kind="dir"), F("/t/a/b/c", b"deep"), F("/keep", b"k")],
            [F("/t", kind="whiteout"), F(".wh..wh.plnk/123.456", b"", name=".wh..wh.plnk")],
        ]
    )
    assert not any(p.startswith("/t") for p in view.files)
    assert "/keep" in view.files
    assert "/t/a/b/c" in layers[1].deleted


def test_non_directory_replacing_directory() -> None:
    view, layers, versions = merge(
        [
            [F("/srv", kind="dir"), F("/srv/data", kind="dir"), F("/srv/data/f", b"f")],
            [F("/srv/data", kind="symlink", link="/tmp")],
        ]
    )
    assert view.files["/srv/data"].kind == "symlink"
    assert "/srv/data/f" not in view.files
    f = next(e for e in versions if e.path == "/srv/data/f")
    assert (f.hidden_by, f.hidden_how) == (1, "replaced-directory")
    assert layers[1].deleted == ["/srv/data/f"]


def test_modified_means_content_changed() -> None:
    _view, layers, _ = merge(
        [
            [F("/etc", kind="dir"), F("/etc/a", b"1"), F("/etc/b", b"2")],
            [F("/etc", kind="dir"), F("/etc/a", b"1"), F("/etc/b", b"changed")],
        ]
    )
    assert layers[1].modified == ["/etc/b"]  # same bytes re-added is not a modification
    assert layers[1].added == []


# --- property test against a reference model -----------------------------------------

NAMES = ["/a", "/a/b", "/a/b/c", "/a/e", "/d", "/d/f"]


def reference(layers: list[list[F]]) -> dict[str, tuple[str, bytes, str]]:
    """The spec applied directly: whiteouts and opaque markers first (lower layers only),
    then the layer's entries in order; a non-directory over a directory (even one that only
    exists because files sit in it) drops its tree; a new path under a lower non-directory
    replaces that non-directory."""
    state: dict[str, tuple[str, bytes, str, int]] = {}

    def under(p: str, root: str) -> bool:
        return p.startswith(root.rstrip("/") + "/")

    for i, layer in enumerate(layers):
        lower = dict(state)
        for m in layer:
            if m.kind == "opaque":
                for p in list(state):
                    if under(p, m.path) and p in lower:
                        del state[p]
        for m in layer:
            if m.kind == "whiteout":
                for p in list(state):
                    if (p == m.path or under(p, m.path)) and p in lower:
                        del state[p]
        for m in layer:
            if m.kind in ("whiteout", "opaque"):
                continue
            if m.kind != "dir":  # over a directory, explicit or implicit
                for p in list(state):
                    if under(p, m.path) and state[p][3] != i:
                        del state[p]
            parent = posixpath.dirname(m.path)
            while parent != "/":
                blocker = state.get(parent)
                if blocker and blocker[0] != "dir" and blocker[3] != i:
                    for p in list(state):
                        if p == parent or under(p, parent):
                            del state[p]
                    break
                parent = posixpath.dirname(parent)
            state[m.path] = (m.kind, m.data, m.link, i)
    return {p: v[:3] for p, v in state.items()}


member = st.builds(
    lambda path, kind, data: F(
        path,
        data if kind == "file" else b"",
        kind=kind,
        link="/x" if kind == "symlink" else "",
    ),
    st.sampled_from(NAMES),
    st.sampled_from(["file", "dir", "symlink", "whiteout", "opaque"]),
    st.sampled_from([b"1", b"2", b"3"]),
)


def _unique(layer: list[F]) -> list[F]:
    """A well-formed layer: no path twice (duplicates are tested elsewhere) and no entry
    below a non-directory of the same layer (no builder can write that)."""
    seen: set[tuple[str, bool]] = set()
    out: list[F] = []
    for m in layer:
        key = (m.path, m.kind in ("whiteout", "opaque"))
        entries = [o for o in out if o.kind not in ("whiteout", "opaque")]
        if m.kind not in ("whiteout", "opaque") and any(
            (m.path.startswith(o.path + "/") and o.kind != "dir")
            or (o.path.startswith(m.path + "/") and m.kind != "dir")
            for o in entries
        ):
            continue
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(member, max_size=6).map(_unique), min_size=1, max_size=4))
def test_merge_matches_the_reference_model(layers: list[list[F]]) -> None:
    view, _metas, _ = merge(layers)
    got = {p: (e.kind, e.sha256, e.link) for p, e in view.files.items()}
    import hashlib

    want = {
        p: (k, hashlib.sha256(d).hexdigest() if k == "file" else None, link)
        for p, (k, d, link) in reference(layers).items()
    }
    assert got == want

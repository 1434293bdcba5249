"""Content diff of two images: the merged filesystems compared path by path, by type,
link target, mode, owner and sha256 (never by size, which a same-size trojan keeps)."""

from __future__ import annotations

from typing import Any

from podmortem.image.analysis import Analysis
from podmortem.image.model import Entry

LINK_KINDS = frozenset({"symlink", "hardlink"})


def _state(e: Entry) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "sha256": e.sha256,
        "link": e.link or None,
        "mode": f"{e.mode:04o}",
        "uid": e.uid,
        "gid": e.gid,
        "layer_index": e.layer,
    }


def _changes(a: Entry, b: Entry) -> list[str]:
    what = []
    if a.kind != b.kind:
        what.append("type")
    if a.sha256 != b.sha256 and a.kind not in ("dir",) and b.kind not in ("dir",):
        what.append("content")
    if a.link != b.link and (
        a.kind in ("symlink", "hardlink") or b.kind in ("symlink", "hardlink")
    ):
        what.append("link")
    if a.mode != b.mode:
        what.append("mode")
    if (a.uid, a.gid) != (b.uid, b.gid):
        what.append("owner")
    return what


def diff_analyses(a: Analysis, b: Analysis) -> dict[str, Any]:
    fa, fb = a.view.files, b.view.files
    added = [_state(fb[p]) | {"path": p} for p in sorted(fb.keys() - fa.keys())]
    removed = [_state(fa[p]) | {"path": p} for p in sorted(fa.keys() - fb.keys())]
    changed = []
    for p in sorted(fa.keys() & fb.keys()):
        what = _changes(fa[p], fb[p])
        if what:
            changed.append({"path": p, "changes": what, "a": _state(fa[p]), "b": _state(fb[p])})
    shared = 0
    for la, lb in zip(a.layers, b.layers, strict=False):
        if not la.chain_id or la.chain_id != lb.chain_id:
            break
        shared += 1

    def ident(x: Analysis) -> dict[str, Any]:
        return {
            "source": x.image.source,
            "digest": x.image.manifest_digest,
            "config_digest": x.image.config_digest,
            "tags": x.image.tags,
            "layers": len(x.layers),
        }

    return {
        "a": ident(a),
        "b": ident(b),
        "shared_base_layers": shared,
        "added": added,
        "removed": removed,
        "changed": changed,
        "summary": {"added": len(added), "removed": len(removed), "changed": len(changed)},
    }

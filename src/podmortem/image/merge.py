"""Merge layers into the filesystem a container would see, with OCI whiteout semantics, and
record what every layer added, modified and deleted.

The rules (OCI image-spec "layer" chapter; image-formats.md):

- ``.wh.<name>`` deletes ``<name>`` (a file or a whole tree) from LOWER layers; a file the
  same layer writes at that path stays. So all of a layer's whiteouts apply first.
- ``<dir>/.wh..wh..opq`` hides every lower child of ``<dir>``; it applies before the
  layer's own entries whatever the tar order.
- A non-directory replacing a directory writes no whiteout (``rm -rf d && ln -s x d``): the
  lower children go anyway.
- Nothing is really gone: a version a later layer deletes or replaces keeps
  ``hidden_by``/``hidden_how`` so its content is still reported, with both layers.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field

from podmortem.image.model import Entry, Layer


@dataclass
class MergedView:
    files: dict[str, Entry] = field(default_factory=dict)
    # path -> child paths (including implicit directories that no entry created)
    children: dict[str, set[str]] = field(default_factory=dict)
    # path -> [(layer, action)] with action in added, modified, deleted
    history: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    # paths currently known to be directories (entries or implicit parents)
    dirs: set[str] = field(default_factory=lambda: {"/"})

    def _link(self, path: str) -> None:
        child = path
        while child != "/":
            parent = posixpath.dirname(child)
            self.dirs.add(parent)
            kids = self.children.setdefault(parent, set())
            if child in kids:
                return
            kids.add(child)
            child = parent

    def _unlink(self, path: str) -> None:
        parent = posixpath.dirname(path)
        kids = self.children.get(parent)
        if kids is not None:
            kids.discard(path)

    def subtree(self, path: str) -> list[str]:
        """``path`` and everything below it that is currently visible."""
        out: list[str] = []
        stack = [path]
        while stack:
            p = stack.pop()
            if p in self.files:
                out.append(p)
            stack.extend(self.children.get(p, ()))
        return out

    def _remove(self, path: str, layer: int, how: str, record: bool) -> list[str]:
        removed: list[str] = []
        stack = [path]
        while stack:
            p = stack.pop()
            stack.extend(self.children.pop(p, ()))
            self.dirs.discard(p)
            e = self.files.pop(p, None)
            if e is not None:
                e.hidden_by = layer
                e.hidden_how = how
                removed.append(p)
                if record:
                    self.history.setdefault(p, []).append((layer, "deleted"))
        self._unlink(path)
        return removed


def _same_content(a: Entry, b: Entry) -> bool:
    return a.kind == b.kind and a.sha256 == b.sha256 and a.link == b.link


def apply_layer(view: MergedView, layer: Layer, entries: Iterable[Entry]) -> None:
    """Apply one layer's entries (in tar order) to ``view``; fills layer.added/modified/
    deleted with absolute paths."""
    idx = layer.index
    ordered = list(entries)
    deleted: list[str] = []
    # 1. opaque directories: hide every lower child, whatever the tar order.
    for e in ordered:
        if e.kind == "opaque":
            for child in sorted(view.children.get(e.path, ())):
                deleted.extend(view._remove(child, idx, "opaque-whiteout", record=True))
    # 2. explicit whiteouts: delete from lower layers.
    for e in ordered:
        if e.kind == "whiteout" and (e.path in view.files or e.path in view.children):
            deleted.extend(view._remove(e.path, idx, "whiteout", record=True))
    # 3. the layer's own entries; a duplicate within the layer: the last one wins.
    added: list[str] = []
    modified: list[str] = []
    for e in ordered:
        if e.kind in ("whiteout", "opaque"):
            continue
        old = view.files.get(e.path)
        if old is not None and old.layer == idx:
            # a duplicate inside this layer: the later member replaces the earlier silently
            old.hidden_by, old.hidden_how = idx, "duplicate"
            view.files[e.path] = e
            continue
        if e.kind != "dir" and view.children.get(e.path):
            # a non-directory over a directory (explicit or implicit): the lower tree is
            # gone, and no builder writes whiteouts for it
            for child in sorted(view.children[e.path]):
                deleted.extend(view._remove(child, idx, "replaced-directory", record=True))
        # the path may sit under a lower non-directory (a file where a directory is now
        # needed): overlayfs cannot show both, the new tree wins.
        parent = posixpath.dirname(e.path)
        while parent not in view.dirs:
            blocker = view.files.get(parent)
            if blocker is not None and blocker.kind != "dir" and blocker.layer != idx:
                deleted.extend(view._remove(parent, idx, "replaced-directory", record=True))
                break
            parent = posixpath.dirname(parent)
        if e.kind == "dir":
            view.dirs.add(e.path)
        else:
            view.dirs.discard(e.path)
        if old is not None and old.path in view.files:
            if old.kind == "dir" and e.kind == "dir":
                view.files[e.path] = e
                # a directory re-listed (every parent appears in every layer): not a change
                if (old.mode, old.uid, old.gid) != (e.mode, e.uid, e.gid):
                    modified.append(e.path)
                    view.history.setdefault(e.path, []).append((idx, "modified"))
                continue
            if not _same_content(old, e) or (old.mode, old.uid, old.gid) != (
                e.mode,
                e.uid,
                e.gid,
            ):
                old.hidden_by, old.hidden_how = idx, "replaced"
                modified.append(e.path)
                view.history.setdefault(e.path, []).append((idx, "modified"))
            view.files[e.path] = e
        else:
            view.files[e.path] = e
            view._link(e.path)
            added.append(e.path)
            view.history.setdefault(e.path, []).append((idx, "added"))
    layer.added = added
    layer.modified = modified
    layer.deleted = sorted(set(deleted))

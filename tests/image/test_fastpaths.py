"""The shortcuts the hot path takes must give exactly the answers of the plain versions:
glob unions answered from the base name, tar checksums via Adler-32, needles searched in
place across chunk boundaries."""

from __future__ import annotations

import io
import posixpath
import re
import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from podmortem.image.catalog import rules
from podmortem.image.indicators import GlobSet, glob_regex
from podmortem.image.layers import Plan, _hash_file, member_path
from podmortem.image.merge import MergedView
from podmortem.image.model import Entry
from podmortem.image.packages import Canon
from podmortem.image.stream import FileHasher
from podmortem.image.tarstream import TarWalker, _checksum_ok

RULE_GLOBS = sorted(
    {g for r in rules().values() for k in ("paths", "exclude_paths") for g in r.params.get(k) or ()}
)
PIECES = [".sh", ".env", "x.env", ".netrc", "/", "etc", "home", "u", ".docker", "config.json"]
PIECES += [".config", "systemd", "user", "\n", "php7", ".php", "tmp", "opt", ".my.cnf", "cron.d"]
paths = st.lists(st.sampled_from(PIECES), min_size=1, max_size=7).map(lambda p: "/" + "".join(p))


@settings(max_examples=400, deadline=None)
@given(globs=st.lists(st.sampled_from(RULE_GLOBS), min_size=1, max_size=8), path=paths)
def test_globset_matches_like_the_union_regex(globs: list[str], path: str) -> None:
    union = re.compile("^(?:" + "|".join(glob_regex(g) for g in globs) + ")$", re.DOTALL)
    assert GlobSet(globs).match(path) == (union.match(path) is not None)


def test_globset_keeps_the_final_newline_quirk() -> None:
    # ``$`` matches before a trailing newline: a hostile "x.sh\n" is still a .sh file
    assert GlobSet(["**/*.sh"]).match("/tmp/x.sh\n")
    assert GlobSet(["**/.netrc"]).match("/root/.netrc\n")
    assert not GlobSet(["**/*.sh"]).match("/tmp/x.sh\n\n")
    assert not GlobSet(["**/.netrc"]).match("/root/x.netrc")


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=512, max_size=512))
def test_checksum_matches_a_plain_byte_sum(raw: bytes) -> None:
    block = bytearray(raw)
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    assert _checksum_ok(bytes(block))
    block[0] ^= 1
    assert not _checksum_ok(bytes(block))


class _Choppy:
    """A source that returns a few bytes per read: chunks end anywhere."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._b = io.BytesIO(data)
        self._sizes = sizes or [1]
        self._i = 0

    def read(self, n: int = -1, /) -> bytes:
        size = self._sizes[self._i % len(self._sizes)]
        self._i += 1
        return self._b.read(min(n if n > 0 else size, size))


class _Needles:
    def __init__(self, needles: tuple[bytes, ...]) -> None:
        self.needles = needles

    def plan(self, entry: Entry) -> Plan:
        return Plan(needles=self.needles)

    def visit(self, entry: Entry, data: bytes, complete: bool) -> None:
        pass


@settings(max_examples=300, deadline=None)
@given(
    needles=st.lists(
        st.binary(min_size=1, max_size=5).map(lambda b: b or b"a"),
        min_size=1,
        max_size=3,
        unique=True,
    ),
    content=st.binary(max_size=300),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5),
)
def test_streamed_needles_are_found_at_their_first_offset(
    needles: list[bytes], content: bytes, sizes: list[int]
) -> None:
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        info = tarfile.TarInfo("x")
        info.size = len(content)
        info.mode = 0o755
        tf.addfile(info, io.BytesIO(content))
    walker = TarWalker(_Choppy(bio.getvalue(), sizes))
    for m in walker:
        entry = Entry("/x", "file", 0, size=m.size, mode=m.mode)
        hasher = FileHasher()
        _hash_file(walker, entry, _Needles(tuple(needles)), hasher)
        hasher.close()
        want = {n: content.find(n) for n in needles if n in content}
        assert dict(entry.needles_found or ()) == want


def _member_path_plain(name: str) -> tuple[str, bool, bool]:
    path = posixpath.normpath("/" + name)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return path, name.startswith("/"), ".." in name.split("/")


name_parts = st.sampled_from(["", ".", "..", "a", "b.c", "/", "./", "../", "//", "...", ".a", "\n"])


@settings(max_examples=500, deadline=None)
@given(st.lists(name_parts, max_size=8).map("".join))
def test_member_path_fast_path_is_normpath(name: str) -> None:
    assert member_path(name) == _member_path_plain(name)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["/", "a", "bb", "//", "."]), max_size=6).map("".join))
def test_canon_path_is_join_of_dirname_and_basename(path: str) -> None:
    canon = Canon(MergedView())
    want = posixpath.join(canon.dir(posixpath.dirname(path)), posixpath.basename(path))
    assert canon.path(path) == want

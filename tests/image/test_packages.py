"""Package databases (dpkg with status.d, apk, rpm sqlite, Python RECORD) and integrity:
image.integrity.checksum_mismatch (a trojaned binary, merged-/usr and alternatives
resolved), image.integrity.unowned_executable and image.integrity.setid_added."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import struct
from pathlib import Path

from podmortem.image.analysis import Analysis, analyze
from podmortem.image.packages import apk, dpkg, python, rpm

from .builders import LAYOUTS, F, Spec, elf


def _by(a: Analysis, rule: str) -> dict[str, tuple[int | None, int | None]]:
    return {
        str(f.extra["path"]): (f.extra["layer_index"], f.extra["hidden_by_layer"])
        for f in a.findings
        if f.rule_id == rule
    }


def test_dpkg_status_md5sums_and_status_d() -> None:
    files = {
        "/var/lib/dpkg/status": (
            b"Package: a\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\n"
            b"Description: x\n continued line\n\n"
            b"Package: gone\nStatus: deinstall ok config-files\nVersion: 2\n"
        ),
        "/var/lib/dpkg/info/a:amd64.md5sums": b"d41d8cd98f00b204e9800998ecf8427e  usr/bin/a\n",
        "/var/lib/dpkg/status.d/base": b"Package: base-files\nVersion: 12.4\nArchitecture: amd64\n",
        "/var/lib/dpkg/status.d/base.md5sums": b"0123456789abcdef0123456789abcdef  etc/issue\n",
    }
    pkgs = {p.name: p for p in dpkg.parse(files, "debian")}
    assert set(pkgs) == {"a", "base-files"}
    assert pkgs["a"].files["/usr/bin/a"] == ("md5", "d41d8cd98f00b204e9800998ecf8427e")
    assert pkgs["base-files"].files["/etc/issue"][1] == "0123456789abcdef0123456789abcdef"
    assert pkgs["a"].purl == "pkg:deb/debian/a@1.0?arch=amd64"


def test_apk_installed_q1_checksums() -> None:
    content = b"busybox binary"
    q1 = "Q1" + base64.b64encode(hashlib.sha1(content, usedforsecurity=False).digest()).decode()
    db = f"P:busybox\nV:1.36.1-r2\nA:x86_64\nF:bin\nR:busybox\nZ:{q1}\n\nP:musl\nV:1.2\n".encode()
    pkgs = apk.parse(db)
    assert [p.name for p in pkgs] == ["busybox", "musl"]
    assert pkgs[0].files["/bin/busybox"] == (
        "sha1",
        hashlib.sha1(content, usedforsecurity=False).hexdigest(),
    )
    assert pkgs[0].purl == "pkg:apk/alpine/busybox@1.36.1-r2?arch=x86_64"


def rpm_header(entries: list[tuple[int, int, bytes, int]]) -> bytes:
    index = b""
    store = b""
    for tag, typ, data, count in entries:
        if typ == 4:
            store += b"\0" * (-len(store) % 4)
        index += struct.pack(">iIiI", tag, typ, len(store), count)
        store += data
    return struct.pack(">II", len(entries), len(store)) + index + store


def rpmdb(files: dict[str, bytes]) -> bytes:
    strings = lambda *xs: b"".join(x.encode() + b"\0" for x in xs)  # noqa: E731
    dirs = sorted({p.rsplit("/", 1)[0] + "/" for p in files})
    blob = rpm_header(
        [
            (rpm.NAME, 6, strings("tool"), 1),
            (rpm.VERSION, 6, strings("2.1"), 1),
            (rpm.RELEASE, 6, strings("3.fc40"), 1),
            (rpm.ARCH, 6, strings("x86_64"), 1),
            (rpm.FILEDIGESTALGO, 4, struct.pack(">i", 8), 1),
            (rpm.BASENAMES, 8, strings(*[p.rsplit("/", 1)[1] for p in files]), len(files)),
            (rpm.DIRNAMES, 8, strings(*dirs), len(dirs)),
            (
                rpm.DIRINDEXES,
                4,
                b"".join(struct.pack(">i", dirs.index(p.rsplit("/", 1)[0] + "/")) for p in files),
                len(files),
            ),
            (
                rpm.FILEDIGESTS,
                8,
                strings(*[hashlib.sha256(c).hexdigest() for c in files.values()]),
                len(files),
            ),
        ]
    )
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB NOT NULL)")
    con.execute("INSERT INTO Packages (blob) VALUES (?)", (blob,))
    con.commit()
    data = con.serialize()
    con.close()
    out = bytearray(data)
    out[18] = out[19] = 2  # as rpm leaves it: WAL mode
    return bytes(out)


def test_rpm_sqlite_header_parsing() -> None:
    good = elf("tool")
    pkgs = rpm.parse(rpmdb({"/usr/bin/tool": good}), "/var/lib/rpm/rpmdb.sqlite", "fedora")
    (p,) = pkgs
    assert (p.name, p.version, p.arch) == ("tool", "2.1-3.fc40", "x86_64")
    assert p.files["/usr/bin/tool"] == ("sha256", hashlib.sha256(good).hexdigest())
    assert p.purl == "pkg:rpm/fedora/tool@2.1-3.fc40?arch=x86_64"


def test_python_record() -> None:
    content = b"print('hi')\n"
    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
    sp = "/usr/lib/python3/dist-packages"
    files = {
        f"{sp}/demo-1.0.dist-info/METADATA": b"Name: Demo_Pkg\nVersion: 1.0\n",
        f"{sp}/demo-1.0.dist-info/RECORD": f"demo/__init__.py,sha256={digest},12\n"
        f"demo-1.0.dist-info/RECORD,,\n".encode(),
    }
    (p,) = python.parse(files)
    assert p.purl == "pkg:pypi/demo-pkg@1.0"
    assert p.files[f"{sp}/demo/__init__.py"] == ("sha256", hashlib.sha256(content).hexdigest())


def test_trojaned_binaries_in_debian_like_image(compromised_analysis: Analysis) -> None:
    a = compromised_analysis
    mism = _by(a, "image.integrity.checksum_mismatch")
    # md5sums say bin/ls; merged-/usr keeps it at /usr/bin/ls
    assert mism["/usr/bin/ls"] == (2, None)
    # a regular file where update-alternatives keeps a symlink
    assert mism["/etc/alternatives/awk"] == (2, None)
    assert "/usr/bin/dash" not in mism and "/usr/bin/mawk" not in mism
    unowned = _by(a, "image.integrity.unowned_executable")
    assert unowned == {
        "/usr/local/bin/kworker": (2, None),
        "/tmp/.x/bash": (2, None),
        "/opt/miner/xmrig": (3, 4),
    }
    setid = _by(a, "image.integrity.setid_added")
    assert setid == {"/tmp/.x/bash": (2, None)}  # /usr/bin/passwd is packaged: not reported
    assert {p.name for p in a.inventory.packages} == {"coreutils", "passwd", "dash", "mawk"}


def _image(tmp_path: Path, layers: list[list[F]]) -> Analysis:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return analyze(LAYOUTS["oci-archive-zstd"](Spec(layers=layers), tmp_path))


def test_apk_image_trojan_detected_by_sha1(tmp_path: Path) -> None:
    good = elf("BusyBox v1.36.1")
    q1 = "Q1" + base64.b64encode(hashlib.sha1(good, usedforsecurity=False).digest()).decode()
    db = f"P:busybox\nV:1.36.1-r2\nA:x86_64\nF:bin\nR:busybox\nZ:{q1}\n".encode()
    base = [
        F("/bin/busybox", good, mode=0o755),
        F("/lib/apk/db/installed", db),
        F("/etc/os-release", b"ID=alpine\n"),
    ]
    clean = _image(tmp_path / "clean", [base])
    assert not _by(clean, "image.integrity.checksum_mismatch")
    bad = _image(
        tmp_path / "bad", [base, [F("/bin/busybox", elf("BusyBox", "backdoor"), mode=0o755)]]
    )
    assert _by(bad, "image.integrity.checksum_mismatch") == {"/bin/busybox": (1, None)}
    assert bad.inventory.packages[0].purl == "pkg:apk/alpine/busybox@1.36.1-r2?arch=x86_64"


def test_rpm_image_trojan_detected_by_sha256(tmp_path: Path) -> None:
    good = elf("tool")
    base = [
        F("/usr/bin/tool", good, mode=0o755),
        F("/var/lib/rpm/rpmdb.sqlite", rpmdb({"/usr/bin/tool": good})),
        F("/etc/os-release", b'ID="fedora"\n'),
    ]
    bad = _image(tmp_path, [base, [F("/usr/bin/tool", elf("tool", "evil"), mode=0o755)]])
    assert _by(bad, "image.integrity.checksum_mismatch") == {"/usr/bin/tool": (1, None)}
    assert [p.purl for p in bad.inventory.packages] == [
        "pkg:rpm/fedora/tool@2.1-3.fc40?arch=x86_64"
    ]


def test_hidden_package_database_is_not_used(tmp_path: Path) -> None:
    """A database a later layer deletes no longer describes the image."""
    db = b"P:busybox\nV:1\n"
    a = _image(
        tmp_path,
        [
            [F("/lib/apk/db/installed", db), F("/bin/x", elf("x"), mode=0o755)],
            [F("/lib/apk/db/installed", kind="whiteout")],
        ],
    )
    assert a.inventory.packages == []
    assert any(c.kind == "no-package-database" for c in a.caveats)
    assert not _by(a, "image.integrity.unowned_executable")  # nothing to judge ownership by


def test_verify_all_digests_extends_checks_to_data_files(tmp_path: Path) -> None:
    from dataclasses import replace

    from podmortem.image.limits import DEFAULT_LIMITS

    good = b"library data"
    md5 = hashlib.md5(good, usedforsecurity=False).hexdigest()
    layers = [
        [
            F("/usr/lib/libx.so.1", good),
            F("/var/lib/dpkg/status", b"Package: libx\nStatus: install ok installed\nVersion: 1\n"),
            F("/var/lib/dpkg/info/libx.md5sums", f"{md5}  usr/lib/libx.so.1\n".encode()),
        ],
        [F("/usr/lib/libx.so.1", b"library DATA")],
    ]
    p = LAYOUTS["oci-dir-tar"](Spec(layers=layers), tmp_path)
    assert not _by(analyze(p), "image.integrity.checksum_mismatch")  # not an executable
    full = analyze(p, limits=replace(DEFAULT_LIMITS, verify_all_digests=True))
    assert _by(full, "image.integrity.checksum_mismatch") == {"/usr/lib/libx.so.1": (1, None)}


def test_capture_bounds_become_caveats(tmp_path: Path) -> None:
    from dataclasses import replace

    from podmortem.image.limits import DEFAULT_LIMITS

    layers = [[F("/lib/apk/db/installed", b"P:busybox\nV:1\n" * 100)]]
    p = LAYOUTS["oci-dir-tar"](Spec(layers=layers), tmp_path)
    a = analyze(p, limits=replace(DEFAULT_LIMITS, capture_total_bytes=100))
    assert a.inventory.packages == []
    assert any(c.kind == "capture-size" for c in a.caveats)
    assert analyze(p).inventory.packages

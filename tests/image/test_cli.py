"""``podmortem image analyze|diff|extract`` end to end, through the real entry point."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import pytest

from podmortem.case import Case, verify_case
from podmortem.cli import main

from .builders import LAYOUTS, SECRET_VALUES, F, Spec, elf


def run(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["podmortem", *args])
    try:
        main.run()
        rc = 0
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def case_dir(tmp_path: Path) -> Path:
    d = tmp_path / "case"
    Case.init(d, case_id="IR-1", examiner="tester")
    return d


def test_analyze_into_case(  # noqa: PLR0917 - pytest fixtures
    case_dir: Path,
    tmp_path: Path,
    compromised_images: dict[str, Path],
    base_image: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    js, sbom = tmp_path / "r.json", tmp_path / "sbom.json"
    rc, out, err = run(
        [
            "image",
            "analyze",
            str(compromised_images["docker-containerd-gzip"]),
            "--base",
            str(base_image),
            "--case",
            str(case_dir),
            "--json",
            str(js),
            "--sbom",
            str(sbom),
        ],
        capsys,
        monkeypatch,
    )
    assert rc == 0, err
    report = json.loads(js.read_text())
    assert set(report["image"]) >= {"digest", "config_digest", "tags", "platform"}
    layer = report["layers"][4]
    assert set(layer) >= {"index", "diff_id", "created_by", "added", "modified", "deleted"}
    assert layer["deleted"] == ["/opt/miner/xmrig", "/root/.ssh/id_rsa", "/srv/data/token.env"]
    keys = {
        "rule_id",
        "title",
        "severity",
        "techniques",
        "path",
        "layer_index",
        "layer_diff_id",
        "hidden_by_layer",
        "evidence",
    }
    assert all(keys <= set(f) for f in report["findings"])
    hidden = [f for f in report["findings"] if f["path"] == "/root/.ssh/id_rsa"]
    assert hidden and hidden[0]["hidden_by_layer"] == 4 and hidden[0]["layer_index"] == 3
    assert hidden[0]["layer_diff_id"] == report["layers"][3]["diff_id"]
    assert report["image"]["base"]["shared_layers"] == 2
    assert json.loads(sbom.read_text())["bomFormat"] == "CycloneDX"
    assert "HIDDEN by layer 4" in out
    # secrets: never in the report, the terminal, or the case index
    index_text = _index_text(case_dir)
    for secret in SECRET_VALUES:
        assert secret not in js.read_text()
        assert secret not in out
        assert secret not in index_text
    assert verify_case(case_dir).ok
    case = Case.open(case_dir)
    paths = {a.path for a in case.artifacts}
    assert any(p.startswith("artifacts/image/analyzed/") for p in paths)
    assert all(a.sensitive for a in case.artifacts if "/analyzed/" in a.path)
    assert any(p.endswith(".report.json") for p in paths)
    assert any(p.endswith(".cdx.json") for p in paths)
    con = duckdb.connect(str(case.index_path), read_only=True)
    try:
        n = con.execute("SELECT count(*) FROM findings WHERE analysis = 'image'").fetchone()
        files = con.execute(
            "SELECT hidden_by_layer FROM image_files WHERE path = '/root/.ssh/id_rsa'"
            " AND kind = 'file'"
        ).fetchall()
    finally:
        con.close()
    assert n and n[0] == len(report["findings"])
    assert files == [(4,)]
    # analysing the same file again reuses its artifact (write-once store)
    rc, _out, err = run(
        [
            "image",
            "analyze",
            str(compromised_images["docker-containerd-gzip"]),
            "--case",
            str(case_dir),
        ],
        capsys,
        monkeypatch,
    )
    assert rc == 0, err


def _index_text(case_dir: Path) -> str:
    con = duckdb.connect(str(case_dir / "index.duckdb"), read_only=True)
    try:
        parts = []
        for (table,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
            for row in con.execute(f'SELECT * FROM "{table}"').fetchall():  # noqa: S608
                parts.append(repr(row))
        return "\n".join(parts)
    finally:
        con.close()


def test_extract_hidden_file(
    case_dir: Path,
    compromised_images: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    img = str(compromised_images["oci-dir-zstd-nested"])
    rc, out, err = run(
        ["image", "extract", img, "/root/.ssh/id_rsa", "--layer", "3", "--case", str(case_dir)],
        capsys,
        monkeypatch,
    )
    assert rc == 0, err
    rec = next(a for a in Case.open(case_dir).artifacts if "extract" in a.path)
    assert rec.sensitive and rec.error is None
    assert rec.sha256 in out
    assert (case_dir / rec.path).read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY")
    rc, _out, err = run(
        ["image", "extract", img, "/root/.ssh/id_rsa", "--case", str(case_dir)], capsys, monkeypatch
    )
    assert rc == 3 and "not in the merged image" in err and "Traceback" not in err
    assert verify_case(case_dir).ok


def test_diff(
    tmp_path: Path,
    compromised_images: dict[str, Path],
    base_image: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    js = tmp_path / "d.json"
    rc, out, err = run(
        [
            "image",
            "diff",
            str(base_image),
            str(compromised_images["docker-legacy"]),
            "--json",
            str(js),
        ],
        capsys,
        monkeypatch,
    )
    assert rc == 0, err
    d = json.loads(js.read_text())
    changed = {c["path"]: c["changes"] for c in d["changed"]}
    assert changed["/usr/bin/ls"] == ["content"]  # same size trojans still differ by hash
    assert changed["/etc/alternatives/awk"][0] == "type"
    assert "/etc/ld.so.preload" in {x["path"] for x in d["added"]}
    assert d["shared_base_layers"] == 2
    assert "~ /usr/bin/ls" in out


def test_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "junk.tar").write_bytes(b"not an image at all" * 100)
    rc, _out, err = run(["image", "analyze", str(tmp_path / "junk.tar")], capsys, monkeypatch)
    assert rc == 3
    assert err.count("\n") == 1 and err.startswith("podmortem: error:")
    monkeypatch.setenv("PODMORTEM_DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    rc, _out, err = run(["image", "analyze", "docker://busybox:latest"], capsys, monkeypatch)
    assert rc == 4 and "not reachable" in err and err.count("\n") == 1


def test_terminal_output_is_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    evil = "/tmp/\x1b]0;pwned\x07\x1b[31m[bold]kworker"
    img = LAYOUTS["oci-dir-gzip"](Spec(layers=[[F(evil, elf("x"), mode=0o755)]]), tmp_path)
    rc, out, err = run(["image", "analyze", str(img)], capsys, monkeypatch)
    assert rc == 0, err
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b" in out


def test_layer_history_is_redacted_everywhere(tmp_path: Path) -> None:
    from podmortem.image.analysis import analyze

    spec = Spec(
        layers=[[F("/a", b"a")]],
        created_by=["RUN /bin/sh -c mysql -uroot --password hunter2secret < /init.sql"],
    )
    a = analyze(LAYOUTS["docker-oci"](spec, tmp_path))
    assert "hunter2secret" not in json.dumps([x.to_dict() for x in a.layers])
    assert "<redacted sha256:" in a.layers[0].created_by
    assert any(f.rule_id == "image.secret.history" for f in a.findings)


def test_layout_directories_in_a_case_never_mix(
    case_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one = LAYOUTS["oci-dir-gzip"](Spec(layers=[[F("/etc/one", b"1")]]), tmp_path / "a")
    two = LAYOUTS["oci-dir-gzip"](Spec(layers=[[F("/etc/two", b"2")]]), tmp_path / "b")
    outs = []
    for img in (one, one, two):
        js = tmp_path / f"r{len(outs)}.json"
        rc, _out, err = run(
            ["image", "analyze", str(img), "--case", str(case_dir), "--json", str(js)],
            capsys,
            monkeypatch,
        )
        assert rc == 0, err
        outs.append(json.loads(js.read_text()))
    assert outs[0]["image"]["config_digest"] == outs[1]["image"]["config_digest"]
    assert outs[2]["layers"][0]["added"] == ["/etc/two"]  # not the first layout's files
    folders = {
        a.path.split("/")[3] for a in Case.open(case_dir).artifacts if "/analyzed/" in a.path
    }
    assert folders == {"oci", "oci.2"}
    assert verify_case(case_dir).ok


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("analyze", ["--base", "--case", "--json", "--yara", "--sbom", "--tag", "--platform"]),
        ("diff", ["--json", "--case"]),
        ("extract", ["--case", "--layer"]),
    ],
)
def test_help_renders(
    command: str,
    options: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    rc, out, err = run(["image", command, "--help"], capsys, monkeypatch)
    assert rc == 0, err
    for opt in options:
        assert opt in out

"""Image analysis against real runtimes: an image built offline with ``docker build`` and
one built by Podman, both exported through the runtime's API by ``podmortem image analyze
docker://`` / ``podman://``, and containerd's copy of the test base via ``containerd://``.

The Dockerfile plants indicators in three layers and deletes one file in a fourth, so the
test checks layer attribution, whiteouts from a real builder and diff_id verification.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

try:
    from . import engines
except ImportError:  # rootdir-less import
    import engines  # type: ignore[no-redef]

if TYPE_CHECKING:
    import docker

DOCKERFILE = """\
FROM {base}
RUN mkdir -p /root/.ssh && echo 'ssh-ed25519 AAAAC3Nz attacker@x' > /root/.ssh/authorized_keys \\
    && echo /lib/x.so > /etc/ld.so.preload
RUN echo 'DB_PASSWORD=hunter2-secret' > /tmp/secret.env && mkdir /tmp/.x \\
    && cp /bin/busybox /tmp/.x/sh && chmod 4755 /tmp/.x/sh
RUN rm /tmp/secret.env
"""


def _run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    from podmortem.cli import main

    monkeypatch.setattr(sys, "argv", ["podmortem", *args])
    try:
        main.run()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _build(client: docker.DockerClient, base: str, tag: str, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    client.images.build(path=str(ctx), tag=tag, rm=True, forcerm=True)


def _check(report: dict, n_base: int) -> None:  # type: ignore[type-arg]
    layers = report["layers"]
    assert len(layers) == n_base + 3
    assert all(x["diff_id"] == x["declared_diff_id"] for x in layers), "diff_id verification"
    assert all(x["read_complete"] for x in layers)
    found = {(f["rule_id"], f["path"]): f for f in report["findings"]}
    preload = found[("image.persistence.ld_so_preload", "/etc/ld.so.preload")]
    assert preload["layer_index"] == n_base and preload["hidden_by_layer"] is None
    assert (
        found[("image.persistence.authorized_keys", "/root/.ssh/authorized_keys")]["layer_index"]
        == n_base
    )
    setuid = found[("image.privilege.setid_shell", "/tmp/.x/sh")]
    assert setuid["layer_index"] == n_base + 1
    secret = found[("image.secret.assignment", "/tmp/secret.env")]
    assert (secret["layer_index"], secret["hidden_by_layer"]) == (n_base + 1, n_base + 2)
    assert "/tmp/secret.env" in layers[n_base + 2]["deleted"]
    assert "hunter2-secret" not in json.dumps(report)


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_built_image_analyses_correctly(
    engine: str,
    request: pytest.FixtureRequest,
    engine_endpoints: engines.EngineEndpoints,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client: docker.DockerClient = request.getfixturevalue(f"{engine}_client")
    tag = f"podmortem-test/{engines.unique_name('img')}:1"
    _build(client, engine_endpoints.image, tag, tmp_path)
    try:
        monkeypatch.setenv("PODMORTEM_DOCKER_HOST", engine_endpoints.docker_host)
        monkeypatch.setenv("PODMORTEM_PODMAN_SOCK", engine_endpoints.podman_sock)
        from podmortem.case import Case, verify_case

        case = tmp_path / "case"
        Case.init(case, case_id="IT", examiner="ci")
        out = tmp_path / "r.json"
        rc = _run_cli(
            ["image", "analyze", f"{engine}://{tag}", "--case", str(case), "--json", str(out)],
            monkeypatch,
        )
        assert rc == 0
        report = json.loads(out.read_text())
        base = client.images.get(engine_endpoints.image)
        n_base = len(base.attrs["RootFS"]["Layers"])
        _check(report, n_base)
        assert any(t.endswith(tag) for t in report["image"]["tags"])
        assert verify_case(case).ok
        exported = [a for a in Case.open(case).artifacts if a.source == "api"]
        assert len(exported) == 1 and exported[0].sensitive
    finally:
        client.images.remove(tag, force=True)


def test_containerd_image_export(
    engine_endpoints: engines.EngineEndpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = engine_endpoints.cri_endpoint.removeprefix("unix://")
    if not Path(sock).exists():
        engines.engine_unavailable("containerd", f"no socket at {sock}")
    monkeypatch.setenv("PODMORTEM_CONTAINERD_ADDRESS", sock)
    monkeypatch.setenv("PODMORTEM_CONTAINERD_NAMESPACE", "k8s.io")
    out = tmp_path / "r.json"
    rc = _run_cli(
        [
            "image",
            "analyze",
            f"containerd://docker.io/{engine_endpoints.image}",
            "--json",
            str(out),
        ],
        monkeypatch,
    )
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["layers"] and all(x["diff_id"] == x["declared_diff_id"] for x in report["layers"])
    assert report["image"]["digest"]  # an OCI export names its manifest
    # busybox applets link to one binary; none of it is flagged as hostile
    assert not [f for f in report["findings"] if f["rule_id"].startswith("image.archive.")]

"""Acquisition against real Docker, Podman and containerd (CRI) containers with planted
state. Engines come from ``scripts/engines.sh start``; the fixtures are the harness's.

Each test checks that the planted evidence is found, that the target keeps running and is
unchanged (the runtime's own diff is identical before and after), and that the case
verifies.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from podmortem.acquire import Options, acquire
from podmortem.acquire.runtimes import Endpoints, open_runtime
from podmortem.acquire.target import parse_target
from podmortem.case import Case, verify_case

pytestmark = pytest.mark.integration

PORT = 4444
PODMORTEM = str(Path(sys.executable).parent / "podmortem")
PLANT = (
    "cp /bin/busybox /tmp/nc; /tmp/nc -ll -p {port} -e /bin/cat & sleep 0.3; rm /tmp/nc; "
    "echo 'evil:x:0:0::/root:/bin/sh' >> /etc/passwd; echo staged > /dev/shm/payload; "
    "touch /tmp/.planted; exec sleep 3600"
)
EXPECTED_RULES = {
    "acquire.deleted-executable",
    "acquire.listener-from-deleted-binary",
    "acquire.secret-in-environment",
    "acquire.ram-backed-file",
    "acquire.uid0-account",
    "acquire.persistence-changed",
}


def _endpoints(ep: Any) -> Endpoints:
    return Endpoints(docker=ep.docker_host, podman=f"unix://{ep.podman_sock}", cri=ep.cri_endpoint)


def _acquire(tmp: Path, targets: list[str], ep: Any, **opts: Any) -> dict[str, Any]:
    case = Case.init(tmp / "case", case_id="IT-1", examiner="pytest")
    endpoints = _endpoints(ep)
    return acquire(
        case,
        [parse_target(t) for t in targets],
        lambda r: open_runtime(r, endpoints),
        Options(**opts),
    )


def _diff(container: Any) -> list[tuple[str, int]]:
    return sorted((c["Path"], c["Kind"]) for c in container.diff() or [])


def _wait_planted(container: Any) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if any(c["Path"] == "/tmp/.planted" for c in container.diff() or []):
            return
        time.sleep(0.1)
    raise TimeoutError("planted state did not appear")


def _check_planted(doc: dict[str, Any], busybox_sha: str | None = None) -> None:
    rules = {f["rule_id"] for f in doc["findings"]}
    missing = EXPECTED_RULES - rules
    assert not missing, (missing, doc["caveats"])
    nc = [p for p in doc["processes"] if p["exe_deleted"]]
    assert len(nc) == 1 and nc[0]["exe"] == "/tmp/nc (deleted)"
    if busybox_sha:
        assert nc[0]["exe_sha256"] == busybox_sha
    lis = [s for s in doc["sockets"] if s["local_port"] == PORT and s["state"] == "LISTEN"]
    assert lis and lis[0]["pid"] == nc[0]["pid"]
    changes = {c["path"]: c for c in doc["fs_changes"]}
    assert changes["/etc/passwd"]["change"] == "modified" and changes["/etc/passwd"]["sha256"]
    assert "hunter2" not in json.dumps(doc["findings"])
    arts = {a["path"]: a for a in doc["artifacts"]}
    assert any(p.endswith("/t4/upperdir.tar") for p in arts)
    assert any(p.endswith("/t1/exe/" + f"{nc[0]['pid']}-nc") for p in arts), sorted(arts)


def _busybox_sha(container: Any) -> str:
    bits, _ = container.get_archive("/bin/busybox")
    with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
        member = tar.extractfile("busybox")
        assert member is not None
        return hashlib.sha256(member.read()).hexdigest()


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_planted_state_on_docker_and_podman(
    engine: str, request: pytest.FixtureRequest, engine_endpoints: Any, tmp_path: Path
) -> None:
    make: Callable[..., Any] = request.getfixturevalue(f"make_{engine}_container")
    c = make(command=["sh", "-c", PLANT.format(port=PORT)], environment={"DB_PASSWORD": "hunter2"})
    _wait_planted(c)
    diff_before = _diff(c)
    c.reload()
    pid_before = c.attrs["State"]["Pid"]
    doc = _acquire(tmp_path, [f"{engine}://{c.name}"], engine_endpoints)
    _check_planted(doc, _busybox_sha(c))
    assert doc["complete"], doc["caveats"]
    c.reload()
    assert c.status == "running" and c.attrs["State"]["Pid"] == pid_before
    assert _diff(c) == diff_before  # nothing written into the target
    report = verify_case(tmp_path / "case")
    assert report.ok, report.problems
    kinds = {x["kind"] for x in doc["caveats"]}
    assert "runtime-diff-mismatch" not in kinds, doc["caveats"]


def test_cli_on_docker_writes_the_json_and_a_verifiable_case(
    make_docker_container: Callable[..., Any], engine_endpoints: Any, tmp_path: Path
) -> None:
    c = make_docker_container(environment={"API_TOKEN": "t0k3n"})
    out = tmp_path / "run.json"
    r = subprocess.run(
        [
            PODMORTEM,
            "acquire",
            f"docker://{c.name}",
            "--case",
            str(tmp_path / "case"),
            "--json",
            str(out),
            "--docker-host",
            engine_endpoints.docker_host,
            "--budget",
            "20",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["complete"] and doc["processes"][0]["ns_pid"] == 1
    assert "secret-in-environment" in " ".join(f["rule_id"] for f in doc["findings"])
    assert (
        subprocess.run(
            [PODMORTEM, "case", "verify", str(tmp_path / "case")],
            check=False,
            capture_output=True,
        ).returncode
        == 0
    )


def _no_shell_image(client: Any, tag: str) -> str:
    """An image holding one static binary named /sleep (busybox: argv[0] picks the applet):
    no shell, no ps, like a distroless image."""
    busybox = Path("/bin/busybox").read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("sleep")
        info.size, info.mode = len(busybox), 0o755
        tar.addfile(info, io.BytesIO(busybox))
        for d in ("tmp", "dev", "proc", "sys", "etc"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(ti)
    client.api.import_image_from_data(
        buf.getvalue(), repository=tag.split(":", maxsplit=1)[0], tag=tag.split(":")[1]
    )
    return tag


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_container_without_shell(
    engine: str, request: pytest.FixtureRequest, engine_endpoints: Any, tmp_path: Path
) -> None:
    if not Path("/bin/busybox").is_file():
        pytest.skip("needs /bin/busybox to build a shell-less image")
    client = request.getfixturevalue(f"{engine}_client")
    image = _no_shell_image(client, "podmortem-test/noshell:latest")
    import engines  # the harness's helpers (its folder is on sys.path, see conftest.py)

    c = engines.run_sleeping_container(client, image, command=["/sleep", "3600"])
    try:
        doc = _acquire(tmp_path, [f"{engine}://{c.name}"], engine_endpoints)
        kinds = {x["kind"] for x in doc["caveats"]}
        assert "in-container-view-unavailable" in kinds
        assert [p["cmdline"] for p in doc["processes"]] == [["/sleep", "3600"]]
        assert doc["targets"][0]["node_view"]
        assert verify_case(tmp_path / "case").ok
        c.reload()
        assert c.status == "running"
    finally:
        engines.remove_container(c)
        if engine == "podman":
            engines.kill_leftover_conmon(str(c.id))


def test_planted_state_on_containerd_cri(
    make_cri_pod: Callable[..., Any], engine_endpoints: Any, tmp_path: Path
) -> None:
    pod = make_cri_pod(
        command=["sh", "-c", "export DB_PASSWORD=hunter2; " + PLANT.format(port=PORT + 1)]
    )
    time.sleep(1.0)
    doc = _acquire(tmp_path, [f"cri://{pod.container_id}"], engine_endpoints)
    rules = {f["rule_id"] for f in doc["findings"]}
    assert rules >= EXPECTED_RULES, (EXPECTED_RULES - rules, doc["caveats"])
    lis = [s for s in doc["sockets"] if s["local_port"] == PORT + 1 and s["state"] == "LISTEN"]
    nc = [p for p in doc["processes"] if p["exe_deleted"]]
    assert lis and nc and lis[0]["pid"] == nc[0]["pid"]
    ident = doc["targets"][0]["identity"]
    assert (
        ident["container_id"] == pod.container_id and ident["pod"]["sandbox_id"] == pod.sandbox_id
    )
    kinds = {x["kind"] for x in doc["caveats"]}
    assert "host-network-namespace" in kinds  # the harness's pods use the node network
    assert verify_case(tmp_path / "case").ok


def test_ten_targets_in_parallel_within_budget(
    make_docker_container: Callable[..., Any], engine_endpoints: Any, tmp_path: Path
) -> None:
    cs = [make_docker_container() for _ in range(10)]
    t = time.monotonic()
    doc = _acquire(tmp_path, [f"docker://{c.name}" for c in cs], engine_endpoints)
    assert time.monotonic() - t < 20
    assert doc["complete"] and len(doc["targets"]) == 10
    assert verify_case(tmp_path / "case").ok


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_checkpoint_and_memory_leave_the_target_running(
    engine: str, request: pytest.FixtureRequest, engine_endpoints: Any, tmp_path: Path
) -> None:
    make: Callable[..., Any] = request.getfixturevalue(f"make_{engine}_container")
    c = make()
    c.reload()
    pid = c.attrs["State"]["Pid"]
    doc = _acquire(
        tmp_path, [f"{engine}://{c.name}"], engine_endpoints, checkpoint=True, memory=True
    )
    arts = {a["path"].rsplit("/t2/", 1)[-1]: a for a in doc["artifacts"] if "/t2/" in a["path"]}
    assert arts[f"memory/{pid}.mem"]["size"] > 0 and arts[f"memory/{pid}.mem"]["sensitive"]
    if shutil.which("criu"):
        assert arts["checkpoint.tar"]["size"] > 0, doc["caveats"]
    else:  # the absence of CRIU is reported, not fatal
        assert any("CRIU" in x["message"] for x in doc["caveats"])
    c.reload()
    assert c.status == "running" and c.attrs["State"]["Pid"] == pid
    assert verify_case(tmp_path / "case").ok


def test_cri_checkpoint_falls_back_to_containerd_task_checkpoint(
    make_cri_pod: Callable[..., Any], cri_client: Any, engine_endpoints: Any, tmp_path: Path
) -> None:
    pod = make_cri_pod()
    doc = _acquire(tmp_path, [f"cri://{pod.container_id}"], engine_endpoints, checkpoint=True)
    arts = {a["path"].rsplit("/", 1)[-1]: a for a in doc["artifacts"]}
    if shutil.which("criu") and shutil.which("ctr"):
        assert arts["checkpoint.tar"]["size"] > 0, doc["caveats"]
        with tarfile.open(tmp_path / "case" / arts["checkpoint.tar"]["path"]) as tar:
            assert "checkpoint/inventory.img" in tar.getnames()
    else:
        assert any("checkpoint" in x["message"] for x in doc["caveats"])
    assert cri_client.container_status(pod.container_id).state == "CONTAINER_RUNNING"
    assert verify_case(tmp_path / "case").ok


TROJANED_PS = (
    "mkdir /tmp/hideme && cp /bin/busybox /tmp/hideme/sleep && /tmp/hideme/sleep 3000 & "
    "rm /bin/ps; "
    "printf '#!/bin/sh\\n/bin/busybox ps \"$@\" | /bin/busybox grep -v hideme\\n' > /bin/ps; "
    "chmod +x /bin/ps; touch /tmp/.planted; exec sleep 3600"
)


def test_process_hidden_by_a_trojaned_ps_on_docker(
    make_docker_container: Callable[..., Any], engine_endpoints: Any, tmp_path: Path
) -> None:
    c = make_docker_container(command=["sh", "-c", TROJANED_PS])
    _wait_planted(c)
    doc = _acquire(tmp_path, [f"docker://{c.name}"], engine_endpoints)
    hidden = [f for f in doc["findings"] if f["rule_id"] == "acquire.hidden-process"]
    assert len(hidden) == 1, doc["findings"]
    proc = next(p for p in doc["processes"] if p["pid"] == hidden[0]["extra"]["host_pid"])
    assert proc["cmdline"] == ["/tmp/hideme/sleep", "3000"]
    # The container's own ps really did leave it out.
    ps = next(a for a in doc["artifacts"] if a["path"].endswith("in-container/ps.txt"))
    text = (tmp_path / "case" / ps["path"]).read_text()
    assert "sleep 3600" in text and "hideme" not in text

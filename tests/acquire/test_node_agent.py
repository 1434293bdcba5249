"""The node-agent Job, end to end: ``podmortem acquire k8s://... --node-agent IMAGE`` from
"off the node" (no local CRI given), against the test double of the API server, whose Jobs
really run on the real containerd (see ``k8s_test_apiserver.py``). The agent image is built
here: an empty rootfs that runs the host's Python and this podmortem checkout through
read-only bind mounts the double adds for that image.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_test_apiserver import ApiServerDouble

import podmortem
from podmortem.acquire.cri_proto import CACHE_ENV, PROTO_ENV, find_cri_proto
from podmortem.case import verify_case
from podmortem.errors import AcquisitionError, IntegrityError

NS = "podmortem-test"
AGENT_IMAGE = "podmortem-test/node-agent:latest"
PLANT = (
    "export DB_PASSWORD=hunter2; cp /bin/busybox /tmp/nc; /tmp/nc -ll -p 4447 -e /bin/cat & "
    "sleep 0.3; rm /tmp/nc; echo 'evil:x:0:0::/root:/bin/sh' >> /etc/passwd; "
    "echo staged > /dev/shm/payload; echo started; exec sleep 3600"
)
REPO = Path(podmortem.__file__).resolve().parents[2]
RBAC = REPO / "deploy" / "rbac" / "podmortem-acquire.yaml"
AGENT_NS = "podmortem"


def _rbac() -> dict[str, list[dict[str, Any]]]:
    """Rules by role name, from the shipped manifest."""
    return {
        d["metadata"]["name"]: d["rules"]
        for d in yaml.safe_load_all(RBAC.read_text())
        if d and d["kind"] in ("Role", "ClusterRole")
    }


def _grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def _attributes(method: str, path: str) -> tuple[str, str, str, str]:
    """An API request as RBAC sees it: (namespace, group, resource[/subresource], verb)."""
    parts = [p for p in path.split("/") if p]
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    ns, resource = rest[1], rest[2]
    named = len(rest) > 3
    if len(rest) > 4:
        resource += "/" + rest[4]
    verb = {
        "POST": "create",
        "DELETE": "delete",
        "PATCH": "patch",
        "GET": "get" if named else "list",
    }[method]
    return ns, group, resource, verb


def _layer(entries: list[tuple[str, str, str]]) -> bytes:
    """A tar layer from (name, kind, link target) entries: kind 'dir' or 'symlink'."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, target in entries:
            ti = tarfile.TarInfo(name)
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            else:
                ti.type, ti.linkname = tarfile.SYMTYPE, target
            tar.addfile(ti)
    return buf.getvalue()


def import_agent_image(endpoint: str, tmp: Path, cache_root: Path) -> str:
    """The test node-agent image: merged-/usr symlinks and empty folders, nothing else; its
    environment finds the venv's ``podmortem``, the CRI proto and its compiled cache (all
    bind-mounted read-only by the double)."""
    ctr = shutil.which("ctr")
    if ctr is None:
        pytest.skip("needs ctr")
    layer = _layer(
        [
            *((d, "dir", "") for d in ("usr", "etc", "tmp", "proc", "sys", "dev", "root", "run")),
            ("bin", "symlink", "usr/bin"),
            ("sbin", "symlink", "usr/sbin"),
            ("lib", "symlink", "usr/lib"),
            ("lib64", "symlink", "usr/lib64"),
        ]
    )
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    env = [
        f"PATH={Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
        f"{PROTO_ENV}={find_cri_proto()}",
        f"{CACHE_ENV}={cache_root}",
        "PYTHONDONTWRITEBYTECODE=1",
    ]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": env},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    archive = tmp / "node-agent-image.tar"
    manifest = [{"Config": "config.json", "RepoTags": [AGENT_IMAGE], "Layers": ["layer.tar"]}]
    with tarfile.open(archive, "w") as tar:
        for name, blob in (
            ("layer.tar", layer),
            ("config.json", config),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            ti = tarfile.TarInfo(name)
            ti.size = len(blob)
            tar.addfile(ti, io.BytesIO(blob))
    address = endpoint.removeprefix("unix://")
    subprocess.run(
        [ctr, "--address", address, "-n", "k8s.io", "images", "import", str(archive)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return AGENT_IMAGE


def _image_mounts(cache_root: Path) -> list[str]:
    """What the test image borrows from the host, read-only: /usr, the Python installation
    the venv is built on, this checkout (with its venv), the CRI proto and its compiled
    cache."""
    return [
        "/usr",
        str(Path(sys.base_prefix).resolve()),
        str(REPO),
        str(find_cri_proto().resolve().parent),
        str(cache_root),
    ]


@pytest.fixture
def agent_env(cri_client: Any, engine_endpoints: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The double (Jobs run on the real containerd) plus the node facts the agent needs:
    containerd's root and the CRI socket of this test node."""
    import engines

    from podmortem.acquire.cri_proto import compile_cri_proto

    cache_root = compile_cri_proto(find_cri_proto()).parent.parent  # <root>/cri/<digest>
    image = import_agent_image(engine_endpoints.cri_endpoint, tmp_path, cache_root)
    status = cri_client.call("Status", cri_client.pb2.StatusRequest(verbose=True))
    root = json.loads(status.info["config"])["containerdRootDir"]
    with ApiServerDouble(
        cri_client,
        tmp_path,
        image_ref=engines.cri_image_ref,
        image_mounts={image: _image_mounts(cache_root)},
    ) as api:
        yield {
            "api": api,
            "image": image,
            "containerd_root": root,
            "cri_socket": engine_endpoints.cri_endpoint.removeprefix("unix://"),
        }
    # Every call podmortem made is granted by the shipped RBAC: the operator Role in the
    # agent namespace, the acquirer ClusterRole elsewhere.
    # (The operator Role goes into whichever namespace --node-agent-namespace names.)
    roles = _rbac()
    calls = [
        _attributes(m, p)
        for m, p in api.requests
        if p.startswith(("/api/v1/namespaces/", "/apis/"))
    ]
    agent_namespaces = {ns for ns, _g, resource, _v in calls if resource == "jobs"}
    for ns, group, resource, verb in calls:
        role = "podmortem-node-agent-operator" if ns in agent_namespaces else "podmortem-acquirer"
        assert (group, resource, verb) in _grants(roles[role]), (ns, resource, verb, role)


def _run(
    env: dict[str, Any],
    pod: Any,
    case: Path,
    *,
    image: str | None = None,
    budget: float = 40,
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "podmortem"),
            "acquire",
            f"k8s://{NS}/{pod.pod_name}",
            "--case",
            str(case),
            "--json",
            str(case.parent / f"{case.name}.json"),
            "--kubeconfig",
            str(env["api"].kubeconfig),
            "--budget",
            str(budget),
            "--node-agent",
            image or env["image"],
            "--node-agent-cri-socket",
            env["cri_socket"],
            "--node-agent-mount",
            env["containerd_root"],
            "--node-agent-mount",
            str(pod.log_directory.parent),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=budget + 60,
        check=False,
        # Off the node: no local CRI socket (the default path does not exist here).
        env={**os.environ, "CONTAINER_RUNTIME_ENDPOINT": "unix:///nonexistent/cri.sock"},
    )


def _jobs_gone(api: ApiServerDouble, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not api.jobs and not api.job_pods:
            return True
        time.sleep(0.1)
    return False


def _agent_sandboxes(cri: Any, api: ApiServerDouble) -> list[str]:
    """The Job pod sandboxes this double started that containerd still has."""
    assert api.sandboxes, "no Job pod was ever started: the check would be empty"
    pb2 = cri.pb2
    items = cri.call("ListPodSandbox", pb2.ListPodSandboxRequest()).items
    return [sb.id for sb in items if sb.id in api.sandboxes]


def _wait_ready(cri: Any, pod: Any) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        st = cri.container_status(pod.container_id, verbose=False)
        if st.state == "CONTAINER_RUNNING":
            log = Path(st.log_path)
            if log.exists() and b"started" in log.read_bytes():
                return
        time.sleep(0.1)
    raise AssertionError("target did not get ready")


@pytest.mark.integration
def test_node_agent_brings_the_node_view_back(
    make_cri_pod: Callable[..., Any], agent_env: dict[str, Any], cri_client: Any, tmp_path: Path
) -> None:
    pod = make_cri_pod(command=["sh", "-c", PLANT], name="agent-target")
    _wait_ready(cri_client, pod)
    api: ApiServerDouble = agent_env["api"]
    case = tmp_path / "case"
    r = _run(agent_env, pod, case)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((tmp_path / "case.json").read_text())
    target = doc["targets"][0]
    # Node-side evidence that the in-container view cannot have: host PIDs read from the
    # node's /proc, the deleted binary's hash through /proc/<pid>/exe, the upperdir walk.
    assert target["node_view"] is True, doc["caveats"]
    rules = {f["rule_id"] for f in doc["findings"]}
    assert {
        "acquire.deleted-executable",
        "acquire.listener-from-deleted-binary",
        "acquire.secret-in-environment",
        "acquire.uid0-account",
        "acquire.ram-backed-file",
    } <= rules, doc["caveats"]
    host_pids = {p["pid"] for p in doc["processes"]}
    ns_pids = {p["ns_pid"] for p in doc["processes"]}
    assert 1 in ns_pids and any(pid > 1 for pid in host_pids)
    assert any(p["exe_deleted"] and p["exe_sha256"] for p in doc["processes"])
    assert any(c["path"] == "/etc/passwd" for c in doc["fs_changes"])
    assert not {c["kind"] for c in doc["caveats"]} & {"node-agent-failed", "in-container-only"}
    # The agent's own case, imported whole: its custody chain verifies where it now is.
    (agent_case,) = case.glob("artifacts/acquisitions/*/targets/*/node-agent/case")
    own = verify_case(agent_case)
    assert own.ok, own.problems
    transfer = json.loads(next(agent_case.parent.glob("transfer.json")).read_text())
    assert transfer["transfer_sha256"] == transfer["transfer_sha256_on_node"]
    assert transfer["agent_custody_head"] == own.custody_head
    assert any(a["path"].endswith("t1/processes.json") for a in doc["artifacts"])
    # Evidence references point at the imported copies.
    ev = next(f for f in doc["findings"] if f["rule_id"] == "acquire.deleted-executable")
    assert all((case / "artifacts" / e).exists() for e in ev["evidence"])
    report = verify_case(case)
    assert report.ok, report.problems
    custody = [json.loads(x) for x in (case / "custody.jsonl").read_text().splitlines()]
    actions = [x["action"] for x in custody]
    for a in ("node_agent_job_created", "node_agent_case_imported", "node_agent_job_deleted"):
        assert a in actions
    # The Job was deleted with its pod (Background), and its sandbox is gone from containerd.
    assert [p for (_ns, _n, p) in api.deleted_jobs] == ["Background"]
    assert _jobs_gone(api) and not _agent_sandboxes(cri_client, api)
    # The target is untouched: still running, never restarted.
    st = cri_client.container_status(pod.container_id, verbose=False)
    assert st.state == "CONTAINER_RUNNING"


def _flip_artifact_byte(work: Path) -> str:
    """One byte of one artifact changes (the custody log still names its old hash)."""
    victim = next(work.glob("case/artifacts/acquisitions/*/targets/*/t1/processes.json"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    return "fails verification"


def _rewrite_examiner(work: Path) -> str:
    """The manifest's examiner is rewritten: nothing in the custody chain covers that field,
    the seal taken on the node does."""
    manifest = work / "case" / "case.json"
    doc = json.loads(manifest.read_text())
    doc["examiner"] = "someone else"
    manifest.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return "differs from the agent's seal"


def _plant_symlink(work: Path) -> str:
    """A link to the node's shadow file appears in the case (a compromised node's trick to
    make the unpacker read or write outside the case)."""
    (work / "case" / "artifacts" / "shadow").symlink_to("/etc/shadow")
    return "non-file"


@pytest.mark.integration
@pytest.mark.parametrize("tamper", [_flip_artifact_byte, _rewrite_examiner, _plant_symlink])
def test_tampered_transfer_is_an_integrity_failure(
    make_cri_pod: Callable[..., Any],
    agent_env: dict[str, Any],
    cri_client: Any,
    tmp_path: Path,
    tamper: Callable[[Path], str],
) -> None:
    pod = make_cri_pod(command=["sh", "-c", PLANT], name="agent-tamper")
    _wait_ready(cri_client, pod)
    api: ApiServerDouble = agent_env["api"]
    tampered: list[str] = []

    def corrupt(ns: str, name: str, cmd: list[str]) -> None:
        # Just before the transfer, after the agent sealed its case, the case changes on
        # the node.
        if ns == "podmortem" and any("tar -cf" in c for c in cmd):
            tampered.append(tamper(api.empty_dir(ns, name, "work")))

    api.exec_hooks.append(corrupt)
    case = tmp_path / "case"
    r = _run(agent_env, pod, case)
    assert tampered, r.stderr[-2000:]
    assert r.returncode == IntegrityError.exit_code, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "failed verification" in r.stderr
    doc = json.loads((tmp_path / "case.json").read_text())
    kinds = {c["kind"] for c in doc["caveats"]}
    assert "node-agent-integrity" in kinds and not doc["targets"][0]["node_view"]
    rejected = next(c for c in doc["caveats"] if c["kind"] == "node-agent-integrity")
    assert tampered[0] in rejected["message"]
    # Nothing of the transfer is in the case as if it were good...
    assert not list(case.glob("artifacts/**/node-agent/case"))
    assert not [p for p in doc["processes"] if p["exe_sha256"]]
    # ...the rejection is on record, the in-container fallback ran, and the case verifies.
    actions = [json.loads(x)["action"] for x in (case / "custody.jsonl").read_text().splitlines()]
    assert "node_agent_case_rejected" in actions and "node_agent_case_imported" not in actions
    assert "in-container-only" in kinds
    assert verify_case(case).ok
    assert _jobs_gone(api) and not _agent_sandboxes(cri_client, api)
    assert not list(tmp_path.glob(".podmortem-node-agent-*"))  # staging removed


@pytest.mark.integration
def test_truncated_transfer_is_an_integrity_failure(
    make_cri_pod: Callable[..., Any], agent_env: dict[str, Any], cri_client: Any, tmp_path: Path
) -> None:
    pod = make_cri_pod(name="agent-cut")
    _wait_ready_sleep(cri_client, pod)
    api: ApiServerDouble = agent_env["api"]
    api.cut_exec_after = lambda ns, name, cmd: (
        1_000_000 if ns == "podmortem" and any("tar -cf" in c for c in cmd) else None
    )
    case = tmp_path / "case"
    r = _run(agent_env, pod, case)
    assert r.returncode == IntegrityError.exit_code, r.stderr[-3000:]
    doc = json.loads((tmp_path / "case.json").read_text())
    assert "node-agent-integrity" in {c["kind"] for c in doc["caveats"]}
    assert not list(case.glob("artifacts/**/node-agent/case"))
    assert verify_case(case).ok
    assert _jobs_gone(api) and not _agent_sandboxes(cri_client, api)


def _wait_ready_sleep(cri: Any, pod: Any) -> None:
    deadline = time.monotonic() + 20
    while cri.container_status(pod.container_id, verbose=False).state != "CONTAINER_RUNNING":
        if time.monotonic() > deadline:
            raise AssertionError("target did not start")
        time.sleep(0.1)


@pytest.mark.integration
def test_failing_agent_image_is_exit_5_with_the_fallback(
    make_cri_pod: Callable[..., Any],
    agent_env: dict[str, Any],
    cri_client: Any,
    engine_endpoints: Any,
    tmp_path: Path,
) -> None:
    # The busybox image has a shell but no podmortem: the agent's command fails at once.
    pod = make_cri_pod(command=["sh", "-c", PLANT], name="agent-badimage")
    _wait_ready(cri_client, pod)
    api: ApiServerDouble = agent_env["api"]
    case = tmp_path / "case"
    r = _run(agent_env, pod, case, image=engine_endpoints.image)
    assert r.returncode == AcquisitionError.exit_code, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "node agent" in r.stderr
    doc = json.loads((tmp_path / "case.json").read_text())
    failed = [c for c in doc["caveats"] if c["kind"] == "node-agent-failed"]
    assert failed and "exited 127" in failed[0]["message"], doc["caveats"]
    assert "podmortem: not found" in failed[0]["message"]  # the agent's log, quoted
    # The in-container fallback still ran and found what the container's own tools show.
    assert "in-container-only" in {c["kind"] for c in doc["caveats"]}
    rules = {f["rule_id"] for f in doc["findings"]}
    assert {"acquire.uid0-account", "acquire.secret-in-environment"} <= rules
    assert verify_case(case).ok
    assert _jobs_gone(api) and not _agent_sandboxes(cri_client, api)


@pytest.mark.integration
def test_budget_exceeded_still_deletes_the_job(
    make_cri_pod: Callable[..., Any], agent_env: dict[str, Any], cri_client: Any, tmp_path: Path
) -> None:
    pod = make_cri_pod(name="agent-budget")
    _wait_ready_sleep(cri_client, pod)
    api: ApiServerDouble = agent_env["api"]

    # Every poll of the agent's status hangs until the budget is gone (a slow node).
    def slow(ns: str, name: str, cmd: list[str]) -> None:
        if ns == "podmortem" and any('"$0/rc"' in c for c in cmd):
            time.sleep(4)

    api.exec_hooks.append(slow)
    case = tmp_path / "case"
    t = time.monotonic()
    r = _run(agent_env, pod, case, budget=3)
    assert time.monotonic() - t < 40
    assert r.returncode == AcquisitionError.exit_code, r.stderr[-3000:]
    doc = json.loads((tmp_path / "case.json").read_text())
    kinds = {c["kind"] for c in doc["caveats"]}
    assert {"node-agent-failed", "budget-exhausted"} <= kinds, doc["caveats"]
    assert not doc["complete"]
    assert [p for (_ns, _n, p) in api.deleted_jobs] == ["Background"]
    assert _jobs_gone(api) and not _agent_sandboxes(cri_client, api)
    assert verify_case(case).ok


@pytest.mark.integration
def test_keep_node_agent_leaves_the_job(
    make_cri_pod: Callable[..., Any], agent_env: dict[str, Any], cri_client: Any, tmp_path: Path
) -> None:
    pod = make_cri_pod(name="agent-keep")
    _wait_ready_sleep(cri_client, pod)
    api: ApiServerDouble = agent_env["api"]
    case = tmp_path / "case"
    r = _run(agent_env, pod, case, extra=("--keep-node-agent",))
    assert r.returncode == 0, r.stderr[-3000:]
    assert not api.deleted_jobs and len(api.jobs) == 1
    doc = json.loads((tmp_path / "case.json").read_text())
    assert "acquisition-side-effect" in {c["kind"] for c in doc["caveats"]}
    # The real kubectl sees the kept agent pod through the double (label selector list).
    kubectl = shutil.which("kubectl")
    if kubectl:
        selector = f"job-name={next(iter(api.jobs))[1]}"
        argv = [kubectl, "--kubeconfig", str(api.kubeconfig), "-n", AGENT_NS, "get", "pods"]
        out = subprocess.run(
            [*argv, "-l", selector, "-o", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        (listed,) = json.loads(out.stdout)["items"]
        assert listed["metadata"]["ownerReferences"][0]["kind"] == "Job"
    # The agent was told it may go: its pod ends, the Job completes.
    ((ns, name),) = api.jobs
    deadline = time.monotonic() + 20
    while (api.job_object(ns, name) or {})["status"].get("succeeded") != 1:
        assert time.monotonic() < deadline, api.job_object(ns, name)
        time.sleep(0.2)


def test_operator_role_grants_exactly_what_the_node_agent_calls() -> None:
    """The other direction: each grant of the agent-namespace Role is a call the node-agent
    code makes (read from its source), so the Role cannot quietly grow."""
    import re

    from podmortem.acquire import node_agent

    calls = set(re.findall(r"self\.(?:core|batch)\.(\w+)", Path(node_agent.__file__).read_text()))
    needed = {
        {
            "create_namespaced_job": ("batch", "jobs", "create"),
            "delete_namespaced_job": ("batch", "jobs", "delete"),
            "list_namespaced_pod": ("", "pods", "list"),
            "read_namespaced_pod_log": ("", "pods/log", "get"),
        }[c]
        for c in calls
    }
    if "exec_in(" in Path(node_agent.__file__).read_text():
        needed |= {("", "pods/exec", "get"), ("", "pods/exec", "create")}
    assert _grants(_rbac()["podmortem-node-agent-operator"]) == needed
    ns = next(d for d in yaml.safe_load_all(RBAC.read_text()) if d["kind"] == "Namespace")
    assert ns["metadata"]["name"] == AGENT_NS
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


@pytest.mark.integration
def test_unpullable_image_fails_fast_with_the_reason(
    make_cri_pod: Callable[..., Any], agent_env: dict[str, Any], cri_client: Any, tmp_path: Path
) -> None:
    pod = make_cri_pod(name="agent-nopull")
    _wait_ready_sleep(cri_client, pod)
    api: ApiServerDouble = agent_env["api"]
    t = time.monotonic()
    r = _run(agent_env, pod, tmp_path / "case", image="registry.invalid/podmortem:none", budget=60)
    assert time.monotonic() - t < 30  # not the whole budget: the pull error ends the wait
    assert r.returncode == AcquisitionError.exit_code, r.stderr[-3000:]
    doc = json.loads((tmp_path / "case.json").read_text())
    failed = next(c for c in doc["caveats"] if c["kind"] == "node-agent-failed")
    assert "ErrImagePull" in failed["message"]
    assert _jobs_gone(api) and not _agent_sandboxes(cri_client, api)


@pytest.mark.integration
def test_on_the_node_no_job_is_created(
    make_cri_pod: Callable[..., Any],
    agent_env: dict[str, Any],
    engine_endpoints: Any,
    tmp_path: Path,
) -> None:
    """The default policy: the node view is taken locally when podmortem is on the pod's
    node, even with an agent image configured."""
    from podmortem.acquire import Options, acquire
    from podmortem.acquire.node_agent import AgentConfig
    from podmortem.acquire.runtimes import Endpoints, open_runtime
    from podmortem.acquire.target import parse_target
    from podmortem.case import Case

    pod = make_cri_pod(name="agent-local")
    api: ApiServerDouble = agent_env["api"]
    ep = Endpoints(
        kubeconfig=str(api.kubeconfig),
        node_cri=engine_endpoints.cri_endpoint,
        node_agent=AgentConfig(image=agent_env["image"]),
    )
    case = Case.init(tmp_path / "case", case_id="K8S-L", examiner="pytest")
    doc = acquire(
        case,
        [parse_target(f"k8s://{NS}/{pod.pod_name}")],
        lambda r: open_runtime(r, ep),
        Options(budget=30),
    )
    assert doc["targets"][0]["node_view"] is True
    assert not [r for r in api.requests if "/jobs" in r[1]] and not api.jobs


@pytest.mark.integration
def test_missing_agent_namespace_says_what_to_apply(
    make_cri_pod: Callable[..., Any], agent_env: dict[str, Any], cri_client: Any, tmp_path: Path
) -> None:
    pod = make_cri_pod(name="agent-nons")
    _wait_ready_sleep(cri_client, pod)
    r = _run(agent_env, pod, tmp_path / "case", extra=("--node-agent-namespace", "forensics"))
    assert r.returncode == AcquisitionError.exit_code, r.stderr[-3000:]
    doc = json.loads((tmp_path / "case.json").read_text())
    failed = next(c for c in doc["caveats"] if c["kind"] == "node-agent-failed")
    assert "404" in failed["message"] and "podmortem-acquire.yaml" in failed["message"]
    assert "in-container-only" in {c["kind"] for c in doc["caveats"]}  # the fallback ran
    assert not agent_env["api"].jobs and verify_case(tmp_path / "case").ok


@pytest.mark.integration
def test_memory_is_taken_by_the_agent_and_stays_sensitive(
    make_cri_pod: Callable[..., Any], agent_env: dict[str, Any], cri_client: Any, tmp_path: Path
) -> None:
    pod = make_cri_pod(name="agent-memory")
    _wait_ready_sleep(cri_client, pod)
    case = tmp_path / "case"
    r = _run(agent_env, pod, case, extra=("--memory",))
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((tmp_path / "case.json").read_text())
    dumps = [
        a
        for a in doc["artifacts"]
        if "/node-agent/case/" in a["path"] and a["path"].endswith(".mem")
    ]
    assert dumps and all(a["sensitive"] for a in dumps)  # the agent's flag, kept on import
    assert sum(a["size"] for a in dumps) > 100_000
    transfer = json.loads(next(case.glob("artifacts/**/node-agent/transfer.json")).read_text())
    assert transfer["transfer_bytes"] > sum(a["size"] for a in dumps)
    assert verify_case(case).ok

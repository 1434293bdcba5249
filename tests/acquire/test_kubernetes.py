"""The Kubernetes backend, with the real ``kubectl`` and the official Python client, against
the test double of the API server in ``k8s_test_apiserver.py`` (pods served from the real
containerd CRI; exec spliced to containerd's real streaming server). No real API server can
run on the development machines; see that module's docstring for what the double does not do.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_test_apiserver import ApiServerDouble

from podmortem.acquire import Options, acquire
from podmortem.acquire.runtimes import Endpoints, open_runtime
from podmortem.acquire.runtimes.kubernetes import node_agent_job
from podmortem.acquire.target import parse_target
from podmortem.case import Case, verify_case
from podmortem.errors import AcquisitionError

NS = "podmortem-test"  # the namespace the harness writes into CRI pod metadata
PLANT = (
    "export DB_PASSWORD=hunter2; cp /bin/busybox /tmp/nc; /tmp/nc -ll -p 4446 -e /bin/cat & "
    "sleep 0.3; rm /tmp/nc; echo 'evil:x:0:0::/root:/bin/sh' >> /etc/passwd; "
    "echo staged > /dev/shm/payload; echo started; exec sleep 3600"
)


@pytest.fixture
def api(cri_client: Any, tmp_path: Path) -> Iterator[ApiServerDouble]:
    with ApiServerDouble(cri_client, tmp_path) as server:
        yield server


def _acquire(tmp: Path, target: str, api: ApiServerDouble, node_cri: str | None) -> dict[str, Any]:
    case = Case.init(tmp / "case", case_id="K8S-1", examiner="pytest")
    ep = Endpoints(kubeconfig=str(api.kubeconfig), node_cri=node_cri)
    return acquire(case, [parse_target(target)], lambda r: open_runtime(r, ep), Options(budget=30))


@pytest.mark.integration
def test_real_kubectl_execs_through_the_double(
    make_cri_pod: Callable[..., Any], api: ApiServerDouble
) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    pod = make_cri_pod(name="kubectl-target")
    r = subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(api.kubeconfig),
            "-n",
            NS,
            "exec",
            pod.pod_name,
            "-c",
            pod.container_name,
            "--",
            "ps",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "sleep 3600" in r.stdout
    assert ("POST", f"/api/v1/namespaces/{NS}/pods/{pod.pod_name}/exec") in api.requests or (
        "GET",
        f"/api/v1/namespaces/{NS}/pods/{pod.pod_name}/exec",
    ) in api.requests


@pytest.mark.integration
def test_k8s_target_on_its_node_gets_node_view_and_api_records(
    make_cri_pod: Callable[..., Any], api: ApiServerDouble, engine_endpoints: Any, tmp_path: Path
) -> None:
    pod = make_cri_pod(command=["sh", "-c", PLANT], name="web-7d9f")
    time.sleep(1.0)
    api.owners[(NS, pod.pod_name)] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web-7d9f",
            "uid": "rs-uid",
            "controller": True,
        }
    ]
    api.objects[f"/apis/apps/v1/namespaces/{NS}/replicasets/web-7d9f"] = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": "web-7d9f",
            "namespace": NS,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "web",
                    "uid": "dep-uid",
                    "controller": True,
                }
            ],
        },
        "spec": {"selector": {"matchLabels": {"app": "web"}}},
    }
    api.objects[f"/apis/apps/v1/namespaces/{NS}/deployments/web"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "main"}]}},
        },
    }
    doc = _acquire(tmp_path, f"k8s://{NS}/{pod.pod_name}", api, engine_endpoints.cri_endpoint)
    rules = {f["rule_id"] for f in doc["findings"]}
    assert {
        "acquire.deleted-executable",
        "acquire.listener-from-deleted-binary",
        "acquire.secret-in-environment",
        "acquire.uid0-account",
        "acquire.ram-backed-file",
    } <= rules, doc["caveats"]
    target = doc["targets"][0]
    assert target["node_view"] and target["in_container_view"]
    ident = target["identity"]
    assert ident["container_id"] == pod.container_id and ident["pid"] > 0
    assert ident["runtime"] == "kubernetes/containerd" and ident["pod"]["namespace"] == NS
    (case,) = (tmp_path / "case" / "artifacts").glob(
        f"acquisitions/*/targets/k8s-{NS}_{pod.pod_name}"
    )
    chain = json.loads((case / "t5" / "owner_chain.json").read_text())
    assert [(o["kind"], o["name"]) for o in chain] == [
        ("ReplicaSet", "web-7d9f"),
        ("Deployment", "web"),
    ]
    assert b"started" in (case / "t5" / "logs.txt").read_bytes()
    assert (
        json.loads((case / "t5" / "service_account.json").read_text())["metadata"]["name"]
        == "default"
    )
    assert verify_case(tmp_path / "case").ok


@pytest.mark.integration
def test_k8s_target_off_node_uses_websocket_exec_fallback(
    make_cri_pod: Callable[..., Any], api: ApiServerDouble, tmp_path: Path
) -> None:
    pod = make_cri_pod(command=["sh", "-c", PLANT], name="remote-pod")
    time.sleep(1.0)
    doc = _acquire(tmp_path, f"k8s://{NS}/{pod.pod_name}", api, node_cri=None)
    kinds = {c["kind"] for c in doc["caveats"]}
    assert {"node-view-unavailable", "in-container-only"} <= kinds
    assert not doc["complete"]
    rules = {f["rule_id"] for f in doc["findings"]}
    assert {"acquire.uid0-account", "acquire.secret-in-environment"} <= rules
    # The listener, as the container's own /proc/net/tcp shows it (host network here).
    assert any(s["local_port"] == 4446 and s["state"] == "LISTEN" for s in doc["sockets"])
    arts = [a for a in doc["artifacts"] if "/in-container/" in a["path"]]
    assert arts and all(a["source"] == "in-container" for a in arts)
    assert verify_case(tmp_path / "case").ok


@pytest.mark.integration
def test_missing_pod_is_a_one_line_error(api: ApiServerDouble, tmp_path: Path) -> None:
    r = subprocess.run(
        [
            str(Path(sys.executable).parent / "podmortem"),
            "acquire",
            f"k8s://{NS}/nope",
            "--case",
            str(tmp_path / "case"),
            "--kubeconfig",
            str(api.kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == AcquisitionError.exit_code
    assert "404" in r.stderr and "Traceback" not in r.stderr
    assert verify_case(tmp_path / "case").ok


def test_node_agent_job_is_pinned_and_read_only() -> None:
    hostile = "K8S-1'; rm -rf / #$(reboot)"
    job = node_agent_job(
        pod={"spec": {"nodeName": "node-3"}},
        container_id="abc",
        image="registry.example/podmortem:0.1",
        case_id=hostile,
        host_paths=("/var/lib/containerd", "/var/log/pods"),
    )
    spec = job["spec"]["template"]["spec"]
    assert spec["nodeName"] == "node-3" and spec["hostPID"] is True
    assert spec["automountServiceAccountToken"] is False and not spec.get("hostNetwork")
    (container,) = spec["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    # Node folders read-only at their own path; the only writable place is the emptyDir.
    assert mounts["/var/lib/containerd"]["readOnly"] is True
    assert mounts["/var/log/pods"]["readOnly"] is True
    writable = [m for m in container["volumeMounts"] if not m.get("readOnly")]
    vols = {v["name"]: v for v in spec["volumes"]}
    assert {m["name"] for m in writable} == {"cri", "work"} and "emptyDir" in vols["work"]
    assert vols["cri"]["hostPath"]["type"] == "Socket"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PODMORTEM_CID"] == "abc" and env["PODMORTEM_CASE_ID"] == hostile
    assert hostile not in container["command"][-1]  # values reach the script as variables
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] > 0
    with pytest.raises(AcquisitionError):
        node_agent_job(pod={"spec": {}}, container_id="abc", image="x")
    with pytest.raises(AcquisitionError):
        node_agent_job(
            pod={"spec": {"nodeName": "n"}},
            container_id="a",
            image="x",
            host_paths=("relative/path",),
        )


def _import_noshell_image(endpoint: str, tmp: Path) -> str:
    """A one-binary image (busybox as /sleep: no shell, no ps, like distroless), written as
    a docker-archive by hand and imported into containerd's CRI namespace with ctr."""
    import hashlib
    import io
    import tarfile

    ctr = shutil.which("ctr")
    if ctr is None or not Path("/bin/busybox").is_file():
        pytest.skip("needs ctr and /bin/busybox")
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        data = Path("/bin/busybox").read_bytes()
        info = tarfile.TarInfo("sleep")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    tag = "podmortem-test/noshell:latest"
    archive = tmp / "noshell.tar"
    with tarfile.open(archive, "w") as tar:
        for name, blob in (
            ("layer.tar", layer_bytes),
            ("config.json", config),
            (
                "manifest.json",
                json.dumps(
                    [{"Config": "config.json", "RepoTags": [tag], "Layers": ["layer.tar"]}]
                ).encode(),
            ),
        ):
            ti = tarfile.TarInfo(name)
            ti.size = len(blob)
            tar.addfile(ti, io.BytesIO(blob))
    subprocess.run(
        [
            ctr,
            "--address",
            endpoint.removeprefix("unix://"),
            "-n",
            "k8s.io",
            "images",
            "import",
            str(archive),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return tag


@pytest.mark.integration
def test_shell_less_pod_gets_an_ephemeral_debug_container(
    cri_client: Any, engine_endpoints: Any, tmp_path: Path
) -> None:
    import engines  # the harness's helpers (its folder is on sys.path, see conftest.py)

    image = _import_noshell_image(engine_endpoints.cri_endpoint, tmp_path)
    pod = engines.start_cri_pod(
        cri_client, image, tmp_path / "logs", command=["/sleep", "3600"], name="distroless"
    )
    try:
        with ApiServerDouble(cri_client, tmp_path, image_ref=engines.cri_image_ref) as api:
            case = Case.init(tmp_path / "case", case_id="K8S-2", examiner="pytest")
            ep = Endpoints(
                kubeconfig=str(api.kubeconfig), node_cri=None, debug_image=engine_endpoints.image
            )
            doc = acquire(
                case,
                [parse_target(f"k8s://{NS}/distroless")],
                lambda r: open_runtime(r, ep),
                Options(budget=30),
            )
            assert (
                "PATCH",
                f"/api/v1/namespaces/{NS}/pods/distroless/ephemeralcontainers",
            ) in api.requests
        assert doc["targets"][0]["in_container_view"]
        kinds = {c["kind"] for c in doc["caveats"]}
        assert "acquisition-side-effect" in kinds  # the pod spec now holds our container
        ps = next(a for a in doc["artifacts"] if a["path"].endswith("in-container/ps.txt"))
        text = (tmp_path / "case" / ps["path"]).read_text()
        assert "/sleep 3600" in text  # the target's process, seen from the debug container
        assert verify_case(tmp_path / "case").ok
    finally:
        engines.remove_cri_pod(cri_client, pod.sandbox_id)

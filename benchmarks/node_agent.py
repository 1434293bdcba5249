"""Benchmark: the node-agent path of ``podmortem acquire k8s://...``, side by side in one run.

Against the test double of the API server whose Jobs run on the real containerd (the same
set-up as ``tests/acquire/test_node_agent.py``; ``scripts/engines.sh start`` first). One
target pod with planted state; each run is measured as:

* podmortem + node agent  ``podmortem acquire k8s://NS/POD --node-agent IMAGE`` from "off the
                          node", wall clock of the whole command to a sealed case, and its
                          phases (Job to a running pod, the agent's own acquisition, the
                          transfer, verification, import) from the run's ``transfer.json``;
* on the node             ``podmortem acquire cri://ID`` run locally: the work the agent does,
                          without Kubernetes (what the agent path costs on top of it);
* in-container only       ``podmortem acquire k8s://NS/POD`` without an agent: the fallback;

and, for the hand-over of the agent's case alone, at the moment podmortem has it verified:

* floor                   ``tar -cf - case | sha256sum`` of the agent's emptyDir on the node:
                          the cost of just reading the data;
* podmortem               the exec ``tar`` stream with its on-node hash, the seal, the safe
                          unpack and ``verify_case`` (transfer + verify);
* kubectl cp              the real ``kubectl cp`` of the same folder through the same API
                          server (exec ``tar`` too, with no verification at all).

Writes ``benchmarks/results/node_agent.json``. Run: ``.venv/bin/python benchmarks/node_agent.py``
(``--runs N``, default 3; about a minute on the 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "acquire"), str(REPO / "tests" / "integration")]

import engines  # noqa: E402  (test helpers: start/remove CRI pods)
from k8s_test_apiserver import ApiServerDouble  # noqa: E402
from test_node_agent import NS, PLANT, _image_mounts, import_agent_image  # noqa: E402

from podmortem.acquire.cri_proto import CriClient, compile_cri_proto, find_cri_proto  # noqa: E402

PODMORTEM = str(Path(sys.executable).parent / "podmortem")
OFF_NODE = {**os.environ, "CONTAINER_RUNTIME_ENDPOINT": "unix:///nonexistent/cri.sock"}


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, env=env, check=False, timeout=300)
    return time.perf_counter() - t, r.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    ep = engines.EngineEndpoints.from_env()
    cri = CriClient(ep.cri_endpoint, proto=ep.cri_proto)
    work = Path(tempfile.mkdtemp(prefix="podmortem-bench-node-agent-"))
    cache_root = compile_cri_proto(find_cri_proto()).parent.parent
    image = import_agent_image(ep.cri_endpoint, work, cache_root)
    root = json.loads(cri.call("Status", cri.pb2.StatusRequest(verbose=True)).info["config"])[
        "containerdRootDir"
    ]
    pod = engines.start_cri_pod(
        cri, ep.image, work / "logs", command=["sh", "-c", PLANT], name="bench-agent-target"
    )
    kubectl = shutil.which("kubectl")
    handover: list[dict[str, float]] = []
    hook_s: list[float] = []
    rows: dict[str, list[float]] = {"agent": [], "node": [], "in_container": []}
    phases: list[dict[str, float]] = []
    try:
        time.sleep(1.0)
        with ApiServerDouble(
            cri,
            work,
            image_ref=engines.cri_image_ref,
            image_mounts={image: _image_mounts(cache_root)},
        ) as api:

            def at_release(ns: str, name: str, cmd: list[str]) -> None:
                # podmortem has the agent's case verified and is about to release the agent:
                # measure the floor and kubectl cp on the very same folder, now.
                if ns != "podmortem" or "touch" not in cmd:
                    return
                t0 = time.perf_counter()
                folder = api.empty_dir(ns, name, "work")
                t = time.perf_counter()
                tar = subprocess.Popen(
                    ["tar", "-C", str(folder), "-cf", "-", "case"], stdout=subprocess.PIPE
                )
                subprocess.run(["sha256sum"], stdin=tar.stdout, capture_output=True, check=True)
                tar.wait()
                entry = {"floor": time.perf_counter() - t}
                if kubectl:
                    out = work / f"kubectl-cp-{len(handover)}"
                    t = time.perf_counter()
                    subprocess.run(
                        [
                            kubectl,
                            "--kubeconfig",
                            str(api.kubeconfig),
                            "cp",
                            "-c",
                            "podmortem-node-agent",
                            f"{ns}/{name}:/podmortem-work/case",
                            str(out),
                        ],
                        capture_output=True,
                        check=True,
                        timeout=120,
                    )
                    entry["kubectl_cp"] = time.perf_counter() - t
                handover.append(entry)
                hook_s.append(time.perf_counter() - t0)

            api.exec_hooks.append(at_release)
            for i in range(args.runs):
                case = work / f"agent-{i}"
                before = len(hook_s)
                s, rc = timed(
                    [
                        PODMORTEM,
                        "acquire",
                        f"k8s://{NS}/{pod.pod_name}",
                        "--case",
                        str(case),
                        "--kubeconfig",
                        str(api.kubeconfig),
                        "--node-agent",
                        image,
                        "--node-agent-cri-socket",
                        ep.cri_endpoint.removeprefix("unix://"),
                        "--node-agent-mount",
                        root,
                        "--node-agent-mount",
                        str(work / "logs"),
                    ],
                    OFF_NODE,
                )
                if rc != 0:
                    raise SystemExit(f"podmortem with a node agent exited {rc}")
                rows["agent"].append(s - sum(hook_s[before:]))
                (tj,) = case.glob("artifacts/acquisitions/*/targets/*/node-agent/transfer.json")
                sec = json.loads(tj.read_text())["seconds"]
                phases.append(
                    {
                        "job_to_running_pod": sec["pod_running"],
                        "agent_acquisition": sec["agent_done"] - sec["pod_running"],
                        "transfer": sec["transferred"] - sec["agent_done"],
                        "verify": sec["verified"] - sec["transferred"],
                        "import_and_merge": sec["imported"] - sec["released"],
                    }
                )
                s, rc = timed(
                    [
                        PODMORTEM,
                        "acquire",
                        f"cri://{pod.container_id}",
                        "--case",
                        str(work / f"node-{i}"),
                        "--cri-endpoint",
                        ep.cri_endpoint,
                    ]
                )
                rows["node"].append(s)
                s, rc = timed(
                    [
                        PODMORTEM,
                        "acquire",
                        f"k8s://{NS}/{pod.pod_name}",
                        "--case",
                        str(work / f"exec-{i}"),
                        "--kubeconfig",
                        str(api.kubeconfig),
                    ],
                    OFF_NODE,
                )
                rows["in_container"].append(s)
    finally:
        engines.remove_cri_pod(cri, pod.sandbox_id)
        cri.close()
        shutil.rmtree(work, ignore_errors=True)

    def med(xs: list[float]) -> float:
        return round(statistics.median(xs), 3) if xs else float("nan")

    phase = {k: med([p[k] for p in phases]) for k in phases[0]}
    floor = med([h["floor"] for h in handover])
    cp = med([h["kubectl_cp"] for h in handover if "kubectl_cp" in h])
    ours = round(phase["transfer"] + phase["verify"], 3)
    result = {
        "runs": args.runs,
        "machine": {
            "cpus": os.cpu_count(),
            "load": os.getloadavg(),
            "python": platform.python_version(),
        },
        "seconds_to_sealed_case": {
            "k8s_with_node_agent": med(rows["agent"]),
            "cri_on_the_node": med(rows["node"]),
            "k8s_in_container_only": med(rows["in_container"]),
        },
        "node_agent_phases": phase,
        "handover": {
            "floor_tar_sha256": floor,
            "podmortem_transfer_verify": ours,
            "kubectl_cp": cp,
        },
    }
    print(
        f"node agent, median of {args.runs} (load {os.getloadavg()[0]:.1f}, {os.cpu_count()} cpus)"
    )
    print(f"{'path':44} {'seconds':>8}")
    for k, v in result["seconds_to_sealed_case"].items():
        print(f"{k:44} {v:8.3f}")
    for k, v in phase.items():
        print(f"  {k:42} {v:8.3f}")
    print(f"{'hand-over: floor (tar | sha256sum on node)':44} {floor:8.3f}")
    print(f"{'hand-over: podmortem (transfer + verify)':44} {ours:8.3f}")
    print(f"{'hand-over: kubectl cp (no verification)':44} {cp:8.3f}")
    out = REPO / "benchmarks" / "results" / "node_agent.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()

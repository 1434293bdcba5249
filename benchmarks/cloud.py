"""Benchmark: ``cloud preserve --execute`` of one EKS node and ``cloud collect-logs`` of N
pages, against moto's server on 127.0.0.1, side by side in one run:

* floor      the same AWS write calls (preserve) or the same filter_log_events pages
             (collect-logs) made with raw boto3, nothing read first, nothing recorded;
* podmortem  ``podmortem cloud preserve eks ... --execute --case DIR`` and
             ``podmortem cloud collect-logs eks ... --case DIR``, wall clock of the whole
             command (interpreter start and imports included): reads the live state first,
             records every call in the custody log, hashes every page;
* aws-cli    the way a responder scripts it today: a shell script of ``aws ec2
             modify-instance-attribute``, ``aws autoscaling set-instance-protection`` ...
             (one ``aws`` process per call), and ``aws logs filter-log-events`` (which pages
             by itself) into a file, then ``sha256sum``.

The podmortem and aws-cli numbers include Python interpreter start-up; the floor runs
in-process (its client creation is included). Every variant gets a fresh moto world.
Writes ``benchmarks/results/cloud.json``. Run: ``.venv/bin/python benchmarks/cloud.py``
(``--pages N --page-size M --repeat R``; default run well under 3 minutes on 2 cores).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PODMORTEM = str(BIN / "podmortem")
AWS = str(BIN / "aws") if (BIN / "aws").exists() else shutil.which("aws")
sys.path.insert(0, str(REPO / "tests"))  # the moto world builder shared with the tests


def _env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_PAGER": "",
    }


def _reset(url: str) -> None:
    import requests

    requests.post(f"{url}/moto-api/reset", timeout=30)


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}): {proc.stderr[-800:]}")


# ------------------------------------------------------------------------------ preserve


def preserve_floor(world: Any) -> None:
    import boto3

    ec2, asg, eks = boto3.client("ec2"), boto3.client("autoscaling"), boto3.client("eks")
    ec2.modify_instance_attribute(InstanceId=world.instance, DisableApiTermination={"Value": True})
    ec2.modify_instance_attribute(
        InstanceId=world.instance, InstanceInitiatedShutdownBehavior={"Value": "stop"}
    )
    asg.set_instance_protection(
        InstanceIds=[world.instance], AutoScalingGroupName=world.group, ProtectedFromScaleIn=True
    )
    asg.suspend_processes(
        AutoScalingGroupName=world.group, ScalingProcesses=["ReplaceUnhealthy", "AZRebalance"]
    )
    ec2.create_snapshots(
        InstanceSpecification={"InstanceId": world.instance, "ExcludeBootVolume": False},
        TagSpecifications=[
            {"ResourceType": "snapshot", "Tags": [{"Key": "podmortem:case", "Value": "BENCH"}]}
        ],
    )
    eks.update_cluster_config(
        name=world.cluster,
        logging={"clusterLogging": [{"types": ["audit", "authenticator"], "enabled": True}]},
    )


def new_case(tmp: Path) -> Path:
    """A fresh case, made in-process and outside the timed part."""
    from podmortem.case import Case

    path = tmp / f"case-{time.monotonic_ns()}"
    Case.init(path, case_id="BENCH", examiner="bench")
    return path


def preserve_podmortem(world: Any, env: dict[str, str], case: Path) -> None:
    _run(
        [
            PODMORTEM,
            "cloud",
            "preserve",
            "eks",
            "--cluster",
            world.cluster,
            "--instance-id",
            world.instance,
            "--no-kube",
            "--case",
            str(case),
            "--execute",
        ],
        env,
    )


def preserve_cli(world: Any, env: dict[str, str]) -> None:
    i, g = world.instance, world.group
    script = f"""set -e
{AWS} ec2 modify-instance-attribute --instance-id {i} --disable-api-termination
{AWS} ec2 modify-instance-attribute --instance-id {i} --instance-initiated-shutdown-behavior stop
{AWS} autoscaling set-instance-protection --instance-ids {i} --auto-scaling-group-name {g} \\
  --protected-from-scale-in
{AWS} autoscaling suspend-processes --auto-scaling-group-name {g} \\
  --scaling-processes ReplaceUnhealthy AZRebalance
{AWS} ec2 create-snapshots --instance-specification InstanceId={i},ExcludeBootVolume=false \\
  --tag-specifications 'ResourceType=snapshot,Tags=[{{Key=podmortem:case,Value=BENCH}}]' >/dev/null
{AWS} eks update-cluster-config --name {world.cluster} \\
  --logging '{{"clusterLogging":[{{"types":["audit","authenticator"],"enabled":true}}]}}' >/dev/null
"""
    _run(["bash", "-c", script], env)


# -------------------------------------------------------------------------- collect-logs


def seed_logs(pages: int, page_size: int) -> int:
    from cloud import aws_world

    return aws_world.put_audit_log(
        (
            aws_world.audit_event(
                n,
                auditID=f"bench-{n:08d}",
                requestURI=f"/api/v1/namespaces/shop/pods/web-{n % 97}",
                user={"username": "system:serviceaccount:shop:web"},
                sourceIPs=["10.0.1.5"],
                objectRef={"resource": "pods"},
            )
            for n in range(pages * page_size)
        ),
        stream="kube-apiserver-audit-0",
        age_s=3000,
    )


def logs_floor(page_size: int) -> int:
    import boto3

    logs = boto3.client("logs")
    kwargs: dict[str, Any] = {
        "logGroupName": "/aws/eks/prod/cluster",
        "logStreamNamePrefix": "kube-apiserver-audit",
        "limit": page_size,
    }
    n = 0
    while True:
        page = logs.filter_log_events(**kwargs)
        n += len(page["events"])
        if not page.get("nextToken"):
            return n
        kwargs["nextToken"] = page["nextToken"]


def logs_podmortem(env: dict[str, str], case: Path, page_size: int) -> None:
    _run(
        [
            PODMORTEM,
            "cloud",
            "collect-logs",
            "eks",
            "--cluster",
            "prod",
            "--since",
            "2h",
            "--case",
            str(case),
            "--page-size",
            str(page_size),
        ],
        env,
    )


def logs_cli(env: dict[str, str], tmp: Path, page_size: int) -> None:
    out = tmp / f"cli-{time.monotonic_ns()}.json"
    _run(
        [
            "bash",
            "-c",
            f"set -e; {AWS} logs filter-log-events --log-group-name /aws/eks/prod/cluster "
            f"--log-stream-name-prefix kube-apiserver-audit --page-size {page_size} > {out}; "
            f"sha256sum {out} > /dev/null",
        ],
        env,
    )


# ---------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--page-size", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    env = _env(url)
    os.environ.update(env)
    from cloud import aws_world

    results: dict[str, dict[str, list[float]]] = {"preserve": {}, "collect-logs": {}}
    with tempfile.TemporaryDirectory(prefix="pm-bench-cloud-") as tmpdir:
        tmp = Path(tmpdir)
        variants: dict[str, Callable[[Any, Path], None]] = {
            "floor": lambda w, c: preserve_floor(w),
            "podmortem": lambda w, c: preserve_podmortem(w, env, c),
        }
        if AWS:
            variants["aws-cli"] = lambda w, c: preserve_cli(w, env)
        for _ in range(args.repeat):
            for name, fn in variants.items():
                _reset(url)
                world = aws_world.build()
                case = new_case(tmp)
                t = _timed(lambda fn=fn, world=world, case=case: fn(world, case))
                results["preserve"].setdefault(name, []).append(t)
        _reset(url)
        events = seed_logs(args.pages, args.page_size)
        log_variants: dict[str, Callable[[Path], Any]] = {
            "floor": lambda c: logs_floor(args.page_size),
            "podmortem": lambda c: logs_podmortem(env, c, args.page_size),
        }
        if AWS:
            log_variants["aws-cli"] = lambda c: logs_cli(env, tmp, args.page_size)
        for _ in range(args.repeat):
            for name, lfn in log_variants.items():
                case = new_case(tmp)
                t = _timed(lambda lfn=lfn, case=case: lfn(case))
                results["collect-logs"].setdefault(name, []).append(t)
    server.stop()

    table = []
    for bench, by in results.items():
        floor = statistics.median(by["floor"])
        for name, times in by.items():
            med = statistics.median(times)
            table.append(
                {
                    "benchmark": bench,
                    "variant": name,
                    "median_s": round(med, 3),
                    "min_s": round(min(times), 3),
                    "runs": len(times),
                    "x_floor": round(med / floor, 2) if floor else None,
                }
            )
    print(f"{'benchmark':<14}{'variant':<12}{'median s':>10}{'min s':>9}{'x floor':>9}")
    for row in table:
        print(
            f"{row['benchmark']:<14}{row['variant']:<12}{row['median_s']:>10.3f}"
            f"{row['min_s']:>9.3f}{row['x_floor']:>9.2f}"
        )
    doc = {
        "benchmark": "cloud",
        "what": {
            "preserve": "EKS preserve of one ASG node with 2 EBS volumes (moto server)",
            "collect-logs": f"{args.pages} pages x {args.page_size} audit events "
            f"({events} events) from CloudWatch Logs (moto server)",
        },
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "aws_cli": bool(AWS),
        "results": table,
        "raw": results,
    }
    out = REPO / "benchmarks" / "results" / "cloud.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

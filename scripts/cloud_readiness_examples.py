"""Regenerate docs/cloud-readiness-examples.md: ``readiness`` run through the real code
paths and SDKs against moto's server (EKS) and the local ARM / GCP REST servers of
tests/cloud (AKS, GKE). Nothing leaves 127.0.0.1."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HEADER = """# `podmortem cloud readiness`: example output per provider

Each check reads one fact from the cluster, passes, fails, or is **unknown** when the fact
could not be read (never counted as a pass), and lists the controls it gives evidence for
(CIS Kubernetes / EKS / AKS / GKE benchmarks, SOC 2 CC7.2/CC7.3/CC7.4, HIPAA 164.312(b),
PCI DSS 10.x) and, when it does not pass, the Terraform that fixes it. Checks and mappings
are data: `src/podmortem/cloud/readiness/checks.yaml` and `controls.yaml`. `--json OUT`
writes the same report as JSON; the exit code is 1 when a check fails.

These outputs were produced by the real code paths and SDKs against the test endpoints
(moto's server for AWS; the local ARM and GCP REST servers of `tests/cloud/`), with
clusters shaped like fresh default clusters: EKS with only `audit` logging and 90-day
retention, AKS with `kube-audit-admin` only and Calico, GKE Standard 1.29 with default
logging and no network policy. moto reports Kubernetes 1.19 for every EKS cluster and does
not enforce IAM (so the DryRun snapshot test passes); the EKS vpc-cni check is unknown
because moto has no `DescribeAddon`, which is also what a real account without the managed
add-on (a self-managed CNI) shows. Regenerate with
`.venv/bin/python scripts/cloud_readiness_examples.py`.
"""
COMMANDS = {
    "eks": "podmortem cloud readiness eks --cluster prod --region us-east-1",
    "aks": "podmortem cloud readiness aks --cluster prod --subscription $SUB"
    " --resource-group rg-prod",
    "gke": "podmortem cloud readiness gke --cluster prod --project forensics-p"
    " --location europe-west1",
}
TITLES = {"eks": "Amazon EKS", "aks": "Azure Kubernetes Service", "gke": "Google Kubernetes Engine"}


def render(doc: dict[str, Any]) -> str:
    from rich.console import Console

    from podmortem.cli.cloud import print_readiness

    buf = io.StringIO()
    print_readiness(doc, Console(file=buf, width=400, highlight=False, no_color=True))
    return buf.getvalue()


def eks() -> dict[str, Any]:
    import boto3
    from moto.server import ThreadedMotoServer

    from cloud import aws_world
    from podmortem.cloud import readiness as rd
    from podmortem.cloud.calls import CallLog
    from podmortem.cloud.providers import aws

    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",  # noqa: S106 - moto accepts any key
        AWS_DEFAULT_REGION="us-east-1",
        AWS_MAX_ATTEMPTS="1",
    )
    try:
        world = aws_world.build()
        boto3.client("eks").update_cluster_config(
            name=world.cluster,
            logging={"clusterLogging": [{"types": ["audit"], "enabled": True}]},
        )
        logs = boto3.client("logs")
        logs.create_log_group(logGroupName="/aws/eks/prod/cluster")
        logs.put_retention_policy(logGroupName="/aws/eks/prod/cluster", retentionInDays=90)
        steps = aws.EksSteps(aws.session_factory())
        facts, notes = aws.readiness_facts(steps, CallLog(execute=False), world.cluster)
        return rd.report("eks", "prod", rd.evaluate("eks", facts, notes))
    finally:
        srv.stop()


def aks() -> dict[str, Any]:
    from cloud.azure_server import RG, FakeAzure, clients
    from podmortem.cloud import readiness as rd
    from podmortem.cloud.calls import CallLog
    from podmortem.cloud.model import Target
    from podmortem.cloud.providers import azure

    server = FakeAzure()
    url = server.start()
    try:
        steps = azure.AksSteps(clients(url), resource_group=RG)
        facts, notes = azure.readiness_facts(steps, CallLog(execute=False), Target("aks", "prod"))
        return rd.report("aks", "prod", rd.evaluate("aks", facts, notes))
    finally:
        server.stop()


def gke() -> dict[str, Any]:
    from cloud.gcp_server import LOC, FakeGcp, P, clients
    from podmortem.cloud import readiness as rd
    from podmortem.cloud.calls import CallLog
    from podmortem.cloud.model import Target
    from podmortem.cloud.providers import gcp

    server = FakeGcp()
    url = server.start()
    try:
        steps = gcp.GkeSteps(clients(url), project=P, location=LOC)
        facts, notes = gcp.readiness_facts(steps, CallLog(execute=False), Target("gke", "prod"))
        return rd.report("gke", "prod", rd.evaluate("gke", facts, notes))
    finally:
        server.stop()


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))  # the test servers stand in for the clouds
    parts = [HEADER]
    for name, fn in (("eks", eks), ("aks", aks), ("gke", gke)):
        text = render(fn())
        parts.append(f"\n## {TITLES[name]}\n\n```console\n$ {COMMANDS[name]}\n{text}```\n")
    (ROOT / "docs" / "cloud-readiness-examples.md").write_text("".join(parts))


if __name__ == "__main__":
    main()

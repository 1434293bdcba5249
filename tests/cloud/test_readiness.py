"""Readiness: the checks' own examples, the control mappings' integrity, and each
provider's facts read from moto / the local REST servers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from podmortem.cloud import readiness as rd
from podmortem.cloud.calls import CallLog
from podmortem.cloud.model import Target
from podmortem.errors import InputError


@pytest.mark.parametrize("check", rd.checks(), ids=lambda c: c.id)
def test_check_examples(check: rd.Check) -> None:
    for facts in check.examples["pass"]:
        assert check.holds(facts[check.fact]), facts
    for facts in check.examples["fail"]:
        assert not check.holds(facts[check.fact]), facts


def test_every_check_is_mapped_and_has_a_fix_per_provider() -> None:
    for c in rd.checks():
        assert rd.controls()[c.id], f"{c.id} maps to no control"
        for p in c.providers:
            assert c.terraform[p].strip()
    frameworks = {k.framework for v in rd.controls().values() for k in v}
    assert {
        "cis-kubernetes",
        "cis-eks",
        "cis-aks",
        "cis-gke",
        "soc2",
        "hipaa",
        "pci-dss",
    } <= frameworks
    ids = {(k.framework, k.id) for v in rd.controls().values() for k in v}
    assert {
        ("soc2", "CC7.2"),
        ("soc2", "CC7.3"),
        ("hipaa", "164.312(b)"),
        ("pci-dss", "10.2.1"),
    } <= ids


def test_unknown_fact_is_never_a_pass() -> None:
    results = {r.check.id: r for r in rd.evaluate("eks", {"audit_logging": None})}
    assert results["audit-logging"].status == "unknown"
    doc = rd.report("eks", "c", list(results.values()))
    entry = next(c for c in doc["checks"] if c["id"] == "audit-logging")
    assert entry["terraform"]  # unknown still shows the fix
    assert all(k["framework"] != "cis-aks" for c in doc["checks"] for k in c["controls"])


def test_bad_check_file_is_an_input_error() -> None:
    with pytest.raises(InputError, match="expect"):
        rd._parse_checks({"checks": [{"id": "x", "expect": {"regex": "."}}]}, "t.yaml")
    with pytest.raises(InputError, match="unknown check"):
        rd._parse_controls(
            {
                "frameworks": {
                    "f": {"title": "F", "controls": {"1": {"title": "t", "checks": ["nope"]}}}
                }
            },
            rd.checks(),
            "c.yaml",
        )


def test_eks_readiness_on_moto(aws_env: str) -> None:
    import boto3

    from podmortem.cloud.providers.aws import EksSteps, readiness_facts, session_factory

    from . import aws_world

    world = aws_world.build()
    steps = EksSteps(session_factory())
    facts, notes = readiness_facts(steps, CallLog(execute=False), world.cluster)
    res = {r.check.id: r.status for r in rd.evaluate("eks", facts, notes)}
    assert res["audit-logging"] == "fail"
    assert res["audit-log-retention"] == "fail"  # no log group yet
    assert res["snapshot-permitted"] == "pass"  # moto answers DryRunOperation
    assert res["network-policy-enforced"] == "unknown"  # moto has no describe_addon
    assert "vpc-cni" in notes["network_policy_enforced"]
    boto3.client("eks").update_cluster_config(
        name=world.cluster,
        logging={"clusterLogging": [{"types": ["audit", "authenticator"], "enabled": True}]},
    )
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName=f"/aws/eks/{world.cluster}/cluster")
    logs.put_retention_policy(logGroupName=f"/aws/eks/{world.cluster}/cluster", retentionInDays=400)
    facts, notes = readiness_facts(steps, CallLog(execute=False), world.cluster)
    res = {r.check.id: r.status for r in rd.evaluate("eks", facts, notes)}
    assert res["audit-logging"] == res["authenticator-logging"] == "pass"
    assert res["audit-log-retention"] == "pass"


@pytest.fixture
def gcp() -> Iterator[Any]:
    pytest.importorskip("google.cloud.compute_v1")
    from .gcp_server import FakeGcp

    server = FakeGcp()
    server.url = server.start()
    yield server
    server.stop()


def test_gke_readiness(gcp: Any) -> None:
    from podmortem.cloud.providers.gcp import GkeSteps, readiness_facts

    from .gcp_server import CLUSTER, LOC, P, clients

    steps = GkeSteps(clients(gcp.url), project=P, location=LOC)
    facts, notes = readiness_facts(steps, CallLog(execute=False), Target("gke", CLUSTER))
    res = {r.check.id: r.status for r in rd.evaluate("gke", facts, notes)}
    assert res == {
        "audit-logging": "pass",
        "audit-reads-logged": "unknown",
        "apiserver-component-logs": "fail",
        "network-policy-enforced": "fail",
        "node-repair-controllable": "pass",
        "checkpoint-api": "fail",
    }
    gcp.cluster["networkConfig"] = {"datapathProvider": "ADVANCED_DATAPATH"}
    gcp.cluster["autopilot"]["enabled"] = True
    gcp.cluster["currentMasterVersion"] = "1.31.2-gke.1200"
    facts, notes = readiness_facts(steps, CallLog(execute=False), Target("gke", CLUSTER))
    res = {r.check.id: r.status for r in rd.evaluate("gke", facts, notes)}
    assert res["network-policy-enforced"] == "pass"
    assert res["node-repair-controllable"] == "fail"
    assert res["checkpoint-api"] == "pass"


def test_aks_readiness() -> None:
    pytest.importorskip("azure.mgmt.containerservice")
    from podmortem.cloud.providers.azure import AksSteps, readiness_facts

    from .azure_server import CLUSTER, RG, FakeAzure, clients

    server = FakeAzure(locked=True)
    url = server.start()
    try:
        steps = AksSteps(clients(url), resource_group=RG)
        facts, notes = readiness_facts(steps, CallLog(execute=False), Target("aks", CLUSTER))
        res = {r.check.id: r.status for r in rd.evaluate("aks", facts, notes)}
        assert res == {
            "audit-logging": "pass",
            "audit-reads-logged": "fail",
            "network-policy-enforced": "pass",
            "node-repair-controllable": "fail",
            "containment-permitted": "fail",
            "checkpoint-api": "pass",
        }
    finally:
        server.stop()

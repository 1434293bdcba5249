"""``podmortem cloud`` for AKS and GKE end to end: the CLI builds its clients through each
provider's ``default_clients`` factory; the tests swap in the same official clients
pointed at the local REST servers (dependency injection, not SDK mocks)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from podmortem.case import Case, verify_case
from podmortem.cli.main import app

runner = CliRunner()


@pytest.fixture
def gke(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    pytest.importorskip("google.cloud.compute_v1")
    from podmortem.cloud.providers import gcp

    from .gcp_server import FakeGcp, clients

    server = FakeGcp()
    url = server.start()
    monkeypatch.setattr(gcp, "default_clients", lambda project=None: clients(url))
    yield server
    server.stop()


@pytest.fixture
def aks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    pytest.importorskip("azure.mgmt.compute")
    from podmortem.cloud.providers import azure

    from .azure_server import FakeAzure, clients

    server = FakeAzure()
    url = server.start()
    monkeypatch.setattr(azure, "default_clients", lambda subscription: clients(url))
    yield server
    server.stop()


def _writes(server: Any) -> list[tuple[str, str]]:
    return [
        (r.method, r.path.rsplit("/", 2)[-2] + "/" + r.path.rsplit("/", 1)[-1])
        for r in server.writes()
        if not r.path.endswith(("ManagedInstances", "entries:list", "/query"))
    ]


def test_gke_preserve_twice_via_cli(gke: Any, tmp_path: Path) -> None:
    from .gcp_server import INSTANCE, LOC, ZONE, P

    Case.init(tmp_path / "case", case_id="IR-1", examiner="t")
    sel = [
        "gke",
        "--cluster",
        "prod",
        "--instance-id",
        INSTANCE,
        "--zone",
        ZONE,
        "--project",
        P,
        "--location",
        LOC,
        "--no-kube",
        "--case",
        str(tmp_path / "case"),
    ]
    res = runner.invoke(app, ["cloud", "plan", *sel])
    assert res.exit_code == 0, res.output
    assert _writes(gke) == []
    res = runner.invoke(app, ["cloud", "preserve", *sel, "--execute"])
    assert res.exit_code == 0, res.output
    assert _writes(gke) == [
        ("POST", f"{INSTANCE}/setDeletionProtection"),
        ("POST", "gke-prod-pool-1-abcd-grp/abandonInstances"),
        ("POST", "nodePools/pool-1:setManagement"),
        ("POST", f"{INSTANCE}/createSnapshot"),
        ("POST", "pvc-data-1/createSnapshot"),
    ]
    gke.clear()
    res = runner.invoke(app, ["cloud", "preserve", *sel, "--execute"])
    assert res.exit_code == 0, res.output
    assert "nothing to do" in res.output and _writes(gke) == []
    res = runner.invoke(app, ["cloud", "contain", *sel, "--execute"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["cloud", "release", *sel[:-2], "--case", str(tmp_path / "case"), "--execute"]
    )
    assert res.exit_code == 0, res.output
    assert gke.firewalls == {} and gke.instance["tags"]["items"] == ["gke-prod-node"]
    assert verify_case(tmp_path / "case").ok


def test_aks_preserve_and_readiness_via_cli(aks: Any, tmp_path: Path) -> None:
    from .azure_server import RG, SUB, VM_ID, VMSS

    Case.init(tmp_path / "case", case_id="IR-2", examiner="t")
    sel = [
        "aks",
        "--cluster",
        "prod",
        "--instance-id",
        f"{VMSS}/{VM_ID}",
        "--subscription",
        SUB,
        "--resource-group",
        RG,
        "--no-kube",
        "--case",
        str(tmp_path / "case"),
    ]
    res = runner.invoke(app, ["cloud", "preserve", *sel, "--execute"])
    assert res.exit_code == 0, res.output
    assert _writes(aks) == [
        ("PUT", f"virtualMachines/{VM_ID}"),
        ("PUT", f"snapshots/pm-IR-2-{VMSS}_{VM_ID}_osdisk"),
        ("PUT", "snapshots/pm-IR-2-pvc-data-3"),
    ]
    aks.clear()
    res = runner.invoke(app, ["cloud", "preserve", *sel, "--execute"])
    assert "nothing to do" in res.output and _writes(aks) == []
    out = tmp_path / "ready.json"
    res = runner.invoke(
        app,
        [
            "cloud",
            "readiness",
            "aks",
            "--cluster",
            "prod",
            "--subscription",
            SUB,
            "--resource-group",
            RG,
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 1  # kube-audit-admin only and no node-repair hold: fails
    doc = json.loads(out.read_text())
    assert doc["summary"] == {"pass": 4, "fail": 2, "unknown": 0}
    failing = {c["id"]: c for c in doc["checks"] if c["status"] == "fail"}
    assert set(failing) == {"audit-reads-logged", "node-repair-controllable"}
    assert 'category = "kube-audit"' in failing["audit-reads-logged"]["terraform"]
    assert {
        "framework": "pci-dss",
        "control": "10.2.1.2",
        "title": "Audit logs capture all actions taken by administrative users",
    } in (failing["audit-reads-logged"]["controls"])
    assert verify_case(tmp_path / "case").ok

"""The identity graph: cloud principals behind usernames, impersonation, credentials."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb

from conftest import scenarios
from podmortem.audit.reconstruct import reconstruct
from podmortem.audit.sources import load


def _actor(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in doc["actors"] if a["name"] == name)


def _edges(doc: dict[str, Any], relation: str) -> set[tuple[str, str]]:
    return {
        (e["src"], e["dst"]) for e in doc["identity_graph"]["edges"] if e["relation"] == relation
    }


def test_eks_iam_principal_behind_the_username(built: Any) -> None:
    doc = built("benign", "eks").doc
    alice = _actor(doc, scenarios.OPERATOR["eks"]["username"])
    assert alice["cloud_identity"] == "aws-iam"
    assert alice["cloud"]["accessKeyId"] == ["ASIAEXAMPLEKEY00001"]
    assert alice["cloud"]["sessionName"] == ["alice"]
    assert alice["cloud"]["canonicalArn"] == ["arn:aws:iam::111122223333:role/SRE"]
    edges = _edges(doc, "authenticates-as")
    assert ("aws:arn:aws:iam::111122223333:role/SRE", f"actor:{alice['name']}") in edges
    assert ("aws:ASIAEXAMPLEKEY00001", f"actor:{alice['name']}") in edges


def test_aks_entra_identity(built: Any) -> None:
    doc = built("benign", "aks").doc
    alice = _actor(doc, "alice@contoso.com")
    assert alice["cloud_identity"] == "entra-id"
    assert ("entra:6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "actor:alice@contoso.com") in _edges(
        doc, "authenticates-as"
    )


def test_gke_principal_emails(built: Any) -> None:
    doc = built("benign", "gke").doc
    assert _actor(doc, "alice@example.com")["cloud_identity"] == "google-account"
    ci = _actor(doc, scenarios.CI["gke"]["username"])
    assert ci["cloud_identity"] == "google-service-account"
    assert ci["class"] == "workload"


def test_credential_edges_follow_the_token(built: Any) -> None:
    doc = built("attack", "native").doc
    cred = f"credential:{scenarios.WEB_JTI}"
    assert (f"actor:system:node:{scenarios.NODES['native'][0]}", cred) in _edges(doc, "requested")
    assert ("actor:system:serviceaccount:shop:web", cred) in _edges(doc, "presents")
    assert (cred, f"pod:shop/{scenarios.WEB_POD}") in _edges(doc, "bound-to")
    backdoor = f"credential:{scenarios.BACKDOOR_JTI}"
    assert ("actor:system:serviceaccount:shop:web", backdoor) in _edges(doc, "requested")
    assert ("actor:system:serviceaccount:shop:web", f"ip:{scenarios.ATTACKER_IP}") in _edges(
        doc, "connects-from"
    )


def test_impersonation_chain(tmp_path: Path) -> None:
    s = scenarios.Story("native", "imp")
    s.request(
        scenarios.T0,
        "list",
        {"username": "mallory", "groups": ["system:authenticated"]},
        "198.51.100.9",
        "kubectl",
        resource="secrets",
        namespace="kube-system",
    )
    s.events[-1]["impersonatedUser"] = {"username": "system:admin", "groups": ["system:masters"]}
    s.request(
        scenarios.T0 + timedelta(seconds=1),
        "get",
        {"username": "mallory"},
        "198.51.100.9",
        "kubectl",
        resource="pods",
        namespace="default",
    )
    path = tmp_path / "imp.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in s.events), encoding="utf-8")
    con = duckdb.connect()
    load(con, [path])
    doc = json.loads(json.dumps(reconstruct(con).to_dict(), default=str))
    assert _actor(doc, "mallory")["impersonated"] == ["system:admin"]
    assert ("actor:mallory", "actor:system:admin") in _edges(doc, "impersonates")

"""Stolen-token detection on crafted logs: what counts as the bound origin, and what not."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from conftest import scenarios
from podmortem.audit.reconstruct import reconstruct
from podmortem.audit.sources import load

S = scenarios
JTI = "JTI=11111111-2222-4333-8444-555555555555"
UA = S.WEB_UA


def _story(provider: str = "native") -> S.Story:
    s = S.Story(provider, "unit")
    s.token_request(
        S.T0,
        s.node("a"),
        S.NODE_A_IP,
        "kubelet/v1.30.2",
        "shop",
        "web",
        JTI,
        pod=S.WEB_POD,
        node=s.node_a,
    )
    s.pod_status(S.T0 + timedelta(seconds=2), "a", "shop", S.WEB_POD, S.WEB_POD_IP)
    s.request(
        S.T0 + timedelta(seconds=1),
        "update",
        s.node("b"),
        S.NODE_B_IP,
        "kubelet/v1.30.2",
        resource="leases",
        namespace="kube-node-lease",
        name=s.node_b,
        group="coordination.k8s.io",
    )
    return s


def _web(s: S.Story) -> dict[str, Any]:
    return s.pod_sa("shop", "web", S.WEB_POD, s.node_a, JTI)


def _run(tmp_path: Path, s: S.Story, findings: tuple[Any, ...] = ()) -> dict[str, Any]:
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in s.events), encoding="utf-8")
    con = duckdb.connect()
    load(con, [path])
    doc: dict[str, Any] = json.loads(json.dumps(reconstruct(con, findings).to_dict(), default=str))
    return doc


def _chain(doc: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in doc["credentials"] if c["credential_id"] == JTI)


def _get(s: S.Story, at: int, ip: str, ua: str = UA, user: dict[str, Any] | None = None) -> None:
    s.request(
        S.T0 + timedelta(seconds=at),
        "get",
        user or _web(s),
        ip,
        ua,
        resource="configmaps",
        namespace="shop",
        name="web-config",
    )


def test_use_from_own_pod_is_fine(tmp_path: Path) -> None:
    s = _story()
    for i in range(3):
        _get(s, 10 + i, S.WEB_POD_IP)
    ch = _chain(_run(tmp_path, s))
    assert not ch["misused"]
    assert ch["expected_origins"] == {
        S.WEB_POD_IP: f"pod shop/{S.WEB_POD}",
        S.NODE_A_IP: f"node {S.NODES['native'][0]}",
    }


def test_use_from_own_node_is_fine(tmp_path: Path) -> None:
    """Pod traffic to the API server may be source-NATed to the node's address."""
    s = _story()
    _get(s, 10, S.NODE_A_IP)
    assert not _chain(_run(tmp_path, s))["misused"]


def test_forged_forwarded_for_does_not_hide_the_real_peer(tmp_path: Path) -> None:
    s = _story()
    _get(s, 10, S.WEB_POD_IP)
    s.request(
        S.T0 + timedelta(seconds=20),
        "list",
        _web(s),
        S.ATTACKER_IP,
        S.KUBECTL_UA,
        resource="secrets",
        namespace="shop",
    )
    s.events[-1]["sourceIPs"] = [S.WEB_POD_IP, S.ATTACKER_IP]  # X-Forwarded-For: pod IP
    ch = _chain(_run(tmp_path, s))
    bad = [u for u in ch["uses"] if u["misused"]]
    assert [u["client_ip"] for u in bad] == [S.ATTACKER_IP]
    assert bad[0]["confidence"] == "high"


def test_use_from_another_node_names_that_node(tmp_path: Path) -> None:
    s = _story()
    _get(s, 10, S.WEB_POD_IP)
    _get(s, 20, S.NODE_B_IP)
    ch = _chain(_run(tmp_path, s))
    bad = [u for u in ch["uses"] if u["misused"]]
    assert len(bad) == 1
    assert f"node {S.NODES['native'][1]} ({S.NODE_B_IP})" in bad[0]["reasons"][0]


def test_user_agent_change_alone_is_low_confidence_and_not_an_attack(tmp_path: Path) -> None:
    s = _story()
    _get(s, 10, S.WEB_POD_IP)
    _get(s, 20, S.WEB_POD_IP, ua="curl/8.5.0")
    doc = _run(tmp_path, s)
    bad = [u for u in _chain(doc)["uses"] if u["misused"]]
    assert [u["confidence"] for u in bad] == ["low"]
    assert doc["narrative"]["attacks"] == []


def test_unknown_pod_address_falls_back_to_public_address_check(tmp_path: Path) -> None:
    s = S.Story("native", "unit")  # no status patch, no kubelet request: no addresses
    s.request(S.T0, "get", _web(s), "10.244.9.9", UA, resource="configmaps", namespace="shop")
    s.request(
        S.T0 + timedelta(seconds=5),
        "get",
        _web(s),
        S.ATTACKER_IP,
        UA,
        resource="configmaps",
        namespace="shop",
    )
    ch = _chain(_run(tmp_path, s))
    assert ch["expected_origins"] == {}
    bad = [u for u in ch["uses"] if u["misused"]]
    assert [(u["client_ip"], u["confidence"]) for u in bad] == [(S.ATTACKER_IP, "medium")]


def test_stolen_token_alone_makes_an_attack_narrative(tmp_path: Path) -> None:
    s = _story()
    _get(s, 10, S.WEB_POD_IP)
    _get(s, 20, S.ATTACKER_IP, ua=S.KUBECTL_UA)
    doc = _run(tmp_path, s)
    [attack] = doc["narrative"]["attacks"]
    assert [st["origin"] for st in attack["steps"]] == ["reconstruction:stolen-credential"]
    assert attack["steps"][0]["techniques"] == ["T1528", "T1550.001"]


def test_aks_client_address_is_the_one_before_the_proxy(tmp_path: Path) -> None:
    s = _story("aks")  # the builder appends AKS's internal proxy to every sourceIPs
    _get(s, 10, S.WEB_POD_IP)
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in s.events), encoding="utf-8")
    con = duckdb.connect()
    load(con, [path])
    con.execute("UPDATE audit_events SET provider = 'aks'")  # native file, AKS semantics
    doc = json.loads(json.dumps(reconstruct(con).to_dict(), default=str))
    ch = _chain(doc)
    assert [u["client_ip"] for u in ch["uses"]] == [S.WEB_POD_IP]
    assert not ch["misused"]


def test_inconsistent_binding_is_reported_not_judged(tmp_path: Path) -> None:
    s = _story()
    _get(s, 10, S.WEB_POD_IP)
    other = s.pod_sa("shop", "web", "web-other-pod", s.node_a, JTI)
    _get(s, 20, S.ATTACKER_IP, user=other)
    ch = _chain(_run(tmp_path, s))
    assert any("inconsistent binding" in o for o in ch["observations"])
    assert not ch["misused"]


def test_hostile_user_extra_shapes_do_not_break_following(tmp_path: Path) -> None:
    s = _story()
    _get(s, 10, S.WEB_POD_IP)
    for i, extra in enumerate(
        (
            {"authentication.kubernetes.io/credential-id": {"nested": ["JTI=x"]}},
            {"authentication.kubernetes.io/credential-id": 42},
            {"authentication.kubernetes.io/credential-id": JTI},  # a plain string, not a list
            {"authentication.kubernetes.io/pod-name": [None, 1]},
        )
    ):
        user = _web(s)
        user["extra"] = extra
        _get(s, 30 + i, S.ATTACKER_IP, user=user)
    doc = _run(tmp_path, s)
    ch = _chain(doc)
    # The plain-string form is still read as the credential ID.
    assert S.ATTACKER_IP in {u["client_ip"] for u in ch["uses"]}


def test_screening_many_credentials_keeps_the_misused_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above MAX_FOLLOW credentials only those that could show misuse are followed; the
    stolen token is among them and the totals say how many were left out."""
    from podmortem.audit.reconstruct import credentials

    s = _story()
    _get(s, 10, S.WEB_POD_IP)
    _get(s, 20, S.ATTACKER_IP, ua=S.KUBECTL_UA)
    for i in range(6):  # pods using their own tokens once each, from their own addresses
        user = s.pod_sa(
            "shop", "web", f"web-{i}", s.node_a, f"JTI=00000000-0000-4000-8000-00000000000{i}"
        )
        _get(s, 30 + i, f"10.244.3.{i + 1}", user=user)
    monkeypatch.setattr(credentials, "MAX_FOLLOW", 3)
    doc = _run(tmp_path, s)
    assert doc["credential_stats"]["credentials_total"] == 9  # 7 JTIs + 2 node certificates
    assert doc["credential_stats"]["credentials_followed"] < 9
    assert _chain(doc)["misused"]
    assert doc["narrative"]["attacks"]

"""A busy, benign cluster yields no attack narrative, in every provider's format."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import PROVIDERS, VARIANTS, scenarios


@pytest.mark.parametrize("provider", PROVIDERS + VARIANTS)
def test_benign_cluster_has_no_attack(built: Any, provider: str) -> None:
    s = built("benign", provider)
    assert s.doc["narrative"]["attacks"] == []
    assert not any(c["misused"] for c in s.doc["credentials"])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_operator_exec_is_listed_not_hidden(built: Any, provider: str) -> None:
    """The operator's exec is a finding, kept in view as an unchained finding: work, not an
    attack, but nothing found is dropped."""
    s = built("benign", provider)
    operator = scenarios.OPERATOR[provider]["username"]
    unchained = s.doc["narrative"]["unchained"]
    assert [m["actor"] for t in unchained for m in t["members"]] == [operator]
    assert {st["tactic"] for t in unchained for st in t["steps"]} == {"execution"}
    sess = [x for x in s.doc["sessions"] if x["actor"] == operator]
    assert [e["command"] for x in sess for e in x["execs"]] == [["cat", "/etc/resolv.conf"]]


@pytest.mark.parametrize("provider", ["native", "eks", "aks"])
def test_rolled_out_pod_uses_its_new_token_from_its_own_address(built: Any, provider: str) -> None:
    s = built("benign", provider)
    chains = {c["credential_id"]: c for c in s.doc["credentials"]}
    new = chains["JTI=c0ffee00-1111-4222-8333-944455556666"]
    assert new["issued"]["requester"] == f"system:node:{scenarios.NODES[provider][1]}"
    assert new["expected_origins"]  # the pod's IP, learned from the kubelet's status patch
    assert [u["client_ip"] for u in new["uses"]] == ["10.244.2.30"]
    assert not new["misused"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_ci_bot_from_outside_is_not_a_stolen_token(built: Any, provider: str) -> None:
    """The CI bot always works from its runner's public address: nothing to compare with."""
    s = built("benign", provider)
    ci = scenarios.CI[provider]["username"]
    actor = next(a for a in s.doc["actors"] if a["name"] == ci)
    assert actor["client_ips"] == [scenarios.CI_IP]
    assert not any(c["misused"] for c in s.doc["credentials"] if c["subject"] == ci)

"""The multi-step attack, in each provider's format, reconstructed in order with its evidence."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import PROVIDERS, attack_of, scenarios

# The story's milestones, each recognised by a technique the step is tagged with (or the
# reconstruction that produced it), in the order the attacker took them.
MILESTONES = (
    ("anonymous probing", lambda s: s["origin"] == "reconstruction:anonymous-probing"),
    ("stolen token used", lambda s: s["origin"] == "reconstruction:stolen-credential"),
    ("secrets listed", lambda s: "T1552.007" in s["techniques"] and "secrets" in _objects(s)),
    ("privileged pod", lambda s: "T1611" in s["techniques"] and "pods" in _objects(s)),
    ("exec into it", lambda s: "T1609" in s["techniques"]),
    ("cluster-admin binding", lambda s: "T1098.006" in s["techniques"]),
    ("cronjob", lambda s: "T1053.007" in s["techniques"]),
    ("events deleted", lambda s: "T1070" in s["techniques"]),
)
# What each provider's policy could not log (and the gap that says so).
INVISIBLE = {
    "eks": {"events deleted": "events-level-none"},
    "gke": {"events deleted": "events-level-none", "anonymous probing": None},
}


def _objects(step: dict[str, Any]) -> str:
    return " ".join(e["object"] for e in step["evidence"])


def _first_allowed(steps: list[dict[str, Any]], pred: Any) -> dict[str, Any] | None:
    hits = [s for s in steps if pred(s) and s["outcome"] != "refused"]
    return hits[0] if hits else None


@pytest.mark.parametrize("provider", PROVIDERS)
def test_attack_steps_in_order(built: Any, provider: str) -> None:
    s = built("attack", provider)
    attack = attack_of(s)
    steps = attack["steps"]
    times = [st["time"] for st in steps]
    assert times == sorted(times)
    found = []
    for name, pred in MILESTONES:
        step = _first_allowed(steps, pred)
        invisible = INVISIBLE.get(provider, {})
        if step is None:
            assert name in invisible, f"{provider}: no step for {name}"
            gap = invisible[name]
            if gap:
                assert gap in {g["id"] for g in s.doc["gaps"]}
            continue
        found.append((step["time"], name))
    assert [n for _, n in sorted(found)] == [n for _, n in found], found
    assert len(found) >= len(MILESTONES) - len(INVISIBLE.get(provider, {}))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_step_carries_its_evidence(built: Any, provider: str) -> None:
    s = built("attack", provider)
    ids = {
        r[0]
        for r in s.con.execute("SELECT coalesce(audit_id, event_key) FROM audit_events").fetchall()
    }
    for step in attack_of(s)["steps"]:
        assert step["evidence"], step["title"]
        assert step["evidence_total"] >= len(step["evidence"])
        assert set(step["audit_ids"]) <= ids
        for ev in step["evidence"]:
            assert ev["audit_id"] in ids
            assert ev["source"].rsplit(":", 1)[1].isdigit()  # file and line to go back to
        assert step["tactic"] in s.rec.narrative.tactic_map.kill_chain


@pytest.mark.parametrize("provider", PROVIDERS)
def test_attack_is_one_thread_of_the_attackers_identities(built: Any, provider: str) -> None:
    attack = attack_of(built("attack", provider))
    members = {(m["actor"], m["client_ip"]) for m in attack["members"]}
    assert ("system:serviceaccount:shop:web", scenarios.ATTACKER_IP) in members
    assert (
        f"system:serviceaccount:kube-system:{scenarios.BACKDOOR_SA}",
        scenarios.ATTACKER_IP,
    ) in members
    # The pod's own use of its token is not the attacker's.
    assert ("system:serviceaccount:shop:web", scenarios.WEB_POD_IP) not in members
    assert attack["credential_misuse"] is True
    tactics = [k["tactic"] for k in attack["kill_chain"]]
    for t in ("execution", "persistence", "privilege-escalation", "credential-access", "discovery"):
        assert t in tactics


@pytest.mark.parametrize("provider", ["native", "eks", "aks"])
def test_token_followed_from_request_to_misuse(built: Any, provider: str) -> None:
    s = built("attack", provider)
    chain = next(c for c in s.doc["credentials"] if c["credential_id"] == scenarios.WEB_JTI)
    assert chain["issue_link"] == "credential-id"
    assert chain["issued"]["requester"].startswith("system:node:")
    assert chain["bound_pod"] == f"shop/{scenarios.WEB_POD}"
    assert chain["misused"]
    bad = [u for u in chain["uses"] if u["misused"]]
    good = [u for u in chain["uses"] if not u["misused"]]
    assert {u["client_ip"] for u in bad} == {scenarios.ATTACKER_IP}
    assert {u["client_ip"] for u in good} == {scenarios.WEB_POD_IP}
    assert all(u["confidence"] == "high" for u in bad)
    assert any(scenarios.WEB_POD_IP in r for u in bad for r in u["reasons"])
    # The second token: minted by the stolen identity, presented by another actor.
    backdoor = next(c for c in s.doc["credentials"] if c["credential_id"] == scenarios.BACKDOOR_JTI)
    assert backdoor["issued"]["requester"] == "system:serviceaccount:shop:web"
    assert backdoor["actors"] == [f"system:serviceaccount:kube-system:{scenarios.BACKDOOR_SA}"]
    assert any("not by a kubelet" in o for o in backdoor["observations"])
    # The token's lifetime is in the request body, which only the self-managed policy keeps.
    assert any("long-lived" in o for o in backdoor["observations"]) == (provider == "native")


def test_gke_links_token_by_service_account_and_says_so(built: Any) -> None:
    s = built("attack", "gke")
    chain = next(
        c
        for c in s.doc["credentials"]
        if c["subject"] == "system:serviceaccount:shop:web" and c["uses"]
    )
    assert chain["basis"] == "service-account"
    assert chain["issue_link"] == "service-account-and-time"
    assert chain["issued"]["credential_id"] == scenarios.WEB_JTI
    assert {u["client_ip"] for u in chain["uses"] if u["misused"]} == {scenarios.ATTACKER_IP}
    assert "no-user-extra" in {g["id"] for g in s.doc["gaps"]}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_blast_radius_of_the_stolen_token(built: Any, provider: str) -> None:
    attack = attack_of(built("attack", provider))
    by_key = {(b["actor"], b["client_ip"]): b for b in attack["blast_radius"]}
    web = by_key[("system:serviceaccount:shop:web", scenarios.ATTACKER_IP)]
    assert "shop/*" in web["reach"]["secrets"]["read"]
    assert "*" in web["reach"]["secrets"]["read"]
    assert f"shop/{scenarios.DEBUG_POD}" in web["reach"]["pods"]["created"]
    assert any(f"system:{scenarios.BACKDOOR_SA}" in o for o in web["reach"]["roles"]["created"])
    # The pod was pinned to node b, and node b's kubelet reported it running.
    assert list(web["nodes_reached"]) == [scenarios.NODES[provider][1]]
    assert web["reach"]["pods"].get("executed")
    backdoor = by_key[
        (f"system:serviceaccount:kube-system:{scenarios.BACKDOOR_SA}", scenarios.ATTACKER_IP)
    ]
    assert any("node-problem-sync" in o for o in backdoor["reach"]["workloads"]["created"])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_exec_session_carries_commands(built: Any, provider: str) -> None:
    s = built("attack", provider)
    sess = [
        x
        for x in s.doc["sessions"]
        if x["actor"] == "system:serviceaccount:shop:web"
        and x["client_ip"] == scenarios.ATTACKER_IP
    ]
    assert len(sess) == 1
    execs = sess[0]["execs"]
    assert [e["command"][0] for e in execs] == ["chroot", "sh"]
    assert all(e["pod"] == f"shop/{scenarios.DEBUG_POD}" for e in execs)
    if provider != "gke":
        assert all(e["container"] == "shell" and e["interactive"] for e in execs)
        assert sess[0]["keystrokes"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rules_firing_on_the_same_requests_make_one_step(built: Any, provider: str) -> None:
    steps = attack_of(built("attack", provider))["steps"]
    sets = [tuple(sorted(s["audit_ids"])) for s in steps]
    assert len(sets) == len(set(sets))
    pod = next(s for s in steps if "T1611" in s["techniques"] and "pods" in _objects(s))
    assert pod["tactic"] == "privilege-escalation"
    assert pod["origin"].count("finding:") >= 3  # privileged, hostPID, hostPath, ...
    cron = next(s for s in steps if "T1053.007" in s["techniques"])
    assert cron["tactic"] == "persistence"

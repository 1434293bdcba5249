"""Real public audit events (the Falco k8saudit traces, minikube 2018): reconstruction runs on
them, and a controller acting on a user's behalf is not told as an attacker."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from podmortem.audit import engine, ruleset
from podmortem.audit.reconstruct import reconstruct
from podmortem.audit.sources import load


def test_falco_traces(corpus: Path) -> None:
    con = duckdb.connect()
    load(con, [corpus / "k8s-audit" / "falco-traces"])
    rec = reconstruct(con, engine.run(con, ruleset.load_builtin()).findings)
    doc = json.loads(json.dumps(rec.to_dict(), default=str))
    attackers = {m["actor"] for a in doc["narrative"]["attacks"] for m in a["members"]}
    assert "minikube-user" in attackers  # the traces are its test attacks, one after another
    assert not any(a.startswith("system:serviceaccount:kube-system:") for a in attackers)
    controller = [
        t
        for t in doc["narrative"]["unchained"]
        if all(m["actor"].endswith("replicaset-controller") for m in t["members"])
    ]
    assert controller and "behalf" in controller[0]["note"]
    # v1beta1-era events carry no credential IDs, and no events on `events`: both said.
    assert {"no-credential-ids", "policy-unknown"} <= {g["id"] for g in doc["gaps"]}

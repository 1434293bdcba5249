"""Real events: Falco's k8s_audit trace files (minikube, 2018) through the readers and the
built-in rules give the findings an investigator expects, and none where the trace is benign."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from tests_corpus import corpus_or_skip

from podmortem.audit import engine
from podmortem.audit.ruleset import load_builtin
from podmortem.audit.sources import load

RULES = load_builtin()

# trace file -> built-in rules that must report it
EXPECTED = {
    "exec_pod.json": {"k8s_exec_into_container", "k8s_exec_shell_or_tool"},
    "attach_pod.json": {"k8s_attach_to_container"},
    "attach_cluster_admin_role.json": {"k8s_cluster_admin_binding"},
    "delete_secret.json": {"k8s_secret_deleted"},
    "create_nginx_pod_privileged.json": {"k8s_privileged_container"},
    "create_nginx_pod_privileged_2nd_container.json": {"k8s_privileged_container"},
    "create_nginx_pod_hostnetwork.json": {"k8s_host_network_pod"},
    "create_nginx_pod_sensitive_mount.json": {"k8s_sensitive_hostpath_mount"},
    "create_nginx_service_nodeport.json": {"k8s_nodeport_service"},
    "create_cluster_role_wildcard_verbs.json": {"k8s_wildcard_role"},
    "create_cluster_role_wildcard_resources.json": {"k8s_wildcard_role"},
    "create_cluster_role_pod_exec.json": {"k8s_role_grants_exec_or_secrets"},
    "anonymous_creates_namespace_foo.json": {"k8s_anonymous_request_allowed"},
    "create_configmap_sensitive_values.json": {"k8s_configmap_with_credentials"},
    "create_kube_system_secret.json": {"k8s_bootstrap_token_created"},
    "create_serviceaccount_kube_system_namespace.json": {
        "k8s_service_account_created_in_system_namespace"
    },
    "delete_namespace_foo.json": {"k8s_namespace_deleted"},
}
# benign twins: none of these rules may report them
BENIGN = {
    "create_nginx_pod_unprivileged.json": {"k8s_privileged_container"},
    "create_nginx_pod_nohostnetwork.json": {"k8s_host_network_pod"},
    "create_nginx_pod_unsensitive_mount.json": {"k8s_sensitive_hostpath_mount"},
    "create_nginx_service_nonodeport.json": {"k8s_nodeport_service"},
    "create_configmap_no_sensitive_values.json": {"k8s_configmap_with_credentials"},
    "create_serviceaccount.json": {"k8s_service_account_created_in_system_namespace"},
    "create_clusterrole.json": {"k8s_wildcard_role", "k8s_role_grants_exec_or_secrets"},
}


@pytest.fixture(scope="module")
def traces() -> Path:
    return corpus_or_skip() / "k8s-audit" / "falco-traces"


def _reported(path: Path) -> set[str]:
    con = duckdb.connect()
    loaded = load(con, [path])
    assert loaded.events_read >= 1
    return {f.rule_id for f in engine.run(con, RULES).findings}


@pytest.mark.parametrize(("name", "rules"), sorted(EXPECTED.items()))
def test_attack_traces_are_reported(traces: Path, name: str, rules: set[str]) -> None:
    reported = _reported(traces / name)
    assert rules <= reported, f"{name}: missing {rules - reported}"


@pytest.mark.parametrize(("name", "rules"), sorted(BENIGN.items()))
def test_benign_twins_are_not(traces: Path, name: str, rules: set[str]) -> None:
    assert not rules & _reported(traces / name)


def test_whole_corpus_in_one_run(traces: Path) -> None:
    con = duckdb.connect()
    loaded = load(con, [traces])
    res = engine.run(con, RULES)
    assert res.runtime_errors == []
    assert loaded.events_read >= 49
    # controllers creating the pods of a Deployment are reported as control-plane actors
    # (the privileged pod is the finding), with their owner named
    priv = [f for f in res.findings if f.rule_id == "k8s_privileged_container"]
    assert priv and all(f.extra["actor_class"] == "control-plane" for f in priv)
    assert any(o.startswith("ReplicaSet/") for f in priv for o in f.extra["owners"])
    # every finding points at the audit events behind it
    assert all(f.extra["audit_ids"] for f in res.findings)

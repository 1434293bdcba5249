"""The shipped Deployment, RBAC and webhook kubeconfig: they parse, every flag the
Deployment passes exists on ``podmortem watch``; the watcher's role grants what acquisition
needs plus exactly the Kubernetes preserve steps' calls, the opt-in containment role adds
the contain steps' (together: the responder role of the cloud procedures, which runs the
same steps), and nothing deletes, evicts or reads secrets."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from cloud.k8s_rbac import K8S, Grant, grants, role
from podmortem.cli.main import app
from podmortem.cloud.playbook import load

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def docs(name: str) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def test_deployment_flags_exist() -> None:
    [dep] = [d for d in docs("watch/deployment.yaml") if d["kind"] == "Deployment"]
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]  # type: ignore[index]
    command = typer.main.get_command(app)
    watch = command.commands["watch"]  # type: ignore[attr-defined]
    names = {o for p in watch.params for o in getattr(p, "opts", [])}
    flags = [a.split("=", 1)[0] for a in args if a.startswith("--")]
    assert flags and set(flags) <= names
    assert args[0] == "watch" and args[1] == "webhook"
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"  # type: ignore[index]


def _calls(phase: str) -> set[Grant]:
    return {K8S[c] for s in load("kubernetes") if s.phase == phase for c in s.api_calls}


def test_rbac_least_privilege() -> None:
    watch = grants(role(DEPLOY / "watch" / "rbac.yaml", "podmortem-watch"))
    contain = grants(role(DEPLOY / "watch" / "rbac-contain.yaml", "podmortem-watch-contain"))
    acquirer = grants(role(DEPLOY / "rbac" / "podmortem-acquire.yaml", "podmortem-acquirer"))
    responder = grants(role(DEPLOY / "rbac" / "podmortem-responder.yaml", "podmortem-responder"))
    # Acquisition as `acquire` does it, and the preserve steps: patch pods and nodes only.
    assert acquirer <= watch
    assert _calls("preserve") <= watch
    assert {g for g in watch if g[2] not in ("get", "list")} - {("", "pods/exec", "create")} == {
        ("", "pods", "patch"),
        ("", "nodes", "patch"),
    }
    # Containment adds exactly what its steps call beyond that, and only when applied.
    assert contain <= _calls("contain") <= watch | contain
    assert responder <= watch | contain
    for g in watch | contain:
        assert g[2] not in ("delete", "deletecollection") or g[1] == "networkpolicies"
        assert g[1] not in ("secrets", "pods/eviction", "*") and g[2] != "*"
    assert not {g for g in watch if g[1] == "networkpolicies"}


def test_webhook_kubeconfig_points_at_the_service() -> None:
    [cfg] = docs("watch/audit-webhook-kubeconfig.yaml")
    server = cfg["clusters"][0]["cluster"]["server"]  # type: ignore[index]
    assert server.startswith("https://podmortem-watch.podmortem.svc")

"""The shipped Deployment, RBAC and webhook kubeconfig: they parse, every flag the
Deployment passes exists on ``podmortem watch``, the watcher's role grants what the
responder role of the cloud procedures grants (it runs the same steps) and nothing that
deletes, evicts or reads secrets."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from podmortem.cli.main import app

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def docs(name: str) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def grants(role: dict[str, object]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in role["rules"]:  # type: ignore[attr-defined]
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                for v in rule["verbs"]:
                    out.add((g, r, v))
    return out


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


def test_rbac_least_privilege() -> None:
    [watch_role] = [d for d in docs("watch/rbac.yaml") if d["kind"] == "ClusterRole"]
    [responder] = [
        d
        for d in docs("rbac/podmortem-responder.yaml")
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "podmortem-responder"  # type: ignore[index]
    ]
    mine = grants(watch_role)
    assert grants(responder) <= mine
    assert not {
        g for g in mine if g[2] in ("delete", "deletecollection") and g[1] != "networkpolicies"
    }
    assert not {g for g in mine if g[1] in ("secrets", "pods/eviction", "*") or g[2] == "*"}


def test_webhook_kubeconfig_points_at_the_service() -> None:
    [cfg] = docs("watch/audit-webhook-kubeconfig.yaml")
    server = cfg["clusters"][0]["cluster"]["server"]  # type: ignore[index]
    assert server.startswith("https://podmortem-watch.podmortem.svc")

"""SigmaHQ's Kubernetes audit rules load unchanged and fire on suitable events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from audit_rows import make_table

from podmortem.audit import engine
from podmortem.audit.ruleset import load_dir

POD = {"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "nginx"}]}}


def _ev(verb: str, resource: str | None, **kw: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "auditID": f"id-{verb}-{resource}",
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": "mallory@example.com", "groups": ["system:authenticated"]},
        "sourceIPs": ["203.0.113.5"],
        "stageTimestamp": "2026-11-20T10:00:00Z",
        "responseStatus": {"code": kw.pop("code", 200)},
    }
    if resource:
        e["objectRef"] = {"resource": resource, **kw.pop("obj", {})}
    e.update(kw)
    return e


# A suitable event for each SigmaHQ rule (by rule id), as an attacker would produce it.
SUITABLE: dict[str, dict[str, Any]] = {
    "eed82177-38f5-4299-8a76-098d50d225ab": _ev(
        "create", "mutatingwebhookconfigurations", obj={"apiGroup": "admissionregistration.k8s.io"}
    ),
    "0c9b3bda-41a6-4442-9345-356ae86343dc": _ev("create", "cronjobs", obj={"apiGroup": "batch"}),
    "40967487-139b-4811-81d9-c9767a92aa5a": _ev("delete", "deployments", obj={"name": "api"}),
    "3132570d-cab2-4561-9ea6-1743644b2290": _ev("delete", "events"),
    "a1b0ca4e-7835-413e-8471-3ff2b8a66be6": _ev("create", "pods", obj={"subresource": "exec"}),
    "402b955c-8fe0-4a8c-b635-622b4ac5f902": _ev(
        "create", "pods", requestObject={"spec": {"volumes": [{"hostPath": {"path": "/"}}]}}
    ),
    "a80d927d-ac6e-443f-a867-e8d6e3897318": _ev("create", "pods", obj={"namespace": "kube-system"}),
    "c5cd1b20-36bb-488d-8c05-486be3d0cb97": _ev(
        "create",
        "pods",
        requestObject={
            "spec": {"containers": [{"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]}
        },
    ),
    "84b777bd-c946-4d17-aa2e-c39f5a454325": _ev(
        "create", "selfsubjectrulesreviews", obj={"apiGroup": "authorization.k8s.io"}
    ),
    "10b97915-ec8d-455f-a815-9a78926585f6": _ev(
        "create", "clusterrolebindings", obj={"apiGroup": "rbac.authorization.k8s.io"}
    ),
    "eeb3e9e1-b685-44e4-9232-6bb701f925b5": _ev("list", "secrets"),
    "58d31a75-a4f8-4c40-985b-373d58162ca2": _ev("delete", "secrets", obj={"name": "db"}),
    "e31bae15-83ed-473e-bf31-faf4f8a17d36": _ev("create", "serviceaccounts"),
    "ad9012a6-e518-4432-9890-f3b82b8fc71f": _ev("patch", "deployments", obj={"apiGroup": "apps"}),
    "0d933542-1f1f-420d-97d4-21b2c3c492d9": _ev("get", "secrets", code=403),
}
# responseStatus.code: 'ALLOW' can never match an HTTP status code (a bug in the rule as
# published); it loads, with a warning, and is expected never to fire.
NEVER = "597a7e84-187d-458b-9e4f-2f5a0e676711"


@pytest.fixture(scope="module")
def sigma_dir(corpus: Path) -> Path:
    return corpus / "k8s-audit" / "sigma-rules"


@pytest.fixture(scope="module")
def corpus() -> Path:
    from tests_corpus import corpus_or_skip

    return corpus_or_skip()


def test_all_sigmahq_rules_load_unchanged(sigma_dir: Path) -> None:
    rs = load_dir(sigma_dir, "sigma")
    assert rs.errors == []
    assert len(rs.rules) == len(list(sigma_dir.glob("*.yml"))) == 16
    warned = {r.rule_id: r.warnings for r in rs.rules if r.warnings}
    assert list(warned) == [NEVER]


def test_each_sigmahq_rule_fires_on_a_suitable_event(sigma_dir: Path) -> None:
    rs = load_dir(sigma_dir, "sigma")
    assert set(SUITABLE) | {NEVER} == {r.rule_id for r in rs.rules}
    for rule in rs.rules:
        if rule.rule_id == NEVER:
            continue
        con = make_table([SUITABLE[rule.rule_id]])
        res = engine.run(con, type(rs)(rules=[rule]))
        assert res.hits_per_rule.get(rule.rule_id) == 1, rule.title
        # and not on an unrelated read
        con = make_table([_ev("get", "configmaps", obj={"namespace": "default", "name": "c"})])
        res = engine.run(con, type(rs)(rules=[rule]))
        assert res.hits_per_rule.get(rule.rule_id, 0) == 0, rule.title


def test_a_broken_rule_file_is_reported_and_the_rest_load(sigma_dir: Path, tmp_path: Path) -> None:
    for p in sigma_dir.glob("*.yml"):
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "broken_yaml.yml").write_text("title: x\ndetection: [unclosed\n")
    (tmp_path / "unknown_field.yml").write_text(
        "title: u\nlogsource: {product: kubernetes, service: audit}\n"
        "detection: {sel: {EventID: 1}, condition: sel}\n"
    )
    (tmp_path / "windows.yml").write_text(
        "title: w\nlogsource: {product: windows, category: process_creation}\n"
        "detection: {sel: {Image|endswith: '\\\\cmd.exe'}, condition: sel}\n"
    )
    rs = load_dir(tmp_path, "sigma")
    assert len(rs.rules) == 16
    assert rs.skipped_other_logsource == 1
    reasons = {Path(e.path).name: e.reason for e in rs.errors}
    assert set(reasons) == {"broken_yaml.yml", "unknown_field.yml"}
    assert "EventID" in reasons["unknown_field.yml"]

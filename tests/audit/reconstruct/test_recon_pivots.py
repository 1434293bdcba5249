"""Pivots over an index file and through the CLI: actor, object, credential."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from conftest import fixture_path, scenarios
from podmortem.audit.reconstruct import pivots
from podmortem.audit.sources import load
from podmortem.cli.main import app
from podmortem.errors import InputError

WEB = "system:serviceaccount:shop:web"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("idx") / "index.duckdb"
    con = duckdb.connect(str(path))
    load(con, [fixture_path("attack", "native")])
    con.close()
    return path


def _cli(*args: str) -> dict[str, Any]:
    res = CliRunner().invoke(app, [*args] if "--" in args else [*args, "--json"])
    assert res.exit_code == 0, res.output
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def test_actor_pivot(index: Path) -> None:
    doc = _cli("audit", "actor", WEB, "--index", str(index))
    assert doc["actors"][0]["name"] == WEB
    assert {s["client_ip"] for s in doc["sessions"]} == {
        scenarios.WEB_POD_IP,
        scenarios.ATTACKER_IP,
    }
    [chain] = [c for c in doc["credentials"] if c["credential_id"] == scenarios.WEB_JTI]
    assert chain["misused"] and chain["issued"]["requester"].startswith("system:node:")
    reach = {(b["client_ip"]): b for b in doc["blast_radius"]}
    assert "shop/payments-db" in reach[scenarios.ATTACKER_IP]["reach"]["secrets"]["read"]
    assert reach[scenarios.WEB_POD_IP]["reach"]["configmaps"]["read"] == ["shop/web-config"]
    assert doc["requests_total"] == len(doc["timeline"]) or doc["timeline_shown"] == 50


def test_anonymous_pivot_accepts_either_spelling(index: Path) -> None:
    con = duckdb.connect(str(index), read_only=True)
    a = pivots.actor(con, "system:anonymous")
    b = pivots.actor(con, "")
    assert a.requests_total == b.requests_total == 7


def test_object_pivot_names_direct_and_list_readers(index: Path) -> None:
    doc = _cli("audit", "object", "shop/secrets/payments-db", "--index", str(index))
    assert [r["actor"] for r in doc["timeline"]] == [WEB]
    assert doc["timeline"][0]["client_ip"] == scenarios.ATTACKER_IP
    scopes = {(g["actor"], g["scope"]) for g in doc["readers_by_list"]}
    assert {(WEB, "shop"), (WEB, "*")} <= scopes
    assert all(g["actor"] != "system:anonymous" for g in doc["readers_by_list"])  # refused


def test_cluster_scoped_object(index: Path) -> None:
    name = f"system:{scenarios.BACKDOOR_SA}"
    a = _cli("audit", "object", f"clusterrolebindings/{name}", "--index", str(index))
    # A leading dash reads as an option: `--` ends the options.
    b = _cli(
        "audit", "object", "--index", str(index), "--json", "--", f"-/clusterrolebindings/{name}"
    )
    assert a["requests_total"] == b["requests_total"] == 1
    assert a["timeline"][0]["verb"] == "create"


def test_credential_pivot(index: Path) -> None:
    doc = _cli("audit", "credential", scenarios.BACKDOOR_JTI, "--index", str(index))
    [chain] = doc["credentials"]
    assert chain["issued"]["requester"] == WEB
    assert chain["actors"] == [f"system:serviceaccount:kube-system:{scenarios.BACKDOOR_SA}"]
    # The issuance and every use are in the timeline.
    assert doc["timeline"][0]["object"].endswith("/token")
    assert len(doc["timeline"]) == 1 + chain["requests"]


def test_terminal_output_escapes_evidence(index: Path, tmp_path: Path) -> None:
    evil = "\x1b]0;pwned\x07[red]x[/red]"
    path = tmp_path / "evil.duckdb"
    con = duckdb.connect(str(path))
    load(con, [fixture_path("attack", "native")])
    con.execute("UPDATE audit_events SET user_agent = ? WHERE username = ?", [evil, WEB])
    con.close()
    res = CliRunner().invoke(app, ["audit", "actor", WEB, "--index", str(path)])
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout


@pytest.mark.parametrize("spec", ["just-a-name", "a/b/c/d", "x" * 2000])
def test_bad_object_spec_is_an_input_error(index: Path, spec: str) -> None:
    con = duckdb.connect(str(index), read_only=True)
    with pytest.raises(InputError):
        pivots.object_(con, spec)


def test_index_without_events_is_one_line_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    proc = subprocess.run(
        [sys.executable, "-m", "podmortem", "audit", "actor", "bob", "--index", str(empty)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "audit_events" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_case_round_trip(tmp_path: Path) -> None:
    """analyze --case stores the events; the pivots and the timeline read them from there."""
    from podmortem.case import Case

    case_dir = tmp_path / "case"
    Case.init(case_dir, case_id="C-1", examiner="tester")
    res = CliRunner().invoke(
        app, ["audit", "analyze", str(fixture_path("attack", "eks")), "--case", str(case_dir)]
    )
    assert res.exit_code == 0, res.output
    doc = _cli("audit", "credential", scenarios.WEB_JTI, "--case", str(case_dir))
    assert doc["credentials"][0]["misused"]
    res = CliRunner().invoke(app, ["audit", "timeline", "--case", str(case_dir), "--format", "csv"])
    assert res.exit_code == 0, res.output
    case = Case.open(case_dir)
    [export] = [a for a in case.artifacts if a.path.startswith("artifacts/exports/audit-timeline")]
    text = (case.root / export.path).read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith("message,datetime,timestamp,timestamp_desc")
    assert "attack-1" in text  # narrative steps tagged from the case's stored findings


def test_persisted_request_table_gives_the_same_answers(tmp_path: Path) -> None:
    """A case index keeps the request table; pivots read it while it matches the events and
    fall back to the events the moment it does not."""
    from podmortem.audit.reconstruct import reconstruct, requests

    path = tmp_path / "persist.duckdb"
    con = duckdb.connect(str(path))
    load(con, [fixture_path("attack", "native")])
    plain = {
        "actor": pivots.actor(con, WEB).to_dict(),
        "object": pivots.object_(con, "shop/secrets/payments-db").to_dict(),
        "credential": pivots.credential(con, scenarios.WEB_JTI).to_dict(),
    }
    reconstruct(con, persist=True)
    assert requests.fresh(con)
    kept = {
        "actor": pivots.actor(con, WEB).to_dict(),
        "object": pivots.object_(con, "shop/secrets/payments-db").to_dict(),
        "credential": pivots.credential(con, scenarios.WEB_JTI).to_dict(),
    }
    for k, before in plain.items():
        before.pop("seconds")
        kept[k].pop("seconds")
        assert json.dumps(before, sort_keys=True, default=str) == json.dumps(
            kept[k], sort_keys=True, default=str
        ), k
    # New events arrive: the persisted table is stale and is not used.
    con.execute(
        "INSERT INTO audit_events SELECT * REPLACE ('extra-' || event_key AS event_key, "
        "'extra-' || audit_id AS audit_id) FROM audit_events WHERE username = ? LIMIT 3",
        [WEB],
    )
    assert not requests.fresh(con)
    after = pivots.actor(con, WEB)
    assert after.requests_total == kept["actor"]["requests_total"] + 3
    con.close()


def test_service_account_pivot_without_credential_ids_finds_its_token_request(
    tmp_path: Path,
) -> None:
    """GKE logs no credential IDs: the pivot by service-account name still shows the
    kubelet's TokenRequest (linked by name and time) and the use from outside."""
    path = tmp_path / "gke.duckdb"
    con = duckdb.connect(str(path))
    load(con, [fixture_path("attack", "gke")])
    con.close()
    doc = _cli("audit", "credential", WEB, "--index", str(path))
    [chain] = doc["credentials"]
    assert chain["basis"] == "service-account"
    assert chain["issue_link"] == "service-account-and-time"
    assert chain["issued"]["requester"].startswith("system:node:")
    assert {u["client_ip"] for u in chain["uses"] if u["misused"]} == {scenarios.ATTACKER_IP}


def _event(i: int, verb: str, resource: str, name: str, code: int, *, sub: str = "") -> str:
    ts = f"2024-05-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000000Z"
    ref: dict[str, Any] = {"resource": resource, "namespace": "kube-system", "name": name}
    if sub:
        ref["subresource"] = sub
    return json.dumps(
        {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": f"busy-{i:05d}",
            "stage": "ResponseComplete",
            "requestURI": f"/api/v1/namespaces/kube-system/{resource}/{name}",
            "verb": verb,
            "user": {"username": "system:kube-scheduler"},
            "sourceIPs": ["10.0.0.2"],
            "userAgent": "kube-scheduler/v1.29",
            "objectRef": ref,
            "responseStatus": {"code": code},
            "requestReceivedTimestamp": ts,
            "stageTimestamp": ts,
        }
    )


@pytest.fixture(scope="module")
def busy_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busy actor: 300 lease reads, and in their middle a refused request, a secret
    read and an exec, which a cut timeline must still show."""
    folder = tmp_path_factory.mktemp("busy")
    lines = [_event(i, "get", "leases", "kube-scheduler", 200) for i in range(300)]
    lines[150] = _event(150, "get", "secrets", "token", 403)
    lines[151] = _event(151, "get", "secrets", "token", 200)
    lines[152] = _event(152, "create", "pods", "web", 101, sub="exec")
    src = folder / "busy.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = folder / "index.duckdb"
    con = duckdb.connect(str(path))
    load(con, [src])
    con.close()
    return path


def test_limit_keeps_first_last_and_notable_and_counts_the_rest(busy_index: Path) -> None:
    doc = _cli(
        "audit", "actor", "system:kube-scheduler", "--index", str(busy_index), "--limit", "5"
    )
    ids = [r["audit_id"] for r in doc["timeline"]]
    first = [f"busy-{i:05d}" for i in range(5)]
    last = [f"busy-{i:05d}" for i in range(295, 300)]
    notable = ["busy-00150", "busy-00151", "busy-00152"]
    assert ids == first + notable + last  # in time order
    assert doc["requests_total"] == 300
    assert doc["timeline_shown"] == 13
    assert doc["timeline_omitted"] == 287
    assert doc["timeline_limit"] == 5
    assert doc["notable_total"] == 3
    # What the timeline leaves out is still counted.
    sm = doc["summary"]
    assert sm["verbs"] == {"get": 299, "create": 1}
    assert sm["resources"] == {"leases": 297, "secrets": 2, "pods": 1}
    assert sm["outcomes"] == {"allowed": 299, "forbidden": 1}
    assert sm["client_ips"] == {"10.0.0.2": 300}
    assert sm["first"].startswith("2024-05-01T00:00:00")
    assert sm["last"].startswith("2024-05-01T00:04:59")


def test_notable_requests_are_cut_too_and_all_shows_everything(busy_index: Path) -> None:
    doc = _cli(
        "audit", "actor", "system:kube-scheduler", "--index", str(busy_index), "--limit", "1"
    )
    assert [r["audit_id"] for r in doc["timeline"]] == ["busy-00000", "busy-00150", "busy-00299"]
    assert doc["notable_total"] == 3
    assert doc["timeline_omitted"] == 297
    doc = _cli("audit", "actor", "system:kube-scheduler", "--index", str(busy_index), "--all")
    assert doc["timeline_shown"] == 300
    assert doc["timeline_omitted"] == 0
    assert doc["timeline_limit"] is None
    res = CliRunner().invoke(
        app,
        [
            "audit",
            "object",
            "kube-system/leases/kube-scheduler",
            "--index",
            str(busy_index),
            "--limit",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())  # the console wraps long lines
    assert "4 of 297 request(s) shown" in out
    assert "293 left out" in out

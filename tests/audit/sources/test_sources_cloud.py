"""EKS, AKS and GKE envelopes, from fixtures written after the documented shapes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from sources_helpers import by_id


def test_eks_filter_log_events(read, fixtures: Path) -> None:
    result, rows = read(fixtures / "eks-filter-log-events.json")
    ev = by_id(rows)
    assert result.events_by_source == {"eks/filter-log-events": 2}
    assert ev["c3000000-0000-0000-0000-000000000001"]["exec_command"][0] == "sh"
    cut = ev["c3000000-0000-0000-0000-000000000009"]
    assert cut["truncated"] is True and cut["verb"] == "create"
    assert json.loads(cut["raw"])["eventId"] == "2"  # the log event as exported
    assert result.skipped == {"eks: non-audit log stream authenticator": 1}
    assert [c.kind for c in result.caveats].count("truncated") == 1


def test_eks_subscription_gzip_concatenated(read, fixtures: Path, tmp_path: Path) -> None:
    payload = (fixtures / "eks-subscription.concat.json").read_bytes()
    # the name says nothing: recognition is by content and magic bytes
    p = tmp_path / "firehose-object"
    p.write_bytes(gzip.compress(payload))
    result, rows = read(p)
    assert result.events_by_source == {"eks/cloudwatch-subscription": 3}
    assert {r["cluster"] for r in rows} == {"prod-cluster"}
    assert result.skipped == {"eks: subscription CONTROL_MESSAGE": 1}
    # Firehose may also gzip each record separately: concatenated gzip members
    half = len(payload) // 2
    cut = payload.index(b'{"messageType"', half)
    p2 = tmp_path / "members"
    p2.write_bytes(gzip.compress(payload[:cut]) + gzip.compress(payload[cut:]))
    result2, _ = read(p2)
    assert result2.events_read == 3
    # and gzip inside gzip (CloudWatch gzips, Firehose compresses again)
    p3 = tmp_path / "double"
    p3.write_bytes(gzip.compress(gzip.compress(payload)))
    assert read(p3)[0].events_read == 3


def test_eks_export_text(read, fixtures: Path, tmp_path: Path) -> None:
    p = tmp_path / "000000.gz"
    p.write_bytes(gzip.compress((fixtures / "eks-export.txt").read_bytes()))
    result, rows = read(p)
    assert result.events_by_source == {"eks/export-text": 3}
    ev = by_id(rows)
    assert ev["c3000000-0000-0000-0000-000000000007"]["truncated"] is True
    assert [r["source_line"] for r in rows] == [1, 2, 4]
    assert any(
        c.kind == "malformed-line" and c.provenance and c.provenance.location == ("line 3",)
        for c in result.caveats
    )


def test_eks_logs_insights_csv(read, fixtures: Path) -> None:
    result, rows = read(fixtures / "eks-insights.csv")
    assert result.events_by_source == {"eks/logs-insights-csv": 2}
    assert {r["verb"] for r in rows} == {"create", "get"}
    assert result.skipped == {"eks: non-audit log stream authenticator": 1}


def test_aks_records_document(read, fixtures: Path) -> None:
    result, rows = read(fixtures / "aks-records.json")
    ev = by_id(rows)
    assert result.events_by_source == {"aks/records": 2}
    assert ev["d4000000-0000-0000-0000-000000000001"]["username"] == "masterclient"
    # properties.log already an object
    assert ev["d4000000-0000-0000-0000-000000000002"]["obj_name"] == "evil"
    assert {r["cluster"] for r in rows} == {"aks-prod"}
    assert result.skipped == {"aks: category guard": 1, "aks: category cluster-autoscaler": 1}


def test_aks_blob_lines_with_malformed_line(read, fixtures: Path) -> None:
    result, rows = read(fixtures / "aks-blob-lines.jsonl")
    assert result.events_by_source == {"aks/blob-lines": 2}
    assert [r["source_line"] for r in rows] == [1, 4]
    assert any(
        c.kind == "malformed-line" and c.provenance and c.provenance.location == ("line 2",)
        for c in result.caveats
    )
    assert result.skipped == {"aks: category kube-apiserver": 1}


def test_aks_16k_cut_is_salvaged(read, tmp_path: Path) -> None:
    event = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": "d4000000-0000-0000-0000-0000000000ff",
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/prod/configmaps",
        "verb": "create",
        "user": {"username": "mallory@contoso.com"},
        "objectRef": {"resource": "configmaps", "namespace": "prod", "name": "big"},
        "requestObject": {"data": {"blob": "A" * 40000}},
    }
    log = json.dumps(event)[:16384]
    doc = {
        "records": [
            {
                "category": "kube-audit",
                "properties": {"log": log},
                "resourceId": "/x/MANAGEDCLUSTERS/c1",
            }
        ]
    }
    p = tmp_path / "cut.json"
    p.write_text(json.dumps(doc))
    result, rows = read(p)
    (row,) = rows
    assert row["truncated"] is True
    assert row["username"] == "mallory@contoso.com"
    assert row["obj_name"] == "big"
    (cav,) = [c for c in result.caveats if c.kind == "truncated"]
    assert cav.details["audit_id"] == "d4000000-0000-0000-0000-0000000000ff"


def test_aks_azure_diagnostics_json_and_csv(read, fixtures: Path) -> None:
    result, rows = read(fixtures / "aks-azurediagnostics.json")
    assert result.events_by_source == {"aks/azure-diagnostics": 1}
    assert rows[0]["cluster"] == "aks-prod"
    assert result.skipped == {"aks: category guard": 1}
    result, rows = read(fixtures / "aks-azurediagnostics.csv")
    assert result.events_by_source == {"aks/azure-diagnostics-csv": 2}
    assert [r["truncated"] for r in rows] == [False, True]
    assert result.skipped == {"aks: category cloud-controller-manager": 1}


def test_aks_aksaudit_rows(read, fixtures: Path) -> None:
    result, rows = read(fixtures / "aks-aksaudit.json")
    ev = by_id(rows)
    assert result.events_by_source == {"aks/aksaudit": 2}
    exec_row = ev["d4000000-0000-0000-0000-000000000008"]
    assert exec_row["exec_command"] == ["sh", "-c", "cat /etc/shadow | nc x 1"]
    assert exec_row["obj_subresource"] == "exec"
    assert json.loads(exec_row["request_object"]) == "skipped-too-big-size-object"
    assert any(c.kind == "body-not-logged" for c in result.caveats)
    result, rows = read(fixtures / "aks-aksaudit.csv")
    ev = by_id(rows)
    assert result.events_by_source == {"aks/aksaudit-csv": 2}
    assert ev["d4000000-0000-0000-0000-000000000010"]["user_groups"] == ["system:authenticated"]
    assert ev["d4000000-0000-0000-0000-000000000010"]["response_code"] == 403
    cut = ev["d4000000-0000-0000-0000-000000000011"]
    assert cut["truncated"] is True and cut["obj_resource"] is None


def test_gke_gcloud_array(read, fixtures: Path) -> None:
    result, rows = read(fixtures / "gke-gcloud-array.json")
    ev = by_id(rows)
    assert result.events_by_source == {"gke/array": 8}
    ex = ev["e5000001"]
    assert (ex["verb"], ex["obj_resource"], ex["obj_subresource"]) == ("create", "pods", "exec")
    assert ex["exec_command"] == ["sh -c id"]
    assert ex["obj_api_group"] == "" and ex["obj_namespace"] == "prod"
    assert ex["cluster"] == "gke-prod" and ex["source_ips"] == ["198.51.100.9"]
    assert ev["e5000002"]["response_code"] == 403  # gRPC 7 PERMISSION_DENIED
    assert json.loads(ev["e5000002"]["raw"])["protoPayload"]["status"]["code"] == 7
    assert json.loads(ev["e5000003"]["request_object"])["spec"]["hostNetwork"] is True
    assert ev["e5000004"]["truncated"] is True
    assert ev["e5000005"]["username"] == "system:anonymous"
    assert ev["e5000005"]["response_code"] == 401
    assert ev["e5000005"]["obj_resource"] == "nodes" and ev["e5000005"]["obj_name"] is None
    crd = ev["e5000006"]
    assert (crd["obj_api_group"], crd["obj_resource"], crd["verb"]) == (
        "etcd.database.coreos.com",
        "etcdbackups",
        "create",
    )
    assert ev["e5000007"]["response_code"] == 409  # ALREADY_EXISTS
    cloud = ev["e5000008"]
    assert (cloud["verb"], cloud["obj_resource"], cloud["stage"]) == (
        "CreateCluster",
        "clusters",
        "ResponseStarted",
    )
    assert result.skipped == {"gke: audit entry of service compute.googleapis.com": 1}


def test_gke_lines_and_pubsub(read, fixtures: Path) -> None:
    result, _ = read(fixtures / "gke-entries.jsonl")
    assert result.events_by_source == {"gke/jsonl": 2}
    assert any(c.kind == "malformed-line" for c in result.caveats)
    result, _ = read(fixtures / "gke-pubsub.jsonl")
    assert result.events_by_source == {"gke/pubsub": 1, "gke/pubsub-push": 1}
    assert any(
        c.kind == "malformed-event" and c.provenance and c.provenance.location == ("line 3",)
        for c in result.caveats
    )


def test_folder_of_every_fixture(read, fixtures: Path) -> None:
    result, _ = read(fixtures)
    assert set(result.events_by_source) >= {
        "native/jsonl",
        "eks/filter-log-events",
        "eks/cloudwatch-subscription",
        "eks/export-text",
        "eks/logs-insights-csv",
        "aks/records",
        "aks/blob-lines",
        "aks/azure-diagnostics",
        "aks/azure-diagnostics-csv",
        "aks/aksaudit",
        "aks/aksaudit-csv",
        "gke/array",
        "gke/jsonl",
        "gke/pubsub",
        "gke/pubsub-push",
    }
    assert len(result.files) == len(list(fixtures.iterdir()))
    # the EventList fixtures repeat events of the JSONL fixtures: dropped as duplicates
    assert "native/eventlist" not in result.events_by_source
    assert result.duplicates >= 4
    assert result.skipped["file not recognised as an audit log"] == 1


@pytest.mark.parametrize("keep_raw", [True, False])
def test_provider_log_is_kept_without_raw(read, fixtures: Path, keep_raw: bool) -> None:
    """The gaps analysis tells GKE Admin Activity from Data Access logs, and AKS
    kube-audit from kube-audit-admin, by the provider's log: a column of its own, filled
    by every route whether or not the original record is copied."""
    files = ["gke-entries.jsonl", "aks-blob-lines.jsonl", "eks-filter-log-events.json"]
    _, rows = read([fixtures / f for f in files], keep_raw=keep_raw)
    logs: dict[str, set[str]] = {}
    for r in rows:
        logs.setdefault(r["provider"], set()).add(str(r["log_name"]))
    assert {p: any("cloudaudit.googleapis.com" in x for x in v) for p, v in logs.items()}["gke"]
    assert logs["aks"] <= {"kube-audit", "kube-audit-admin"}
    assert all(x.startswith("kube-apiserver-audit") for x in logs["eks"])

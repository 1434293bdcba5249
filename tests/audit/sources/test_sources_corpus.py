"""The public corpus (../shared/corpus/k8s-audit): every event in the Falco traces and the
KHI samples is read. Skips cleanly where the corpus is absent."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def test_every_falco_trace_event_is_read(read, k8s_corpus: Path) -> None:
    traces = k8s_corpus / "falco-traces"
    files = sorted(traces.glob("*.json"))
    expected: set[tuple[str, str]] = set()
    non_events = 0
    for f in files:
        for line in f.read_text().splitlines():
            if not line.strip():
                continue
            obj = json.loads(line)
            if "auditID" in obj:
                expected.add((obj["auditID"], obj["stage"]))
            else:
                non_events += 1
    result, rows = read(files)
    assert {(r["audit_id"], r["stage"]) for r in rows} == expected
    assert result.events_read == len(expected)
    assert result.skipped == {"not an audit record": non_events}
    execs = [r for r in rows if r["obj_subresource"] == "exec"]
    assert execs and all(r["exec_command"] for r in execs)


def test_every_khi_sample_entry_is_read(read, k8s_corpus: Path) -> None:
    samples = k8s_corpus / "khi-samples"
    files = sorted(samples.rglob("*.yaml"))
    ids = set()
    not_audit = 0
    for f in files:
        doc = yaml.safe_load(f.read_text())
        if "protoPayload" in doc:
            ids.add(doc["insertId"])
        elif doc.get("kind") == "Event":
            ids.add(doc["auditID"])
        else:
            not_audit += 1  # the *_manifest.yaml files are Pod manifests
    result, rows = read(samples)
    assert {r["audit_id"] for r in rows} == ids
    assert result.skipped == {"not an audit record": not_audit}
    gke = [r for r in rows if r["provider"] == "gke"]
    assert gke and all(r["cluster"] for r in gke)
    k8s = [r for r in gke if r["obj_api_group"] != "container.googleapis.com"]
    assert k8s and all(r["obj_resource"] == "pods" for r in k8s)

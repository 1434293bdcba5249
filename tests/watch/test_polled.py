"""The Cloud Logging (GKE) and Log Analytics (AKS) sources against the local HTTP servers
that stand in for Google's and Azure's APIs (tests/cloud), through the official clients:
each record once across polls and a restart from the saved position; new records only."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from podmortem.watch.sources.polled import PolledSource, cloud_logging, log_analytics

NOW = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # the fakes' records are from 10:00


@pytest.fixture
def gcp() -> Iterator[Any]:
    pytest.importorskip("google.cloud.logging")
    from cloud.gcp_server import FakeGcp

    server = FakeGcp(log_entries=150)
    server.url = server.start()
    yield server
    server.stop()


@pytest.fixture
def azure() -> Iterator[Any]:
    pytest.importorskip("azure.monitor.query")
    from cloud.azure_server import FakeAzure

    server = FakeAzure(audit_rows=30)
    server.url = server.start()
    yield server
    server.stop()


def drain(src: PolledSource) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    out: list[dict[str, Any]] = []
    pos = None
    while (c := src.poll(1 << 20)) is not None:
        out += [json.loads(x) for x in c.data.splitlines() if x]
        pos = c.position or pos
    return out, pos


def test_cloud_logging_each_entry_once_and_restart(gcp: Any) -> None:
    from cloud.gcp_server import CLUSTER, LOC, P, clients
    from podmortem.cloud.providers.gcp import GkeSteps

    steps = GkeSteps(clients(gcp.url), project=P, location=LOC)
    src = cloud_logging(steps, cluster=CLUSTER, page_size=40, start=START)
    src.clock = lambda: NOW
    got, pos = drain(src)
    assert [e["insertId"] for e in got] == [f"id-{i}" for i in range(150)]
    assert pos is not None
    # The restart: the same window is asked again (overlap), nothing is handed out twice.
    again = cloud_logging(steps, cluster=CLUSTER)
    again.clock = lambda: NOW
    again.seek(json.loads(json.dumps(pos)))
    gcp.entries.append({**gcp.entries[-1], "insertId": "id-new"})
    got2, _ = drain(again)
    assert [e["insertId"] for e in got2] == ["id-new"]
    body = next(r.body for r in gcp.requests if r.path.endswith("entries:list"))
    assert 'cluster_name="prod"' in body["filter"]


def test_log_analytics_each_row_once(azure: Any) -> None:
    from cloud.azure_server import CLUSTER, RG, WORKSPACE, clients
    from podmortem.cloud.providers.azure import AksSteps

    steps = AksSteps(clients(azure.url), resource_group=RG)
    src = log_analytics(steps, cluster=CLUSTER, workspace_id=WORKSPACE, page_size=10, start=START)
    src.clock = lambda: NOW
    got, pos = drain(src)
    assert len(got) == 30 and len({(r["AuditId"], r["Stage"]) for r in got}) == 30
    assert pos is not None
    again = log_analytics(steps, cluster=CLUSTER, workspace_id=WORKSPACE, page_size=10)
    again.clock = lambda: NOW
    again.seek(pos)
    assert drain(again)[0] == []

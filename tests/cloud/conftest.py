"""Fixtures for the cloud procedures: moto's real server on 127.0.0.1 (boto3 reaches it
through AWS_ENDPOINT_URL, exactly as a user's configuration would), a fake Kubernetes API
server, and a fresh case."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podmortem.case import Case

from .k8s_server import FakeKube


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    server = FakeKube()
    server.url = server.start()  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture
def case(tmp_path: Path) -> Case:
    return Case.init(tmp_path / "case", case_id="IR-2026-042", examiner="tester")


def calls_of(reports: Any) -> list[str]:
    return [f"{c.service}.{c.method}" for r in reports for c in r.calls]

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


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    pytest.importorskip("moto")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import requests

    requests.post(f"{moto_url}/moto-api/reset", timeout=10)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    # moto answers APIs it lacks with an HTML 500; do not spend seconds retrying it.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_url


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

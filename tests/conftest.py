"""Shared test helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def corpus_dir() -> Path:
    """The public corpus beside the repo (``../shared/corpus``), or ``$PODMORTEM_CORPUS``."""
    env = os.environ.get("PODMORTEM_CORPUS")
    return Path(env) if env else (REPO / ".." / "shared" / "corpus").resolve()


@pytest.fixture
def corpus() -> Path:
    path = corpus_dir()
    if not path.is_dir():
        pytest.skip(f"public corpus not present at {path}")
    return path


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's real AWS server on 127.0.0.1 (a dev dependency: missing, it fails, never
    skips); boto3 reaches it through AWS_ENDPOINT_URL as a user's configuration would."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A reset moto world and the environment boto3 reads to reach it."""
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

"""Helpers for the watch tests. ``burst.py`` beside this file makes synthetic audit events;
moto's real server stands in for CloudWatch Logs (boto3 reaches it through
AWS_ENDPOINT_URL)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


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
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_url


# --- the harness fixtures of tests/integration/conftest.py (real engines) -----------------
# tests/ is not a package: that conftest is loaded by path under a private name, as
# tests/acquire/conftest.py does; its helper module `engines` is importable once its folder
# is on sys.path.
def _load_integration_fixtures() -> object:
    import importlib.util

    folder = Path(__file__).resolve().parents[1] / "integration"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    name = "podmortem_integration_fixtures"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, folder / "conftest.py")
    if spec is None or spec.loader is None:  # pragma: no cover
        raise ImportError("tests/integration/conftest.py not loadable")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_fx = _load_integration_fixtures()
engine_endpoints = _fx.engine_endpoints  # type: ignore[attr-defined]
docker_client = _fx.docker_client  # type: ignore[attr-defined]
make_docker_container = _fx.make_docker_container  # type: ignore[attr-defined]

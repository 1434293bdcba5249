"""Helpers for the watch tests. ``burst.py`` beside this file makes synthetic audit events;
moto's real server (``moto_url``/``aws_env`` in tests/conftest.py) stands in for CloudWatch
Logs."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


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

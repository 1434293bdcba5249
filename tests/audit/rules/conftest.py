"""Rule tests reuse the engine tests' event builders (one definition of how a native Event
becomes a row of ``audit_events``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def _load_builders() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "engine" / "conftest.py"
    spec = importlib.util.spec_from_file_location("podmortem_engine_builders", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


builders = _load_builders()

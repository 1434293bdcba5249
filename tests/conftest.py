"""Shared test helpers."""

from __future__ import annotations

import os
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

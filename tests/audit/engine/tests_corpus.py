"""Locate the public corpus (``../shared/corpus`` beside the repo, or $PODMORTEM_CORPUS)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def corpus_or_skip() -> Path:
    env = os.environ.get("PODMORTEM_CORPUS")
    path = Path(env) if env else (REPO / ".." / "shared" / "corpus").resolve()
    if not (path / "k8s-audit").is_dir():
        pytest.skip(f"public corpus not present at {path}")
    return path

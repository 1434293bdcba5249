"""Helpers for the audit-reader tests: fixture files, the public corpus, a loader that
returns the normalized rows as dicts."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest

from podmortem.audit.model import COLUMN_NAMES
from podmortem.audit.sources import LoadResult, load

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"


def corpus_root() -> Path:
    env = os.environ.get("PODMORTEM_CORPUS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / ".." / "shared" / "corpus"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def k8s_corpus() -> Path:
    root = corpus_root() / "k8s-audit"
    if not root.is_dir():
        pytest.skip(f"public corpus not present at {root}")
    return root


Loaded = tuple[LoadResult, list[dict[str, Any]]]


def rows_of(con: duckdb.DuckDBPyConnection, table: str = "audit_events") -> list[dict[str, Any]]:
    cur = con.execute(f'SELECT * FROM "{table}" ORDER BY rowid')  # noqa: S608 - test table
    return [dict(zip(COLUMN_NAMES, r, strict=True)) for r in cur.fetchall()]


@pytest.fixture
def read() -> Callable[..., Loaded]:
    def _read(inputs: Sequence[str | Path] | str | Path, **kw: Any) -> Loaded:
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        con = duckdb.connect()
        try:
            result = load(con, [str(i) for i in inputs], **kw)
            return result, rows_of(con)
        finally:
            con.close()

    return _read

"""The committed scenario fixtures are what the builder writes (no drift, no hand edits)."""

from __future__ import annotations

import pytest

from conftest import SCENARIOS, scenarios


@pytest.mark.parametrize(("story", "provider", "name"), list(scenarios.fixture_files()), ids=str)
def test_fixture_matches_builder(story: str, provider: str, name: str) -> None:
    committed = (SCENARIOS / story / name).read_text(encoding="utf-8")
    assert committed == scenarios.render(story, provider), (
        f"regenerate: python tests/audit/scenarios.py {SCENARIOS}"
    )

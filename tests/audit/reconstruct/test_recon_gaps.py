"""Evidence gaps: the data file's examples, and each provider's fixture."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import PROVIDERS, VARIANTS
from podmortem.audit.reconstruct import gaps

EXAMPLES = gaps.examples()


@pytest.mark.parametrize("example", EXAMPLES, ids=[str(i) for i in range(len(EXAMPLES))])
def test_gap_examples(example: dict[str, Any]) -> None:
    found = {g.gap_id for g in gaps.evaluate(gaps.Observation.from_dict(example["observed"]))}
    assert set(example["reported"]) <= found
    assert not set(example["not_reported"]) & found


def test_every_gap_rule_is_exercised_by_an_example() -> None:
    ids = {g.gap_id for g in gaps.default_rules()}
    seen = {i for e in EXAMPLES for i in (*e["reported"], *e["not_reported"])}
    assert ids - seen <= {"reads-without-responses", "exec-without-uri"}, ids - seen


def test_unknown_condition_is_refused() -> None:
    rules = gaps.load_rules(
        {"gaps": [{"id": "x", "providers": ["native"], "when": {"bogus": 1}, "message": "m"}]}
    )
    with pytest.raises(ValueError, match="unknown gap condition"):
        gaps.evaluate(gaps.Observation(provider="native"), rules)


EXPECTED = {
    "native": {"policy-unknown"},
    "eks": {"events-level-none", "secrets-metadata-only", "best-effort-delivery"},
    "aks": {"proxy-source-address"},
    "gke": {"events-level-none", "no-user-extra"},
    "gke-default": {"data-access-off", "events-level-none"},
    "aks-admin": {"admin-category-no-reads"},
}


@pytest.mark.parametrize("story", ["attack", "benign"])
@pytest.mark.parametrize("provider", PROVIDERS + VARIANTS)
def test_gaps_reported_for_each_provider_fixture(built: Any, story: str, provider: str) -> None:
    s = built(story, provider)
    found = {g["id"] for g in s.doc["gaps"]}
    assert EXPECTED[provider] <= found
    if provider == "gke":
        assert "data-access-off" not in found  # reads are in this export
    for g in s.doc["gaps"]:
        assert g["provider"] == provider.split("-", maxsplit=1)[0]
        assert g["message"] and g["basis"]


def test_gaps_become_caveats(built: Any) -> None:
    s = built("attack", "eks")
    cav = s.rec.caveats()
    assert {c.kind for c in cav} >= {"audit-gap:events-level-none"}
    assert all(c.message.startswith("eks: ") for c in cav)

"""tactics.yml: the examples it carries, and its consistency."""

from __future__ import annotations

from typing import Any

import pytest

from podmortem.audit.reconstruct.tactics import TacticMap

TMAP = TacticMap.default()
EXAMPLES = list(TMAP.examples)


@pytest.mark.parametrize("example", EXAMPLES, ids=[str(i) for i in range(len(EXAMPLES))])
def test_tactic_examples(example: dict[str, Any]) -> None:
    if "techniques" in example:
        assert TMAP.primary(example["techniques"]) == example["tactic"]
    else:
        assert TMAP.is_attack(example["chain"], example["misuse"]) is example["attack"]


def test_sub_technique_falls_back_to_its_parent() -> None:
    assert TMAP.primary(["T1552.099"]) == "credential-access"
    assert TMAP.primary(["t1609"]) == "execution"


def test_tactics_outside_the_kill_chain_are_refused() -> None:
    with pytest.raises(ValueError, match="outside the kill chain"):
        TacticMap.from_dict({"kill_chain": ["execution"], "techniques": {"T1": ["impact"]}})


def test_rank_orders_the_kill_chain() -> None:
    ranks = [TMAP.rank(t) for t in TMAP.kill_chain]
    assert ranks == sorted(ranks)
    assert TMAP.rank("unmapped") == len(TMAP.kill_chain)

from __future__ import annotations

import pytest

from podmortem.report import attack


def test_examples_in_the_data_file() -> None:
    atk = attack.load()
    positive = atk.examples["positive"]
    negative = atk.examples["negative"]
    assert positive and negative
    for raw, tactics in positive.items():
        assert list(atk.technique(raw).tactics) == tactics, raw
    for raw in negative:
        assert atk.technique(str(raw)).tactics == (), raw


def test_tactics_of_keeps_matrix_order_and_unmapped() -> None:
    atk = attack.load()
    assert atk.tactics_of(["T1498", "T1609", "T1611"]) == [
        "execution",
        "privilege-escalation",
        "impact",
    ]
    assert atk.tactics_of(["T9999"]) == [attack.UNMAPPED]


def test_every_technique_podmortem_can_report_is_mapped() -> None:
    """A rule naming a technique the table does not know would land in 'unmapped' in every
    report: extend attack.yaml when this fails."""
    from podmortem.audit.ruleset import load_builtin
    from podmortem.image.catalog import rules

    atk = attack.load()
    used = {t for r in load_builtin().rules for t in r.techniques}
    used |= {t for r in rules().values() for t in r.techniques}
    assert len(used) > 20
    assert sorted(t for t in used if not atk.technique(t).tactics) == []


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("T1552.007", "https://attack.mitre.org/techniques/T1552/007/"),
        ("t1609", "https://attack.mitre.org/techniques/T1609/"),
    ],
)
def test_technique_url(raw: str, url: str) -> None:
    assert attack.load().technique(raw).url == url

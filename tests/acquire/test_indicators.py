"""Every rule's examples in indicators.yaml: positives fire, negatives do not."""

from __future__ import annotations

import pytest

from podmortem.acquire import indicators

RAW = indicators.load().raw


@pytest.mark.parametrize("ex", RAW["secret_environment"]["examples"]["positive"])
def test_secret_positive(ex: dict[str, str]) -> None:
    assert indicators.secret_reason(ex["name"], ex["value"]) is not None


@pytest.mark.parametrize("ex", RAW["secret_environment"]["examples"]["negative"])
def test_secret_negative(ex: dict[str, str]) -> None:
    assert indicators.secret_reason(ex["name"], ex["value"]) is None


@pytest.mark.parametrize("path", RAW["persistence"]["examples"]["positive"])
def test_persistence_positive(path: str) -> None:
    assert indicators.persistence_technique(path) is not None


@pytest.mark.parametrize("path", RAW["persistence"]["examples"]["negative"])
def test_persistence_negative(path: str) -> None:
    assert indicators.persistence_technique(path) is None


def test_uid0_accounts() -> None:
    passwd = b"root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1::/:/bin/false\ntoor:x:0:0::/:/bin/sh\n"
    assert indicators.uid0_accounts(passwd) == ["toor"]
    assert indicators.uid0_accounts(b"root:x:0:0::/root:/bin/sh\nbroken\n") == []


def test_every_rule_is_well_formed() -> None:
    rules = indicators.load().rules
    assert set(rules) == set(RAW["rules"])
    for r in rules.values():
        assert r.id.startswith("acquire.") and r.title and r.summary and r.techniques
    f = indicators.finding("hidden-process", "docker://x pid 9")
    assert f.rule_id == "acquire.hidden-process" and f.severity.name == "HIGH"


def test_secret_finding_never_carries_the_value() -> None:
    assert indicators.secret_reason("X", "AKIAIOSFODNN7EXAMPLE") == "value format"

"""Actor classes: the examples in actors.yml, classified in SQL and in Python alike."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podmortem.audit.actors import ActorPolicy
from podmortem.findings import Severity

POLICY = ActorPolicy.default_policy()


def _sql_class(username: str | None, groups: list[str]) -> str:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (username VARCHAR, user_groups VARCHAR[])")
    con.execute("INSERT INTO t VALUES (?, ?)", [username, groups])
    row = con.execute(f"SELECT {POLICY.sql()} FROM t").fetchone()  # noqa: S608
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize("example", POLICY.examples, ids=lambda e: e["username"] or "(empty)")
def test_policy_examples(example: dict[str, object]) -> None:
    user = str(example["username"])
    groups = [str(g) for g in example["groups"]]  # type: ignore[attr-defined]
    assert POLICY.classify(user, groups) == example["class"]
    assert _sql_class(user, groups) == example["class"]


def test_every_class_has_an_example() -> None:
    assert {e["class"] for e in POLICY.examples} == set(POLICY.class_names)


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(st.none(), st.text(max_size=40)),
    st.lists(
        st.sampled_from(
            [
                "system:masters",
                "system:nodes",
                "system:serviceaccounts",
                "system:unauthenticated",
                "dev",
                "%",
                "_",
            ]
        ),
        max_size=3,
    ),
)
def test_sql_and_python_agree(username: str | None, groups: list[str]) -> None:
    if username and "\x00" in username:
        return
    assert _sql_class(username, groups) == POLICY.classify(username, groups)


def test_severity_shift_is_capped() -> None:
    assert POLICY.adjust(Severity.CRITICAL, "anonymous") is Severity.CRITICAL
    assert POLICY.adjust(Severity.HIGH, "anonymous") is Severity.CRITICAL
    assert POLICY.adjust(Severity.INFORMATIONAL, "control-plane") is Severity.INFORMATIONAL
    assert POLICY.adjust(Severity.MEDIUM, "human") is Severity.MEDIUM


def test_policy_rejects_unknown_class_names() -> None:
    with pytest.raises(ValueError, match="unknown classes"):
        ActorPolicy.from_dict({"classes": [], "default": "human", "severity_shift": {"robot": 1}})

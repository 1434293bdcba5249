"""Actor classification: human, workload service account, node, control plane, cloud system
identity, anonymous. The classes and each provider's system principals are data
(``actors.yml``); this module turns them into one SQL ``CASE`` expression (the engine
classifies in DuckDB) and into a Python function that must agree with it (tests check both).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from podmortem.audit.dialect import DUCKDB, Dialect
from podmortem.audit.fieldmap import sql_string
from podmortem.findings import Severity


@dataclass(frozen=True, slots=True)
class ActorClass:
    name: str
    description: str
    usernames: tuple[str, ...]
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ActorPolicy:
    classes: tuple[ActorClass, ...]
    default: str
    severity_shift: Mapping[str, int]
    default_expected: frozenset[str]
    examples: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ActorPolicy:
        classes = tuple(
            ActorClass(
                name=str(c["name"]),
                description=str(c.get("description", "")),
                usernames=tuple(str(u) for u in c.get("usernames", ())),
                groups=tuple(str(g) for g in c.get("groups", ())),
            )
            for c in data["classes"]
        )
        names = {c.name for c in classes} | {str(data["default"])}
        expected = frozenset(str(x) for x in data.get("default_expected_actors", ()))
        unknown = (set(data.get("severity_shift", {})) | expected) - names
        if unknown:
            raise ValueError(f"actor policy names unknown classes: {sorted(unknown)}")
        return cls(
            classes=classes,
            default=str(data["default"]),
            severity_shift={str(k): int(v) for k, v in data.get("severity_shift", {}).items()},
            default_expected=expected,
            examples=tuple(data.get("examples", ())),
        )

    @classmethod
    def default_policy(cls) -> ActorPolicy:
        return _default_policy()

    @property
    def class_names(self) -> tuple[str, ...]:
        return (*(c.name for c in self.classes), self.default)

    def classify(self, username: str | None, groups: Sequence[str] | None = ()) -> str:
        user = username or ""
        gset = set(groups or ())
        for c in self.classes:
            if any(_glob(p).fullmatch(user) for p in c.usernames) or gset & set(c.groups):
                return c.name
        return self.default

    def sql(
        self,
        username: str = '"username"',
        groups: str = '"user_groups"',
        *,
        dialect: Dialect = DUCKDB,
    ) -> str:
        """A DuckDB (or Spark SQL) expression giving the class name for each row."""
        whens = []
        lit = dialect.string
        for c in self.classes:
            conds = [_username_sql(username, p, dialect) for p in c.usernames]
            if c.groups:
                conds.append(dialect.has_any(groups, c.groups))
            if conds:
                whens.append(f"WHEN {' OR '.join(conds)} THEN {lit(c.name)}")
        return f"(CASE {' '.join(whens)} ELSE {lit(self.default)} END)"

    def classes_of(self, rows: str, username: str = "username", groups: str = "user_groups") -> str:
        """A relation ``(a_user, a_groups, actor_class)``: the class of each distinct
        (``username``, ``groups``) pair of ``rows`` (a table or CTE name), to join on
        :meth:`joins` instead of evaluating :meth:`sql` per row. The ``CASE`` has dozens
        of patterns and costs microseconds a row (45k secret reads of a correlation:
        0.2 s of CPU); a log has few distinct identities."""
        return (
            f"SELECT a_user, a_groups, {self.sql('a_user', 'a_groups')} AS actor_class"  # noqa: S608 - names are ours
            f" FROM (SELECT DISTINCT {username} AS a_user, {groups} AS a_groups FROM {rows})"
        )

    @staticmethod
    def joins(
        classes: str, row: str, username: str = "username", groups: str = "user_groups"
    ) -> str:
        """The join condition of a row (alias ``row``) and its class in :meth:`classes_of`
        (alias ``classes``): NULL usernames and groups pair too."""
        return (
            f"{classes}.a_user IS NOT DISTINCT FROM {row}.{username}"
            f" AND {classes}.a_groups IS NOT DISTINCT FROM {row}.{groups}"
        )

    def adjust(self, level: Severity, actor_class: str) -> Severity:
        shifted = int(level) + self.severity_shift.get(actor_class, 0)
        return Severity(max(int(Severity.INFORMATIONAL), min(int(Severity.CRITICAL), shifted)))


def _username_sql(col: str, pattern: str, dialect: Dialect = DUCKDB) -> str:
    user = f"coalesce({col}, '')"
    if "*" not in pattern:
        return f"{user} = {sql_string(pattern, dialect)}"
    like = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")
    return dialect.like(user, like, ci=False)


@cache
def _glob(pattern: str) -> re.Pattern[str]:
    # only * is a wildcard (as in the SQL form); [ and ? are literal characters.
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


@cache
def _default_policy() -> ActorPolicy:
    text = resources.files("podmortem.audit").joinpath("actors.yml").read_text("utf-8")
    return ActorPolicy.from_dict(yaml.safe_load(text))

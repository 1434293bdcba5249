"""Evidence gaps per source: what the provider's audit policy or export could not have logged
(``gaps.yml``), stated beside the results so that an absence of findings is not misread.

A *source* is one provider's export of one cluster (provider, envelope, cluster). What it
shows (resources, verbs, levels, log names, categories, credential IDs, truncation) is
observed in one query; each gap's condition is then tested against that observation.
"""

# ruff: noqa: S608 -- table names are plain identifiers checked by requests.check_table;
# every value from evidence or the user is a bound parameter.

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import duckdb
import yaml

from podmortem.audit.model import TABLE
from podmortem.audit.reconstruct.requests import EXTRA_CREDENTIAL, first_distinct, json_value
from podmortem.findings import Caveat, Provenance

LEVELS = ("None", "Metadata", "Request", "RequestResponse")


@dataclass(slots=True)
class Observation:
    """What one source shows."""

    provider: str
    envelope: str | None = None
    cluster: str | None = None
    events: int = 0
    files: list[str] = field(default_factory=list)
    resources: set[str] = field(default_factory=set)
    verbs: set[str] = field(default_factory=set)
    levels: dict[str, str] = field(default_factory=dict)  # resource -> highest level seen
    logs: set[str] = field(default_factory=set)  # GKE: activity, data_access, ...
    categories: set[str] = field(default_factory=set)  # AKS diagnostic categories
    credential_ids: int = 0
    truncated: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Observation:
        return cls(
            provider=str(d["provider"]),
            resources=set(d.get("resources", ())),
            verbs=set(d.get("verbs", ())),
            levels=dict(d.get("levels", {})),
            logs=set(d.get("logs", ())),
            categories=set(d.get("categories", ())),
            credential_ids=int(d.get("credential_ids", 0)),
            truncated=int(d.get("truncated", 0)),
        )


@dataclass(frozen=True, slots=True)
class GapRule:
    gap_id: str
    providers: frozenset[str]
    when: Mapping[str, Any]
    message: str
    hides: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Gap:
    gap_id: str
    provider: str
    envelope: str | None
    cluster: str | None
    files: tuple[str, ...]
    message: str
    basis: str  # "provider policy" or what was observed
    hides: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.gap_id,
            "provider": self.provider,
            "envelope": self.envelope,
            "cluster": self.cluster,
            "files": list(self.files),
            "message": self.message,
            "basis": self.basis,
            "hides": list(self.hides),
        }

    def caveat(self) -> Caveat:
        return Caveat(
            kind=f"audit-gap:{self.gap_id}",
            message=f"{self.provider}: {self.message}",
            provenance=Provenance(
                source="file",
                parser="podmortem.audit.reconstruct.gaps",
                artifact=self.files[0] if self.files else None,
            ),
            details={"basis": self.basis, "hides": list(self.hides), "cluster": self.cluster},
        )


def _test(cond: Mapping[str, Any], o: Observation) -> str | None:
    """The observed basis when ``cond`` holds for ``o``, else None."""
    if "any" in cond:
        for sub in cond["any"]:
            if (basis := _test(sub, o)) is not None:
                return basis
        return None
    if cond.get("always"):
        return "provider policy"
    if "absent_resource" in cond:
        r = str(cond["absent_resource"])
        return None if r in o.resources else f"no request on {r} among {o.events} events"
    if "below_level" in cond:
        r, lvl = str(cond["below_level"]["resource"]), str(cond["below_level"]["level"])
        seen = o.levels.get(r)
        if r not in o.resources or seen is None:
            return None
        ok = LEVELS.index(seen) < LEVELS.index(lvl) if seen in LEVELS else False
        return f"highest level seen on {r}: {seen}" if ok else None
    if "absent_verbs" in cond:
        vs = [str(v) for v in cond["absent_verbs"]]
        return None if o.verbs & set(vs) else f"no {'/'.join(vs)} among {o.events} events"
    if "absent_log" in cond:
        s = str(cond["absent_log"])
        return None if any(s in log for log in o.logs) else f"no {s} log entries among {o.events}"
    if "category" in cond:
        c = str(cond["category"])
        return f"category {c}" if c in o.categories else None
    if cond.get("no_credential_ids"):
        return None if o.credential_ids else f"no credential ID among {o.events} events"
    if cond.get("truncated"):
        return f"{o.truncated} truncated event(s)" if o.truncated else None
    raise ValueError(f"unknown gap condition {sorted(cond)}")


def evaluate(o: Observation, rules: tuple[GapRule, ...] | None = None) -> list[Gap]:
    out = []
    for rule in rules if rules is not None else default_rules():
        if o.provider not in rule.providers:
            continue
        basis = _test(rule.when, o)
        if basis is None:
            continue
        out.append(
            Gap(
                rule.gap_id,
                o.provider,
                o.envelope,
                o.cluster,
                tuple(o.files),
                rule.message,
                basis,
                rule.hides,
            )
        )
    return out


def observe(con: duckdb.DuckDBPyConnection, table: str = TABLE) -> list[Observation]:
    """One observation per (provider, envelope, cluster) in the events table."""
    level_rank = (
        "CASE level WHEN 'RequestResponse' THEN 3 WHEN 'Request' THEN 2"
        " WHEN 'Metadata' THEN 1 ELSE 0 END"
    )
    rows = con.execute(
        f"""
        WITH s AS (
            -- log_name: the GKE logName, the AKS category (the readers keep it, as the
            -- original record in raw is not always kept)
            SELECT coalesce(provider, 'unknown') AS p, envelope AS env, cluster AS cl,
                   CASE WHEN provider = 'gke' THEN log_name END AS log_name,
                   CASE WHEN provider = 'aks' THEN log_name END AS category,
                   source_file, obj_resource, verb, level, user_extra, truncated
            FROM "{table}"
        ), lv AS (
            SELECT p, env, cl, obj_resource, max({level_rank}) AS lr
            FROM s WHERE obj_resource IS NOT NULL GROUP BY ALL
        )
        SELECT s.p, s.env, s.cl, count(*),
               {first_distinct("source_file", 50)},
               list_distinct(list(obj_resource) FILTER (obj_resource IS NOT NULL)),
               list_distinct(list(verb) FILTER (verb IS NOT NULL)),
               (SELECT list(struct_pack(r := obj_resource, l := lr)) FROM lv
                 WHERE lv.p = s.p AND lv.env IS NOT DISTINCT FROM s.env
                   AND lv.cl IS NOT DISTINCT FROM s.cl),
               list_distinct(list(regexp_extract(log_name, '%2F([a-z_]+)$', 1))
                             FILTER (log_name IS NOT NULL)),
               list_distinct(list(category) FILTER (category IS NOT NULL)),
               count(*) FILTER ({json_value("user_extra", EXTRA_CREDENTIAL)} IS NOT NULL),
               count(*) FILTER (coalesce(truncated, FALSE))
        FROM s GROUP BY s.p, s.env, s.cl ORDER BY s.p, s.env, s.cl
        """
    ).fetchall()
    out = []
    for r in rows:
        o = Observation(provider=str(r[0]), envelope=r[1], cluster=r[2], events=int(r[3]))
        o.files = sorted(str(x) for x in r[4] or [] if x is not None)
        o.resources = {str(x) for x in r[5] or []}
        o.verbs = {str(x) for x in r[6] or []}
        o.levels = {str(x["r"]): LEVELS[int(x["l"])] for x in r[7] or []}
        o.logs = {str(x) for x in r[8] or [] if x}
        o.categories = {str(x) for x in r[9] or []}
        if "admin" in (o.envelope or "").lower():
            o.categories.add("kube-audit-admin")  # AKSAuditAdmin rows
        o.credential_ids = int(r[10])
        o.truncated = int(r[11])
        out.append(o)
    return out


def gaps(con: duckdb.DuckDBPyConnection, table: str = TABLE) -> list[Gap]:
    return [g for o in observe(con, table) for g in evaluate(o)]


def load_rules(data: Mapping[str, Any]) -> tuple[GapRule, ...]:
    rules = []
    seen: set[str] = set()
    for g in data["gaps"]:
        gid = str(g["id"])
        key = gid + "|" + ",".join(sorted(g["providers"]))
        if key in seen:
            raise ValueError(f"duplicate gap {gid}")
        seen.add(key)
        rules.append(
            GapRule(
                gap_id=gid,
                providers=frozenset(str(p) for p in g["providers"]),
                when=dict(g["when"]),
                message=" ".join(str(g["message"]).split()),
                hides=tuple(str(h) for h in g.get("hides", ())),
            )
        )
    return tuple(rules)


@cache
def _data() -> dict[str, Any]:
    text = resources.files("podmortem.audit.reconstruct").joinpath("gaps.yml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def default_rules() -> tuple[GapRule, ...]:
    return load_rules(_data())


def examples() -> list[Mapping[str, Any]]:
    return list(_data().get("examples", ()))

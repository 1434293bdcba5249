"""Shortcuts of the rule matching that must never change what a rule matches.

- The rule compiler tests a key's quoted name in a JSON column's text before it parses the
  document (``contains("request_object", '"privileged"')``): held to it on documents whose
  keys the evidence spelled with escapes, through every way events reach the table.
- The engine runs a rule over a row set (audit.rowsets): the rows with a body, with the
  key names found once, or the rows of the kinds of request (verb, resource, subresource)
  the rule can match, as the compiler works them out.
- Case-insensitive equality is written ILIKE, LIKE without an ESCAPE clause."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from audit_rows import make_table, sigma_conditions
from hypothesis import given, settings
from hypothesis import strategies as st

from podmortem.audit import engine, parquet, rowsets
from podmortem.audit.dialect import DUCKDB
from podmortem.audit.model import COLUMN_NAMES, create_table
from podmortem.audit.ruleset import load_builtin
from podmortem.audit.sigma import compile_rule
from podmortem.audit.sources import load

BUILTIN = load_builtin()
POD_RULES = {"k8s_privileged_container", "k8s_host_pid_pod"}


def _pod(n: int, spec: str) -> str:
    """A pod create whose spec is ``spec``, JSON text written by hand (escapes kept)."""
    return (
        '{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse",'
        f'"auditID":"00000000-0000-0000-0000-{n:012d}","stage":"ResponseComplete",'
        '"requestURI":"/api/v1/namespaces/shop/pods","verb":"create",'
        '"user":{"username":"mallory@example.com","groups":["system:authenticated"]},'
        '"sourceIPs":["203.0.113.66"],"objectRef":{"resource":"pods","namespace":"shop",'
        f'"name":"p{n}","apiVersion":"v1"}},"responseStatus":{{"code":201}},'
        f'"requestObject":{{"kind":"Pod","spec":{spec}}},'
        '"requestReceivedTimestamp":"2026-11-20T10:00:00.000000Z",'
        '"stageTimestamp":"2026-11-20T10:00:00.100000Z"}'
    )


# The keys spelled with \u escapes, once each, and a decoy value that is not a key.
ESCAPED = [
    _pod(
        1,
        '{"hostPID":true,"containers":[{"name":"c","image":"busybox",'
        '"securityContext":{"privil\\u0065ged":true}}]}',
    ),
    _pod(2, '{"host\\u0050ID":true,"containers":[{"name":"c","image":"busybox"}]}'),
    _pod(3, '{"containers":[{"name":"privileged","image":"busybox"}]}'),
]


def _hits(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Hits of the pod rules, on the table and on the row sets (forced): the same."""
    got = []
    for min_rows in (10**9, 0):
        saved, rowsets.MIN_ROWS = rowsets.MIN_ROWS, min_rows
        try:
            res = engine.run(con, BUILTIN)
        finally:
            rowsets.MIN_ROWS = saved
        got.append({k: v for k, v in res.hits_per_rule.items() if k in POD_RULES})
    assert got[0] == got[1]
    return got[0]


@pytest.mark.parametrize(("native_fast", "keep_raw"), [(True, False), (True, True), (False, False)])
def test_escaped_key_names_match_through_every_reader(
    tmp_path: Path, native_fast: bool, keep_raw: bool
) -> None:
    p = tmp_path / "audit.jsonl"
    p.write_text("\n".join(ESCAPED) + "\n")
    con = duckdb.connect()
    load(con, [p], native_fast=native_fast, keep_raw=keep_raw)
    bodies = [r[0] for r in con.execute("SELECT request_object FROM audit_events").fetchall()]
    assert all("\\u" not in b for b in bodies)  # stored decoded
    assert _hits(con) == {"k8s_privileged_container": 1, "k8s_host_pid_pod": 2}


def _escape_keys(text: str) -> str:
    text = text.replace('"privileged"', '"privil\\u0065ged"')
    return text.replace('"hostPID"', '"host\\u0050ID"')


def test_escaped_key_names_in_a_parquet_dataset_are_decoded_on_reading(tmp_path: Path) -> None:
    """A dataset written by someone else may hold the text as it came: it is re-written
    as DuckDB writes it when read."""
    src = duckdb.connect()
    create_table(src)
    texts = [json.loads(line)["requestObject"] for line in ESCAPED]
    for n, line in enumerate(ESCAPED, 1):
        ev = json.loads(line)
        src.execute(
            "INSERT INTO audit_events (event_key, audit_id, verb, username, obj_resource,"
            " obj_namespace, request_object, provider, envelope, source_file, source_line)"
            " VALUES (?, ?, 'create', 'mallory@example.com', 'pods', 'shop', ?::VARCHAR,"
            " 'native', 'jsonl', 'x', ?)",
            [f"k{n}", ev["auditID"], _escape_keys(json.dumps(texts[n - 1])), n],
        )
    stored = src.execute("SELECT string_agg(request_object, ' ') FROM audit_events").fetchone()
    assert stored is not None and "\\u0050" in stored[0]  # as written
    out = tmp_path / "ds.parquet"
    cols = ", ".join(f'"{c}"' for c in COLUMN_NAMES)
    copy = (
        f"COPY (SELECT {cols}, cluster AS {parquet.CLUSTER}, rowid AS {parquet.SEQ}"  # noqa: S608 - our names
        f" FROM audit_events) TO '{out}' (FORMAT parquet)"
    )
    src.execute(copy)
    con = duckdb.connect()
    create_table(con)
    parquet.load_parquet(con, [out])
    assert _hits(con) == {"k8s_privileged_container": 1, "k8s_host_pid_pod": 2}


def test_rules_on_the_rows_with_a_body_match_what_they_match_on_every_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[dict[str, Any]] = [json.loads(x) for x in ESCAPED]
    # rows without a body, and bodies of other kinds, around them
    for n in range(10, 40):
        e = json.loads(ESCAPED[n % 3])
        e["auditID"] = f"a-{n}"
        if n % 4 == 0:
            e.pop("requestObject")
            e["verb"] = "get"
        elif n % 4 == 1:
            e["objectRef"] = {
                "resource": "clusterrolebindings",
                "apiGroup": "rbac.authorization.k8s.io",
                "name": f"b{n}",
            }
            e["requestObject"] = {"roleRef": {"name": "cluster-admin"}, "subjects": []}
        events.append(e)
    con = make_table(events)
    monkeypatch.setattr(rowsets, "MIN_ROWS", 0)
    narrowed = _same_as_on_every_row(con, monkeypatch)
    assert narrowed.hits_per_rule.get("k8s_cluster_admin_binding")


def _same_as_on_every_row(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> engine.EngineResult:
    """Run the built-in rules with the row sets, then with every rule on every row; assert
    both give the same hits and findings; return the first result."""
    narrowed = engine.run(con, BUILTIN)
    left = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '_pm_rows_%'"
    ).fetchone()
    assert left == (0,)
    monkeypatch.setattr(rowsets, "MIN_RULES", 10**9)
    whole = engine.run(con, BUILTIN)

    def key(res: engine.EngineResult) -> list[tuple[Any, ...]]:
        return sorted((f.rule_id, f.subject, f.summary, f.evidence) for f in res.findings)

    assert narrowed.hits_per_rule == whole.hits_per_rule
    assert key(narrowed) == key(whole)
    return narrowed


# ------------------------------------------------------------------ case-insensitive equality

_ASCII_WORD = st.from_regex(r"[a-z0-9:.\-@/]{0,12}", fullmatch=True)


def _variants(word: str) -> st.SearchStrategy[str]:
    """The word in other cases, with the Kelvin sign for k, or with a character changed."""
    return st.one_of(
        st.builds(
            lambda flips: "".join(
                c.upper() if f else c
                for c, f in zip(word, flips + [False] * len(word), strict=False)
            ),
            st.lists(st.booleans(), max_size=len(word)),
        ),
        st.just(word.replace("k", "\u212a")),
        st.text(max_size=14).filter(lambda s: "\x00" not in s),
    )


@settings(max_examples=150, deadline=None)
@given(st.data(), _ASCII_WORD)
def test_ilike_equality_is_lower_equality(data: st.DataObject, word: str) -> None:
    """``x ILIKE w`` (what the compiler writes) is ``lower(x) = w`` (what it means) for a
    lower-case ASCII word without wildcards, for any text x."""
    x = data.draw(_variants(word))
    con = duckdb.connect()
    sql = DUCKDB.equals_ci("?", word)
    assert "ILIKE" in sql
    got = con.execute(f"SELECT {sql}, lower(?) = ?", [x, x, word]).fetchone()
    assert got is not None and got[0] == got[1], (x, word)


def test_equality_keeps_lower_where_ilike_would_differ() -> None:
    for word in ("a_b", "100%", "a\\b", "straße"):
        assert DUCKDB.equals_ci("x", word).startswith("(lower(x) = ")


def test_like_needs_no_escape_clause_without_a_backslash() -> None:
    assert "ESCAPE" not in DUCKDB.like("x", "system:%", ci=True)
    assert "ESCAPE" in DUCKDB.like("x", "a\\_b%", ci=False)


# ------------------------------------------------------------------ recorded key names

_KEYS = ["privileged", "hostPID", "a.b", "x-y", "k:8@s*"]
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([*_KEYS, '"privileged"', 'a"hostPID"b', "\\", ""])
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from([*_KEYS, "other", 'q"privileged']), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(_JSON)
def test_recorded_keys_are_the_keys_a_substring_search_finds(doc: Any) -> None:
    """``pm_keys`` (one regular-expression pass) holds a key name exactly when the
    substring test the compiler writes finds it, on any document as DuckDB stores it."""
    con = duckdb.connect()
    text = con.execute("SELECT json(?)", [json.dumps(doc)]).fetchone()
    assert text is not None
    keys_sql = rowsets._keys_sql("d", frozenset(_KEYS))
    for key in _KEYS:
        test = DUCKDB.json_has_key("d", key)
        assert test is not None
        row = con.execute(
            f"SELECT list_contains({keys_sql}, ?), {test} FROM (SELECT ?::JSON AS d)",  # noqa: S608 - test
            [key, text[0]],
        ).fetchone()
        assert row is not None and row[0] == row[1], (key, text[0])


def test_rules_on_a_row_set_read_the_recorded_keys() -> None:
    rule = next(r for r in BUILTIN.detections if r.rule_id == "k8s_privileged_container")
    assert ('"request_object"', "privileged") in rule.needs
    rs = rowsets.RowSet("t", '"request_object"', frozenset({"privileged"}))
    sql = rs.rule_sql(rule.sql or "")
    assert "list_contains(pm_keys, 'privileged')" in sql
    assert 'contains("request_object", \'"privileged"\')' not in sql


# ------------------------------------------------------------------ kinds of request


def _scenario_table() -> duckdb.DuckDBPyConnection:
    root = Path(__file__).resolve().parents[1] / "fixtures" / "scenarios"
    con = duckdb.connect()
    load(con, sorted(p for p in root.glob("*/*") if p.is_file()))
    return con


def test_every_row_set_gives_the_findings_of_the_whole_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attack and benign scenarios in all provider formats, every built-in rule: the
    findings are the same with the row sets (forced, whatever their share of the rows) as
    with every rule scanning every row."""
    con = _scenario_table()
    monkeypatch.setattr(rowsets, "MAX_KIND_SHARE", 1.0)
    monkeypatch.setattr(rowsets, "MIN_ROWS", 0)
    made: list[str] = []
    real = rowsets._kinds

    def spy(*args: Any, **kw: Any) -> rowsets.RowSet | None:
        out = real(*args, **kw)
        made.append(out.name if out else "")
        return out

    monkeypatch.setattr(rowsets, "_kinds", spy)
    narrowed = _same_as_on_every_row(con, monkeypatch)
    assert made and made[0], "the kinds row set was not made"
    assert len(narrowed.findings) > 20


_KIND_ATOMS = {
    "vc": "verb: create",
    "vd": "verb: [delete, DeleteCollection]",
    "vw": "verb|contains: at",
    "rp": "objectRef.resource: pods",
    "rs": "objectRef.resource: [secrets, Pods]",
    "sx": "objectRef.subresource: exec",
    "sn": "objectRef.subresource: null",
    "se": "objectRef.subresource|exists: true",
    "ns": "objectRef.namespace: kube-system",
}
_KIND_EVENTS = [
    {
        "auditID": f"k{i}",
        "stage": "ResponseComplete",
        "verb": verb,
        "objectRef": {"resource": res, "subresource": sub, "namespace": ns},
    }
    for i, (verb, res, sub, ns) in enumerate(
        (v, r, s, n)
        for v in ("create", "delete", "deletecollection", "get", "update")
        for r in ("pods", "secrets", None)
        for s in ("exec", None)
        for n in ("kube-system", "shop")
    )
]
_KIND_CONDITIONS = sigma_conditions(list(_KIND_ATOMS))


@settings(max_examples=80, deadline=None)
@given(_KIND_CONDITIONS)
def test_a_rule_matches_only_the_kinds_of_request_it_allows(condition: str) -> None:
    from sigma.rule import SigmaRule

    sels = "\n".join(f"  {k}: {{{v}}}" for k, v in _KIND_ATOMS.items())
    rule = SigmaRule.from_yaml(
        "title: t\nlogsource: {product: kubernetes, service: audit}\ndetection:\n"
        f"{sels}\n  condition: {condition}\n"
    )
    compiled = compile_rule(rule, engine.FieldMap.default())
    con = make_table(_KIND_EVENTS)
    cols = [c for c, _ in compiled.allowed]
    rows = con.execute(
        f"SELECT {', '.join(cols) or '1'} FROM audit_events WHERE {compiled.sql}"  # noqa: S608 - compiled rule
    ).fetchall()
    for row in rows:
        for (column, values), value in zip(compiled.allowed, row, strict=False):
            assert value in values, (condition, column, value, values)


def test_correlations_read_the_same_requests_from_the_gathered_hits() -> None:
    """One scan gathers the hits of every correlation (correlate.gather); each correlation
    then finds what it finds reading the event table itself."""
    from podmortem.audit import correlate
    from podmortem.audit.actors import ActorPolicy

    con = _scenario_table()
    engine.run(con, BUILTIN)  # fills the hit table
    index = {r.key: i for i, r in enumerate(BUILTIN.detections)}
    corrs = BUILTIN.correlations
    ids = {
        c.key: [index[k] for k in c.correlation.rules if k in index] if c.correlation else []
        for c in corrs
    }
    gathered = correlate.gather(
        con, corrs, [i for v in ids.values() for i in v], table="audit_events", hits=engine.HITS
    )
    policy = ActorPolicy.default_policy()
    found = 0
    for c in corrs:
        kw: dict[str, Any] = {
            "rule_indexes": ids[c.key],
            "table": "audit_events",
            "hits": engine.HITS,
            "policy": policy,
        }
        fast = correlate.run_correlation(con, c, gathered=gathered, **kw)
        slow = correlate.run_correlation(con, c, **kw)
        assert [f.to_dict() for f in fast[0]] == [f.to_dict() for f in slow[0]], c.rule_id
        assert fast[1] == slow[1]
        found += len(fast[0])
    assert found


def test_a_row_set_duckdb_cannot_make_leaves_every_rule_on_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DuckDB failing half way (memory) costs speed, not findings, and leaves no table."""
    con = _scenario_table()
    whole = engine.run(con, BUILTIN)
    monkeypatch.setattr(rowsets, "MIN_ROWS", 0)
    monkeypatch.setattr(rowsets, "MAX_KIND_SHARE", 1.0)

    def fail(*args: Any, **kw: Any) -> rowsets.RowSet | None:
        raise duckdb.OutOfMemoryException("no memory for the kinds")

    monkeypatch.setattr(rowsets, "_kinds", fail)
    assert rowsets.build(con, BUILTIN.detections, "audit_events") == {}
    left = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '_pm_rows_%'"
    ).fetchone()
    assert left == (0,)
    again = engine.run(con, BUILTIN)
    assert again.hits_per_rule == whole.hits_per_rule

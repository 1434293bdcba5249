"""Timesketch export: required fields, one line per request, tags, CSV formula safety."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from conftest import PROVIDERS
from podmortem.audit.reconstruct import timeline

REQUIRED = ("message", "datetime", "timestamp_desc")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_jsonl_has_timesketch_fields_one_line_per_request(built: Any, provider: str) -> None:
    s = built("attack", provider)
    out = io.StringIO()
    tags = timeline.narrative_tags(s.doc["narrative"])
    n = timeline.write(out, "jsonl", s.con, tags=tags)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert n == len(lines) == s.rec.requests
    for ev in lines:
        assert all(ev[k] for k in REQUIRED)
        assert ev["timestamp"] > 1_700_000_000_000_000  # microseconds
    assert [e["datetime"] for e in lines] == sorted(e["datetime"] for e in lines)
    tagged = [e for e in lines if "attack-1" in e["tag"]]
    assert tagged and all(e["client_ip"] == "203.0.113.66" for e in tagged)
    execs = [e for e in lines if e["subresource"] == "exec"]
    assert execs and all(" $ " in e["message"] for e in execs)


def test_csv_reads_back_and_neutralises_formulas(built: Any) -> None:
    s = built("benign", "native")
    s.con.execute(
        "CREATE OR REPLACE TEMP TABLE evil AS SELECT * "
        "REPLACE ('=HYPERLINK(\"http://x\")' AS user_agent) FROM audit_events"
    )
    out = io.StringIO()
    n = timeline.write(out, "csv", s.con, table="evil")
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == n
    assert list(rows[0])[:4] == ["message", "datetime", "timestamp", "timestamp_desc"]
    assert all(r["user_agent"].startswith("'=") for r in rows)
    assert all(r["datetime"] and r["timestamp_desc"] for r in rows)


def test_filter_by_actor(built: Any) -> None:
    s = built("attack", "native")
    out = io.StringIO()
    n = timeline.write(
        out, "jsonl", s.con, where="coalesce(username, '') = ?", params=["system:anonymous"]
    )
    assert n == 7
    assert {json.loads(x)["actor"] for x in out.getvalue().splitlines()} == {"system:anonymous"}


def test_unknown_format_and_table_are_refused(built: Any) -> None:
    s = built("attack", "native")
    with pytest.raises(ValueError, match="format"):
        timeline.write(io.StringIO(), "xml", s.con)
    from podmortem.errors import InputError

    with pytest.raises(InputError):
        timeline.write(io.StringIO(), "csv", s.con, table="x; DROP TABLE audit_events")

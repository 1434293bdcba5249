"""Hostile evidence: whatever the strings, reconstruction finishes and stays bounded."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import scenarios
from podmortem.audit.reconstruct import pivots, reconstruct, timeline
from podmortem.audit.sources import load
from podmortem.errors import InputError

text = st.text(min_size=0, max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    username=text,
    ua=text,
    ips=st.lists(text, max_size=3),
    extra=st.dictionaries(
        st.sampled_from(
            [
                "authentication.kubernetes.io/credential-id",
                "authentication.kubernetes.io/pod-name",
                "authentication.kubernetes.io/node-name",
                "arn",
            ]
        )
        | text,
        json_values,
        max_size=4,
    ),
    annotations=st.dictionaries(text, json_values, max_size=3),
    name=text,
)
def test_reconstruction_survives_hostile_fields(  # noqa: PLR0917 - one per strategy
    tmp_path: Path,
    username: str,
    ua: str,
    ips: list[str],
    extra: dict[str, Any],
    annotations: dict[str, Any],
    name: str,
) -> None:
    ev = scenarios.attack("native")[-1]
    ev["user"] = {"username": username, "extra": extra}
    ev["userAgent"] = ua
    ev["sourceIPs"] = ips
    ev["annotations"] = annotations
    ev["objectRef"]["name"] = name
    path = tmp_path / "h.jsonl"
    path.write_text(
        json.dumps(ev) + "\n" + json.dumps(scenarios.attack("native")[0]) + "\n", encoding="utf-8"
    )
    con = duckdb.connect()
    load(con, [path])
    rec = reconstruct(con)
    json.dumps(rec.to_dict(), default=str)
    for ask in (lambda: pivots.actor(con, username), lambda: pivots.credential(con, name or "x")):
        try:
            ask()
        except InputError as exc:  # what the examiner typed may be refused: in one line
            assert exc.message and "\n" not in exc.message
    timeline.write(io.StringIO(), "csv", con)

"""Documents in a case are derived from hostile evidence: any JSON shape in an acquisition
document must give a report (with what could be read), never an exception."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podmortem import report
from podmortem.case import Case
from podmortem.report import html, markdown

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
field = st.sampled_from(
    [
        "pid",
        "ppid",
        "ns_pid",
        "cmdline",
        "exe",
        "start_time",
        "path",
        "change",
        "mtime",
        "exe_deleted",
        "restart_count",
        "labels",
        "pod",
    ]
)
record = st.dictionaries(field, json_values, max_size=8).map(lambda d: {**d, "target": "t"})


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    identity=record,
    processes=st.lists(record, max_size=5),
    changes=st.lists(record, max_size=5),
    extra=json_values,
)
def test_any_shape_gives_a_report(tmp_path_factory, identity, processes, changes, extra) -> None:  # type: ignore[no-untyped-def]
    root: Path = tmp_path_factory.mktemp("shape")
    case = Case.init(root / "case", case_id="S", examiner="t")
    doc = {
        "targets": [
            {"target": "t", "identity": identity, "complete": extra},
            extra,
            {"target": extra},
        ],
        "processes": processes,
        "fs_changes": changes,
        "sockets": extra,
    }
    case.add_bytes("t/acquisition.json", json.dumps(doc).encode(), source="analysis")
    case.add_bytes(
        "t/image-x.json",
        json.dumps({"layers": [extra, {"added": extra}]}).encode(),
        source="analysis",
    )
    rep = report.build(case, verify=False)
    html.render(rep)
    markdown.render(rep)
    report.render_json(rep)


def test_unparsable_document_is_a_caveat(tmp_path: Path) -> None:
    case = Case.init(tmp_path / "case", case_id="S", examiner="t")
    case.add_bytes("t/acquisition.json", b"{not json", source="analysis")
    rep = report.build(case, verify=False)
    assert [c.kind for _, c in rep.caveats] == ["artifact-unparsable"]


def test_tampered_artifact_shows_in_the_evidence_table(tmp_path: Path) -> None:
    case = Case.init(tmp_path / "case", case_id="S", examiner="t")
    rec = case.add_bytes("files/a.txt", b"original", source="file")
    (case.root / rec.path).write_bytes(b"altered!")
    rep = report.build(Case.open(case.root))
    assert rep.custody["status"] == "FAILED"
    assert [r.status for r in rep.evidence] == ["artifact-modified"]

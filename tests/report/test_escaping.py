"""Issue 7, done-when 3: an evidence string crafted to inject HTML/JS and ANSI escapes is
shown inert in the HTML and Markdown reports and in the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hostile import HOSTILE, hostile_case

from podmortem import report
from podmortem.report.html import script_json


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hostile")
    case = hostile_case(root / "case")
    rep = report.build(case)
    assert any(HOSTILE in f.finding.title for f in rep.findings)  # the string did arrive
    out = report.write(rep, html=root / "r.html", markdown=root / "r.md", json_path=root / "r.json")
    return {k: p.read_text("utf-8") for k, p in out.items()} | {"case": str(case.root)}


def test_html_has_only_our_elements(rendered: dict[str, str]) -> None:
    html = rendered["html"]
    parser = _Tags()
    parser.feed(html)
    names = [t for t, _ in parser.tags]
    assert names.count("script") == 3  # chart data, plotly.js, the report's own script
    assert "img" not in names
    events = [(t, k) for t, attrs in parser.tags for k, _ in attrs if k.lower().startswith("on")]
    assert events == []
    assert html.count("</script") == 3
    assert "<!--" not in html
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in html
    # and it is shown, as text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert "\\x1b]0;pwned-title\\x07" in html


def test_markdown_is_inert(rendered: dict[str, str]) -> None:
    md = rendered["markdown"]
    for bad in ("<script", "<img", "\x1b", "\x07", "](javascript:", "\u202e"):
        assert bad not in md
    assert "&lt;script&gt;" in md
    # a | in evidence cannot add a table column
    for line in md.splitlines():
        if "pipe" in line and line.startswith("|"):
            assert "\\| pipe" in line


def test_json_keeps_the_value_exactly(rendered: dict[str, str]) -> None:
    import json

    doc = json.loads(rendered["json"])
    assert any(f["title"] == HOSTILE for f in doc["findings"])
    assert "\x1b" not in rendered["json"]  # ensure_ascii: escapes, not raw bytes


@pytest.mark.parametrize("payload", ["</script><script>alert(1)</script>", "<!--", "\u2028x"])
def test_script_json_cannot_end_the_element(payload: str) -> None:
    text = str(script_json({"a": payload}))
    assert "<" not in text and "\u2028" not in text
    import json

    assert json.loads(text) == {"a": payload}


def test_terminal_output_is_inert(rendered: dict[str, str], tmp_path: Path) -> None:
    # FORCE_COLOR: the worst case, a real terminal that Rich styles for.
    env = {**os.environ, "FORCE_COLOR": "1", "TERM": "xterm-256color", "COLUMNS": "200"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "podmortem",
            "report",
            rendered["case"],
            "--json",
            str(tmp_path / "r.json"),
            "--no-verify",
        ],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert b"\x07" not in out and b"\x1b]" not in out and b"\x1b[31mRED" not in out
    assert b"\xe2\x80\xae" not in out  # U+202E
    assert b"\\x1b]0;pwned-title\\x07" in out.replace(b"\\\\", b"\\")


def test_finalize_fast_path_is_safe() -> None:
    """The HTML renderer skips for_plain for str.isprintable() strings: no character that
    for_plain rewrites may be printable."""
    from podmortem.escape import for_plain

    unsafe = [hex(i) for i in range(0x110000) if (c := chr(i)).isprintable() and for_plain(c) != c]
    assert unsafe == []

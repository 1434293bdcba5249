"""Issue 7, done-when 2: the HTML report in a real headless browser (Debian's chromium,
driven by Playwright's client; ``scripts/browser.sh install`` provides it): no console
errors, no network requests, the timeline renders, zooms and filters, and a screenshot is
saved (the pytest tmp dir and ``build/report-*.png``). Also done-when 3 in the browser: the
hostile case's injection strings stay text."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile import hostile_case

from podmortem import report
from podmortem.case import Case

CHROMIUM = os.environ.get("PODMORTEM_CHROMIUM", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser test cannot run in CI: {reason} (scripts/browser.sh install)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright (Python client) is not installed")
    profile = tmp_path_factory.mktemp("chromium-profile")  # fresh --user-data-dir
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        yield ctx
        ctx.close()


class Page:
    """A loaded report and everything the browser said while loading it."""

    def __init__(self, ctx: Any, html: Path) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = ctx.new_page()
        self.page.on(
            "console",
            lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None,
        )
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url = html.resolve().as_uri()
        self.page.goto(self.url, wait_until="load")
        self.page.wait_for_function(
            "document.querySelector('#timeline-chart .scatterlayer') !== null", timeout=30_000
        )

    def points(self) -> int:
        return int(self.page.get_attribute("#timeline-chart", "data-points") or -1)

    def drawn(self) -> int:
        # the range slider under the chart draws a second, small copy of every point
        return int(
            self.page.locator("#timeline-chart .cartesianlayer .scatterlayer .point").count()
        )

    def visible_rows(self) -> int:
        return int(self.page.locator("#timeline-table tbody tr:not(.hidden)").count())

    def toggle(self, name: str, value: str) -> None:
        self.page.locator(f"input[name={name}][value='{value}']").click()


def _save(page: Page, tmp_path: Path, name: str, locator: str | None = None) -> Path:
    shot = tmp_path / name
    target = page.page.locator(locator) if locator else page.page
    target.screenshot(path=str(shot))
    build = REPO / "build"
    build.mkdir(exist_ok=True)
    shutil.copy(shot, build / name)
    assert shot.stat().st_size > 10_000
    return shot


@pytest.fixture(scope="module")
def example_html(offline_case: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html") / "report.html"
    report.write(report.build(Case.open(offline_case)), html=out)
    return out


def test_example_report_loads_renders_and_filters(
    browser: Any, example_html: Path, tmp_path: Path
) -> None:
    page = Page(browser, example_html)
    p = page.page
    assert page.errors == []
    assert page.requests == [page.url]  # the file itself, nothing else
    total = page.points()
    assert total > 30 and page.drawn() == total
    rows = page.visible_rows()
    _save(page, tmp_path, "report-example.png")
    _save(page, tmp_path, "report-example-timeline.png", "#timeline")

    # filter by source: custody entries leave the chart and the table
    custody = p.locator("#timeline-table tbody tr[data-source=custody]").count()
    page.toggle("source", "custody")
    assert page.points() == total - custody and page.drawn() == total - custody
    assert page.visible_rows() == rows - custody
    # filter by actor: only the stolen service account
    actor = "system:serviceaccount:shop:web"
    for box in p.locator("input[name=actor]").all():
        if box.get_attribute("value") != actor:
            box.uncheck()
    mine = p.locator(f"#timeline-table tbody tr[data-actor='{actor}']:not([data-source=custody])")
    assert page.points() == page.visible_rows() == mine.count() > 5
    _save(page, tmp_path, "report-example-filtered.png", "#timeline")

    # zoom: a narrower x range keeps the chart drawn, with fewer points in view
    p.evaluate("""() => Plotly.relayout('timeline-chart',
        {'xaxis.range': ['2026-11-20T09:15:00Z', '2026-11-20T09:17:30Z']})""")
    ticks = p.evaluate("""() => Array.from(document.querySelectorAll(
        '#timeline-chart .cartesianlayer .xtick text')).map(t => t.textContent).join(' ')""")
    assert "09:16" in ticks, ticks  # the axis now counts minutes of the attack
    assert page.errors == [] and page.requests == [page.url]


def test_injection_is_inert_in_the_browser(browser: Any, tmp_path: Path) -> None:
    case = hostile_case(tmp_path / "case")
    html = tmp_path / "hostile.html"
    report.write(report.build(case), html=html)
    page = Page(browser, html)
    p = page.page
    assert p.evaluate("() => window.__pwned") is None
    assert p.locator("img").count() == 0
    assert p.title() == "podmortem report: HOSTILE-1"
    assert page.errors == [] and page.requests == [page.url]
    text = p.locator("#findings").inner_text()
    assert "<script>window.__pwned=1</script>" in text  # shown, as text
    # hover labels in the chart (Plotly reads a little HTML in them) are text too
    chart = p.evaluate("() => document.getElementById('timeline-chart').data.length")
    seen = ""
    for curve in range(chart):
        p.evaluate(
            f"() => Plotly.Fx.hover('timeline-chart', [{{curveNumber: {curve}, pointNumber: 0}}])"
        )
        seen += p.evaluate(
            "() => document.querySelector('#timeline-chart .hoverlayer').textContent"
        )
        assert (
            p.locator("#timeline-chart .hoverlayer img, #timeline-chart .hoverlayer script").count()
            == 0
        )
    assert "<script>window.__pwned" in seen
    assert p.evaluate("() => window.__pwned") is None
    _save(page, tmp_path, "report-hostile.png", "#findings")

"""The web UI in a real browser: Debian's Chromium driven by Playwright.

``lakeloop ui`` and ``lakeloop gateway`` run as subprocesses over the UI's test lake;
the browser searches and opens a result, opens image and table previews, a run's chart,
a gate report and a snapshot diff, and logs in through the gateway. Screenshots go to
``build/ui-screens/`` for people to look at. Chromium comes from Debian (the Makefile
installs it); Playwright's own browser download is never used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _uilake import N_PER_DIGIT, XSS_KEY
from _uiserver import server

CHROMIUM = os.environ.get("LAKELOOP_CHROMIUM", "/usr/bin/chromium")
SCREENS = Path(__file__).resolve().parent.parent / "build" / "ui-screens"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    SCREENS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def ui_url(ui_lake: dict[str, Any]) -> Iterator[str]:
    with server(["ui"], ui_lake["lake"]) as url:
        yield url


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page that fails the test on any script dialog, console error or failed
    request for an asset (nothing is fetched from elsewhere: the CSP would block it)."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    pg.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    pg.on(
        "requestfailed",  # thumbnails still loading when the test moves on are aborted
        lambda r: r.failure != "net::ERR_ABORTED" and problems.append(f"failed: {r.url}"),
    )
    pg.set_default_timeout(15_000)
    pg.lakeloop_problems = problems  # a test that expects one may clear it
    yield pg
    context.close()
    assert problems == []


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SCREENS / f"{name}.png"), full_page=True)


def matches(page: Any) -> int:
    return int(page.inner_text("#result-count").split()[0].rstrip("+").replace(",", ""))


def test_overview_search_and_a_table_preview(page: Any, ui_url: str) -> None:
    page.goto(ui_url + "/")
    rows = page.locator("#namespaces tbody tr")
    assert rows.count() == 2
    assert "photos" in rows.nth(0).inner_text()
    shot(page, "01-overview")
    # search from the box in the header, then narrow with a facet and open a result
    page.fill("#quick-search", "sales")
    page.press("#quick-search", "Enter")
    page.wait_for_url(re.compile(r"/search\?q=sales"))
    assert "1 match" in page.inner_text("#result-count")
    shot(page, "02-search")
    page.click("a.result:has-text('tables/sales.csv')")
    page.wait_for_url(re.compile(r"/object/photos\?key=tables%2Fsales.csv"))
    headers = page.locator("table.table-preview thead th").all_inner_texts()
    assert [h.split("\n")[0] for h in headers] == ["region", "product", "units", "price"]
    assert "int" in headers[2] and "float" in headers[3]
    assert page.locator("table.table-preview tbody tr").count() == 4
    assert "lamp" in page.inner_text("table.table-preview tbody")
    shot(page, "03-table-preview")


def test_search_facets(page: Any, ui_url: str, ui_lake: dict[str, Any]) -> None:
    page.goto(ui_url + "/search?q=png")
    total = page.locator("#results tbody tr").count()
    assert total == 100  # one page (ui_page_size) ...
    # the digits, the one added for the second snapshot, the broken one, bob's (the owner
    # sees every namespace) and the served ones the loop joined into the dataset's folder
    want = 10 * N_PER_DIGIT + 3 + ui_lake["joined"]["joined"]
    assert page.inner_text("#result-count").startswith(f"{want} matches")
    assert page.locator("#next-page").count() == 1  # ... and a link to the next
    page.click("#facets a:has-text('handwritten')")  # the tag facet
    page.wait_for_url(re.compile(r"tag=handwritten"))
    # every digit but the two written for the second snapshot (without tags)
    assert matches(page) == 10 * N_PER_DIGIT - 1
    page.select_option("select[name=size]", "1–64 KiB")
    page.click("#search-form button[type=submit]")
    page.wait_for_url(re.compile(r"size="))
    assert matches(page) == 0  # digits are all tiny
    assert page.inner_text("#results-none") == "No matches."
    page.select_option("select[name=size]", "< 1 KiB")
    page.click("#search-form button[type=submit]")
    page.wait_for_url(re.compile(r"size=%3C"))
    assert matches(page) == 10 * N_PER_DIGIT - 1
    shot(page, "04-search-facets")


def test_an_image_grid_and_an_image_preview(page: Any, ui_url: str) -> None:
    page.goto(ui_url + "/ns/photos?prefix=digits/3/")
    grid = page.locator("#image-grid a.thumb img")
    assert grid.count() == N_PER_DIGIT
    page.wait_for_load_state("networkidle")
    widths = grid.evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert widths == [8] * N_PER_DIGIT  # every thumbnail is a real 8x8 PNG from the lake
    shot(page, "05-image-grid")
    page.click("#image-grid a.thumb >> nth=0")
    page.wait_for_url(re.compile(r"/object/photos\?key=digits%2F3%2F"))
    img = page.locator("#preview figure img")
    assert img.evaluate("i => i.naturalWidth") == 8
    assert "8 × 8 px" in page.inner_text("#preview figcaption")
    shot(page, "06-image-preview")
    # a broken file shows its error and its first bytes, not an exception
    page.goto(ui_url + "/object/photos?key=broken/truncated.png")
    assert "not a readable image" in page.inner_text("#preview-error")
    assert "89 50 4e 47" in page.inner_text("pre.hex")
    shot(page, "07-broken-preview")


def test_a_runs_chart(page: Any, ui_url: str, ui_lake: dict[str, Any]) -> None:
    page.goto(ui_url + "/runs")
    page.click(f"#runs a:has-text('{ui_lake['run1']}')")
    page.wait_for_url(re.compile(r"/runs/"))
    charts = page.locator("#epoch-charts svg")
    assert charts.count() == 2  # accuracy with val_accuracy, loss with val_loss
    first = charts.nth(0)
    assert "accuracy" in (first.text_content() or "") and "val_accuracy" in (
        first.text_content() or ""
    )
    assert first.locator("polyline").count() == 2
    assert first.locator("circle").count() == 2 * 6  # 6 epochs, two series
    box = first.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 150
    assert "alpha" in page.inner_text("body")
    shot(page, "08-run-chart")


def test_a_model_its_lineage_and_a_gate_report(
    page: Any, ui_url: str, ui_lake: dict[str, Any]
) -> None:
    page.goto(ui_url + "/models")
    page.click("#models a:has-text('digits-lr')")
    page.wait_for_url(re.compile(r"/models/digits-lr$"))
    versions = page.locator("#versions tbody tr")
    assert versions.count() == 2
    assert "digits@2" in versions.nth(0).inner_text()  # lineage: the snapshot by number
    assert "champion" in page.inner_text("body")
    shot(page, "09-model")
    # the run link in the lineage leads to the run
    page.click("#versions tbody tr >> nth=1 >> a[href*='/runs/']")
    page.wait_for_url(re.compile(r"/runs/" + ui_lake["run1"]))
    page.go_back()
    page.click("#decisions a:has-text('#2')")
    page.wait_for_url(re.compile(r"/decisions/2$"))
    assert page.inner_text("#outcome") == ui_lake["outcomes"][1]
    delta = page.locator("#delta-chart svg")
    assert delta.locator("circle").count() == 1  # one paired comparison: accuracy
    assert delta.locator("line.ref").count() == 2  # 0 and -margin
    assert "McNemar" in page.inner_text("#checks") or "mcnemar" in page.inner_text("#checks")
    values = page.locator("#value-charts svg circle")
    assert values.count() == 2  # both versions on the same examples, with intervals
    shot(page, "10-gate-report")
    page.goto(ui_url + "/models/digits-lr/decisions/1")
    assert "Acceptance claim" in page.inner_text("body")
    shot(page, "11-gate-acceptance")


def test_snapshots_and_their_diff(page: Any, ui_url: str) -> None:
    page.goto(ui_url + "/datasets")
    page.click("#datasets a:has-text('digits')")
    assert page.locator("#snapshots tbody tr").count() == 2
    shot(page, "12-dataset")
    page.click("#diff-form button")
    page.wait_for_url(re.compile(r"/diff\?old=1&new=2"))
    assert page.inner_text("#added-count") == "+1"
    assert page.inner_text("#changed-count") == "~1"
    assert page.inner_text("#removed-count") == "−0"
    assert "digits/0/extra.png" in page.inner_text("ul.keys.added")
    shot(page, "13-diff")


def test_escaped_keys_run_no_script(page: Any, ui_url: str) -> None:
    page.goto(ui_url + "/ns/photos?prefix=xss/")
    # the key's own "/" makes a folder of '<script>alert("key")<': shown as text ...
    assert '<script>alert("key")</' in page.inner_text("ul.folders")
    page.click("ul.folders a")
    page.click("#objects a")
    page.wait_for_url(re.compile(r"/object/photos\?key="))
    assert page.inner_text("h1") == "photos/" + XSS_KEY
    assert page.locator("script").count() == 1  # ui.js, and nothing else
    page.goto(ui_url + "/search?q=script")
    shot(page, "14-escaped-key")
    # ... and the page fixture fails the test if any dialog opened


def test_serving_stats_and_loop_turns(page: Any, ui_url: str, ui_lake: dict[str, Any]) -> None:
    page.goto(ui_url + "/serving")
    live = page.locator("#serving-digits-lr table.live-accuracy tbody tr")
    assert live.count() == 2  # v1 served, v2 in shadow
    assert "v1" in live.nth(0).inner_text() and "0.7" in live.nth(0).inner_text()
    assert "shadow" in live.nth(1).inner_text() and "0.9" in live.nth(1).inner_text()
    chart = page.locator("#serving-digits-lr svg")
    assert chart.locator("circle").count() == 2 and chart.locator("line.ref").count() == 1
    assert "pending" in page.inner_text("#serving-digits-lr table.joiner")
    shot(page, "17-serving")
    page.goto(ui_url + "/loop")
    turns = page.locator("#loop-digits-lr table.turns tbody tr")
    assert turns.count() == 1
    assert ui_lake["outcomes"][1] in turns.nth(0).inner_text()
    shot(page, "18-loop")
    turns.nth(0).locator("a").click()  # the turn's gate decision
    page.wait_for_url(re.compile(r"/models/digits-lr/decisions/2$"))


def test_login_through_the_gateway(page: Any, ui_lake: dict[str, Any]) -> None:
    env = {"LAKELOOP_CREDENTIALS": str(ui_lake["credentials"])}
    with server(["gateway"], ui_lake["lake"], env) as url:
        page.goto(url + "/ui/models")
        page.wait_for_url(re.compile(r"/ui/login\?next="))
        page.fill("input[name=access_key]", ui_lake["alice"][0])
        page.fill("input[name=secret]", "not the secret")
        page.click("button[type=submit]")
        assert "wrong secret" in page.inner_text("#login-problem")
        assert [p for p in page.lakeloop_problems if "401" not in p] == []
        page.lakeloop_problems.clear()  # the refusal's 401, logged by the browser
        shot(page, "15-login-refused")
        page.fill("input[name=access_key]", ui_lake["alice"][0])
        page.fill("input[name=secret]", ui_lake["alice"][1])
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/ui/models$"))  # back where she was going
        assert "digits-lr" in page.inner_text("#models")
        assert "secret-model" not in page.inner_text("body")
        page.goto(url + "/ui/")
        assert page.locator("#namespaces tbody tr").count() == 1
        assert "alice" in page.inner_text("header")
        shot(page, "16-logged-in")
        page.click("header button:has-text('log out')")
        page.wait_for_url(re.compile(r"/ui/login"))
        page.goto(url + "/ui/")
        page.wait_for_url(re.compile(r"/ui/login"))

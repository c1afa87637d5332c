"""The built website in a real browser (Debian's Chromium driven by Playwright).

The site is built once per session (the `built_site` fixture), served from 127.0.0.1,
and every request to any other host is aborted, so the pages must work offline. For
every page of _toc.yml, at desktop and phone widths: no console error, no failed
request, every image loads, math is typeset, the navigation lists every chapter,
DOMContentLoaded comes within 2 s, no code block or equation runs past its column unseen;
explorers react to their controls; exercise pages have launch buttons; notebook pages offer
their .ipynb; the navigation ("≡") and "On this page" buttons open their sidebars.
Full-page screenshots (and dark-mode ones) and a table of page weights and load times go to
test-artifacts/.
"""
import functools
import http.server
import json
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO / "test-artifacts"
DESKTOP = {"width": 1280, "height": 900}
LAPTOP = {"width": 1024, "height": 768}    # the widest that shows the "On this page" button
PHONE = {"width": 390, "height": 844}
DCL_LIMIT_MS = 2000

try:
    from playwright.sync_api import sync_playwright
except ImportError:                      # pragma: no cover
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(
        sync_playwright is None or not CHROMIUM.exists(),
        reason="browser tests need Debian's Chromium and Playwright's Python package: "
               "`apt-get install chromium` (.ci/run does it) and `pip install -r requirements.txt`"
               " (never `playwright install`)"),
]


def toc_pages():
    """Every document of _toc.yml, in order: the root, then chapters and their sections."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    walk(toc.get("chapters", []))
    return pages


PAGES = toc_pages()


# ---------------------------------------------------------------------------
# Fixtures: the site, a local server, a browser; metrics collected per page.
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(built_site):
    out, html = built_site
    if out.returncode != 0:
        pytest.fail("the site did not build (see test_book.py):\n" + out.stdout[-2000:])
    if not all((html / "vendor" / f).is_file() for f in (
            "requirejs/require.js", "html-manager/embed-amd.js", "mathjax/tex-mml-chtml.js")):
        pytest.skip("the site loads its JavaScript from public CDNs (npm was missing when it "
                    "was built): install npm and run `make site-assets` to run the browser tests")
    return html


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def metrics():
    """Load time and weight of every page, printed and saved when the module ends."""
    rows = {}
    yield rows
    if not rows:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "site-metrics.json").write_text(json.dumps(rows, indent=1))
    width = max(len(k) for k in rows)
    lines = [f"{'page':<{width}}  {'DOMContentLoaded':>16}  {'load':>7}  {'weight':>9}  requests"]
    for name, r in rows.items():
        lines.append(f"{name:<{width}}  {r['dcl_ms']:>13.0f} ms  {r['load_ms']:>4.0f} ms  "
                     f"{r['bytes'] / 1024:>6.0f} KB  {r['requests']:>8}")
    slowest = max(rows, key=lambda k: rows[k]["dcl_ms"])
    heaviest = max(rows, key=lambda k: rows[k]["bytes"])
    lines.append(f"slowest page: {slowest} ({rows[slowest]['dcl_ms']:.0f} ms to DOMContentLoaded);"
                 f" heaviest page: {heaviest} ({rows[heaviest]['bytes'] / 1024:.0f} KB)")
    print("\n" + "\n".join(lines))


class Visit:
    """A page opened in a fresh browser context (cold cache, so the weight is complete),
    with everything that went wrong recorded."""

    def __init__(self, browser, server, path, viewport, dark=False, **options):
        self.host = urlparse(server).netloc
        self.context = browser.new_context(viewport=viewport,
                                           color_scheme="dark" if dark else "light", **options)
        self.errors, self.failed, self.external = [], [], []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(
            f"{r.url} (HTTP {r.status})"))
        self.page.goto(f"{server}/{path}", wait_until="load")
        self.page.wait_for_load_state("networkidle")

    def _route(self, route):
        if urlparse(route.request.url).netloc == self.host:
            route.continue_()
        else:
            self.external.append(route.request.url)
            route.abort()

    def timing(self):
        return self.page.evaluate("""() => {
            const nav = performance.getEntriesByType('navigation')[0];
            const res = performance.getEntriesByType('resource');
            return {dcl_ms: nav.domContentLoadedEventEnd - nav.startTime,
                    load_ms: nav.loadEventEnd - nav.startTime,
                    bytes: nav.transferSize + res.reduce((s, r) => s + r.transferSize, 0),
                    requests: 1 + res.length};
        }""")

    def wait_for_math(self):
        """Wait for MathJax to finish; the number of typeset formulas and of math sources."""
        has_math = self.page.evaluate("() => document.querySelectorAll('.math').length")
        if not has_math:
            return 0, 0
        self.page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
        typeset = self.page.evaluate(
            "() => MathJax.startup.promise.then(() => document.querySelectorAll('mjx-container').length)")
        return typeset, has_math

    def hidden_overflow(self):
        """Code blocks and display equations wider than their box that the reader cannot see
        the rest of: code must wrap; printed output and equations may be wider if they scroll."""
        return self.page.evaluate("""() => {
            const scrolls = e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
            const name = e => e.tagName.toLowerCase() + ' "' + e.textContent.trim().slice(0, 60) + '"';
            const bad = [];
            for (const pre of document.querySelectorAll('article pre')) {
                if (pre.scrollWidth > pre.clientWidth + 1 && !(pre.closest('.cell_output') && scrolls(pre)))
                    bad.push(`code ${pre.scrollWidth} px wide in ${pre.clientWidth} px: ${name(pre)}`);
            }
            for (const m of document.querySelectorAll('article div.math, article mjx-container[display="true"]')) {
                if (m.scrollWidth > m.clientWidth + 1 && !scrolls(m))
                    bad.push(`equation cut off, ${m.scrollWidth} px in ${m.clientWidth} px: ${name(m)}`);
            }
            return bad;
        }""")

    def screenshot(self, name, full_page=True):
        ARTIFACTS.joinpath("screenshots").mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / "screenshots" / f"{name}.png"), full_page=full_page)

    def close(self):
        self.context.close()

    def assert_clean(self):
        assert not self.external, f"requests to other hosts: {self.external}"
        assert not self.failed, f"failed requests: {self.failed}"
        assert not self.errors, f"console errors: {self.errors}"


def html_path(doc):
    return "index.html" if doc is None else f"{doc}.html"


def shot_name(doc, suffix):
    return doc.replace("/", "-").replace("exercises-", "ex-") + "-" + suffix


# ---------------------------------------------------------------------------
# Every page, at two widths.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("doc", PAGES)
def test_page(browser, server, site, metrics, doc):
    visit = Visit(browser, server, html_path(doc), DESKTOP)
    try:
        page = visit.page
        timing = visit.timing()
        metrics[doc] = timing
        typeset, sources = visit.wait_for_math()
        assert typeset >= sources, f"MathJax typeset {typeset} of {sources} formulas"
        if sources:
            assert page.locator("mjx-container").count() > 0
        visit.screenshot(shot_name(doc, "desktop"))   # scrolls through the page: images load
        clipped = visit.hidden_overflow()
        assert not clipped, f"code or equations cut off at {DESKTOP['width']} px: {clipped[:5]}"
        broken = page.evaluate("""() => Array.from(document.images)
            .filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)""")
        assert not broken, f"images that did not load: {broken}"
        missing_alt = page.evaluate("""() => Array.from(document.querySelectorAll(
            'article img')).filter(i => !i.alt).map(i => i.src)""")
        assert not missing_alt, f"images without alt text: {missing_alt}"

        # The left navigation lists every chapter of _toc.yml.
        hrefs = page.evaluate("""() => Array.from(document.querySelectorAll(
            '.bd-sidebar-primary a')).map(a => new URL(a.href).pathname)""")
        for other in PAGES[1:]:
            assert any(h.endswith(f"/{other}.html") for h in hrefs), f"navigation lacks {other}"

        # Previous / next links.
        prev_next = page.locator(".prev-next-area a").count()
        assert prev_next >= (1 if doc in (PAGES[0], PAGES[-1]) else 2), "previous/next links"

        download = page.locator('.dropdown-download-buttons a[href$=".ipynb"]')
        if doc.startswith(("exercises/", "book/0", "book/explorers")):
            assert download.count() > 0, "the download button offers no .ipynb"
            url = download.first.evaluate("a => a.href")
            assert urlparse(url).netloc == urlparse(server).netloc, url
            reply = page.request.get(url)
            assert reply.ok and "cells" in reply.json(), url
        if doc.startswith("exercises/"):
            launch = page.locator('a[href*="colab.research.google.com"], a[href*="mybinder.org"]')
            assert launch.count() > 0, "the exercise page shows no launch button"
        dcl = timing["dcl_ms"]
        # The tests share 2 cores with the rest of the suite: a slow first load is measured
        # again, cold each time, and the best of three counts (all are recorded).
        retries = []
        while dcl >= DCL_LIMIT_MS and len(retries) < 2:
            again = Visit(browser, server, html_path(doc), DESKTOP)
            try:
                retries.append(again.timing()["dcl_ms"])
            finally:
                again.close()
            dcl = min(dcl, retries[-1])
        metrics[doc]["dcl_retries_ms"] = retries
        assert dcl < DCL_LIMIT_MS, f"DOMContentLoaded after {timing['dcl_ms']:.0f} ms (then {retries})"
        visit.assert_clean()
    finally:
        visit.close()

    phone = Visit(browser, server, html_path(doc), PHONE)
    try:
        phone.wait_for_math()
        # The first screen only: a full page of a long chapter at phone width is a 20,000 px
        # image to encode, and the width checks below read the whole page anyway.
        phone.screenshot(shot_name(doc, "phone"), full_page=False)
        clipped = phone.hidden_overflow()
        assert not clipped, f"code or equations cut off at {PHONE['width']} px: {clipped[:5]}"
        overflow = phone.page.evaluate("""() => {
            const width = document.documentElement.clientWidth;
            const wide = Array.from(document.querySelectorAll('article *')).filter(e =>
                e.getBoundingClientRect().right > width + 1 && !e.closest(
                    'pre, .highlight, .pst-scrollable-table-container, .table-wrapper, mjx-container, .explorer-frame'));
            return {excess: document.documentElement.scrollWidth - width,
                    culprits: wide.slice(0, 5).map(e => e.tagName + '.' + e.className)};
        }""")
        assert overflow["excess"] <= 1, f"the page is wider than a phone's screen: {overflow}"
        phone.assert_clean()
    finally:
        phone.close()


# Three pages that hold every kind of content (prose, math, figures, code, outputs, widgets).
@pytest.mark.parametrize("doc", ["book/intro", "book/05-gpt-numpy", "book/explorers-gallery"])
def test_dark_mode(browser, server, site, doc):
    """Dark mode (the theme follows the system's preference): screenshots for a look."""
    visit = Visit(browser, server, html_path(doc), DESKTOP, dark=True)
    try:
        assert visit.page.evaluate("() => document.documentElement.dataset.theme") == "dark"
        visit.wait_for_math()
        visit.screenshot(shot_name(doc, "dark"))
        visit.assert_clean()
    finally:
        visit.close()


# ---------------------------------------------------------------------------
# The sidebar buttons: "≡" (the chapters) and "On this page" (the page's sections).
# ---------------------------------------------------------------------------

CHAPTER_PAGE = "book/13-flash-attention-1"
SHOWN = "e => e.checkVisibility({opacityProperty: true, visibilityProperty: true})"


def visible_links(page, selector):
    return page.locator(selector).evaluate_all(
        f"as => as.filter({SHOWN}).map(a => new URL(a.href).pathname)")


def test_navigation_button_on_a_phone(browser, server, site):
    """A phone reader taps "≡" and gets the list of chapters, and "On this page" the page's
    sections (both open as dialogs that Escape closes)."""
    visit = Visit(browser, server, html_path(CHAPTER_PAGE), PHONE, has_touch=True)
    try:
        page = visit.page
        chapters = [d for d in PAGES[1:] if d.startswith("book/")]
        assert not visible_links(page, ".bd-sidebar-primary a"), "the navigation shows before ≡ is tapped"
        page.get_by_role("button", name="Site navigation").tap()
        page.wait_for_selector("#pst-primary-sidebar-modal[open]", timeout=5_000)
        shown = visible_links(page, "#pst-primary-sidebar-modal a")
        missing = [d for d in chapters if not any(h.endswith(f"/{d}.html") for h in shown)]
        assert not missing, f"after tapping ≡ the navigation does not show {missing}"
        visit.screenshot(shot_name(CHAPTER_PAGE, "phone-navigation"))
        page.keyboard.press("Escape")
        page.wait_for_selector("#pst-primary-sidebar-modal:not([open])", state="attached", timeout=5_000)

        page.get_by_role("button", name="On this page").tap()
        page.wait_for_selector("#pst-secondary-sidebar-modal[open]", timeout=5_000)
        sections = visible_links(page, "#pst-secondary-sidebar-modal nav.page-toc a")
        assert len(sections) >= 3, f"'On this page' shows {sections}"
        page.keyboard.press("Escape")
        visit.assert_clean()
    finally:
        visit.close()


def test_navigation_button_on_a_desktop(browser, server, site):
    """At 1280 px the chapters and the page's sections show beside the text; "≡" hides the
    chapters and brings them back. At 1024 px "On this page" opens the page's sections."""
    visit = Visit(browser, server, html_path(CHAPTER_PAGE), DESKTOP)
    try:
        page = visit.page
        nav = "#pst-primary-sidebar a"
        assert visible_links(page, nav), "the navigation is not shown at 1280 px"
        assert len(visible_links(page, ".bd-sidebar-secondary nav.page-toc a")) >= 3, \
            "the page's sections are not shown beside the text at 1280 px"
        page.get_by_role("button", name="Site navigation").click()
        page.wait_for_function(f"() => !Array.from(document.querySelectorAll('{nav}')).some({SHOWN})",
                               timeout=5_000)
        page.get_by_role("button", name="Site navigation").click()
        page.wait_for_function(f"() => Array.from(document.querySelectorAll('{nav}')).some({SHOWN})",
                               timeout=5_000)
        visit.assert_clean()
    finally:
        visit.close()

    visit = Visit(browser, server, html_path(CHAPTER_PAGE), LAPTOP)
    try:
        page = visit.page
        assert not visible_links(page, ".bd-sidebar-secondary nav.page-toc a")
        page.get_by_role("button", name="On this page").click()
        page.wait_for_selector("#pst-secondary-sidebar-modal[open]", timeout=5_000)
        sections = visible_links(page, "#pst-secondary-sidebar-modal nav.page-toc a")
        assert len(sections) >= 3, f"'On this page' shows {sections}"
        visit.assert_clean()
    finally:
        visit.close()


# ---------------------------------------------------------------------------
# Explorers react to their controls; search works.
# ---------------------------------------------------------------------------

def visible_frame_text(explorer):
    return explorer.evaluate("""e => Array.from(e.querySelectorAll('.explorer-frame'))
        .filter(f => f.offsetParent !== null).map(f => f.innerText).join('\\n')""")


def explorer_pages():
    return [d for d in PAGES if (REPO / f"{d}.md").is_file()
            and "explorer(" in (REPO / f"{d}.md").read_text()]


@pytest.mark.parametrize("doc", explorer_pages())
def test_explorers_react(browser, server, site, doc):
    visit = Visit(browser, server, html_path(doc), DESKTOP)
    try:
        page = visit.page
        explorers = page.locator(".explorer")
        page.wait_for_selector(".explorer .explorer-frame", timeout=10_000)
        assert explorers.count() > 0, "no explorer rendered"
        for i in range(explorers.count()):
            explorer = explorers.nth(i)
            explorer.scroll_into_view_if_needed()
            before = visible_frame_text(explorer)
            assert before.strip(), f"explorer {i} shows nothing"
            # Move every visible slider one step with the keyboard, as a reader could.
            handles = explorer.locator(".noUi-handle")
            moved = 0
            for h in range(handles.count()):
                if handles.nth(h).is_visible():
                    handles.nth(h).focus()
                    handles.nth(h).press("ArrowRight")
                    moved += 1
                    after = visible_frame_text(explorer)
                    assert after != before, f"explorer {i}: the slider changed nothing"
                    before = after
            assert moved, f"explorer {i} has no visible slider"
            # Toggle buttons (mode, token, mask) switch what is shown too.
            buttons = explorer.locator(".widget-toggle-button")
            if buttons.count() > 1:
                buttons.nth(1).click()
                assert visible_frame_text(explorer) != before, f"explorer {i}: buttons changed nothing"
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        visit.screenshot(shot_name(doc, "explorers-moved"))
        visit.assert_clean()
    finally:
        visit.close()


def test_search_finds_softmax(browser, server, site):
    visit = Visit(browser, server, "search.html?q=softmax", DESKTOP)
    try:
        visit.page.wait_for_selector("#search-results ul.search li", timeout=10_000)
        found = visit.page.locator("#search-results ul.search li a").all_inner_texts()
        assert any("similarity" in t.lower() for t in found), found
        visit.assert_clean()
    finally:
        visit.close()
    # Snippets quote the chapters' prose, not the code toggles or the launch buttons: a word
    # that stands mostly in setup code ("matplotlib") once gave "Show code cell source ...".
    visit = Visit(browser, server, "search.html?q=matplotlib", DESKTOP)
    try:
        visit.page.wait_for_selector("#search-results ul.search li p.context", timeout=10_000)
        snippets = " ".join(visit.page.locator("#search-results ul.search li p.context").all_inner_texts())
        for chrome in ("Show code cell", "Hide code cell", "Binder", "Colab"):
            assert chrome not in snippets, (chrome, snippets[:500])
    finally:
        visit.close()


# ---------------------------------------------------------------------------
# The instructor's class report (autograder/report.py), opened as an instructor would.
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def class_report(sandboxed, tmp_path_factory):
    from autograder.batch import Batch
    from conftest import FAST
    from test_grade_samples import samples_subset
    tmp = tmp_path_factory.mktemp("report")
    samples, _ = samples_subset(tmp, ("07-backprop",))   # long test names: the widest table
    Batch(samples, tmp / "work", FAST, True, jobs=2, out=lambda s: None).run()
    return tmp / "work" / "report-07-backprop.html"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_class_report_reads_at_desktop_and_phone_width(browser, class_report, viewport):
    """Offline (every image inline), no script error, nothing wider than the screen but the
    table, which scrolls; its figures show, legibly sized for the width."""
    context = browser.new_context(viewport=viewport)
    external = []
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:")
                  else (external.append(r.request.url), r.abort()))
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    try:
        page.goto(class_report.as_uri(), wait_until="load")
        assert not external and not errors, (external, errors)
        assert page.locator("h1").inner_text().startswith("Class report: 07-backprop")
        images = page.evaluate("""() => Array.from(document.images).map(i => ({
            ok: i.complete && i.naturalWidth > 0, shown: i.getBoundingClientRect().width,
            natural: i.naturalWidth}))""")
        assert len(images) == 2 and all(i["ok"] for i in images), images
        # The figures are 6 in wide at 100 dpi with 10-11 pt text: shown at least half size.
        assert all(i["shown"] >= 0.5 * min(i["natural"], viewport["width"] - 32) for i in images), images
        excess = page.evaluate("""() => {
            const width = document.documentElement.clientWidth;
            return Array.from(document.querySelectorAll('body *')).filter(e =>
                e.getBoundingClientRect().right > width + 1 && !e.closest('.table-scroll'))
                .slice(0, 5).map(e => e.tagName + ' ' + e.textContent.slice(0, 40));
        }""")
        assert not excess, f"wider than {viewport['width']} px: {excess}"
        ARTIFACTS.joinpath("screenshots").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "screenshots" / f"class-report-{viewport['width']}.png"),
                        full_page=True)
    finally:
        context.close()

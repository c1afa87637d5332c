"""The website builds with every chapter executed, no cell errors and no Sphinx warnings."""
import re

import pytest

pytestmark = pytest.mark.xdist_group("site")   # shares the session's build with test_site.py


def test_book_builds_without_warnings(built_site):
    out, html = built_site
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for page in ["book/intro.html", "book/01-similarity.html", "book/02-toy-attention.html",
                 "exercises/01-similarity/01-similarity.html", "book/grading.html",
                 "book/explorers-gallery.html"]:
        assert (html / page).is_file(), page
    chapter = (html / "book/02-toy-attention.html").read_text()
    assert chapter.count("<img") >= 2 and "Traceback" not in chapter
    exercise = (html / "exercises/01-similarity/01-similarity.html").read_text()
    assert "colab.research.google.com" in exercise or "mybinder" in exercise  # launch buttons


@pytest.mark.chapter_only
def test_one_chapters_page_executes():
    """`--chapter NN-slug`: that chapter's page runs top to bottom without an error (the full
    suite builds the whole book instead), and how long it takes."""
    import time

    import jupytext
    from nbclient import NotebookClient

    from conftest import REPO, only_chapter
    page = REPO / "book" / f"{only_chapter()}.md"
    nb = jupytext.read(page)
    start = time.monotonic()
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(page.parent)}}).execute()
    print(f"\n{page.name} executed in {time.monotonic() - start:.1f} s")


# ---------------------------------------------------------------------------
# What a reader sees: math that rendered, links to the chapters, no empty measurements.
# ---------------------------------------------------------------------------

def built_pages(html):
    return [p for p in sorted(html.rglob("*.html"))
            if not p.relative_to(html).as_posix().startswith(
                ("_static/", "vendor/", "_sources/", "genindex", "search"))]


def article(path):
    from bs4 import BeautifulSoup
    return BeautifulSoup(path.read_text(), "html.parser").select_one("article")


# A `$` or `\(` left over from math that MyST did not pair up (display math inside a paragraph
# did that), or a backslash escape shown as typed (`\_`).
RAW_TEX = re.compile(r"\$|\\[()\[\]]|\\\S")


def test_no_raw_tex_or_visible_escapes(built_site):
    """The text of every page, outside code blocks and math, has no raw `$`, `\\(`, `\\[` and no
    visible backslash escape; and no `\\text{...}` in math escapes an underscore (MathJax would
    show the backslash: inside math MyST needs no escaping)."""
    out, html = built_site
    assert out.returncode == 0, out.stdout[-3000:]
    problems = []
    for path in built_pages(html):
        page = article(path)
        if page is None:
            continue
        name = path.relative_to(html).as_posix()
        for math in page.select(".math"):
            if re.search(r"\\text\{[^}]*\\_", math.get_text()):
                problems.append(f"{name}: {math.get_text().strip()[:80]!r}")
        for tag in page.select("pre, code, .math, script, style, div.highlight"):
            tag.decompose()
        text = page.get_text(" ")
        problems += [f"{name}: ...{text[max(0, m.start() - 60):m.end() + 20]!r}..."
                     for m in RAW_TEX.finditer(text)]
    assert not problems, "raw TeX or escapes in the rendered text:\n" + "\n".join(problems[:20])


def test_exercise_pages_link_to_their_chapter(built_site):
    """An exercise page whose notebook says "Read the chapter ... first" links to it."""
    from conftest import REPO
    _, html = built_site
    checked = 0
    for nb in sorted(REPO.glob("exercises/*/*.ipynb")):
        slug = nb.stem
        page_path = html / "exercises" / slug / f"{slug}.html"
        if "Read the chapter" not in nb.read_text() or not page_path.is_file():
            continue
        hrefs = [a.get("href", "") for a in article(page_path).select("a.reference.internal")]
        assert any(h.split("#")[0] == f"../../book/{slug}.html" for h in hrefs), \
            f"exercises/{slug}: no link to book/{slug}.html"
        checked += 1
    assert checked


def test_footer_byline_reads_well(built_site):
    _, html = built_site
    footer = (html / "book/intro.html").read_text()
    assert "By The " not in footer


def test_flash_attention_measurements_show_nothing_unmeasured(built_site):
    """Chapter 14 quotes no GPU figure that the repository did not produce, and until
    bench/results/flash_attention.json exists its Measurements section says what will be there
    in a sentence and shows no empty cell or code toggle."""
    from conftest import REPO
    _, html = built_site
    page = article(html / "book/14-flash-attention-2.html")
    text = page.get_text(" ")
    if (REPO / "bench/results/flash_attention.json").is_file():
        pytest.skip("a measurement is committed: the section plots it")
    for number in ("354", "652", "771", "23.5"):
        assert not re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", text), \
            f"chapter 14 quotes {number} (TFLOP/s) with no measurement behind it"
    section = page.find(id="measurements")
    assert "No measurement has been committed yet" in section.get_text(" ")
    for cell in section.select("div.cell"):
        assert not cell.select(".cell_input, details"), "a code cell or toggle in Measurements"
        outputs = cell.select(".cell_output")
        assert all(o.get_text(strip=True) or o.select("img") for o in outputs), "an empty output"


# ---------------------------------------------------------------------------
# Figures a reader can read: at desktop width the smallest text of every figure is >= 11 px.
# ---------------------------------------------------------------------------

# The widest a figure is shown in a chapter at 1280 px (test_site.py's DESKTOP), measured on the
# built site (the column is 688 px, a cell's output 672). An image is shown at its own size up to
# this width; a wider one is scaled down to it, and its text with it: a point of font is
# dpi/72 * min(1, COLUMN_PX / width) px on screen.
COLUMN_PX = 672
MIN_TEXT_PX = 11
# A size set in a page's code: fontsize=9, labelsize="small", {"font.size": 10},
# rcParams["legend.fontsize"] = 8, ...
FONT_SIZE = re.compile(r"""\b(?:fontsize|labelsize|titlesize)\s*=\s*(?P<arg>[\d.]+|["'][a-z-]+["'])"""
                       r"""|["'](?:font\.size|[\w.]*(?:fontsize|labelsize|titlesize))["']\]?\s*[:=]\s*"""
                       r"""(?P<rc>[\d.]+|["'][a-z-]+["'])""")


def smallest_font_pt(code):
    """The smallest font size (points) a page's figures can have: the sizes of the book's style
    (book/matplotlibrc, which the pages execute beside) and every size that the page's code sets.
    A page that resets the style with `plt.style.use` starts from matplotlib's own defaults."""
    import matplotlib
    from matplotlib.font_manager import font_scalings

    from conftest import REPO
    style = matplotlib.rc_params_from_file(REPO / "book" / "matplotlibrc", use_default_template=True)
    base = matplotlib.rcParamsDefault["font.size"] if "style.use(" in code else style["font.size"]
    base = float(next(iter(re.findall(r"""["']font\.size["']\s*:\s*([\d.]+)""", code)), base))

    def points(size):
        size = str(size).strip("'\"")
        return float(size) if size[0].isdigit() else base * font_scalings[size]
    sizes = [base] + [points(style[key]) for key in ("axes.titlesize", "axes.labelsize", "xtick.labelsize",
                                                      "ytick.labelsize", "legend.fontsize", "figure.titlesize")]
    sizes += [points(m["arg"] or m["rc"]) for m in FONT_SIZE.finditer(code)]
    return min(sizes)


def figure_text_px(html):
    """For every PNG figure of every built page: (page, image file, its pixel width, the size in
    CSS px of the page's smallest font in it at desktop width). The dpi is the one matplotlib
    wrote into the PNG (a page that changed it is measured as it is)."""
    from PIL import Image

    from conftest import REPO
    rows = []
    for path in built_pages(html):
        page = article(path)
        if page is None:
            continue
        name = path.relative_to(html)
        source = (REPO / name).with_suffix(".md")
        font_pt = smallest_font_pt(source.read_text() if source.is_file() else "")
        for img in page.select("img"):
            if not img.get("src", "").endswith(".png"):
                continue
            file = (path.parent / img["src"]).resolve()
            with Image.open(file) as image:
                width = image.width
                dpi = image.info.get("dpi", (72, 72))[0]
            shown = min(width, COLUMN_PX)
            rows.append((name.as_posix(), file.name, width, font_pt * dpi / 72 * shown / width))
    return rows


def test_figure_text_is_legible_at_desktop_width(built_site):
    """No figure's text is smaller than 11 px at desktop width: a figure wider than the column is
    scaled down, so its text shrinks (chapter 13's legend was 7 px). The fix is in the figure:
    figsize at most 6.6 inches wide (book/matplotlibrc draws at 100 dpi) and no font under 8 pt."""
    out, html = built_site
    assert out.returncode == 0, out.stdout[-3000:]
    rows = figure_text_px(html)
    assert len(rows) >= 40, f"only {len(rows)} figures found in the built pages"
    small = [f"{page}: {image}, {width} px wide, smallest text {px:.1f} px"
             for page, image, width, px in rows if px < MIN_TEXT_PX]
    assert not small, (f"figures whose text is under {MIN_TEXT_PX} px in a {COLUMN_PX} px column "
                       "(narrow the figure to at most 6.6 inches, or raise its smallest fontsize):\n"
                       + "\n".join(small))

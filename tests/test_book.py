"""The website builds with every chapter executed, no cell errors and no Sphinx warnings."""
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

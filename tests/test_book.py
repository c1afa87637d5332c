"""The website builds with every chapter executed, no cell errors and no Sphinx warnings."""
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_book_builds_without_warnings(tmp_path):
    jb = Path(sys.executable).parent / "jupyter-book"
    out = subprocess.run([str(jb), "build", str(REPO), "--path-output", str(tmp_path),
                          "--warningiserror", "--nitpick", "--keep-going"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    for page in ["book/intro.html", "book/01-similarity.html", "book/02-toy-attention.html",
                 "exercises/01-similarity/01-similarity.html", "book/grading.html"]:
        assert (html / page).is_file(), page
    chapter = (html / "book/02-toy-attention.html").read_text()
    assert chapter.count("<img") >= 2 and "Traceback" not in chapter
    exercise = (html / "exercises/01-similarity/01-similarity.html").read_text()
    assert "colab.research.google.com" in exercise or "mybinder" in exercise  # launch buttons

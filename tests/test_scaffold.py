"""A new chapter as a maintainer makes one: the scaffold, the release, then `--chapter`: green, in a throw-away copy of the repository (so the guide and
the scaffold cannot fall behind the code)."""
import os
import shutil
import subprocess
import sys

from conftest import REPO

SLUG = "98-demo-chapter"
SKIP = {".git", ".venv", "node_modules", "_build", ".grader", ".pytest_cache", "__pycache__"}


def _run(args, cwd, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(cwd))
    env.pop("COURSE_ONLY_CHAPTER", None)
    env.pop("COURSE_SITE", None)   # the copy builds no website of its own
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_a_scaffolded_chapter_is_green_on_its_own_command(tmp_path, sandboxed):
    copy = tmp_path / "course"
    shutil.copytree(REPO, copy, ignore=lambda d, names: [n for n in names if n in SKIP])
    printed = _run(["-m", "autograder", "new-chapter", SLUG, "A demo chapter"], copy)
    assert "make test-chapter CH=98-demo-chapter" in printed
    assert f"book/{SLUG}" in (copy / "_toc.yml").read_text()
    _run(["-m", "autograder", "release", "--chapter", SLUG], copy)
    assert (copy / "exercises" / SLUG / f"{SLUG}.ipynb").is_file()
    out = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "--chapter", SLUG,
                "tests/test_catalogue.py", "tests/test_release.py", "tests/test_grade_samples.py"], copy, timeout=600)
    assert " passed" in out and "failed" not in out and "error" not in out.lower().replace("errors", ""), out[-2000:]

"""`python -m autograder check`: the self-check names the mistake and sets the exit code."""
import subprocess
import sys

from conftest import REPO, released, write_nb
from autograder.samples import _answers, _fill
from autograder.chapters import chapter


def _run(path):
    return subprocess.run([sys.executable, "-m", "autograder", "check", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_check_names_the_mistake(tmp_path):
    ch = chapter("01-similarity")
    nb = _fill(released(ch.slug), _answers(ch, {"softmax": "unstable"}))
    out = _run(write_nb(tmp_path / "mine.ipynb", nb))
    assert out.returncode == 1
    assert "FAIL  softmax" in out.stdout and "subtract the maximum" in out.stdout
    assert "PASS  embed" in out.stdout


def test_check_passes_a_correct_notebook(tmp_path):
    ch = chapter("02-toy-attention")
    out = _run(write_nb(tmp_path / "mine.ipynb", _fill(released(ch.slug), _answers(ch, {}))))
    assert out.returncode == 0, out.stdout
    assert "4 of 4 visible tests pass" in out.stdout


def test_check_rejects_garbage_clearly(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    out = _run(bad)
    assert out.returncode == 2 and "not valid JSON" in out.stdout and "Traceback" not in out.stderr

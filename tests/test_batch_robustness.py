"""Killing the grader mid-batch loses no finished grade; --require-sandbox refuses
to grade without isolation; an unsandboxed run says so loudly."""
import csv
import signal
import sqlite3
import subprocess
import sys
import time

from autograder import cli, sandbox
from autograder.batch import SAMPLES, Batch
from conftest import FAST, REPO, copy_of
from test_grade_samples import samples_subset


def test_killed_mid_batch_then_resumed(sandboxed, tmp_path):
    samples, EXPECTED = samples_subset(tmp_path)
    work = tmp_path / "work"
    proc = subprocess.Popen([sys.executable, "-m", "autograder", "grade", str(samples), "--work", str(work),
                             "--jobs", "1", "--cell-timeout", "5", "--call-timeout", "5"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((work / "state").rglob("*.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list((work / "state").rglob("*.json")))
    assert 3 <= finished < len(EXPECTED), "the batch should have been killed part-way"
    messages = []
    results = Batch(samples, work, FAST, True, jobs=2, out=messages.append).run()
    assert {(r.student, r.assignment): r.score for r in results} == EXPECTED
    assert any(f"{finished} submission(s) unchanged" in m for m in messages), messages
    assert sqlite3.connect(work / "gradebook.db").execute("pragma integrity_check").fetchone() == ("ok",)
    rows = list(csv.DictReader(open(work / "grades.csv")))
    assert len(rows) == len(EXPECTED)


def test_force_regrades_everything(graded_class, tmp_path):
    samples, expected = samples_subset(tmp_path, ("01-similarity",))
    messages = []
    forced = Batch(samples, copy_of(graded_class[0], tmp_path), FAST, True, jobs=2, force=True, out=messages.append)
    assert {(r.student, r.assignment): r.score for r in forced.run()} == expected
    assert forced.stats["graded"] == len(expected) and not any("unchanged" in m for m in messages)


def test_require_sandbox_refuses_without_isolation(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sandbox, "isolation_status", lambda: (False, "no bubblewrap (simulated)"))
    code = cli.main(["grade", str(SAMPLES), "--work", str(tmp_path), "--require-sandbox"])
    out = capsys.readouterr().out
    assert code == 3 and "WARNING" in out and "no bubblewrap (simulated)" in out
    assert not (tmp_path / "grades.csv").exists()


def test_without_isolation_grading_still_works_and_warns(monkeypatch, tmp_path, capsys):
    samples, EXPECTED = samples_subset(tmp_path)
    monkeypatch.setattr(sandbox, "isolation_status", lambda: (False, "no bubblewrap (simulated)"))
    code = cli.main(["grade", str(samples), "--work", str(tmp_path / "work"), "--jobs", "2",
                     "--cell-timeout", "5", "--call-timeout", "5"])
    out = capsys.readouterr().out
    assert code == 0 and "WITHOUT a kernel sandbox" in out
    rows = {(r["student"], r["assignment"]): float(r["score"])
            for r in csv.DictReader(open(tmp_path / "work" / "grades.csv"))}
    assert rows == EXPECTED


def test_editing_one_chapters_checks_regrades_only_that_chapter():
    from autograder.chapters import chapter
    from autograder.grading import digest_files, grader_digest
    one, two = chapter("01-similarity"), chapter("02-toy-attention")
    files_one = {p.name for p in digest_files(one)}
    assert {"similarity.py", "_gpt_formulas.py", "__init__.py", "framework.py"} <= files_one
    assert "toy_attention.py" not in {
        p.name for p in digest_files(one) if p.parent.name == "chapters"}
    assert grader_digest(one) != grader_digest(two)

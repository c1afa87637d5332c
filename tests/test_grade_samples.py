"""`python -m autograder grade` on the bundled samples: exact scores, feedback,
grades.csv, the gradebook, resuming, and --jobs 2 == serial."""
import csv
import shutil
import sqlite3
import subprocess
import sys

from autograder.batch import SAMPLES, Batch
from autograder.chapters import all_chapters
import pytest

from conftest import FAST, REPO, only_chapter

# alice: correct; bob: partly correct; carol: untouched; dave: fails at import; erin: loops forever.
# Each chapter declares its samples' scores (`Chapter(sample_scores=...)`).
SCORES = {ch.slug: ch.sample_scores for ch in all_chapters()}
STUDENTS = ("alice", "bob", "carol", "dave", "erin")
EXPECTED = {(st, slug): score for slug, scores in SCORES.items() if scores for st, score in zip(STUDENTS, scores)}


def samples_subset(tmp_path, slugs=("01-similarity", "02-toy-attention")):
    """A copy of the samples for a few chapters: robustness tests need not grade them all."""
    root = tmp_path / "subset"
    for student in STUDENTS:
        for slug in slugs:
            shutil.copytree(SAMPLES / student / slug, root / student / slug)
    return root, {k: v for k, v in EXPECTED.items() if k[1] in slugs}


def _scores(results):
    return {(r.student, r.assignment): r.score for r in results}


def test_sample_scores_serial_and_parallel_agree(sandboxed, tmp_path):
    parallel = Batch(SAMPLES, tmp_path / "parallel", FAST, True, jobs=2, out=lambda s: None).run()
    assert _scores(parallel) == EXPECTED
    # Serial grading of a subset gives the same verdicts, word for word (all of it serially
    # would spend minutes waiting out the looping samples' time limits one by one).
    slugs = ("01-similarity", "14-flash-attention-2")
    subset, _ = samples_subset(tmp_path, slugs)
    serial = Batch(subset, tmp_path / "serial", FAST, True, jobs=1, out=lambda s: None).run()
    assert [(r.student, r.assignment, r.score, [v.message for v in r.verdicts]) for r in parallel
            if r.assignment in slugs] == \
        [(r.student, r.assignment, r.score, [v.message for v in r.verdicts]) for r in serial]
    by = {(r.student, r.assignment): r for r in parallel}
    assert "No module named 'attention_helpers'" in by[("dave", "01-similarity")].cell_errors[0]
    assert "time limit per cell" in by[("erin", "01-similarity")].cell_errors[0]
    erin2 = [v.message for v in by[("erin", "02-toy-attention")].verdicts if not v.passed]
    assert "did not return" in erin2[0] and "time limit per function call" in erin2[0]
    assert any("subtract the maximum" in v.message for v in by[("bob", "01-similarity")].verdicts)


def test_outputs_feedback_csv_gradebook_and_resume(sandboxed, tmp_path):
    messages = []
    work = tmp_path / "work"
    samples, EXPECTED = samples_subset(tmp_path, ("01-similarity", "12-triton-basics"))
    results = Batch(samples, work, FAST, True, jobs=2, out=messages.append).run()
    rows = list(csv.DictReader(open(work / "grades.csv")))
    assert {(r["student"], r["assignment"]): float(r["score"]) for r in rows} == EXPECTED
    hidden_calls = ['check("softmax_random"', "BEGIN HIDDEN", "rng_for(", "ref."]
    for r in results:
        page = (work / "feedback" / r.student / r.assignment / f"{r.assignment}.html").read_text()
        assert f"{r.score:g} / {r.max_score}" in page
        for secret in hidden_calls:
            assert secret not in page
    db = sqlite3.connect(work / "gradebook.db")
    total = dict(db.execute("select student.id, sum(grade.auto_score) from grade "
                            "join submitted_notebook on grade.notebook_id = submitted_notebook.id "
                            "join submitted_assignment on submitted_notebook.assignment_id = submitted_assignment.id "
                            "join student on submitted_assignment.student_id = student.id group by student.id"))
    assert total == {s: sum(v for (st, _), v in EXPECTED.items() if st == s) for s in "alice bob carol dave erin".split()}
    source_text = " ".join(str(row) for row in db.execute("select * from source_cell"))
    assert "check(" not in source_text
    # A second run regrades nothing; a changed submission is regraded alone.
    again = Batch(samples, work, FAST, True, jobs=2, out=messages.append)
    assert _scores(again.run()) == EXPECTED
    assert any(f"{len(EXPECTED)} submission(s) unchanged" in m for m in messages)


def test_cli_grade_prints_the_table(sandboxed, tmp_path):
    samples, _ = samples_subset(tmp_path, ("01-similarity",))
    out = subprocess.run([sys.executable, "-m", "autograder", "grade", str(samples), "--work", str(tmp_path / "work"),
                          "--cell-timeout", "5", "--call-timeout", "5", "--jobs", "2"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "alice" in out.stdout and "12 / 12" in out.stdout and "grades.csv" in out.stdout


def test_every_chapter_declares_its_sample_scores():
    for slug, scores in SCORES.items():
        assert scores and len(scores) == len(STUDENTS), f"{slug}: Chapter(sample_scores=(alice, bob, carol, dave, erin))"


@pytest.mark.chapter_only
def test_one_chapters_samples(sandboxed, tmp_path):
    """`--chapter NN-slug`: that chapter's five samples, with their exact scores."""
    slug = only_chapter()
    subset, expected = samples_subset(tmp_path, (slug,))
    results = Batch(subset, tmp_path / "work", FAST, True, jobs=2, out=lambda s: None).run()
    assert _scores(results) == expected

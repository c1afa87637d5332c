"""`python -m autograder grade` on the bundled samples: exact scores, feedback,
grades.csv, the gradebook, resuming, and --jobs 2 == serial."""
import csv
import json
import shutil
import sqlite3
import subprocess
import sys

from autograder.batch import SAMPLES, Batch
from autograder.chapters import all_chapters
import pytest

from conftest import FAST, REPO, copy_of, only_chapter

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


def test_sample_scores_exact_and_serial_equals_parallel(graded_class, tmp_path):
    _, parallel, _ = graded_class
    assert _scores(parallel) == EXPECTED
    for r in parallel:
        assert not r.grader_error, (r.student, r.assignment, r.grader_error)
        if r.student == "carol":   # the untouched notebook fails every test, none by the grader's fault
            ch = next(c for c in all_chapters() if c.slug == r.assignment)
            assert len(r.verdicts) == len(ch.tests) and not any(v.passed for v in r.verdicts)
    # Serial grading of a subset gives the same verdicts, word for word (all of it serially
    # would spend minutes waiting out the looping samples' time limits one by one).
    slugs = ("01-similarity", "12-triton-basics")
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


def test_outputs_feedback_csv_gradebook_and_resume(graded_class, tmp_path):
    work, results, _ = graded_class
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
    assert total == {s: sum(v for (st, _), v in EXPECTED.items() if st == s) for s in STUDENTS}
    source_text = " ".join(str(row) for row in db.execute("select * from source_cell"))
    assert "check(" not in source_text
    # A second run regrades nothing; a changed submission is regraded alone.
    samples, expected = samples_subset(tmp_path, ("01-similarity", "12-triton-basics"))
    again_work = copy_of(work, tmp_path)
    messages = []
    assert _scores(Batch(samples, again_work, FAST, True, jobs=2, out=messages.append).run()) == expected
    assert any(f"{len(expected)} submission(s) unchanged" in m for m in messages)
    changed = samples / "bob" / "01-similarity" / "01-similarity.ipynb"
    nb = json.loads(changed.read_text())
    nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": ["I changed my mind."]})
    changed.write_text(json.dumps(nb))
    again = Batch(samples, again_work, FAST, True, jobs=2, out=lambda s: None)
    assert _scores(again.run()) == expected and again.stats["graded"] == 1

def test_cli_grade_prints_the_table(sandboxed, tmp_path):
    samples, _ = samples_subset(tmp_path, ("01-similarity",))
    out = subprocess.run([sys.executable, "-m", "autograder", "grade", str(samples), "--work", str(tmp_path / "work"),
                          "--cell-timeout", "5", "--call-timeout", "5", "--jobs", "2"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "alice" in out.stdout and "12 / 12" in out.stdout and "grades.csv" in out.stdout
    # Not a terminal: progress as plain lines, then the run's figures and the class's brief.
    assert "graded 5 of 5" in out.stdout and "5 graded in" in out.stdout
    assert "01-similarity: 5 graded, mean" in out.stdout and "report-<assignment>.html" in out.stdout


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


def test_class_report_agrees_with_grades_csv_and_hides_the_tests(graded_class):
    import html
    import re
    import statistics
    work, _, brief = graded_class
    rows = list(csv.DictReader(open(work / "grades.csv")))
    for slug in ("01-similarity", "05-gpt-numpy"):
        page = (work / f"report-{slug}.html").read_text()
        data = json.loads(html.unescape(re.search(r'data-summary="([^"]*)"', page).group(1)))
        scores = sorted(float(r["score"]) for r in rows if r["assignment"] == slug)
        assert sorted(data["scores"]) == scores and data["graded"] == len(scores)
        assert abs(data["mean"] - statistics.fmean(scores)) < 1e-3
        for secret in ("BEGIN HIDDEN", 'check("', "rng_for(", "ref."):
            assert secret not in page
        assert "http://" not in page and "https://" not in page   # works offline: images are inline
    # Bob's unstable softmax is named by its catalogue entry, not only by its hint.
    assert "exp(1000) overflows to inf" in (work / "report-01-similarity.html").read_text()
    assert "01-similarity: 5 graded" in brief


def test_selected_students_and_assignments_are_regraded_alone(graded_class, tmp_path):
    samples, expected = samples_subset(tmp_path, ("01-similarity", "02-toy-attention"))
    work = copy_of(graded_class[0], tmp_path)
    again = Batch(samples, work, FAST, True, jobs=2, force=True, out=lambda s: None,
                  students=["bob"], assignments=["01-similarity"])
    results = again.run()
    assert again.stats["graded"] == 1 and _scores(results) == expected   # every row still there
    rows = list(csv.DictReader(open(work / "grades.csv")))
    assert len(rows) == len(expected)


def test_export_for_spreadsheets_canvas_and_moodle(graded_class, tmp_path):
    from autograder.export import export
    work = copy_of(graded_class[0], tmp_path)
    slugs = sorted(SCORES)
    plain = list(csv.reader(open(export(work, "csv"))))
    assert plain[0][:2] == ["student", "01-similarity (/12)"] and plain[0][-1] == "total"
    assert len(plain[0]) == len(slugs) + 2
    assert {r[0]: float(r[1]) for r in plain[1:]} == {st: EXPECTED[st, "01-similarity"] for st in STUDENTS}
    assert {r[0]: float(r[-1]) for r in plain[1:]} == \
        pytest.approx({st: sum(EXPECTED[st, slug] for slug in slugs) for st in STUDENTS})
    canvas = list(csv.reader(open(export(work, "canvas"))))
    assert canvas[0][:6] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "01-similarity"]
    assert canvas[1][0].strip() == "Points Possible" and canvas[1][5] == "12"
    moodle = list(csv.reader(open(export(work, "moodle"))))
    assert moodle[0] == ["Username"] + slugs and len(moodle) == 6

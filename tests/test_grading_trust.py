"""One student never costs the class its grades, and the grader's failure is never a
student's zero: hostile names and links in the submissions folder, two graders on one
folder, a sandbox that cannot run the worker, a check that crashes, a loaded machine."""
import csv
import fcntl
import json
import os
import shutil
import subprocess
import sys

import pytest

from autograder import batch as batch_module
from autograder import cli, sandbox
from autograder.batch import SAMPLES, Batch, GraderUnavailable, WorkFolderBusy
from conftest import FAST, REPO

SLUG = "01-similarity"
ALICE = SAMPLES / "alice" / SLUG / f"{SLUG}.ipynb"      # the correct sample: 12 / 12
CAROL = SAMPLES / "carol" / SLUG / f"{SLUG}.ipynb"      # untouched: 0 / 12


def _put(root, student: str, notebook=ALICE, assignment=SLUG):
    folder = root / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(notebook, folder / f"{SLUG}.ipynb")
    return folder


def _rows(work):
    with open(work / "grades.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def hostile_batch(tmp_path_factory, sandboxed):
    """Every naming and linking trick in one batch beside honest students."""
    root = tmp_path_factory.mktemp("subs")
    victim = _put(root, "victim")
    _put(root, "honest")
    # A stray file whose name is not UTF-8 (as a Windows zip makes), beside a notebook.
    stray = _put(root, "zip_student")
    (stray / os.fsdecode(b"r\xe9sum\xe9.txt")).write_text("cv")
    # A student folder named with bytes that are not UTF-8, holding a correct notebook.
    _put(root, os.fsdecode(b"ren\xe9e"))
    # An assignment folder of 80 CJK letters (240 bytes): a legal, unknown name.
    (root / "cjk" / ("\u6f22" * 80)).mkdir(parents=True)
    # Links: to another student's notebook, a linked student and assignment folder, the
    # instructor's solutions, and a device file.
    linker = root / "linker" / SLUG
    linker.mkdir(parents=True)
    os.symlink(os.path.relpath(victim / f"{SLUG}.ipynb", linker), linker / f"{SLUG}.ipynb")
    os.symlink(victim.parent, root / "linked_student")
    (root / "linked_assignment").mkdir()
    os.symlink(victim, root / "linked_assignment" / SLUG)
    (root / "to_solutions").mkdir()
    os.symlink(REPO / "solutions" / SLUG, root / "to_solutions" / SLUG)
    memlink = root / "mem" / SLUG
    memlink.mkdir(parents=True)
    os.symlink("/proc/self/mem", memlink / f"{SLUG}.ipynb")
    fifo = root / "fifo" / SLUG
    fifo.mkdir(parents=True)
    os.mkfifo(fifo / f"{SLUG}.ipynb")
    # Names that collide once made safe, or in their first 100 characters.
    _put(root, "jo.ann@uni")
    _put(root, "jo.ann_uni", CAROL)
    _put(root, "x" * 120 + "a")
    _put(root, "x" * 120 + "b", CAROL)
    # A spreadsheet formula as a student name.
    _put(root, '=HYPERLINK("http://evil/","click")', CAROL)
    work = tmp_path_factory.mktemp("work")
    results = Batch(root, work, FAST, True, jobs=2, out=lambda s: None).run()
    return root, work, {r.student: r for r in results}


def test_every_submission_gets_a_row_and_the_honest_keep_full_marks(hostile_batch):
    root, work, by = hostile_batch
    rows = _rows(work)
    assert len(rows) == len(by) == 16
    for honest in ("victim", "honest", "zip_student", "ren\ufffde", "jo.ann@uni", "x" * 120 + "a"):
        assert by[honest].score == 12, (honest, by[honest].error, by[honest].notes)
    assert any("ignored files: r\ufffdsum\ufffd.txt" in n for n in by["zip_student"].notes)
    assert "unknown assignment folder" in by["cjk"].error


@pytest.mark.parametrize("student,why", [
    ("linker", "symbolic link"), ("linked_student", "student folder is a symbolic link"),
    ("linked_assignment", "assignment folder is a symbolic link"),
    ("to_solutions", "assignment folder is a symbolic link"), ("mem", "symbolic link"),
    ("fifo", "special file")])
def test_links_and_special_files_are_refused_with_a_reason(hostile_batch, student, why):
    _, _, by = hostile_batch
    assert by[student].score == 0 and why in by[student].error, by[student].error
    assert "solutions" not in by[student].error + " ".join(by[student].notes)


def test_colliding_names_keep_their_own_feedback_and_state(hostile_batch):
    root, work, by = hostile_batch
    pages = list((work / "feedback").rglob("*.html"))
    states = list((work / "state").rglob("*.json"))
    assert len(pages) == len(states) == 16
    texts = [p.read_text(encoding="utf-8") for p in pages]
    assert sum("Student: jo.ann@uni." in t and "12 / 12" in t for t in texts) == 1
    assert sum("Student: jo.ann_uni." in t and "0 / 12" in t for t in texts) == 1
    assert all(len(part.encode()) <= 100 for p in pages + states for part in p.relative_to(work).parts)


def test_csv_and_terminal_are_neutralised(hostile_batch):
    _, work, by = hostile_batch
    text = (work / "grades.csv").read_text(encoding="utf-8")
    cells = [cell for row in csv.reader(text.splitlines()) for cell in row]
    assert not any(c[:1] in "=+-@" and c for c in cells), [c for c in cells if c[:1] in "=+-@"]
    assert "'=HYPERLINK" in text
    table = batch_module.summary(list(by.values()))
    assert "\x1b" not in table and "\r" not in table


def test_escape_codes_never_reach_the_csv_or_the_table(sandboxed, tmp_path):
    nb = json.loads(ALICE.read_text())
    nb["cells"].insert(1, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                           "source": "raise ValueError('\\r\\x1b[2Kmallory  01-similarity  12 / 12')"})
    folder = tmp_path / "subs" / "mallory" / SLUG
    folder.mkdir(parents=True)
    (folder / f"{SLUG}.ipynb").write_text(json.dumps(nb))
    results = Batch(tmp_path / "subs", tmp_path / "work", FAST, True, out=lambda s: None).run()
    table = batch_module.summary(results)
    csv_text = (tmp_path / "work" / "grades.csv").read_text()
    for text in (table, csv_text):
        assert "\x1b" not in text and "\r" not in text.replace("\r\n", "\n")
    assert "\ufffd" in csv_text   # the control characters, replaced where they stood


def test_a_second_grader_on_the_same_folder_is_refused(sandboxed, tmp_path):
    subs = tmp_path / "subs"
    _put(subs, "alice")
    work = tmp_path / "work"
    work.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time\n"
                               f"f = open({str(work / '.lock')!r}, 'a+')\nfcntl.flock(f, fcntl.LOCK_EX)\n"
                               "print('locked', flush=True)\ntime.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WorkFolderBusy):
            Batch(subs, work, FAST, True, out=lambda s: None).run()
        assert cli.main(["grade", str(subs), "--work", str(work)]) == 5
    finally:
        holder.kill()
        holder.wait()
    assert Batch(subs, work, FAST, True, out=lambda s: None).run()[0].score == 12


def _break_the_sandbox(monkeypatch):
    """A sandbox whose worker cannot start: the Python install is hidden, as a tmpfs over
    /tmp once hid a course cloned there (bwrap itself still starts `/bin/true`)."""
    real = sandbox._bwrap_prefix

    def broken(scratch, limits, uid=65534):
        args = real(scratch, limits, uid)
        cut = args.index("--chdir")
        hide = []
        for root in {sys.prefix, sys.base_prefix}:
            hide += ["--tmpfs", os.path.realpath(root)]
        return args[:cut] + hide + args[cut:]
    monkeypatch.setattr(sandbox, "_bwrap_prefix", broken)


def test_a_broken_sandbox_records_nothing_and_blames_the_grader(sandboxed, tmp_path, monkeypatch, capsys):
    subs = tmp_path / "subs"
    _put(subs, "alice")
    work = tmp_path / "work"
    _break_the_sandbox(monkeypatch)
    with pytest.raises(GraderUnavailable):
        Batch(subs, work, FAST, True, out=lambda s: None).run()
    monkeypatch.setattr(sandbox, "isolation_status", lambda: (True, "bubblewrap sandbox (claimed)"))
    code = cli.main(["grade", str(subs), "--work", str(work)])
    out = capsys.readouterr().out
    assert code == 4 and "GRADER ERROR" in out and "not of any submission" in out
    assert not (work / "grades.csv").exists() and not (work / "gradebook.db").exists()
    assert not list(work.rglob("*.json"))


def test_a_sandbox_that_breaks_mid_batch_records_nothing_for_those_students(sandboxed, tmp_path, monkeypatch):
    """The start-up probe passed; then every worker fails (as if the venv vanished): the
    correct notebook is reported as not graded, never as a zero."""
    subs = tmp_path / "subs"
    _put(subs, "alice")
    monkeypatch.setattr(batch_module, "probe_worker", lambda *a, **k: (True, "ok"))
    _break_the_sandbox(monkeypatch)
    work = tmp_path / "work"
    [result] = Batch(subs, work, FAST, True, out=lambda s: None).run()
    assert result.grader_error and "cannot run" in result.grader_error
    assert _rows(work)[0]["status"] == "grader-error" and _rows(work)[0]["score"] == ""
    assert not (work / "gradebook.db").exists() and not list((work / "state").rglob("*.json"))
    assert "Not graded yet" in next((work / "feedback").rglob("*.html")).read_text()


def test_a_crashing_check_voids_only_itself(sandboxed, tmp_path, monkeypatch):
    from autograder.chapters import chapter
    test = chapter(SLUG).tests["softmax_edge"]

    def crash(fn, ref):
        raise KeyError("a bug in the check")
    monkeypatch.setattr(test, "body", crash)
    subs = tmp_path / "subs"
    _put(subs, "alice")
    [result] = Batch(subs, tmp_path / "work", FAST, True, out=lambda s: None).run()
    others = [v for v in result.verdicts if v.grade_id != "softmax_edge"]
    assert all(v.passed for v in others) and len(others) == 11
    assert "the grader's check failed" in result.grader_error
    assert not list((tmp_path / "work" / "state").rglob("*.json"))


def test_correct_notebooks_keep_full_marks_on_a_loaded_machine(sandboxed, tmp_path):
    """Limits count the submission's CPU time: two CPU hogs beside the grader (on a 2-core
    machine) must not turn correct work into a timeout."""
    subs = tmp_path / "subs"
    for slug in (SLUG, "12-triton-basics"):
        for student in ("alice", "alice2"):
            folder = subs / student / slug
            folder.mkdir(parents=True)
            shutil.copy(SAMPLES / "alice" / slug / f"{slug}.ipynb", folder)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(2, os.cpu_count() or 2))]
    try:
        tight = sandbox.Limits(cell_seconds=10, call_seconds=5, submission_seconds=60)
        results = Batch(subs, tmp_path / "work", tight, True, jobs=2, out=lambda s: None).run()
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert all(r.score == r.max_score for r in results), [(r.student, r.assignment, r.score, r.cell_errors)
                                                          for r in results if r.score < r.max_score]


def _with_answer(slug, function, source):
    nb = json.loads((SAMPLES / "alice" / slug / f"{slug}.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == function:
            cell["source"] = source
    return nb


def test_kernel_chapters_grade_the_kernel_not_only_the_numbers(sandboxed, tmp_path):
    """A launcher that computes with PyTorch scores zero on its tests, with the reason; an honest
    student who pastes kernel and launcher together into the launcher's cell keeps full marks."""
    from autograder import catalogue
    wrong = {(w.function, w.name): w.source for w in catalogue.load("triton_basics").WRONG}
    correct_add = next(src for src in catalogue.load("triton_basics").CORRECT if "def vector_add" in src)
    cases = {"torch_add": ("12-triton-basics", "vector_add", wrong[("vector_add", "add_in_pytorch")]),
             "pasted_together": ("12-triton-basics", "vector_add", correct_add)}
    # (Chapter 14's forward in PyTorch is the catalogue's fwd_in_pytorch, proven by test_catalogue.)
    for student, (slug, fn, source) in cases.items():
        folder = tmp_path / "subs" / student / slug
        folder.mkdir(parents=True)
        (folder / f"{slug}.ipynb").write_text(json.dumps(_with_answer(slug, fn, source)))
    by = {r.student: r for r in Batch(tmp_path / "subs", tmp_path / "work", FAST, True, jobs=2,
                                       out=lambda s: None).run()}
    for student, fn in (("torch_add", "vector_add"),):
        mine = [v for v in by[student].verdicts if v.function == fn]
        assert mine and all(not v.passed and "does not launch the Triton kernel" in v.message for v in mine)
        assert all(v.passed for v in by[student].verdicts if v.function != fn)
    assert by["pasted_together"].score == by["pasted_together"].max_score, \
        [v.message for v in by["pasted_together"].verdicts if not v.passed]

"""Grade a folder of submissions: resumable, parallel, one bad notebook at a time.

Layout (nbgrader's submitted layout): DIR/<student>/<assignment>/<notebook>.ipynb.
Each finished grade is written at once (a JSON state file renamed into place, and
nbgrader's gradebook in one transaction), so killing the grader loses nothing
finished; a re-run skips submissions whose notebook and grader are unchanged.
"""
from __future__ import annotations

import concurrent.futures
import csv
import hashlib
import html
import json
import os
import threading
from pathlib import Path

from . import chapters as chapter_registry
from .grading import Result, grade_notebook, grader_digest, zero_result
from .sandbox import Limits

SAMPLES = Path(__file__).resolve().parent / "samples" / "submitted"


def discover(root: Path):
    """Yield (student, assignment, notebook path or None, chapter or None, notes, error)."""
    known = {c.slug: c for c in chapter_registry.all_chapters()}
    for student_dir in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        student = student_dir.name
        if not student_dir.is_dir():
            continue  # stray file beside the student folders
        assignments = sorted(p for p in student_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not assignments:
            yield student, "-", None, None, [], "no assignment folder submitted (empty folder)"
            continue
        for adir in assignments:
            chapter = known.get(adir.name)
            if chapter is None:
                yield student, adir.name, None, None, [], (f"unknown assignment folder '{adir.name}' "
                                                           f"(known: {', '.join(known)})")
                continue
            expected = adir / f"{chapter.slug}.ipynb"
            notebooks = sorted(p for p in adir.glob("*.ipynb") if p.is_file())
            stray = sorted(p.name for p in adir.iterdir() if p.suffix != ".ipynb" and not p.name.startswith("."))
            notes = [f"ignored files: {', '.join(stray[:5])}"] if stray else []
            if expected.is_file():
                yield student, chapter.slug, expected, chapter, notes, ""
            elif len(notebooks) == 1:
                yield student, chapter.slug, notebooks[0], chapter, notes + [
                    f"graded {notebooks[0].name} as {expected.name} (the notebook was renamed)"], ""
            elif notebooks:
                yield student, chapter.slug, None, chapter, notes, (
                    f"{expected.name} is missing and there are {len(notebooks)} other notebooks "
                    f"({', '.join(p.name for p in notebooks[:3])}); submit exactly {expected.name}")
            else:
                yield student, chapter.slug, None, chapter, notes, f"no notebook submitted ({expected.name} is missing)"


def _digest(path: Path | None, grader: str) -> str:
    h = hashlib.sha256(grader.encode())
    if path is not None:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:100] or "_"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Batch:
    def __init__(self, root: Path, work: Path, limits: Limits, sandboxed: bool, jobs: int = 1,
                 force: bool = False, gradebook: bool = True, out=print):
        self.root, self.work, self.limits = root, work, limits
        self.sandboxed, self.jobs, self.force = sandboxed, max(1, jobs), force
        self.gradebook = gradebook
        self.out = out
        self.lock = threading.Lock()
        self._gb = None  # one nbgrader Gradebook per batch: opening one costs ~0.5 s

    def state_path(self, student: str, assignment: str) -> Path:
        return self.work / "state" / _safe(student) / f"{_safe(assignment)}.json"

    def feedback_path(self, result: Result) -> Path:
        return self.work / "feedback" / _safe(result.student) / _safe(result.assignment) / \
            f"{_safe(result.notebook.removesuffix('.ipynb'))}.html"

    def run(self) -> list[Result]:
        grader = grader_digest()
        jobs, results = [], {}
        for student, assignment, path, chapter, notes, error in discover(self.root):
            digest = _digest(path, grader + error)
            state = self.state_path(student, assignment)
            if not self.force and state.is_file():
                try:
                    cached = Result.from_json(json.loads(state.read_text()))
                    if cached.digest == digest:
                        results[(student, assignment)] = cached
                        continue
                except (ValueError, TypeError, KeyError):
                    pass  # a damaged state file is simply redone
            jobs.append((student, assignment, path, chapter, notes, error, digest))
        skipped = len(results)
        try:
            with concurrent.futures.ThreadPoolExecutor(self.jobs) as pool:
                futures = {pool.submit(self._grade_one, *job): job for job in jobs}
                for future in concurrent.futures.as_completed(futures):
                    result = future.result()
                    results[(result.student, result.assignment)] = result
        finally:
            if self._gb is not None:
                self._gb.close()
        if skipped:
            self.out(f"{skipped} submission(s) unchanged since the last run were not regraded (--force regrades)")
        ordered = [results[k] for k in sorted(results)]
        self.write_csv(ordered)
        return ordered

    def _grade_one(self, student, assignment, path, chapter, notes, error, digest) -> Result:
        if error or path is None:
            result = zero_result(student, assignment, f"{assignment}.ipynb", chapter, error)
            result.notes = notes
        else:
            try:
                result = grade_notebook(path, chapter, student, self.limits, self.sandboxed, notes=notes)
            except Exception as exc:  # a grader bug must not sink the batch
                result = zero_result(student, assignment, path.name, chapter,
                                     f"internal grader error ({type(exc).__name__}: {exc}); tell the instructor")
        result.digest = digest
        feedback = self.feedback_path(result)
        _atomic_write(feedback, feedback_html(result))
        with self.lock:
            if self.gradebook and chapter is not None:
                try:
                    if self._gb is None:
                        self._gb = open_gradebook(self.work / "gradebook.db")
                    record_in_gradebook(self._gb, result, chapter)
                except Exception as exc:  # the grade is still in state/ and grades.csv
                    self._gb.db.rollback()
                    result.notes.append(f"gradebook not updated ({type(exc).__name__}: {str(exc)[:200]})")
            _atomic_write(self.state_path(student, assignment), json.dumps(result.to_json(), indent=1))
        return result

    def write_csv(self, results: list[Result]) -> Path:
        path = self.work / "grades.csv"
        rows = [["student", "assignment", "score", "max_score", "status", "message"]]
        for r in results:
            status = "error" if r.error else "graded"
            message = r.error or "; ".join(r.cell_errors[:2] + r.notes[:2])
            rows.append([r.student, r.assignment, f"{r.score:g}", str(r.max_score), status, message])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
        os.replace(tmp, path)
        return path


def open_gradebook(db: Path):
    from nbgrader.api import Gradebook

    from .release import venv_tools_on_path
    venv_tools_on_path()
    db.parent.mkdir(parents=True, exist_ok=True)
    return Gradebook(f"sqlite:///{db}")


def record_in_gradebook(gb, result: Result, chapter) -> None:
    """Store the trusted scores in nbgrader's gradebook (no test source goes in)."""
    import warnings

    notebook = chapter.slug
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gb.update_or_create_assignment(chapter.slug)
        gb.update_or_create_notebook(notebook, chapter.slug)
        for test in chapter.tests.values():
            gb.update_or_create_grade_cell(test.grade_id, notebook, chapter.slug,
                                           max_score=test.points, cell_type="code")
        gb.update_or_create_student(result.student)
        gb.update_or_create_submission(chapter.slug, result.student)
        scores = {v.grade_id: v.points for v in result.verdicts}
        for test in chapter.tests.values():
            grade = gb.find_grade(test.grade_id, notebook, chapter.slug, result.student)
            grade.auto_score = scores.get(test.grade_id, 0)
        gb.db.commit()


def feedback_html(result: Result) -> str:
    """The student's feedback: verdicts and hints only, never a hidden test's source."""
    e = html.escape
    rows = []
    for v in result.verdicts:
        mark = "&#10004;" if v.passed else "&#10008;"
        kind = "hidden" if v.hidden else "visible"
        message = e(v.message).replace("\n", "<br>") if v.message else ""
        rows.append(f"<tr class='{'pass' if v.passed else 'fail'}'><td>{mark}</td><td>{e(v.function)}</td>"
                    f"<td>{e(v.grade_id)} ({kind})</td><td>{v.points:g} / {v.max_points}</td>"
                    f"<td>{message}</td></tr>")
    extras = ""
    if result.error:
        extras += f"<p class='error'><b>Not graded:</b> {e(result.error)}</p>"
    for line in result.cell_errors + result.notes:
        extras += f"<p class='note'>{e(line)}</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Feedback: {e(result.assignment)} for {e(result.student)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ccc;padding:.4rem;text-align:left;vertical-align:top}}
tr.fail td:first-child{{color:#b00}}tr.pass td:first-child{{color:#070}}.error{{color:#b00}}.note{{color:#555}}</style>
</head><body>
<h1>{e(result.assignment)}: {result.score:g} / {result.max_score}</h1>
<p>Student: {e(result.student)}. Notebook: {e(result.notebook)}.</p>
{extras}
<table><tr><th></th><th>function</th><th>test</th><th>points</th><th>what went wrong, and a hint</th></tr>
{''.join(rows)}
</table></body></html>
"""


def summary(results: list[Result]) -> str:
    width = max([len(r.student) for r in results] + [7])
    aw = max([len(r.assignment) for r in results] + [10])
    lines = [f"{'student':<{width}}  {'assignment':<{aw}} {'score':>9}  note"]
    for r in results:
        note = r.error or (r.cell_errors[0] if r.cell_errors else (r.notes[0] if r.notes else ""))
        lines.append(f"{r.student:<{width}}  {r.assignment:<{aw}} {r.score:>4g} / {r.max_score:<3}  {note[:90]}")
    return "\n".join(lines)

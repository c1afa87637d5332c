"""Grade a folder of submissions: resumable, parallel, one bad notebook at a time.

Layout (nbgrader's submitted layout): DIR/<student>/<assignment>/<notebook>.ipynb.
Each finished grade is written at once (a JSON state file renamed into place, and
nbgrader's gradebook in one transaction), so killing the grader loses nothing
finished; a re-run skips submissions whose notebook and grader are unchanged.
"""
from __future__ import annotations

import concurrent.futures
import csv
import fcntl
import hashlib
import html
import json
import os
import re
import stat
import threading
import time
from pathlib import Path

from . import chapters as chapter_registry
from .grading import Result, grade_notebook, grader_digest, zero_result
from .notebooks import Unreadable, read_bytes_safely, shown
from .sandbox import Limits, probe_worker

SAMPLES = Path(__file__).resolve().parent / "samples" / "submitted"


class GraderUnavailable(Exception):
    """The grader itself cannot grade here; nothing was recorded."""


class WorkFolderBusy(Exception):
    """Another grader holds the work folder's lock."""


def _lstat_kind(path: Path) -> str:
    """'dir', 'file', 'link' or 'other', without following a symbolic link."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "other"
    if stat.S_ISLNK(mode):
        return "link"
    return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted((folder / n for n in os.listdir(folder) if not n.startswith(".")), key=lambda p: p.name)
    except OSError:
        return []


def discover(root: Path):
    """Yield (student, assignment, notebook path or None, chapter or None, notes, error).

    Symbolic links and anything but folders and regular files are refused at every level
    (never followed: a link could score another student's work or probe the grader's
    files), and every path must lie inside `root`."""
    known = {c.slug: c for c in chapter_registry.all_chapters()}
    root = root.resolve()
    for student_dir in _entries(root):
        student = student_dir.name
        kind = _lstat_kind(student_dir)
        if kind == "file":
            continue  # stray file beside the student folders
        if kind != "dir":
            yield student, "-", None, None, [], f"the student folder is a {'symbolic link' if kind == 'link' else 'special file'}: not graded"
            continue
        assignments = [p for p in _entries(student_dir) if _lstat_kind(p) != "file"]
        if not assignments:
            yield student, "-", None, None, [], "no assignment folder submitted (empty folder)"
            continue
        for adir in assignments:
            chapter = known.get(adir.name)
            akind = _lstat_kind(adir)
            if akind != "dir":
                yield student, adir.name, None, chapter, [], (
                    f"the assignment folder is a {'symbolic link' if akind == 'link' else 'special file'}: not graded")
                continue
            if chapter is None:
                yield student, adir.name, None, None, [], (f"unknown assignment folder '{shown(adir.name)}' "
                                                           f"(known: {', '.join(known)})")
                continue
            expected = adir / f"{chapter.slug}.ipynb"
            entries = _entries(adir)
            links = [p for p in entries if _lstat_kind(p) in ("link", "other")]
            notebooks = [p for p in entries if p.suffix == ".ipynb" and _lstat_kind(p) == "file"]
            stray = [shown(p.name, 40) for p in entries if p.suffix != ".ipynb" and p not in links]
            notes = [f"ignored files: {', '.join(stray[:5])}"] if stray else []
            if links:
                notes.append("refused (symbolic links or special files): "
                             + ", ".join(shown(p.name, 40) for p in links[:5]))
            if expected in notebooks:
                yield student, chapter.slug, expected, chapter, notes, ""
            elif expected in links:
                yield student, chapter.slug, None, chapter, notes, (
                    f"{expected.name} is a symbolic link or special file; submit the notebook file itself")
            elif len(notebooks) == 1:
                yield student, chapter.slug, notebooks[0], chapter, notes + [
                    f"graded {shown(notebooks[0].name)} as {expected.name} (the notebook was renamed)"], ""
            elif notebooks:
                yield student, chapter.slug, None, chapter, notes, (
                    f"{expected.name} is missing and there are {len(notebooks)} other notebooks "
                    f"({', '.join(shown(p.name, 40) for p in notebooks[:3])}); submit exactly {expected.name}")
            else:
                yield student, chapter.slug, None, chapter, notes, f"no notebook submitted ({expected.name} is missing)"


def _digest(raw: bytes | None, grader: str) -> str:
    h = hashlib.sha256(grader.encode())
    h.update(raw or b"")
    return h.hexdigest()


_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,79}")


def _key(name: str) -> str:
    """A file-system name for a student or assignment, unique for each exact name: a plain
    short name is itself; any other (`jo.ann@uni`, undecodable bytes, 300 CJK letters)
    becomes a readable ASCII prefix, `~` (never in a plain name) and a hash of the exact
    name, so two students never share a feedback folder or a state file."""
    if _PLAIN.fullmatch(name):
        return name
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in shown(name))
    exact = name.encode("utf-8", "surrogateescape")
    return f"{safe.lstrip('.')[:60] or '_'}~{hashlib.sha256(exact).hexdigest()[:12]}"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def cell_text(value: str) -> str:
    """A value as a spreadsheet cell and a terminal may show it: control characters
    replaced, and a leading =, +, -, @ (a formula to a spreadsheet) neutralised with '."""
    text = "".join(c if c.isprintable() else "\ufffd" for c in str(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class Batch:
    def __init__(self, root: Path, work: Path, limits: Limits, sandboxed: bool, jobs: int = 1,
                 force: bool = False, gradebook: bool = True, out=print, progress=None,
                 students=(), assignments=()):
        self.root, self.work, self.limits = root, work, limits
        self.sandboxed, self.jobs, self.force = sandboxed, max(1, jobs), force
        self.gradebook = gradebook
        self.out = out
        self.progress = progress          # callable(done, total) after each graded submission
        # Regrade only these (exact folder names); the others keep their last grade.
        self.students, self.assignments = set(students), set(assignments)
        self.stats: dict = {}
        self.lock = threading.Lock()
        self._gb = None  # one nbgrader Gradebook per batch: opening one costs ~0.5 s

    def state_path(self, student: str, assignment: str) -> Path:
        return self.work / "state" / _key(student) / f"{_key(assignment)}.json"

    def feedback_path(self, student: str, assignment: str) -> Path:
        """Keyed by the exact folder names, as state is."""
        return self.work / "feedback" / _key(student) / _key(assignment) / f"{_key(assignment)}.html"

    def run(self) -> list[Result]:
        self.work.mkdir(parents=True, exist_ok=True)
        with open(self.work / ".lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise WorkFolderBusy(f"another grader is already working in {self.work}; wait for it to "
                                     "finish (or give each run its own --work folder)") from None
            return self._run()

    def _run(self) -> list[Result]:
        found = list(discover(self.root))
        imports = sorted({m for f in found if f[3] is not None for m in f[3].imports})
        if found:
            ok, why = probe_worker(self.sandboxed, tuple(imports) or ("numpy",))
            if not ok:
                raise GraderUnavailable(f"the grader's worker cannot run student code here: {why}")
        digests = {}
        jobs, results = [], {}
        start = time.monotonic()
        for student, assignment, path, chapter, notes, error in found:
            state = self.state_path(student, assignment)
            if (self.students and student not in self.students) or \
                    (self.assignments and assignment not in self.assignments):
                try:  # not selected: its last grade stays in grades.csv
                    results[(student, assignment)] = Result.from_json(json.loads(state.read_text(encoding="utf-8")))
                except (OSError, ValueError, TypeError, KeyError):
                    pass
                continue
            raw = None
            if path is not None:
                try:
                    raw = read_bytes_safely(path)
                except Unreadable as err:
                    path, error = None, str(err)
            if chapter not in digests:
                digests[chapter] = grader_digest(chapter)
            digest = _digest(raw, digests[chapter] + error)
            if not self.force and state.is_file():
                try:
                    cached = Result.from_json(json.loads(state.read_text(encoding="utf-8")))
                    if cached.digest == digest and cached.student == shown(student, 200):
                        results[(student, assignment)] = cached
                        continue
                except (ValueError, TypeError, KeyError, OSError):
                    pass  # a damaged state file is simply redone
            jobs.append((student, assignment, path, raw, chapter, notes, error, digest))
        skipped = len(results)
        try:
            with concurrent.futures.ThreadPoolExecutor(self.jobs) as pool:
                futures = {pool.submit(self._grade_one, *job): job for job in jobs}
                for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                    job = futures[future]
                    results[(job[0], job[1])] = future.result()
                    if self.progress:
                        self.progress(done, len(jobs))
        finally:
            if self._gb is not None:
                self._gb.close()
        if skipped:
            self.out(f"{skipped} submission(s) unchanged since the last run were not regraded (--force regrades)")
        ordered = [results[k] for k in sorted(results)]
        self.write_csv(ordered)
        wall = time.monotonic() - start
        self.stats = {"graded": len(jobs), "resumed": skipped, "seconds": round(wall, 1),
                      "per_second": round(len(jobs) / wall, 2) if wall > 0 else None}
        try:
            from .report import write_reports
            self.reports, self.brief = write_reports(ordered, self.work)
        except Exception as exc:  # a report is a convenience: never lose the grades over it
            self.reports, self.brief = [], f"class report not written ({type(exc).__name__}: {exc})"
        return ordered

    def _grade_one(self, student, assignment, path, raw, chapter, notes, error, digest) -> Result:
        """Everything about one submission, guarded: whatever it does or is named, it gets a
        row and the batch goes on. A failure of the grader's own is reported, not recorded."""
        name, slug = shown(student, 200), shown(assignment, 200)
        try:
            if error or path is None:
                result = zero_result(name, slug, f"{slug}.ipynb", chapter, error)
                result.notes = notes
            else:
                result = grade_notebook(path, chapter, name, self.limits, self.sandboxed, notes=notes, raw=raw)
        except Exception as exc:  # a grader bug must not sink the batch, nor count as a zero
            result = zero_result(name, slug, f"{slug}.ipynb", chapter, "")
            result.grader_error = f"internal grader error ({type(exc).__name__}: {str(exc)[:200]})"
        result.digest = digest
        try:
            _atomic_write(self.feedback_path(student, assignment), feedback_html(result))
        except Exception as exc:
            result.notes.append(f"feedback page not written ({type(exc).__name__}: {str(exc)[:200]})")
        if result.grader_error:
            return result  # nothing recorded: a re-run grades it again
        with self.lock:
            if self.gradebook and chapter is not None:
                try:
                    if self._gb is None:
                        self._gb = open_gradebook(self.work / "gradebook.db")
                    record_in_gradebook(self._gb, result, chapter)
                except Exception as exc:  # the grade is still in state/ and grades.csv
                    if self._gb is not None:
                        self._gb.db.rollback()
                    result.notes.append(f"gradebook not updated ({type(exc).__name__}: {str(exc)[:200]})")
            try:
                _atomic_write(self.state_path(student, assignment), json.dumps(result.to_json(), indent=1))
            except Exception as exc:
                result.notes.append(f"state not saved, will be regraded ({type(exc).__name__})")
        return result

    def write_csv(self, results: list[Result]) -> Path:
        path = self.work / "grades.csv"
        rows = [["student", "assignment", "score", "max_score", "status", "message"]]
        for r in results:
            status = "grader-error" if r.grader_error else "error" if r.error else "graded"
            message = r.grader_error or r.error or "; ".join(r.cell_errors[:2] + r.notes[:2])
            score = "" if r.grader_error else f"{r.score:g}"
            rows.append([cell_text(x) for x in (r.student, r.assignment, score, str(r.max_score), status, message)])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".grades.{os.getpid()}.tmp")
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
    if result.grader_error:
        extras += (f"<p class='error'><b>Not graded yet:</b> the grader failed, not your work "
                   f"({e(result.grader_error)}). Your instructor has been told by the grading run.</p>")
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
<h1>{e(result.assignment)}: {"not graded" if result.grader_error else f"{result.score:g} / {result.max_score}"}</h1>
<p>Student: {e(result.student)}. Notebook: {e(result.notebook)}.</p>
{extras}
<table><tr><th></th><th>function</th><th>test</th><th>points</th><th>what went wrong, and a hint</th></tr>
{''.join(rows)}
</table></body></html>
"""


def summary(results: list[Result]) -> str:
    rows = [(cell_text(r.student)[:40], cell_text(r.assignment)[:40],
             "not graded" if r.grader_error else f"{r.score:g} / {r.max_score}",
             cell_text(r.grader_error or r.error or (r.cell_errors[0] if r.cell_errors else
                                                     (r.notes[0] if r.notes else "")))[:90])
            for r in results]
    width = max([len(r[0]) for r in rows] + [7])
    aw = max([len(r[1]) for r in rows] + [10])
    lines = [f"{'student':<{width}}  {'assignment':<{aw}} {'score':>10}  note"]
    lines += [f"{st:<{width}}  {a:<{aw}} {sc:>10}  {note}" for st, a, sc, note in rows]
    return "\n".join(lines)

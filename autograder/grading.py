"""Grade submissions with verdicts from trusted code.

For each notebook: read it defensively, work out which cells are the student's
code, run those cells in a sandboxed worker, then run every graded test of the
chapter *here*, in the trusted process, calling the student's functions through
`RemoteFunction`. Only plain arrays cross back, so nothing the submission does
(monkeypatching, lying objects, printing "passed", exiting) can change a verdict.
"""
from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

from . import method, notebooks, reference
from .chapters import all_chapters
from .framework import Chapter
from .proxies import RemoteFunction
from .runner import Verdict, run_test
from .sandbox import WALL_FACTOR, Limits, Timeout, Worker, WorkerDied, probe_worker

RELEASE = reference.REPO / "exercises"


@dataclasses.dataclass
class Result:
    student: str
    assignment: str
    notebook: str
    score: float
    max_score: int
    verdicts: list[Verdict]
    error: str = ""          # why the notebook could not be graded at all
    notes: list[str] = dataclasses.field(default_factory=list)
    cell_errors: list[str] = dataclasses.field(default_factory=list)
    sandbox: str = ""
    seconds: float = 0.0
    digest: str = ""
    # Set when the grader, not the submission, failed (a sandbox that cannot start, a check
    # that crashed): such a result is reported but never recorded as a grade.
    grader_error: str = ""

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Result":
        data = dict(data)
        data["verdicts"] = [Verdict(**v) for v in data["verdicts"]]
        return cls(**data)


class Session:
    """The student's code loaded in a worker; restarts and replays after a crash."""

    def __init__(self, limits: Limits, sandboxed: bool, scratch: Path):
        self.limits = limits
        self.worker = Worker(limits, sandboxed, scratch)
        # The notebook's budget is CPU time (a loaded machine must not cost a student
        # points); the wall clock only stops code that waits instead of computing.
        self.cpu_used = 0.0
        self.wall_deadline = time.monotonic() + limits.submission_seconds * WALL_FACTOR
        self.loaded: list[tuple[int, str]] = []   # cells that ran without killing the worker
        self.cell_errors: dict[int, str] = {}
        self.hung: set[str] = set()               # functions that timed out once
        self.worker_deaths = 0

    def _ask(self, header: dict, blobs, kind: str):
        """One request within the limits of its kind and what is left of the notebook's."""
        cap = self.limits.cell_seconds if kind == "cell" else self.limits.call_seconds
        left = self.limits.submission_seconds - self.cpu_used
        wall_left = self.wall_deadline - time.monotonic()
        if left <= 0 or wall_left <= 0:
            raise Timeout(f"stopped by {self.limits.describe('submission')}")
        cpu, which = (cap, kind) if cap <= left else (left, "submission")
        try:
            return self.worker.request(header, blobs, timeout=cpu, limit=which,
                                       wall=min(cpu * WALL_FACTOR + 1.0, wall_left))
        finally:
            self.cpu_used += self.worker.last_cpu

    def run_cells(self, cells: list[tuple[int, str]]) -> None:
        for number, source in cells:
            try:
                reply, _ = self._ask({"op": "run_cell", "index": number, "source": source}, [], "cell")
            except Timeout as err:
                self.cell_errors[number] = f"cell {number} was {err.reason}"
                if "notebook" in err.reason:
                    return
                self._replay()
                continue
            except WorkerDied as err:
                self.worker_deaths += 1
                self.cell_errors[number] = f"cell {number}: {err.reason}"
                self._replay()
                continue
            self.loaded.append((number, source))
            if not reply.get("ok"):
                where = reply.get("where") or ""
                self.cell_errors[number] = (f"cell {number} raised {str(reply.get('error', ''))[:300]}"
                                            + (f" ({where})" if where else ""))

    def _replay(self) -> None:
        """Start a fresh worker and re-run the cells that loaded before."""
        self.worker.start()
        for number, source in self.loaded:
            self._ask({"op": "run_cell", "index": number, "source": source}, [], "cell")

    def request(self, header, blobs):
        try:
            return self._ask(header, blobs, "call")
        except WorkerDied as err:
            if not isinstance(err, Timeout):
                self.worker_deaths += 1
            try:
                self._replay()
            except WorkerDied:
                pass
            raise

    def defined(self, names: list[str]) -> set[str]:
        try:
            reply, _ = self.request({"op": "defined", "names": names}, [])
            return set(reply.get("names", [])) & set(names)
        except WorkerDied:
            return set()

    def why_missing(self, name: str) -> str:
        if self.cell_errors:
            first = next(iter(self.cell_errors.values()))
            return f"define `{name}` in its answer cell; a cell failed before it could: {first}"
        return f"define `{name}` in its answer cell (check the spelling of the name)"

    def close(self) -> None:
        self.worker.stop()


def digest_files(chapter: Chapter | None = None) -> list[Path]:
    """What grades `chapter`: the grader's own modules, that chapter's checks (not the other
    chapters'), the checks' shared modules (`chapters/_*.py`), and the reference
    implementations (chapters import each other's)."""
    package = Path(__file__).resolve().parent
    mine = set((package / "chapters").glob("_*.py"))   # __init__.py and the shared formulas
    if chapter is not None:
        mine.add(package / "chapters" / f"{chapter.reference}.py")
    files = sorted(package.glob("*.py")) + sorted(mine) + \
        sorted((reference.solutions_dir() / "reference").glob("*.py"))
    return [p for p in files if p.is_file()]


def grader_digest(chapter: Chapter | None = None) -> str:
    """Changes when what grades `chapter` changes: cached grades are then redone. Editing one
    chapter's checks regrades only that chapter's submissions."""
    h = hashlib.sha256()
    for path in digest_files(chapter):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def zero_result(student, assignment, notebook, chapter: Chapter | None, error: str) -> Result:
    verdicts = [Verdict(t.grade_id, t.function, 0, t.points, False, error, t.hidden)
                for t in (chapter.tests.values() if chapter else [])]
    return Result(student, assignment, notebook, 0, sum(v.max_points for v in verdicts), verdicts, error=error)


def _method_problems(submitted: dict, chapter: Chapter) -> dict[str, str]:
    """Launcher -> why it does not run its Triton kernels (see `method`), read from the code
    cells in notebook order: what counts is each name's last definition, wherever it is."""
    if not chapter.kernels:
        return {}
    cells = [c["source"] for c in submitted["cells"]
             if c["cell_type"] == "code" and not notebooks.is_test_cell(c)]
    problems = {}
    for launcher, kernels in chapter.kernels.items():
        last = method.last_definitions(cells, [launcher] + kernels)
        opaque = [n for n in [launcher] + kernels if n in last and last[n] is None]
        if opaque:
            problems[launcher] = (f"`{opaque[0]}` is last bound by an assignment or import, not by its def: "
                                  f"the grader cannot see which code runs. Hint: {method.HINT}")
            continue
        problem = method.problem(launcher, last.get(launcher), {k: last.get(k) for k in kernels})
        if problem:
            problems[launcher] = problem
    return problems


def grade_notebook(path: Path, chapter: Chapter, student: str = "", limits: Limits | None = None,
                   sandboxed: bool = True, visible_only: bool = False, release_dir: Path = RELEASE,
                   notes: list[str] | None = None, raw: bytes | None = None) -> Result:
    """Grade one notebook file (or its bytes `raw`, read once by the caller) against
    `chapter`. Never raises for the student's faults."""
    limits = limits or Limits()
    start = time.monotonic()
    notebook_name = f"{chapter.slug}.ipynb"
    tests = [t for t in chapter.tests.values() if not (visible_only and t.hidden)]
    try:
        submitted = (notebooks.read_notebook(path) if raw is None
                     else notebooks.parse_notebook(raw, notebooks.shown(path.name)))
    except notebooks.Unreadable as err:
        result = zero_result(student, chapter.slug, notebook_name, chapter, str(err))
        result.verdicts = [v for v in result.verdicts if v.grade_id in {t.grade_id for t in tests}]
        result.max_score = sum(v.max_points for v in result.verdicts)
        return result
    other = notebooks.chapter_of(submitted, all_chapters())
    if other is None or other.slug != chapter.slug:
        what = f"the {other.slug} notebook" if other else "not this assignment's notebook (no graded cells)"
        return zero_result(student, chapter.slug, notebook_name, chapter,
                           f"{notebooks.shown(path.name)} is {what}; submit {notebook_name} in {chapter.slug}/")
    released = notebooks.read_notebook(release_dir / chapter.slug / notebook_name)
    plan = notebooks.plan(released, submitted, set(chapter.tests))
    method_problems = _method_problems(submitted, chapter)
    scratch = Path(tempfile.mkdtemp(prefix="grade-"))
    session = Session(limits, sandboxed, scratch)
    verdicts = []
    try:
        session.run_cells(plan.code_cells)
        defined = session.defined(chapter.functions)
        for test in tests:
            if test.grade_id in plan.tampered:
                verdicts.append(Verdict(test.grade_id, test.function, 0, test.points, False,
                                        f"zero: {plan.tampered[test.grade_id]}", test.hidden))
                continue
            if test.function not in defined and session.worker.proc is not None:
                verdicts.append(Verdict(test.grade_id, test.function, 0, test.points, False,
                                        f"{test.function} is not defined. Hint: {session.why_missing(test.function)}",
                                        test.hidden))
                continue
            verdicts.append(run_test(test, RemoteFunction(test.function, session), chapter.reference,
                                     method_problems.get(test.function)))
    finally:
        session.close()
        shutil.rmtree(scratch, ignore_errors=True)
    score = sum(v.points for v in verdicts)
    result = Result(student, chapter.slug, notebook_name, score, sum(v.max_points for v in verdicts),
                    verdicts, notes=(notes or []) + plan.notes,
                    cell_errors=list(session.cell_errors.values()),
                    sandbox="sandboxed" if sandboxed else "not sandboxed",
                    seconds=round(time.monotonic() - start, 2))
    broken = [v for v in verdicts if v.grader_error]
    if broken:
        result.grader_error = f"{len(broken)} check(s) failed inside the grader: {broken[0].message}"
    elif session.worker_deaths and score < result.max_score:
        # The worker died: was it the submission, or can no worker run here at all?
        ok, why = probe_worker(sandboxed, chapter.imports)
        if not ok:
            result.grader_error = f"the grader's worker cannot run: {why}"
    return result

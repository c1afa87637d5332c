"""`python -m autograder {check,grade,release,validate}`."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import reference


def _limits(args):
    from .sandbox import Limits
    return Limits(cell_seconds=args.cell_timeout, call_seconds=args.call_timeout,
                  submission_seconds=args.timeout, memory_mb=args.memory_mb)


def cmd_check(args) -> int:
    from . import notebooks
    from .chapters import all_chapters
    from .grading import grade_notebook
    from .sandbox import isolation_status

    path = Path(args.notebook)
    if not path.is_file():
        print(f"error: no such notebook: {path}")
        return 2
    try:
        nb = notebooks.read_notebook(path)
    except notebooks.Unreadable as err:
        print(f"error: {err}")
        return 2
    chapter = notebooks.chapter_of(nb, all_chapters())
    if chapter is None:
        print(f"error: {path.name} has no graded cells of this course")
        return 2
    sandboxed, _ = isolation_status()
    result = grade_notebook(path, chapter, limits=_limits(args), sandboxed=sandboxed, visible_only=True)
    print(f"{chapter.slug}: visible tests")
    for line in result.cell_errors:
        print(f"  ! {line}")
    for v in result.verdicts:
        print(f"  {'PASS' if v.passed else 'FAIL'}  {v.function:<30} {v.grade_id}")
        if not v.passed:
            for line in v.message.splitlines():
                print(f"        {line}")
    passed = sum(v.passed for v in result.verdicts)
    print(f"{passed} of {len(result.verdicts)} visible tests pass"
          + ("" if passed < len(result.verdicts) else " (hidden tests run when your instructor grades)"))
    return 0 if passed == len(result.verdicts) and not result.error else 1


def cmd_grade(args) -> int:
    from .batch import SAMPLES, Batch, GraderUnavailable, WorkFolderBusy, summary
    from .sandbox import isolation_status

    root = Path(args.dir) if args.dir else SAMPLES
    if not root.is_dir():
        print(f"error: {root} is not a folder of submissions (<student>/<assignment>/<notebook>.ipynb)")
        return 2
    sandboxed, why = isolation_status()
    if not sandboxed:
        banner = "!" * 78
        print(f"{banner}\nWARNING: grading WITHOUT a kernel sandbox: {why}.\n"
              f"Resource limits still apply. Use --require-sandbox to refuse instead.\n{banner}")
        if args.require_sandbox:
            print("error: --require-sandbox was given and no sandbox is available")
            return 3
    else:
        print(f"sandbox: {why}")
    work = Path(args.work)
    batch = Batch(root, work, _limits(args), sandboxed, jobs=args.jobs, force=args.force,
                  progress=_progress_printer(), students=args.student or (), assignments=args.assignment or ())
    try:
        results = batch.run()
    except WorkFolderBusy as err:
        print(f"error: {err}")
        return 5
    except GraderUnavailable as err:
        print(f"GRADER ERROR: {err}.\nNothing was graded and nothing was recorded: this is a problem "
              "of the grading machine, not of any submission. Fix it (see the message) and run again.")
        return 4
    if not results:
        print(f"no submissions found under {root}")
        return 0
    print(summary(results))
    st = batch.stats
    print(f"\n{st['graded']} graded in {st['seconds']} s ({st['per_second']} per second), "
          f"{st['resumed']} unchanged and kept")
    if batch.brief:
        print(batch.brief)
    print(f"\ngrades:    {work / 'grades.csv'}\nfeedback:  {work / 'feedback'}/<student>/<assignment>/"
          f"\ngradebook: {work / 'gradebook.db'}\nreports:   {work}/report-<assignment>.html")
    failed = [r for r in results if r.grader_error]
    if failed:
        print(f"\nGRADER ERROR in {len(failed)} submission(s): they were NOT graded and no grade was "
              f"recorded for them (first: {failed[0].grader_error[:300]}). Fix the grader and run "
              "again: the others are kept.")
        return 4
    return 0


def _progress_printer():
    """A progress bar with rate and ETA on a terminal; a plain line every 10 % (or 30 s) in logs."""
    import sys
    import time
    state = {"bar": None, "last": 0.0, "shown": -1}

    def show(done: int, total: int) -> None:
        if sys.stdout.isatty():
            if state["bar"] is None:
                from tqdm import tqdm
                state["bar"] = tqdm(total=total, unit="submission", dynamic_ncols=True)
            state["bar"].update(1)
            if done == total:
                state["bar"].close()
            return
        now = time.monotonic()
        tenth = done * 10 // max(total, 1)
        if done == total or tenth > state["shown"] or now - state["last"] > 30:
            state["shown"], state["last"] = tenth, now
            print(f"graded {done} of {total}", flush=True)
    return show


def cmd_export(args) -> int:
    from .export import export
    try:
        path = export(Path(args.work), args.format, Path(args.out) if args.out else None)
    except FileNotFoundError as err:
        print(f"error: {err}")
        return 2
    print(f"wrote {path}")
    return 0


def cmd_release(args) -> int:
    from .release import release
    release(only=args.chapter)
    return 0


def cmd_new_chapter(args) -> int:
    from .scaffold import new_chapter, next_steps
    try:
        new_chapter(args.slug, args.title)
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}")
        return 2
    print(next_steps(args.slug))
    return 0


def cmd_validate(args) -> int:
    from .validate import validate_all
    failures = validate_all()
    for line in failures:
        print(line)
    print("all instructor notebooks pass their tests" if not failures else f"{len(failures)} problem(s)")
    return 1 if failures else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def limit_options(p, cell=10.0, call=5.0, total=60.0):
        p.add_argument("--cell-timeout", type=float, default=cell, help="seconds per notebook cell")
        p.add_argument("--call-timeout", type=float, default=call, help="seconds per function call in a test")
        p.add_argument("--timeout", type=float, default=total, help="seconds per notebook in all")
        p.add_argument("--memory-mb", type=int, default=4096, help="memory limit of the student's code")

    p = sub.add_parser("check", help="self-check: run the visible tests of a notebook")
    p.add_argument("notebook")
    limit_options(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("grade", help="grade DIR/<student>/<assignment>/<notebook>.ipynb (default: bundled samples)")
    p.add_argument("dir", nargs="?")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded at once")
    p.add_argument("--force", action="store_true", help="regrade unchanged submissions too")
    p.add_argument("--require-sandbox", action="store_true", help="refuse to grade without the kernel sandbox")
    p.add_argument("--work", default=str(reference.REPO / ".grader"),
                   help="where the gradebook, feedback and grades.csv go")
    p.add_argument("--student", action="append", metavar="NAME",
                   help="grade only this student's folder (repeatable); the others keep their grades")
    p.add_argument("--assignment", action="append", metavar="SLUG",
                   help="grade only this assignment (repeatable); with --force, regrade it")
    limit_options(p)
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("export", help="grades from the gradebook, one row per student: csv, canvas or moodle")
    p.add_argument("--format", choices=("csv", "canvas", "moodle"), default="csv")
    p.add_argument("--work", default=str(reference.REPO / ".grader"), help="the grading folder (gradebook.db)")
    p.add_argument("--out", help="the file to write (default: WORK/export-FORMAT.csv)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("release", help="regenerate exercises/ from solutions/")
    p.add_argument("--chapter", help="only this chapter slug, e.g. 03-self-attention")
    p.set_defaults(func=cmd_release)
    p = sub.add_parser("new-chapter", help="write every file of a new chapter, registered and green")
    p.add_argument("slug", help="NN-slug, e.g. 09-gpt-pytorch")
    p.add_argument("title", nargs="?", default="TODO: the chapter's title")
    p.set_defaults(func=cmd_new_chapter)
    p = sub.add_parser("validate", help="check that every instructor notebook passes its own tests")
    p.set_defaults(func=cmd_validate)

    args = parser.parse_args(argv)
    return args.func(args)

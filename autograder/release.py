"""Keep the notebooks in step with their single sources, and release them.

`sync` rewrites the code of every nbgrader cell of an instructor notebook from
its source of truth: answer cells from the reference implementation (the body
between ### BEGIN/END SOLUTION markers), test cells from the chapter's test
registry, "provided" cells from the reference. `release` also gives every notebook
the setup cell of `launch` (its first code cell, with the repository of `_config.yml`
written in), then runs nbgrader's generate_assignment into `exercises/`. Both are
deterministic, so running them on an up-to-date checkout changes nothing (a test
asserts this).
"""
from __future__ import annotations

import ast
import functools
import os
import re
import sys
import inspect
import textwrap
from pathlib import Path

import nbformat

from . import launch, reference
from .chapters import all_chapters
from .framework import Chapter

REPO = reference.REPO


def source_of(fn) -> str:
    """A function's source, decorators included (a Triton kernel keeps its Python function
    in `.fn`; a class is its own source)."""
    return textwrap.dedent(inspect.getsource(getattr(fn, "fn", fn))).rstrip("\n")


def answer_source(fn) -> str:
    """The function (or class) with its body wrapped in nbgrader's solution markers."""
    src = source_of(fn)
    lines = src.split("\n")
    node = ast.parse(src).body[0]
    first = node.body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
        and isinstance(first.value.value, str)
    split = first.end_lineno if has_doc else node.body[0].lineno - 1
    indent = " " * node.body[-1].col_offset
    return "\n".join(lines[:split] + [indent + "### BEGIN SOLUTION"] + lines[split:] +
                     [indent + "### END SOLUTION"])


def provided_source(fn) -> str:
    return "# Given (read-only): generated from the reference implementation.\n" + source_of(fn)


def test_source(chapter: Chapter, grade_id: str) -> str:
    test = chapter.tests[grade_id]
    call = f'from autograder import check\ncheck("{grade_id}", {test.function})'
    if test.hidden:
        return (f"# Hidden test ({test.points} point{'s' * (test.points != 1)}): "
                f"{test.description}\n### BEGIN HIDDEN TESTS\n{call}\n### END HIDDEN TESTS")
    return f"# Visible test ({test.points} point{'s' * (test.points != 1)}): {test.description}\n{call}"


def notebook_path(chapter: Chapter, root: Path = REPO, folder: str = "solutions") -> Path:
    return root / folder / chapter.slug / f"{chapter.slug}.ipynb"


def sync(chapter: Chapter, nb) -> None:
    ref = reference.load(chapter.reference)
    seen = set()
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id")
        if not gid:
            continue
        if meta.get("solution") and (gid in chapter.functions or gid in chapter.helpers):
            cell.source = answer_source(getattr(ref, gid))
        elif meta.get("grade") and gid in chapter.tests:
            cell.source = test_source(chapter, gid)
            meta["points"] = chapter.tests[gid].points
        elif gid.startswith("provided_") and gid[len("provided_"):] in chapter.provided:
            cell.source = provided_source(getattr(ref, gid[len("provided_"):]))
        seen.add(gid)
    missing = (set(chapter.functions) | set(chapter.helpers) | set(chapter.tests)) - seen
    if missing:
        raise ValueError(f"{chapter.slug}: the instructor notebook lacks cells for {sorted(missing)}")


def strip_outputs(nb) -> None:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None


def venv_tools_on_path() -> None:
    """nbgrader runs the `alembic` executable from PATH: make the venv's bin visible; and
    spare the 2-3 s that it costs for each new gradebook (below)."""
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    import nbgrader.api
    nbgrader.api.get_alembic_version = alembic_head


@functools.lru_cache(maxsize=None)
def alembic_head() -> str:
    """The newest migration of nbgrader's gradebook schema, which nbgrader stamps into each new
    gradebook. nbgrader finds it by running `alembic heads` in a subprocess (2-3 s, once per
    release and per batch); it is the one revision in its alembic/versions that no other
    revision names as its predecessor (a test compares the two answers)."""
    import nbgrader
    versions = Path(nbgrader.__file__).parent / "alembic" / "versions"
    revisions, parents = set(), set()
    for path in versions.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        rev = re.search(r"^revision\s*=\s*['\"](\w+)['\"]", text, re.M)
        down = re.search(r"^down_revision\s*=\s*['\"](\w+)['\"]", text, re.M)
        if rev:
            revisions.add(rev.group(1))
        if down:
            parents.add(down.group(1))
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"nbgrader's gradebook migrations in {versions} have {len(heads)} heads, not one")
    return heads.pop()


def nbgrader_api(root: Path, db_path: Path, release_dir: str = "exercises"):
    venv_tools_on_path()
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.source_directory = "solutions"
    config.CourseDirectory.release_directory = release_dir
    config.CourseDirectory.db_url = f"sqlite:///{db_path}"
    config.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]
    coursedir = CourseDirectory(config=config)
    return NbGraderAPI(coursedir=coursedir, config=config)


def release(root: Path = REPO, quiet: bool = False, only: str | None = None) -> list[Path]:
    """Sync every instructor notebook (or only chapter `only`), then generate its student version."""
    written = []
    setup = launch.setup_source()   # the course's _config.yml, whatever `root` is
    work = root / ".grader"
    work.mkdir(exist_ok=True)
    for chapter in all_chapters():
        if only and chapter.slug != only:
            continue
        api = nbgrader_api(root, work / f"release-{chapter.slug}.db")
        src = notebook_path(chapter, root)
        nb = nbformat.read(src, as_version=4)
        sync(chapter, nb)
        launch.ensure_setup_cell(nb, setup)
        strip_outputs(nb)
        nbformat.write(nb, src)
        result = api.generate_assignment(chapter.slug, force=True, create=True)
        if not result["success"]:
            raise RuntimeError(f"nbgrader generate_assignment {chapter.slug} failed:\n{result.get('log', '')}"
                               f"\n{result.get('error', '')}")
        written.append(notebook_path(chapter, root, "exercises"))
        if not quiet:
            print(f"released {chapter.slug} -> {written[-1].relative_to(root)}")
    from . import samples
    samples.write(root / "exercises", root / "autograder" / "samples" / "submitted", only)
    return written

"""nbgrader's own commands, run from the repository root, behave as book/grading.md says:
the unsafe or stale ones refuse with a pointer, the gradebook tools read our grades."""
import csv
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, copy_of
from test_grade_samples import EXPECTED

NBGRADER = str(Path(sys.executable).parent / "nbgrader")


@pytest.mark.parametrize("command,pointer", [("autograde", "python -m autograder grade"),
                                             ("generate_assignment", "python -m autograder release")])
def test_unsafe_or_stale_commands_refuse_with_a_pointer(command, pointer):
    out = subprocess.run([NBGRADER, command, "01-similarity"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and pointer in out.stderr


def test_export_reads_the_trusted_grades(graded_class, tmp_path):
    expected = EXPECTED
    work = copy_of(graded_class[0], tmp_path)
    out = subprocess.run([NBGRADER, "export", f"--CourseDirectory.db_url=sqlite:///{work / 'gradebook.db'}",
                          "--to", str(tmp_path / "export.csv")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "export.csv")))
    assert {(r["student_id"], r["assignment"]): float(r["score"]) for r in rows} == expected


def test_the_gradebook_schema_version_equals_alembics_answer():
    """`release` and `grade` give nbgrader the schema's newest migration without running
    `alembic heads` in a subprocess each time: the same answer alembic gives."""
    from autograder.release import alembic_head, venv_tools_on_path
    import nbgrader.api
    venv_tools_on_path()
    alembic = Path(sys.executable).parent / "alembic"
    with nbgrader.api._temp_alembic_ini("sqlite:////tmp/gradebook.db") as ini:   # as nbgrader asks
        out = subprocess.run([str(alembic), "-c", ini, "heads"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == alembic_head()
    assert nbgrader.api.get_alembic_version is alembic_head

"""nbgrader's own commands, run from the repository root, behave as book/grading.md says:
the unsafe or stale ones refuse with a pointer, the gradebook tools read our grades."""
import csv
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.batch import Batch
from conftest import FAST, REPO
from test_grade_samples import samples_subset

NBGRADER = str(Path(sys.executable).parent / "nbgrader")


@pytest.mark.parametrize("command,pointer", [("autograde", "python -m autograder grade"),
                                             ("generate_assignment", "python -m autograder release")])
def test_unsafe_or_stale_commands_refuse_with_a_pointer(command, pointer):
    out = subprocess.run([NBGRADER, command, "01-similarity"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and pointer in out.stderr


def test_export_reads_the_trusted_grades(sandboxed, tmp_path):
    subset, expected = samples_subset(tmp_path, ("01-similarity",))
    Batch(subset, tmp_path / "work", FAST, True, jobs=2, out=lambda s: None).run()
    out = subprocess.run([NBGRADER, "export", f"--CourseDirectory.db_url=sqlite:///{tmp_path / 'work' / 'gradebook.db'}",
                          "--to", str(tmp_path / "export.csv")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "export.csv")))
    assert {(r["student_id"], r["assignment"]): float(r["score"]) for r in rows} == expected

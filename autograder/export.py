"""`python -m autograder export`: the gradebook as one row per student and one column per
assignment, for a spreadsheet (csv), Canvas's gradebook import or Moodle's grade import.

Read from nbgrader's gradebook, where `grade` records the trusted scores. A missing
submission is an empty cell, not a zero: the instructor decides what it means. Cells that a
spreadsheet would run as a formula (=, +, -, @ first) are neutralised with a leading '.
"""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

from .batch import cell_text


def gradebook_table(db: Path) -> tuple[list[str], dict[str, float], dict[str, dict[str, float]]]:
    """(assignments, max score per assignment, {student: {assignment: score}}) from gradebook.db."""
    if not db.is_file():
        raise FileNotFoundError(f"no gradebook at {db}: grade first (python -m autograder grade DIR --work ...)")
    from nbgrader.api import Gradebook, MissingEntry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(f"sqlite:///{db}") as gb:
            assignments = sorted(a.name for a in gb.assignments)
            maxima = {a.name: float(a.max_score) for a in gb.assignments}
            table = {}
            for student in sorted(s.id for s in gb.students):
                row = {}
                for name in assignments:
                    try:
                        row[name] = float(gb.find_submission(name, student).score)
                    except MissingEntry:
                        pass
                table[student] = row
    return assignments, maxima, table


def export(work: Path, fmt: str = "csv", out: Path | None = None) -> Path:
    assignments, maxima, table = gradebook_table(work / "gradebook.db")
    out = out or work / f"export-{fmt}.csv"
    score = lambda v: "" if v is None else f"{v:g}"  # noqa: E731
    rows: list[list[str]]
    if fmt == "canvas":
        # Canvas's gradebook import: identity columns, then one column per assignment, and a
        # "Points Possible" row under the header.
        rows = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section"] + assignments,
                ["    Points Possible", "", "", "", ""] + [score(maxima[a]) for a in assignments]]
        rows += [[s, "", s, s, ""] + [score(g.get(a)) for a in assignments] for s, g in table.items()]
    elif fmt == "moodle":
        # Moodle's grade import (CSV): map "Username" to the user field at import time.
        rows = [["Username"] + assignments]
        rows += [[s] + [score(g.get(a)) for a in assignments] for s, g in table.items()]
    else:
        rows = [["student"] + [f"{a} (/{score(maxima[a])})" for a in assignments] + ["total"]]
        rows += [[s] + [score(g.get(a)) for a in assignments] + [score(sum(g.values()))] for s, g in table.items()]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([[cell_text(c) for c in row] for row in rows])
    return out

"""nbgrader's configuration for this course, found when nbgrader runs from the repository root.

The course's own grader replaces two of nbgrader's commands, and this file makes them refuse
with a pointer instead of doing something unsafe or stale:
* `nbgrader autograde` runs student code in the same kernel as the tests, where one line can
  patch the checks: grade with `python -m autograder grade` (sandboxed, verdicts in trusted code);
* `nbgrader generate_assignment` would skip syncing the answer and test cells from
  `solutions/reference` and `autograder/chapters`: release with `python -m autograder release`.
Everything else (the gradebook `.grader/gradebook.db` that `python -m autograder grade`
fills, `nbgrader export` to CSV, `nbgrader db student list`, ...) reads the same folders.
See book/grading.md.
"""
import os
import sys

c = get_config()  # noqa: F821 (nbgrader provides it)
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = ".grader/nbgrader-submitted"
c.CourseDirectory.autograded_directory = ".grader/nbgrader-autograded"
c.CourseDirectory.feedback_directory = ".grader/nbgrader-feedback"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(c.CourseDirectory.root, ".grader", "gradebook.db")

_REFUSED = {
    "autograde": "python -m autograder grade SUBMISSIONS_DIR   (sandboxed; verdicts computed outside student code)",
    "generate_assignment": "python -m autograder release [--chapter NN-slug]   (syncs answers and tests, then runs nbgrader)",
    "assign": "python -m autograder release [--chapter NN-slug]",
}
_command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
if os.path.basename(sys.argv[0]).startswith("nbgrader") and _command in _REFUSED:
    sys.stderr.write(f"nbgrader {_command} is not used in this course (see book/grading.md).\n"
                     f"Use instead: {_REFUSED[_command]}\n")
    sys.exit(2)

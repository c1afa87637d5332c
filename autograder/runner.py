"""Run one graded test against a (proxied) student function: verdict and message."""
from __future__ import annotations

import dataclasses

from . import reference
from .framework import CheckFailure, StudentError, Test


@dataclasses.dataclass
class Verdict:
    grade_id: str
    function: str
    points: float
    max_points: int
    passed: bool
    message: str = ""
    hidden: bool = False
    grader_error: bool = False   # the check itself failed: no verdict on the student


_reference_cache: dict = {}


def run_test(test: Test, fn, chapter_reference: str, method_problem: str | None = None) -> Verdict:
    """`fn` is a LocalFunction or RemoteFunction; never raises for student faults.
    `method_problem` (see `method`): the function got its numbers without the chapter's method."""
    if method_problem:
        return Verdict(test.grade_id, test.function, 0, test.points, False, method_problem, test.hidden)
    try:
        if test.hidden:
            if chapter_reference not in _reference_cache:
                _reference_cache[chapter_reference] = reference.load(chapter_reference)
            test.body(fn, _reference_cache[chapter_reference])
        else:
            test.body(fn)
    except CheckFailure as failure:
        return Verdict(test.grade_id, test.function, 0, test.points, False, str(failure), test.hidden)
    except StudentError as err:
        return Verdict(test.grade_id, test.function, 0, test.points, False,
                       f"{test.function} raised {err.type_name}: {err.message}", test.hidden)
    except Exception as exc:  # the check's own bug: this test is not graded, the others are
        return Verdict(test.grade_id, test.function, 0, test.points, False,
                       f"not graded: the grader's check failed ({type(exc).__name__}: {str(exc)[:200]}); "
                       "this is the grader's fault, not yours: tell the instructor", test.hidden,
                       grader_error=True)
    return Verdict(test.grade_id, test.function, test.points, test.points, True, "", test.hidden)

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


_reference_cache: dict = {}


def run_test(test: Test, fn, chapter_reference: str) -> Verdict:
    """`fn` is a LocalFunction or RemoteFunction; never raises for student faults."""
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
    return Verdict(test.grade_id, test.function, test.points, test.points, True, "", test.hidden)

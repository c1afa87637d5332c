"""The course's autograder: checks, sandboxed grading and the `python -m autograder` CLI.

In a notebook, test cells call `check(grade_id, function)`.
"""
from __future__ import annotations


def check(grade_id: str, fn) -> None:
    """Run the test `grade_id` on `fn` in this kernel; raise with a hint on failure."""
    from . import method
    from .chapters import all_chapters, find_test
    from .framework import CheckFailure
    from .proxies import LocalFunction
    from .runner import run_test

    test = find_test(grade_id)
    chapter = next(c for c in all_chapters() if c.slug == test.chapter)
    problem = (method.problem_of_function(fn, test.function, chapter.kernels[test.function])
               if test.function in chapter.kernels else None)
    verdict = run_test(test, LocalFunction(test.function, fn), chapter.reference, problem)
    if not verdict.passed:
        raise CheckFailure(verdict.message) from None
    print(f"\u2714 {grade_id}: passed ({test.description})")

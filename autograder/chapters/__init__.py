"""The registry of chapters that have graded exercises, in course order.

Every module in this package that defines `chapter` is a chapter; adding a file is
all it takes to register one.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil

from ..framework import Chapter, Test


@functools.cache
def all_chapters() -> tuple[Chapter, ...]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if isinstance(getattr(module, "chapter", None), Chapter):
            found.append(module.chapter)
    return tuple(sorted(found, key=lambda c: c.slug))


def chapter(slug: str) -> Chapter:
    for ch in all_chapters():
        if ch.slug == slug:
            return ch
    raise KeyError(f"no chapter {slug!r}; known: {', '.join(c.slug for c in all_chapters())}")


def find_test(grade_id: str) -> Test:
    """The test with this grade id: ids are unique across the course (tests/test_catalogue.py
    proves it), so a student's self-check and the grader always run the same test."""
    found = [ch.tests[grade_id] for ch in all_chapters() if grade_id in ch.tests]
    if len(found) != 1:
        raise KeyError(f"no test with grade_id {grade_id!r}" if not found else
                       f"grade_id {grade_id!r} is used by {len(found)} chapters")
    return found[0]

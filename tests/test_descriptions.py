"""Every test's description (the first docstring line, shown in the notebook and in the
`passed (...)` lines) is a complete sentence, not cut mid-sentence."""
import pytest

from autograder.chapters import all_chapters

TESTS = [t for ch in all_chapters() for t in ch.tests.values()]


@pytest.mark.parametrize("test", TESTS, ids=lambda t: t.grade_id)
def test_description_is_a_complete_sentence(test):
    d = test.description
    assert d.strip(), f"{test.chapter}/{test.grade_id}: empty description"
    assert d.rstrip().endswith("."), f"{test.chapter}/{test.grade_id}: {d!r} does not end with '.'"
    assert d.count("(") == d.count(")"), f"{test.chapter}/{test.grade_id}: unbalanced parentheses in {d!r}"

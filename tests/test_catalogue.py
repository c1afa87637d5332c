"""Every check bites: each catalogued wrong implementation is rejected with its
hint, in the student's kernel and through the sandbox; the reference and the
alternative correct implementations pass everything."""
import hashlib
import importlib
import linecache
import tempfile
from pathlib import Path

import pytest

from autograder import catalogue, method
from autograder.chapters import all_chapters
from autograder.grading import Session
from autograder.proxies import LocalFunction, RemoteFunction
from autograder.runner import run_test
from conftest import FAST

CHAPTERS = all_chapters()
WRONG = [(ch, w) for ch in CHAPTERS for w in catalogue.load(ch.reference).WRONG]
CORRECT = [(ch, src) for ch in CHAPTERS for src in catalogue.load(ch.reference).CORRECT]


def _ns(source):
    """Run a catalogue source as a notebook cell would, with its source findable by
    `inspect` (the kernel chapters grade the method from the source)."""
    name = f"<catalogue {hashlib.sha1(source.encode()).hexdigest()[:12]}>"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    ns = {}
    exec(compile(source, name, "exec"), ns)
    return ns


def _method(ch, name, fn):
    return method.problem_of_function(fn, name, ch.kernels[name]) if name in ch.kernels else None


def test_every_function_has_three_wrong_implementations():
    for ch in CHAPTERS:
        names = [w.function for w in catalogue.load(ch.reference).WRONG]
        for fn in ch.functions:
            assert names.count(fn) >= 3, f"{ch.slug}.{fn} has {names.count(fn)} wrong implementations"


def test_grade_ids_are_unique_across_the_course():
    """`check(grade_id, fn)` finds its test by id alone: an id used twice would make a
    student's self-check run another chapter's test."""
    seen = {}
    for ch in CHAPTERS:
        for gid in list(ch.tests) + ch.functions + ch.helpers:
            assert seen.setdefault(gid, ch.slug) == ch.slug, f"{gid} is used by {seen[gid]} and {ch.slug}"


def test_every_function_has_visible_and_hidden_tests():
    for ch in CHAPTERS:
        for fn in ch.functions:
            tests = ch.tests_for(fn)
            assert any(not t.hidden for t in tests) and any(t.hidden for t in tests), fn


@pytest.mark.parametrize("ch", CHAPTERS, ids=lambda c: c.slug)
def test_reference_passes_everything(ch):
    ref = importlib.import_module(f"solutions.reference.{ch.reference}")
    for fn in ch.functions:
        for t in ch.tests_for(fn):
            verdict = run_test(t, LocalFunction(fn, getattr(ref, fn)), ch.reference,
                               _method(ch, fn, getattr(ref, fn)))
            assert verdict.passed, verdict.message


@pytest.mark.parametrize("ch,source", CORRECT, ids=lambda x: getattr(x, "slug", "alt"))
def test_alternative_correct_implementations_pass(ch, source):
    ns = _ns(source)
    for fn in [f for f in ch.functions if f in ns]:
        for t in ch.tests_for(fn):
            verdict = run_test(t, LocalFunction(fn, ns[fn]), ch.reference, _method(ch, fn, ns[fn]))
            assert verdict.passed, verdict.message


def _wrong_id(x):
    return getattr(x, "name", None) or getattr(x, "slug", "")


@pytest.mark.parametrize("ch,wrong", WRONG, ids=_wrong_id)
def test_wrong_implementation_rejected_with_its_hint(ch, wrong):
    fn = _ns(wrong.source)[wrong.function]
    problem = _method(ch, wrong.function, fn)
    verdicts = [run_test(t, LocalFunction(wrong.function, fn), ch.reference, problem)
                for t in ch.tests_for(wrong.function)]
    failed = [v for v in verdicts if not v.passed]
    assert failed, f"{wrong.name} passed every test"
    assert any(wrong.hint in v.message for v in failed), [v.message for v in failed]
    # The visible test alone must already catch it, so students see the hint before grading.
    visible = [v for v in failed if not v.hidden]
    assert visible, f"{wrong.name} is caught only by hidden tests"


@pytest.mark.parametrize("ch,wrong", WRONG[::3], ids=_wrong_id)
def test_sandboxed_verdict_equals_kernel_verdict(ch, wrong, sandboxed):
    fn = _ns(wrong.source)[wrong.function]
    problem = _method(ch, wrong.function, fn)
    local = [run_test(t, LocalFunction(wrong.function, fn), ch.reference, problem)
             for t in ch.tests_for(wrong.function)]
    # The grader reads the same verdict from the answer cells' source.
    if wrong.function in ch.kernels:
        assert problem == method.problem(wrong.function, wrong.source,
                                         {k: wrong.source for k in ch.kernels[wrong.function]})
    session = Session(FAST, True, Path(tempfile.mkdtemp()))
    try:
        session.run_cells([(1, wrong.source)])
        remote = [run_test(t, RemoteFunction(wrong.function, session), ch.reference, problem)
                  for t in ch.tests_for(wrong.function)]
    finally:
        session.close()
    assert [(v.passed, v.message) for v in local] == [(v.passed, v.message) for v in remote]

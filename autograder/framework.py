"""The pieces every chapter's checks are built from.

A *test* is one graded test cell: a function that receives the student's graded
function (and, for hidden tests, the reference module) and raises `CheckFailure`
with a message and a hint when something is wrong. The same test code runs in
two places:

* in the student's kernel (`autograder.check`), for immediate feedback, where the
  student function is called directly; and
* in the trusted grader, where the student function is a proxy that calls into a
  sandboxed worker and receives plain arrays back.

Either way the student function is wrapped so that arguments are copied in and
results come back as plain ndarrays (see `codec`), so both places see exactly the
same values and reach the same verdict.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable

import numpy as np


class CheckFailure(AssertionError):
    """A failed check: what is wrong, and a hint why."""

    def __init__(self, what: str, hint: str = ""):
        self.what = what
        self.hint = hint
        super().__init__(what + (f"\nHint: {hint}" if hint else ""))


class StudentError(Exception):
    """The student's function raised: carries only the exception's name and text."""

    def __init__(self, type_name: str, message: str):
        self.type_name = type_name
        self.message = message
        super().__init__(f"{type_name}: {message}")


@dataclasses.dataclass
class Test:
    grade_id: str
    function: str
    points: int
    hidden: bool
    body: Callable
    chapter: str = ""
    description: str = ""


class Chapter:
    """A chapter's graded tests, keyed by the grade_id of their notebook cell."""

    def __init__(self, slug: str, reference: str, functions: list[str], provided: list[str] = (),
                 helpers: list[str] = (), imports: tuple[str, ...] = ("numpy",),
                 kernels: dict[str, list[str]] | None = None,
                 sample_scores: tuple | None = None, sample_mistakes: dict[str, str] | None = None,
                 sample_loop: tuple[str, str] | None = None):
        self.slug = slug
        self.reference = reference      # module name under solutions.reference
        self.functions = list(functions)  # graded functions, in notebook order
        self.provided = list(provided)    # reference functions given to students read-only
        # Answer cells graded only through the functions that use them (Triton kernels,
        # an autograd.Function): the student writes them, the reference fills them in.
        self.helpers = list(helpers)
        # What a correct notebook imports: the grader checks its worker can, before grading.
        self.imports = tuple(imports)
        # Launcher -> the Triton kernels (helpers) it must launch: the method is graded too.
        self.kernels = dict(kernels or {})
        # The bundled sample submissions (autograder/samples.py): the scores alice (correct),
        # bob (partly wrong), carol (untouched), dave (fails at import) and erin (loops) get;
        # bob's mistakes (function -> catalogue entry; default: the first catalogued mistake of
        # the first and last functions); where erin loops ("cell" or "call", function).
        self.sample_scores = tuple(sample_scores) if sample_scores else None
        self.sample_mistakes = dict(sample_mistakes) if sample_mistakes else None
        self.sample_loop = tuple(sample_loop) if sample_loop else None
        self.tests: dict[str, Test] = {}

    def test(self, grade_id: str, function: str, points: int = 1, hidden: bool = False):
        def register(body):
            if grade_id in self.tests:
                raise ValueError(f"duplicate test {grade_id}")
            doc = (body.__doc__ or "").strip().splitlines()
            self.tests[grade_id] = Test(grade_id, function, points, hidden, body, self.slug,
                                        doc[0] if doc else "")
            return body
        return register

    def tests_for(self, function: str) -> list[Test]:
        return [t for t in self.tests.values() if t.function == function]


# ---------------------------------------------------------------- assertions

def tolerances(dtype) -> tuple[float, float]:
    """(rtol, atol) suited to a dtype's precision."""
    dtype = np.dtype(dtype)
    if dtype == np.float16:
        return 2e-3, 1e-3
    if dtype == np.float32:
        return 2e-5, 2e-6
    return 1e-10, 1e-12


def ensure(condition, what: str, hint: str = "") -> None:
    if not condition:
        raise CheckFailure(what, hint)


def as_result_array(value, name: str) -> np.ndarray:
    """The value as a plain ndarray, or a failure saying what came back instead."""
    if isinstance(value, tuple):
        raise CheckFailure(f"{name} returned a tuple of {len(value)} items, expected one array",
                           "return a single NumPy array")
    if value is None:
        raise CheckFailure(f"{name} returned None", "did you forget the `return` statement?")
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
        raise CheckFailure(f"{name} returned {describe(value)}, expected a numeric NumPy array",
                           "return an np.ndarray of numbers")
    return value


def describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return f"a {getattr(value, 'type_name', type(value).__name__)}"  # Unsupported names the real type


def assert_shape(actual: np.ndarray, shape: tuple, what: str, hint: str = "") -> None:
    if tuple(actual.shape) != tuple(shape):
        raise CheckFailure(f"{what}: shape {tuple(actual.shape)}, expected {tuple(shape)}",
                           hint or "check which axes you reduce over and whether you kept the batch dims")


def assert_dtype(actual: np.ndarray, dtype, what: str, hint: str = "") -> None:
    if actual.dtype != np.dtype(dtype):
        raise CheckFailure(
            f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}",
            hint or "keep the input's dtype: a float64 constant or np.float64 cast upcasts float32 inputs")


def assert_finite(actual: np.ndarray, what: str, hint: str) -> None:
    bad = ~np.isfinite(actual)
    if bad.any():
        kind = "NaN" if np.isnan(actual).any() else "inf"
        raise CheckFailure(f"{what}: {int(bad.sum())} entries are {kind}", hint)


def assert_close(actual, expected: np.ndarray, what: str, hint: str = "",
                 rtol: float | None = None, atol: float | None = None,
                 check_dtype: bool = True, nan_hint: str = "") -> None:
    """Shape, dtype, finiteness, then values; each failure says which and why.

    NaN never passes unless the expected value has NaN at the same place.
    """
    actual = as_result_array(actual, what)
    if not isinstance(expected, np.ndarray):  # stored literal values: compare numbers only
        expected = np.asarray(expected, dtype=np.float64)
        check_dtype = False
    assert_shape(actual, expected.shape, what)
    if check_dtype:
        assert_dtype(actual, expected.dtype, what)
    rt, at = tolerances(expected.dtype)
    rtol = rt if rtol is None else rtol
    atol = at if atol is None else atol
    exp_nan = np.isnan(expected) if expected.dtype.kind == "f" else np.zeros(expected.shape, bool)
    act_nan = np.isnan(actual) if actual.dtype.kind == "f" else np.zeros(actual.shape, bool)
    if (act_nan & ~exp_nan).any():
        raise CheckFailure(f"{what}: {int((act_nan & ~exp_nan).sum())} entries are NaN",
                           nan_hint or hint or "look for exp of large numbers, 0/0 or log(0)")
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    close = np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if not close.all():
        idx = tuple(int(i) for i in np.argwhere(~close)[0])
        err = np.abs(np.where(close, 0, a - e))
        raise CheckFailure(
            f"{what}: {int((~close).sum())} of {close.size} values differ "
            f"(at index {idx}: got {a[idx]:.6g}, expected {e[idx]:.6g}; max error {np.nanmax(err):.3g})",
            hint)


# ---------------------------------------------------------------- torch, for the kernel chapters

class _LazyTorch:
    """`torch`, imported on first use: every check module is imported whenever any chapter is
    checked, and the NumPy chapters should not pay a second or more for torch."""

    def __getattr__(self, name):
        import torch
        return getattr(torch, name)


torch = _LazyTorch()


def tensor_device() -> str:
    """Where kernel tests put their tensors: a GPU when this process compiles kernels for one,
    else the CPU. The grader's sandbox always runs the interpreter on the CPU; in a student's
    own kernel on a GPU machine, the tensors go straight to the student's code there."""
    if os.environ.get("TRITON_INTERPRET") != "1" and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def dtype_name(dtype) -> str:
    """'float16' for torch.float16 (and for np.float16): the key of REL_TOL."""
    return str(dtype).replace("torch.", "")


# Relative-norm tolerances for kernels: ||actual - expected|| / ||expected|| at most this.
REL_TOL = {"float64": 1e-9, "float32": 1e-5, "float16": 5e-3, "bfloat16": 2e-2}


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """||a - e|| / ||e||, where ||e|| counts as at least 1e-3 per entry (root mean square), so
    an expected result of (nearly) zero asks for a small absolute error, not an impossible relative one."""
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    return float(np.linalg.norm(a - e) / max(np.linalg.norm(e), 1e-3 * math.sqrt(max(e.size, 1))))


def assert_rel_close(actual, expected, what: str, hint: str = "", dtype: str = "float32",
                     tol: float | None = None) -> None:
    """Shape, NaN/inf, then the relative norm of the error at `dtype`'s tolerance.

    The norm, not elementwise closeness: low-precision kernels round every entry a little,
    and what matters is that the whole result is right to the precision of its inputs.
    """
    actual = as_result_array(actual, what)
    expected = np.asarray(expected, dtype=np.float64)
    assert_shape(actual, expected.shape, what)
    if actual.dtype.kind == "f" and not np.isfinite(actual).all():
        kind = "NaN" if np.isnan(actual).any() else "inf"
        raise CheckFailure(f"{what}: {int((~np.isfinite(actual)).sum())} entries are {kind}",
                           hint or "look for exp of large numbers, 0/0 or log(0), or reads past the end")
    tol = REL_TOL[dtype] if tol is None else tol
    err = relative_error(actual, expected)
    if not err <= tol:
        bad = np.abs(actual.astype(np.float64) - expected)
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
        raise CheckFailure(f"{what}: relative error {err:.2g}, tolerance {tol:g} for {dtype} "
                           f"(worst at index {idx}: got {float(actual[idx]):.6g}, "
                           f"expected {float(expected[idx]):.6g})", hint)


def assert_values_close(actual, expected, what: str, hint: str = "", **kw) -> None:
    """`assert_close` at the input's precision, without grading the dtype itself: for
    chapters where float32 -> float64 (e.g. `x / np.sqrt(d)` under NumPy 2) is a harmless slip."""
    assert_close(actual, expected, what, hint, check_dtype=False, **kw)


# ---------------------------------------------------------------- naming a slip

def matches(actual, expected, rtol: float = 1e-7, atol: float = 1e-9, scaled_atol: bool = False) -> bool:
    """Whether `actual` is `expected` up to rounding: for naming a slip, not for the verdict
    (`assert_close` and friends say what differs, and by how much).

    True iff `actual` is an ndarray (or NumPy scalar) of numbers, not bools, of `expected`'s
    shape, every entry finite, and np.allclose(actual, expected, rtol, atol), both taken as
    float64. NaN and inf never match. With `scaled_atol`, atol is multiplied by
    max(1, max|expected|): for results whose error grows with their size (finite differences).
    """
    if isinstance(actual, np.generic):
        actual = np.asarray(actual)
    if not isinstance(actual, np.ndarray) or actual.dtype.kind not in "fiu":
        return False
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape or not np.isfinite(actual).all():
        return False
    if scaled_atol and expected.size:
        atol = atol * max(1.0, float(np.abs(expected).max()))
    return bool(np.allclose(actual.astype(np.float64), expected, rtol=rtol, atol=atol))


def name_the_slip(actual, slips: dict, what: str, says: str = "the output matches what {} would return",
                  expected=None, **tolerance) -> None:
    """Fail with the hint of the first known mistake whose result `actual` matches; else return.

    `slips` maps each mistake, in the words `says` puts in place of {}, to (what that mistake
    returns on this input, its hint); a value of None is skipped. With `expected`, a mistake
    whose value also matches the right answer is skipped: on this input it is no mistake.
    `tolerance`: rtol, atol, scaled_atol, as for `matches`.
    """
    for mistake, (value, hint) in slips.items():
        if value is None or (expected is not None and matches(value, expected, **tolerance)):
            continue
        if matches(actual, value, **tolerance):
            raise CheckFailure(f"{what}: {says.format(mistake)}", hint)


def assert_raises(call: Callable, exc_name: str, what: str, hint: str = "") -> None:
    try:
        call()
    except StudentError as err:
        if err.type_name != exc_name:
            raise CheckFailure(f"{what}: raised {err.type_name}, expected {exc_name}", hint) from None
        return
    raise CheckFailure(f"{what}: no exception, expected {exc_name}", hint)


def attempt(thunk: Callable, what: str, hint: str = ""):
    """Call the student function; if it raises, fail with `hint` instead of a bare error."""
    try:
        return thunk()
    except StudentError as err:
        raise CheckFailure(f"{what} raised {err.type_name}: {err.message}", hint) from None


def rng_for(grade_id: str, salt: int = 0) -> np.random.Generator:
    """A generator seeded from the test's name: the same inputs on every run."""
    seed = sum((i + 1) * ord(c) for i, c in enumerate(grade_id)) + 7919 * salt
    return np.random.default_rng(seed)

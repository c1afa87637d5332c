"""Chapter 12 (12-triton-basics): Triton launchers for a vector sum, a fused row softmax and a tiled matmul.

The student's functions take torch tensors and run Triton kernels: through the interpreter
(TRITON_INTERPRET=1) on the CPU, which is how the grader always runs them, or on a GPU in a
student's own kernel. Expected values come from plain NumPy in float64, never from the
reference kernels.

A kernel that reads past the end of a tensor (a missing mask) gets whatever lies in memory
there, so every failure message below is built from deterministic facts only (which entries
are wrong, which cases fail), never from the wrong values themselves: the same submission
must get the same message in the student's kernel and in the grader's sandbox.
"""

import numpy as np

from ..framework import (REL_TOL, Chapter, CheckFailure, StudentError, as_result_array, assert_dtype,
                         assert_raises, assert_rel_close, assert_shape, dtype_name, relative_error, rng_for,
                         tensor_device, torch)

chapter = Chapter("12-triton-basics", reference="triton_basics",
                  functions=["vector_add", "row_softmax", "block_matmul"],
                  provided=["check_kernel_inputs"],
                  helpers=["_vector_add_kernel", "_row_softmax_kernel", "_block_matmul_kernel"],
                  imports=("numpy", "torch", "triton"),
                  kernels={"vector_add": ["_vector_add_kernel"], "row_softmax": ["_row_softmax_kernel"],
                           "block_matmul": ["_block_matmul_kernel"]},
                  sample_scores=(9, 3, 0, 0, 6))
test = chapter.test


# ------------------------------------------------------------------ inputs and calls

def _tensor(values, dtype="float32"):
    return torch.tensor(np.asarray(values, dtype=np.float64), dtype=getattr(torch, dtype),
                        device=tensor_device())


def _int_tensor(values):
    return torch.tensor(np.asarray(values), dtype=torch.int32, device=tensor_device())


def _f64(t) -> np.ndarray:
    """The exact values of a test tensor (after rounding to its dtype), in float64."""
    return t.detach().double().cpu().numpy()


def _transposed(values, dtype="float32"):
    """A (r, c) tensor that is the transpose of a contiguous (c, r) one: it arrives non-contiguous."""
    return _tensor(np.ascontiguousarray(np.asarray(values).T), dtype).transpose(0, 1)


POW2_HINT = ("tl.arange(0, BLOCK) needs a power-of-2 BLOCK: use BLOCK = triton.next_power_of_2(n_cols) "
             "and mask the lanes past the end")
CONSTEXPR_HINT = ("block sizes must be compile-time constants: declare them `BLOCK: tl.constexpr` in the "
                  "kernel and pass them by keyword, BLOCK=...")
VALID_HINT = ("these inputs are valid (float32 or float16 tensors of matching shapes): raise ValueError only "
              "for what check_kernel_inputs rejects and for mismatched shapes")
KERNEL_TODO_HINT = ("the launcher runs, but its kernel is not implemented yet: fill in the kernel's answer "
                    "cell (just above the launcher) and run it")
CALL_HINT = "launch the kernel as kernel[grid](arguments..., BLOCK=...) and return the output tensor"


def _call(fn, args, what):
    """Call the student's launcher on valid inputs; an exception becomes a failure with a hint."""
    try:
        return fn(*args)
    except StudentError as err:
        message = err.message[:300]
        if "NotImplementedError" in message:
            hint = KERNEL_TODO_HINT
        elif "power of 2" in message:
            hint = POW2_HINT
        elif "constexpr" in message:
            hint = CONSTEXPR_HINT
        elif err.type_name == "ValueError":
            hint = VALID_HINT
        else:
            hint = CALL_HINT
        raise CheckFailure(f"{what} raised {err.type_name}: {message}", hint) from None


def _result(value, shape, what, hint):
    out = as_result_array(value, what)
    assert_shape(out, shape, what, hint)
    return out


def _wrong(got: np.ndarray, expected: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """Where got differs from expected by more than bound (NaN and inf are always wrong)."""
    with np.errstate(all="ignore"):
        diff = np.abs(got.astype(np.float64) - expected)
        return ~(diff <= bound)


def _first(mask: np.ndarray):
    idx = tuple(int(i) for i in np.argwhere(mask)[0])
    return idx[0] if len(idx) == 1 else idx


def _final(got, expected, what, hint, dtype):
    """The verdict on values: relative norm at the dtype's tolerance (reached only by outputs
    that are entrywise close, so its message never shows garbage)."""
    assert_rel_close(got, expected, what, hint, dtype=dtype)


def _raises(call, what, hint):
    assert_raises(call, "ValueError", what, hint)


def _refuse_or_right(call, expected, what, hint):
    """bfloat16: the interpreter computes it wrongly, so a launcher must raise ValueError there;
    on a GPU it may compute the right answer instead. Either passes."""
    try:
        value = call()
    except StudentError as err:
        if err.type_name == "ValueError":
            return
        raise CheckFailure(f"{what} raised {err.type_name}, expected ValueError (or, on a GPU, the "
                           f"right answer)", hint) from None
    out = as_result_array(value, what)
    ok = out.shape == expected.shape and bool(np.isfinite(out).all())
    if not (ok and relative_error(out, expected) <= REL_TOL["bfloat16"]):
        raise CheckFailure(f"{what} returned wrong values instead of raising ValueError", hint)


CHECK_HINT = ("call check_kernel_inputs(...) first, as the docstring says: it raises ValueError for "
              "integer or bfloat16 (under the interpreter) tensors, the wrong number of dimensions and "
              "non-contiguous rows")
BF16_HINT = ("Triton's interpreter has no bfloat16 (NumPy has none) and computes garbage: raise ValueError "
             "for bfloat16 under the interpreter (check_kernel_inputs does)")
DTYPE_HINT = ("return the input's dtype: allocate the output with torch.empty_like(x) or "
              "torch.empty(shape, dtype=x.dtype, device=x.device), whatever the kernel computes in")


# ------------------------------------------------------------------ vector_add

GRID_HINT = ("launch enough programs to reach the ragged end: grid = (triton.cdiv(n, BLOCK),), "
             "not n // BLOCK, which drops the last partial block (and mask it: offsets < n)")
OFFSET_HINT = ("each program must work on its own block: offsets = pid * BLOCK + tl.arange(0, BLOCK) with "
               "pid = tl.program_id(0); without pid * BLOCK every program redoes block 0")
ADD_HINT = "out[i] must be x[i] + y[i] for every i < n"
SAME_SHAPE_HINT = "x and y must have the same shape: raise ValueError when x.shape != y.shape"
ADD_TOL = {"float32": 1e-6, "float16": 1e-3}


def _add_case(vector_add, x, y, what):
    out = _result(_call(vector_add, (x, y), what), tuple(x.shape), what,
                  "return one output entry per input entry: a 1-D tensor shaped like x")
    xe, ye = _f64(x), _f64(y)
    dtype = dtype_name(x.dtype)
    wrong = _wrong(out, xe + ye, ADD_TOL[dtype] * (np.abs(xe) + np.abs(ye)) + 1e-30)
    return out, xe + ye, wrong


def _diagnose_add(cases):
    """cases: (n, what, wrong-mask). Fail with the hint that matches the pattern of wrong entries."""
    fails = []
    for n, what, wrong in cases:
        if wrong.any():
            p = int(np.argmax(wrong))
            fails.append((n, what, p, bool(wrong[p:].all())))
    if not fails:
        return
    for n, what, p, tail in fails:
        if tail and 0 < p and n - p > p:
            raise CheckFailure(f"{what}: entries {p}..{n - 1} are wrong, only the first {p} are right",
                               OFFSET_HINT)
    some_right = len(fails) < len(cases) or any(p > 0 for _, _, p, _ in fails)
    if all(tail for *_, tail in fails) and some_right:
        n, what, p, _ = max(fails, key=lambda f: f[2])
        raise CheckFailure(f"{what}: entries {p}..{n - 1} (the ragged end) are wrong, the first {p} are right",
                           GRID_HINT)
    n, what, p, _ = fails[0]
    raise CheckFailure(f"{what}: wrong values, the first at index {p}", ADD_HINT)


def _add_lengths(vector_add, rng, lengths, dtype, scale=1.0):
    cases, finals = [], []
    for n in lengths:
        x = _tensor(scale * rng.standard_normal(n), dtype)
        y = _tensor(scale * rng.standard_normal(n), dtype)
        what = f"vector_add(x, y) with n = {n} [{dtype}]"
        out, expected, wrong = _add_case(vector_add, x, y, what)
        cases.append((n, what, wrong))
        finals.append((out, expected, what))
    _diagnose_add(cases)
    for out, expected, what in finals:
        assert_dtype(out, np.dtype(dtype), what, DTYPE_HINT)
        _final(out, expected, what, ADD_HINT, dtype)


@test("vector_add_visible", "vector_add")
def vector_add_visible(vector_add):
    """x + y for a stored example and lengths 1 to 4099 (ragged ends), float32 and float16; bad inputs raise ValueError."""
    rng = rng_for("vector_add_visible")
    x, y = _tensor([1.0, 2.0, 3.0]), _tensor([10.0, 20.0, 30.0])
    what = "vector_add([1, 2, 3], [10, 20, 30])"
    out, _, wrong = _add_case(vector_add, x, y, what)
    cases = [(3, what, wrong)]
    for n in (1, 100, 1000, 1024, 4099):
        xs, ys = _tensor(rng.standard_normal(n)), _tensor(rng.standard_normal(n))
        w = f"vector_add(x, y) with n = {n} [float32]"
        cases.append((n, w, _add_case(vector_add, xs, ys, w)[2]))
    _diagnose_add(cases)
    _final(out, [11.0, 22.0, 33.0], what, ADD_HINT, "float32")
    _add_lengths(vector_add, rng, (7, 1500), "float32")
    _add_lengths(vector_add, rng, (5, 1000, 2051), "float16")
    # Bad inputs.
    _raises(lambda: vector_add(_tensor(np.ones(5)), _tensor(np.ones(6))),
            "vector_add(x of length 5, y of length 6)", SAME_SHAPE_HINT)
    _raises(lambda: vector_add(_tensor(np.ones((3, 4))), _tensor(np.ones((3, 4)))),
            "vector_add(x, y of shape (3, 4))", CHECK_HINT)
    _raises(lambda: vector_add(_int_tensor([1, 2, 3]), _int_tensor([4, 5, 6])),
            "vector_add(int32 tensors)", CHECK_HINT)
    xb, yb = _tensor(rng.standard_normal(37), "bfloat16"), _tensor(rng.standard_normal(37), "bfloat16")
    _refuse_or_right(lambda: vector_add(xb, yb), _f64(xb) + _f64(yb), "vector_add(bfloat16 tensors)", BF16_HINT)


@test("vector_add_random", "vector_add", hidden=True)
def vector_add_random(vector_add, ref):
    """Random lengths around powers of 2 and up to 8191, float32 and float16, several scales."""
    rng = rng_for("vector_add_random")
    lengths = (2, 17, 255, 256, 257, 1023, 1025, 2048, 3001, 8191)
    _add_lengths(vector_add, rng, lengths, "float32", scale=1e3)
    _add_lengths(vector_add, rng, lengths[::2], "float16", scale=10.0)
    _add_lengths(vector_add, rng, (999, 64), "float32", scale=1e-20)


@test("vector_add_edge", "vector_add", hidden=True)
def vector_add_edge(vector_add, ref):
    """One element, opposite values that cancel, fp16 near its maximum; mixed dtypes, 0-D and NumPy inputs raise."""
    rng = rng_for("vector_add_edge")
    _add_lengths(vector_add, rng, (1, 1337), "float32")
    v = rng.standard_normal(300)
    for dtype in ("float32", "float16"):
        x, y = _tensor(v, dtype), _tensor(-v, dtype)
        what = f"vector_add(v, -v) [{dtype}]"
        out, expected, wrong = _add_case(vector_add, x, y, what)
        _diagnose_add([(300, what, wrong)])
        assert_dtype(out, np.dtype(dtype), what, DTYPE_HINT)
    x, y = _tensor(3e4 + 100 * rng.random(70), "float16"), _tensor(3e4 * rng.random(70), "float16")
    what = "vector_add(x, y) with sums near 60000 [float16]"
    out, expected, wrong = _add_case(vector_add, x, y, what)
    _diagnose_add([(70, what, wrong)])
    _final(out, expected, what, ADD_HINT, "float16")
    _raises(lambda: vector_add(_tensor(np.ones(4)), _tensor(np.ones(4), "float16")),
            "vector_add(float32 x, float16 y)", CHECK_HINT)
    _raises(lambda: vector_add(_tensor(1.0), _tensor(2.0)), "vector_add(0-D tensors)", CHECK_HINT)
    _raises(lambda: vector_add(np.ones(4, np.float32), np.ones(4, np.float32)), "vector_add(NumPy arrays)",
            CHECK_HINT)
    _raises(lambda: vector_add(_tensor(np.ones(4), "float64"), _tensor(np.ones(4), "float64")),
            "vector_add(float64 tensors)", CHECK_HINT)


# ------------------------------------------------------------------ row_softmax

SOFTMAX_HINT = "each row of the output must be exp(x - max) / sum(exp(x - max)) over that row"
MAX_HINT = ("subtract the row maximum before tl.exp: exp(1000) overflows to inf, and inf / inf is NaN "
            "(the result does not change: softmax(x - c) = softmax(x))")
NEG_INF_HINT = ("fill the masked lanes with -inf (other=-float('inf')), not 0: a lane of 0 adds exp(0 - max) "
                "to the sum, and becomes the maximum of a row of negative numbers")
MASK_HINT = ("load the row with a mask, cols < n_cols (and other=-inf): without it the lanes past n_cols "
             "read the next row, or memory past the end of the tensor")
BLOCK_HINT = ("one block must hold the whole row: BLOCK = triton.next_power_of_2(n_cols), chosen by the "
              "launcher for each input")
ROWS_HINT = ("the kernel walks along a row with stride 1, so a transposed input must raise ValueError: "
             "call check_kernel_inputs(x, ndim=2) first")
SM_TOL = {"float32": (1e-5, 1e-7), "float16": (4e-3, 1e-4)}


def _softmax(x):
    with np.errstate(all="ignore"):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


def _pow2(n):
    return 1 << max(n - 1, 0).bit_length()


def _softmax_zero_lanes(x):
    """What a kernel computes when the lanes past n_cols are loaded as 0 instead of -inf."""
    pad = _pow2(x.shape[-1]) - x.shape[-1]
    m = np.maximum(x.max(axis=-1, keepdims=True), 0.0)
    with np.errstate(all="ignore"):
        e = np.exp(x - m)
        return e / (e.sum(axis=-1, keepdims=True) + pad * np.exp(-m))


def _softmax_case(row_softmax, x, what, large=False):
    """Call, then diagnose: the mistake's signature, or a generic message. Returns (out, expected)."""
    xe = _f64(x)
    dtype = dtype_name(x.dtype)
    out = _result(_call(row_softmax, (x,), what), tuple(x.shape), what,
                  "the output has the shape of x: one probability per entry")
    expected = _softmax(xe)
    rtol, atol = SM_TOL[dtype]
    wrong = _wrong(out, expected, rtol * expected + atol)
    if not wrong.any():
        return out, expected
    n = xe.shape[-1]
    if large:
        raise CheckFailure(f"{what}: wrong or non-finite values for entries about 1000", MAX_HINT)
    if n != _pow2(n) and not _wrong(out, _softmax_zero_lanes(xe), rtol * expected + atol + 1e-6).any():
        pad = _pow2(n) - n
        raise CheckFailure(f"{what}: the {pad} masked lane{'s' * (pad > 1)} of each row count{'s' * (pad == 1)} "
                           f"in the softmax (n_cols = {n}, BLOCK = {_pow2(n)})", NEG_INF_HINT)
    k = 1
    while k < n:
        part = _softmax(xe[:, :k])
        if not _wrong(out[:, :k], part, rtol * part + atol).any():
            raise CheckFailure(f"{what}: the first {k} columns hold the softmax of those {k} columns alone; "
                               f"the row has {n}", BLOCK_HINT)
        k *= 2
    if n != _pow2(n):
        # No index here: a kernel without a load mask reads memory past the end of x.
        raise CheckFailure(f"{what}: wrong values; n_cols = {n} is not a power of 2, so the block of "
                           f"{_pow2(n)} lanes reaches {_pow2(n) - n} past the end of each row", MASK_HINT)
    raise CheckFailure(f"{what}: wrong values, the first at index {_first(wrong)}", SOFTMAX_HINT)


def _softmax_verdict(row_softmax, x, what, large=False):
    out, expected = _softmax_case(row_softmax, x, what, large)
    dtype = dtype_name(x.dtype)
    assert_dtype(out, np.dtype(dtype), what, DTYPE_HINT)
    _final(out, expected, what, MAX_HINT if large else SOFTMAX_HINT, dtype)


@test("row_softmax_visible", "row_softmax")
def row_softmax_visible(row_softmax):
    """A stored 3x3 softmax; widths 1 to 300 (powers of 2 and ragged), negative rows, entries near 1000, float16; bad inputs raise ValueError."""
    rng = rng_for("row_softmax_visible")
    # Powers of 2 first: no lane is masked.
    for shape in ((4, 8), (3, 32)):
        _softmax_verdict(row_softmax, _tensor(2 * rng.standard_normal(shape)), f"row_softmax(x {shape})")
    # A stored example: n_cols = 3, so one lane of the block of 4 is masked.
    x = _tensor([[1.0, 2.0, 3.0], [-3.0, -2.0, -1.0], [0.0, 0.0, 0.0]])
    what = "row_softmax([[1, 2, 3], [-3, -2, -1], [0, 0, 0]])"
    out, _ = _softmax_case(row_softmax, x, what)
    stored = [[0.09003057, 0.24472847, 0.66524096]] * 2 + [[1 / 3] * 3]
    _final(out, stored, what, SOFTMAX_HINT, "float32")
    # Ragged widths, every entry negative.
    for shape in ((4, 37), (5, 100), (2, 300), (3, 1)):
        x = _tensor(-1 - 3 * rng.random(shape))
        _softmax_verdict(row_softmax, x, f"row_softmax(x {shape}, all entries negative)")
    # Large entries: overflow without the maximum.
    _softmax_verdict(row_softmax, _tensor(1000 + 10 * rng.standard_normal((3, 64))),
                     "row_softmax(x (3, 64), entries about 1000)", large=True)
    _softmax_verdict(row_softmax, _tensor(3 * rng.standard_normal((4, 50)), "float16"),
                     "row_softmax(x (4, 50)) [float16]")
    # Bad inputs.
    _raises(lambda: row_softmax(_transposed(rng.standard_normal((6, 4)))),
            "row_softmax(x transposed: shape (6, 4), strides (1, 6))", ROWS_HINT)
    _raises(lambda: row_softmax(_tensor(np.ones(5))), "row_softmax(a 1-D tensor)", CHECK_HINT)
    _raises(lambda: row_softmax(_int_tensor(np.ones((2, 3), int))), "row_softmax(an int32 tensor)", CHECK_HINT)
    xb = _tensor(rng.standard_normal((3, 20)), "bfloat16")
    _refuse_or_right(lambda: row_softmax(xb), _softmax(_f64(xb)), "row_softmax(a bfloat16 tensor)", BF16_HINT)


@test("row_softmax_random", "row_softmax", hidden=True)
def row_softmax_random(row_softmax, ref):
    """Random rows of widths 1 to 513 at several scales, float32 and float16."""
    rng = rng_for("row_softmax_random")
    shapes = ((1, 1), (2, 2), (7, 5), (3, 16), (9, 31), (4, 33), (2, 127), (3, 128), (2, 129), (2, 513))
    for dtype in ("float32", "float16"):
        for shape, scale in zip(shapes, (1, 5, 0.1, 3, 10, 1, 2, 20, 1, 4)):
            x = _tensor(scale * rng.standard_normal(shape), dtype)
            _softmax_verdict(row_softmax, x, f"row_softmax(x {shape}, scale {scale}) [{dtype}]")


@test("row_softmax_edge", "row_softmax", hidden=True)
def row_softmax_edge(row_softmax, ref):
    """-inf entries, equal entries, huge entries (float32 and float16), one row; 3-D, float64, NumPy inputs raise."""
    rng = rng_for("row_softmax_edge")
    x = rng.standard_normal((4, 21))
    x[0, :20] = -np.inf
    x[1, ::2] = -np.inf
    x[2] = 7.0
    _softmax_verdict(row_softmax, _tensor(x), "row_softmax(rows with -inf entries and a constant row)")
    _softmax_verdict(row_softmax, _tensor(1e4 * rng.standard_normal((3, 40))),
                     "row_softmax(x (3, 40), entries about 10^4)", large=True)
    _softmax_verdict(row_softmax, _tensor(6e4 + 100 * rng.standard_normal((2, 24)), "float16"),
                     "row_softmax(x (2, 24), entries about 60000) [float16]", large=True)
    _softmax_verdict(row_softmax, _tensor(rng.standard_normal((1, 1000))), "row_softmax(one row of 1000)")
    _raises(lambda: row_softmax(_tensor(np.ones((2, 3, 4)))), "row_softmax(a 3-D tensor)", CHECK_HINT)
    _raises(lambda: row_softmax(_tensor(np.ones((2, 3)), "float64")), "row_softmax(float64)", CHECK_HINT)
    _raises(lambda: row_softmax(np.ones((2, 3), np.float32)), "row_softmax(a NumPy array)", CHECK_HINT)
    _raises(lambda: row_softmax(_transposed(rng.standard_normal((40, 3)))), "row_softmax(x transposed (40, 3))",
            ROWS_HINT)


# ------------------------------------------------------------------ block_matmul

ACC_HINT = ("accumulate over every K block: acc += tl.dot(a_tile, b_tile) inside the loop over k0 "
            "(neither overwrite acc nor stop after one block)")
KMASK_HINT = ("mask K with the offsets of the current block: k = k0 + tl.arange(0, BLOCK_K) and mask k < K, "
              "recomputed in every step of the loop (the last K block is ragged)")
MM_GRID_HINT = ("the grid must cover the ragged edges of c: (triton.cdiv(M, BLOCK_M), triton.cdiv(N, BLOCK_N)) "
                "programs, not M // BLOCK_M, which drops the partial tiles")
STRIDES_HINT = ("address a, b and c through their strides (a.stride(0), a.stride(1), ...): a transposed view "
                "is not row-major, so row * K + k is the wrong address")
INNER_HINT = "a (M, K) @ b (K, N) needs equal inner sizes: raise ValueError when a.shape[1] != b.shape[0]"
MM_HINT = "c[i, j] must be the sum over k of a[i, k] * b[k, j]"
MM_TOL = {"float32": 1e-5, "float16": 2e-3}


def _mm_case(block_matmul, a, b, what):
    """(out, expected, wrong mask, a and b in float64)."""
    ae, be = _f64(a), _f64(b)
    out = _result(_call(block_matmul, (a, b), what), (ae.shape[0], be.shape[1]), what,
                  "c = a @ b has shape (M, N) for a (M, K) and b (K, N)")
    dtype = dtype_name(a.dtype)
    bound = MM_TOL[dtype] * (np.abs(ae) @ np.abs(be)) + 1e-30
    return out, ae @ be, _wrong(out, ae @ be, bound), (ae, be, bound)


def _single_block(out, ae, be, bound, what):
    """Fail if out is the product over one BLOCK_K slice of K only (the first or the last)."""
    K = ae.shape[1]
    for bk in (16, 32, 64, 128):
        if bk >= K:
            break
        last = (K - 1) // bk * bk
        for start, stop in ((0, bk), (last, K)):
            if not _wrong(out, ae[:, start:stop] @ be[start:stop], bound).any():
                raise CheckFailure(f"{what}: c is the sum over k = {start}..{stop - 1} only (K = {K}): "
                                   f"one block of K", ACC_HINT)


def _grid_pattern(wrong):
    """(first wrong row, first wrong column) if the wrong entries are exactly some last rows and/or
    last columns of c, with the rest right; else None."""
    rows, cols = wrong.all(axis=1), wrong.all(axis=0)
    if wrong.all() or not np.array_equal(wrong, rows[:, None] | cols[None, :]):
        return None
    r0 = int(np.argmax(rows)) if rows.any() else len(rows)
    c0 = int(np.argmax(cols)) if cols.any() else len(cols)
    if not (rows[r0:].all() and cols[c0:].all()):
        return None
    return r0, c0


def _diagnose_mm(cases, hint=MM_HINT):
    """cases: (what, out, wrong, (ae, be, bound)). The first matching mistake's signature wins;
    `hint` goes with wrong values that match none.

    Wrong values may come from reads past the end of a tensor (a K mask gone wrong), so the
    generic message names no index or value: only whether a case failed, which the test's
    shapes make deterministic (see _pairs)."""
    fails = [c for c in cases if c[2].any()]
    if not fails:
        return
    for what, out, wrong, (ae, be, bound) in fails:
        _single_block(out, ae, be, bound, what)
    for what, out, wrong, _ in fails:
        edge = _grid_pattern(wrong)
        if edge is not None:
            r0, c0 = edge
            M, N = wrong.shape
            parts = ([f"rows {r0}..{M - 1}"] if r0 < M else []) + ([f"columns {c0}..{N - 1}"] if c0 < N else [])
            raise CheckFailure(f"{what}: {' and '.join(parts)} of c are wrong, "
                               f"the rest is right", MM_GRID_HINT)
    raise CheckFailure(f"{fails[0][0]}: wrong values", hint)


def _mm_cases(block_matmul, pairs, dtype, hint=MM_HINT):
    """Run (what, a, b) pairs, diagnose them together, then the dtype and the final verdicts.
    Returns the outputs."""
    cases, finals = [], []
    for what, a, b in pairs:
        out, expected, wrong, extra = _mm_case(block_matmul, a, b, what)
        cases.append((what, out, wrong, extra))
        finals.append((out, expected, what))
    _diagnose_mm(cases, hint)
    for out, expected, what in finals:
        assert_dtype(out, np.dtype(dtype), what, DTYPE_HINT)
        _final(out, expected, what, hint, dtype)
    return [out for out, _, _ in finals]


def _ragged_k(K):
    return K > 16 and K % 64 != 0


def _pairs(rng, shapes, dtype, layout=""):
    """(what, a, b) for random a (M, K) and b (K, N); layout "a", "b" or "ab" sends those transposed.

    A K that is not a multiple of 64 (and above 16) ends in a partial block for any BLOCK_K from 16
    to 64. A kernel that masks it wrongly reads past row i of a into row i + 1, and past column j of
    b: that stays inside the tensors (so the same wrong numbers everywhere) only if a is row-major
    with M >= 2 and b is column-major (a transposed view) with N >= 2. Such K get that layout."""
    out = []
    for M, K, N in shapes:
        a, b = rng.standard_normal((M, K)), rng.standard_normal((K, N))
        lay = layout
        if _ragged_k(K):
            assert M >= 2 and N >= 2 and layout in ("", "b"), (M, K, N, layout)
            lay = "b"
        ta = _transposed(a, dtype) if "a" in lay else _tensor(a, dtype)
        tb = _transposed(b, dtype) if "b" in lay else _tensor(b, dtype)
        tag = f", {' and '.join(lay)} transposed" if lay else ""
        out.append((f"block_matmul(a ({M}, {K}), b ({K}, {N}){tag}) [{dtype}]", ta, tb))
    return out


@test("block_matmul_visible", "block_matmul")
def block_matmul_visible(block_matmul):
    """A stored 2x2 product; K = 64 and 128; ragged M and N; transposed inputs; ragged K = 70 and 100; float16; bad inputs raise ValueError."""
    rng = rng_for("block_matmul_visible")
    stored = ("block_matmul([[1, 2], [3, 4]], [[5, 6], [7, 8]])", _tensor([[1.0, 2.0], [3.0, 4.0]]),
              _tensor([[5.0, 6.0], [7.0, 8.0]]))
    # Contiguous inputs, K a multiple of every BLOCK_K from 16 to 64 (or below 16).
    pairs = [stored] + _pairs(rng, ((40, 64, 40), (33, 128, 17), (5, 64, 3), (19, 9, 45)), "float32")
    out = _mm_cases(block_matmul, pairs, "float32")[0]
    _final(out, [[19.0, 22.0], [43.0, 50.0]], stored[0], MM_HINT, "float32")
    # Transposed views: the same numbers with other strides, so only the addresses can be wrong.
    _mm_cases(block_matmul, _pairs(rng, ((20, 64, 36),), "float32", "a") +
              _pairs(rng, ((36, 16, 24),), "float32", "b") + _pairs(rng, ((18, 64, 26),), "float32", "ab"),
              "float32", STRIDES_HINT)
    # Now a ragged last block of K: only the K mask can be wrong.
    _mm_cases(block_matmul, _pairs(rng, ((33, 70, 17), (5, 100, 3)), "float32"), "float32", KMASK_HINT)
    _mm_cases(block_matmul, _pairs(rng, ((24, 64, 20), (9, 40, 12)), "float16"), "float16")
    # Bad inputs.
    _raises(lambda: block_matmul(_tensor(np.ones((4, 5))), _tensor(np.ones((6, 3)))),
            "block_matmul(a (4, 5), b (6, 3))", INNER_HINT)
    _raises(lambda: block_matmul(_tensor(np.ones((4, 5))), _tensor(np.ones(5))),
            "block_matmul(a (4, 5), a 1-D b (5,))", CHECK_HINT)
    _raises(lambda: block_matmul(_int_tensor(np.ones((2, 2), int)), _int_tensor(np.ones((2, 2), int))),
            "block_matmul(int32 tensors)", CHECK_HINT)
    ab, bb = _tensor(rng.standard_normal((20, 20)), "bfloat16"), _tensor(rng.standard_normal((20, 20)), "bfloat16")
    _refuse_or_right(lambda: block_matmul(ab, bb), _f64(ab) @ _f64(bb), "block_matmul(bfloat16 tensors)",
                     BF16_HINT)


@test("block_matmul_random", "block_matmul", hidden=True)
def block_matmul_random(block_matmul, ref):
    """Random shapes up to 48 x 130 x 40 with ragged edges and ragged K, contiguous and transposed, float32 and float16."""
    rng = rng_for("block_matmul_random")
    even = ((16, 16, 16), (31, 64, 35), (48, 128, 9), (7, 5, 40))
    ragged = ((31, 33, 35), (48, 130, 9), (7, 50, 40))
    for dtype in ("float32", "float16"):
        _mm_cases(block_matmul, _pairs(rng, even + ragged, dtype), dtype)
        for layout in ("a", "b", "ab"):
            _mm_cases(block_matmul, _pairs(rng, even[1:3], dtype, layout), dtype, STRIDES_HINT)


@test("block_matmul_edge", "block_matmul", hidden=True)
def block_matmul_edge(block_matmul, ref):
    """1x1x1, K = 1, one row, one column, a long K = 300, values of 100; 3-D, float64, mixed dtypes raise."""
    rng = rng_for("block_matmul_edge")
    _mm_cases(block_matmul, _pairs(rng, ((1, 1, 1), (30, 1, 20), (1, 64, 33), (37, 12, 1), (2, 45, 33),
                                         (3, 300, 5)), "float32"), "float32")
    a, b = _tensor(100 * rng.standard_normal((9, 40))), _transposed(100 * rng.standard_normal((40, 11)))
    _mm_cases(block_matmul, [("block_matmul(values about 100, b transposed)", a, b)], "float32")
    _raises(lambda: block_matmul(_tensor(np.ones((2, 3, 4))), _tensor(np.ones((4, 5)))),
            "block_matmul(a 3-D a)", CHECK_HINT)
    _raises(lambda: block_matmul(_tensor(np.ones((3, 4)), "float64"), _tensor(np.ones((4, 5)), "float64")),
            "block_matmul(float64)", CHECK_HINT)
    _raises(lambda: block_matmul(_tensor(np.ones((3, 4))), _tensor(np.ones((4, 5)), "float16")),
            "block_matmul(float32 a, float16 b)", CHECK_HINT)
    _raises(lambda: block_matmul(_tensor(np.ones((3, 4))), _tensor(np.ones((5, 2)))),
            "block_matmul(a (3, 4), b (5, 2))", INNER_HINT)

"""Chapter 7 (07-backprop): backward passes written by hand.

The visible tests need no answer key. Each defines the layer's *forward* pass in a few
lines (the same forward the student notebook gives) and computes the gradient it must
have numerically, by central finite differences in float64 on small inputs; a correct
backward function agrees with them to about 1e-8. Failures are named by comparing with
what the classic mistakes return. Many of those are the exact gradient of a slightly
different forward pass (a LayerNorm whose mean is treated as a constant, attention
without its mask or its 1/sqrt(d) scale), so finite differences of that variant identify
them; others differ from the right gradient by a constant factor (a batch size, a
sqrt(d)), or are written out here as the slip they are.

The hidden tests compare with the reference on seeded random inputs with leading batch
axes, in float64 (elementwise, rtol 1e-9) and in float32 (relative norm of the error at
most 1e-4 against the float64 gradient of the same float32 inputs), and on edge cases.
"""
import math

import numpy as np

from ..framework import (Chapter, CheckFailure, StudentError, as_result_array, assert_rel_close,
                         assert_shape, assert_values_close, ensure, matches, name_the_slip, rng_for)

chapter = Chapter("07-backprop", reference="backprop",
                  functions=["linear_backward", "softmax_backward", "cross_entropy_backward", "gelu_backward",
                             "layer_norm_backward", "attention_head_backward"],
                  provided=["softmax", "causal_mask", "layer_norm", "gelu", "linear", "cross_entropy",
                            "attention_head", "numerical_gradient"],
                  sample_scores=(18, 12, 0, 3, 15))
test = chapter.test

F32_TOL = 1e-4   # relative-norm error allowed for float32 inputs (a correct float32 backward: ~1e-6)


# ------------------------------------------------------------------ tools

def attempt(thunk, what, shape_hint):
    """Call the student function. A shape error (ValueError or IndexError, as NumPy raises for
    mismatched matrix products and broadcasts) gets `shape_hint`; any other error is reported as it is."""
    try:
        return thunk()
    except StudentError as err:
        hint = shape_hint if err.type_name in ("ValueError", "IndexError") else \
            "the function stopped with an error before returning: fix the line the error points to"
        raise CheckFailure(f"{what} raised {err.type_name}: {err.message}", hint) from None


def _fd(loss, arrays, eps=1e-6):
    """Central finite differences of the scalar loss(*arrays) with respect to every array (float64)."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + eps
            up = loss(*arrays)
            a[i] = old - eps
            down = loss(*arrays)
            a[i] = old
            g[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def _near(actual, expected, rtol=1e-5, atol=1e-6):
    """Equal up to finite-difference accuracy (the tolerance scales with the largest entry)."""
    return matches(actual, expected, rtol, atol, scaled_atol=True)


def _ratio(actual, expected):
    """c if actual == c * expected for one constant c (else None)."""
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape or not np.all(np.isfinite(actual)):
        return None
    den = float(np.vdot(expected, expected))
    if den < 1e-12:
        return None
    c = float(np.vdot(actual, expected)) / den
    return c if _near(actual, c * expected) else None


def _results(value, what, names, shapes, hints):
    """A tuple of len(names) float arrays with the given shapes; else a failure naming the slip."""
    n = len(names)
    if not isinstance(value, (tuple, list)):
        shown = f"an array of shape {value.shape}" if isinstance(value, np.ndarray) else f"a {type(value).__name__}"
        raise CheckFailure(f"{what} returned {shown}, expected the tuple ({', '.join(names)})",
                           f"return the {n} gradients as a tuple: return {', '.join(names)}")
    if len(value) != n:
        raise CheckFailure(f"{what} returned {len(value)} items, expected {n}: ({', '.join(names)})",
                           f"return the {n} gradients as a tuple, in this order: return {', '.join(names)}")
    out = []
    for name, item, shape, hint in zip(names, value, shapes, hints):
        arr = as_result_array(item, f"{what}: {name}")
        assert_shape(arr, shape, f"{what}: {name}", hint)
        out.append(arr)
    return out


def _match(actual, expected64, dtype, what, hint):
    """Against the reference's gradient computed in float64 from the same inputs."""
    expected64 = np.asarray(expected64, dtype=np.float64)
    if np.dtype(dtype) == np.float64:
        scale = max(1.0, float(np.abs(expected64).max())) if expected64.size else 1.0
        assert_values_close(actual, expected64, what, hint, rtol=1e-9, atol=1e-11 * scale)
    else:
        assert_rel_close(actual, expected64, what, hint, dtype="float32", tol=F32_TOL)


def _up(*arrays):
    return [np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else a for a in arrays]


def _softmax(z):
    z = z - np.max(z, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _sum_rows(a):
    """Sum over every leading axis: (..., n) -> (n,)."""
    return a.reshape(-1, a.shape[-1]).sum(axis=0)


# ------------------------------------------------------------------ linear_backward

LIN_RAISE_HINT = ("dx = dy @ w.T has x's shape, dw = x.T @ dy has w's shape (D_in, D_out): "
                  "check which matrix gets transposed")
LIN_DX_HINT = "dx = dy @ w.T: each input feature collects the output gradients through its row of w"
LIN_DW_T_HINT = "dw must have w's shape (D_in, D_out): dw = x.T @ dy, not dy.T @ x (a forgotten transpose)"
LIN_DW_HINT = "dw = x.T @ dy: entry (i, j) sums x[n, i] * dy[n, j] over all rows n"
LIN_DB_HINT = ("db has b's shape (D_out,): sum dy over every leading (batch) axis, not over the "
               "feature axis (b is added to every row)")
LIN_MEAN_HINT = ("sum over the rows, don't average: a parameter shared by N rows gets the sum of their "
                 "gradients (any 1/N of the loss is already inside dy)")
LIN_BATCH_HINT = ("with leading axes (B, T, D), flatten them first (x.reshape(-1, D_in)) or sum over them: "
                  "x.T on a 3-D array reverses all its axes")


def _linear_loss(dy):
    return lambda x, w, b: float(np.sum((x @ w + b) * dy))


def _check_linear(linear_backward, dy, x, w, what, raise_hint):
    d_in, d_out = w.shape
    res = attempt(lambda: linear_backward(dy, x, w), what, raise_hint)
    dx, dw, db = _results(res, what, ["dx", "dw", "db"], [x.shape, (d_in, d_out), (d_out,)],
                          [LIN_DX_HINT, LIN_DW_T_HINT if x.ndim == 2 else LIN_BATCH_HINT, LIN_DB_HINT])
    gx, gw, gb = _fd(_linear_loss(dy), [x, w, np.zeros(d_out)])
    n = int(np.prod(x.shape[:-1]))
    ensure(_near(dx, gx), f"{what}: dx differs from the finite-difference gradient", LIN_DX_HINT)
    if not _near(dw, gw):
        if d_in == d_out and _near(dw.T, gw):
            raise CheckFailure(f"{what}: dw is the transpose of the right gradient", LIN_DW_T_HINT)
        if n > 1 and _ratio(dw, gw) is not None and abs(_ratio(dw, gw) * n - 1) < 1e-6:
            raise CheckFailure(f"{what}: dw is the right gradient divided by the {n} rows", LIN_MEAN_HINT)
        raise CheckFailure(f"{what}: dw differs from the finite-difference gradient",
                           LIN_DW_HINT if x.ndim == 2 else LIN_BATCH_HINT)
    if not _near(db, gb):
        if n > 1 and _ratio(db, gb) is not None and abs(_ratio(db, gb) * n - 1) < 1e-6:
            raise CheckFailure(f"{what}: db is the right gradient divided by the {n} rows", LIN_MEAN_HINT)
        raise CheckFailure(f"{what}: db differs from the finite-difference gradient", LIN_DB_HINT)


@test("linear_backward_visible", "linear_backward")
def linear_backward_visible(linear_backward):
    """dx, dw, db against finite differences: a 2-D batch (rows, features), then leading axes (2, 3, D)."""
    rng = rng_for("linear_backward_visible")
    x, w, dy = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal((3, 2))
    _check_linear(linear_backward, dy, x, w, "linear_backward(dy (3x2), x (3x4), w (4x2))", LIN_RAISE_HINT)
    x, w, dy = rng.standard_normal((3, 3)), rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    _check_linear(linear_backward, dy, x, w, "linear_backward(dy (3x3), x (3x3), w (3x3))", LIN_RAISE_HINT)
    x, w, dy = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5)), rng.standard_normal((2, 3, 5))
    _check_linear(linear_backward, dy, x, w, "linear_backward(dy (2,3,5), x (2,3,4), w (4x5))", LIN_BATCH_HINT)


@test("linear_backward_random", "linear_backward", hidden=True)
def linear_backward_random(linear_backward, ref):
    """Random shapes with leading axes, float64 and float32, against the reference."""
    rng = rng_for("linear_backward_random")
    for dtype in (np.float64, np.float32):
        for lead, d_in, d_out in [((7,), 5, 3), ((2, 6), 8, 8), ((2, 3, 4), 16, 6), ((1, 5), 3, 9)]:
            x = rng.standard_normal(lead + (d_in,)).astype(dtype)
            w = (rng.standard_normal((d_in, d_out)) / math.sqrt(d_in)).astype(dtype)
            dy = rng.standard_normal(lead + (d_out,)).astype(dtype)
            what = f"linear_backward(x {x.shape}, w {w.shape}) [{np.dtype(dtype)}]"
            got = _results(linear_backward(dy, x, w), what, ["dx", "dw", "db"],
                           [x.shape, w.shape, (d_out,)], [LIN_DX_HINT, LIN_DW_T_HINT, LIN_DB_HINT])
            for name, a, e, hint in zip(["dx", "dw", "db"], got, ref.linear_backward(*_up(dy, x, w)),
                                        [LIN_DX_HINT, LIN_DW_HINT, LIN_DB_HINT]):
                _match(a, e, dtype, f"{what}: {name}", hint)


@test("linear_backward_edge", "linear_backward", hidden=True)
def linear_backward_edge(linear_backward, ref):
    """No batch axis (x of shape (D_in,)), one output, four leading axes, a zero upstream gradient."""
    rng = rng_for("linear_backward_edge")
    cases = [("a single row x (D_in,)", (), 4, 3), ("one output feature", (5,), 3, 1),
             ("four leading axes", (2, 1, 3, 2), 3, 4), ("a batch of one", (1,), 6, 2)]
    for name, lead, d_in, d_out in cases:
        x = rng.standard_normal(lead + (d_in,))
        w = rng.standard_normal((d_in, d_out))
        dy = rng.standard_normal(lead + (d_out,))
        what = f"linear_backward on {name}"
        got = _results(attempt(lambda: linear_backward(dy, x, w), what, LIN_BATCH_HINT), what,
                       ["dx", "dw", "db"], [x.shape, w.shape, (d_out,)], [LIN_DX_HINT, LIN_BATCH_HINT, LIN_DB_HINT])
        for label, a, e in zip(["dx", "dw", "db"], got, ref.linear_backward(dy, x, w)):
            _match(a, e, np.float64, f"{what}: {label}", LIN_BATCH_HINT)
    x, w = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    got = _results(linear_backward(np.zeros((3, 2)), x, w), "linear_backward(dy = 0)", ["dx", "dw", "db"],
                   [x.shape, w.shape, (2,)], [LIN_DX_HINT, LIN_DW_HINT, LIN_DB_HINT])
    ensure(all(np.all(g == 0) for g in got), "linear_backward(dy = 0): gradients are not all zero",
           "every gradient is linear in dy: no dy, no gradient")


# ------------------------------------------------------------------ softmax_backward

SM_DIAG_HINT = ("the softmax Jacobian is not diagonal: every logit moves every probability (through the "
                "normalisation), so keep the off-diagonal terms -p_i p_j, not only p (1 - p): "
                "dz = p * (dp - sum(dp * p))")
SM_AXIS_HINT = "sum dp * p over the last axis (each row is its own softmax), with keepdims=True"
SM_KEEPDIMS_HINT = ("keep the summed axis (keepdims=True), so that each row's sum dp . p broadcasts over "
                    "that row's entries")
SM_P_HINT = "multiply by p: dz_j = p_j * (dp_j - sum_i dp_i p_i)"
SM_HINT = "dz = p * (dp - sum(dp * p, axis=-1, keepdims=True))"

_SM_Z = np.array([[1.0, -0.5, 2.0, 0.0, 0.3],
                  [-1.0, 0.2, 0.1, 1.5, -2.0],
                  [0.5, 0.5, -0.3, 3.0, 1.0]])


def _softmax_mistakes(dp, p):
    s = np.sum(dp * p, axis=-1, keepdims=True)
    out = {"the diagonal of the Jacobian only, p (1 - p)": (dp * p * (1 - p), SM_DIAG_HINT),
           "a softmax backward without the factor p": (dp - s, SM_P_HINT),
           "a sum over the first axis": (p * (dp - np.sum(dp * p, axis=0, keepdims=True)), SM_AXIS_HINT),
           "the sign flipped": (p * (s - dp), SM_HINT)}
    if p.shape[-1] == p.shape[-2]:
        out["a row sum without keepdims (it broadcasts along the wrong axis)"] = (
            p * (dp - np.sum(dp * p, axis=-1)), SM_KEEPDIMS_HINT)
    return out


def _check_softmax(softmax_backward, z, dp, what):
    p = _softmax(z)
    dz = as_result_array(attempt(lambda: softmax_backward(dp, p), what, SM_KEEPDIMS_HINT), what)
    assert_shape(dz, p.shape, what, "dz has the shape of the logits (and of p)")
    finite = np.isfinite(z)
    ensure(np.all(np.isfinite(dz)), f"{what}: the gradient has NaN or inf entries",
           "entries with p = 0 (masked logits) must get gradient 0, not NaN: don't divide by p or use log(p)")
    expected = _fd(lambda zz: float(np.sum(dp * _softmax(np.where(finite, zz, -np.inf)))),
                   [np.where(finite, z, 0.0)])[0] * finite
    if _near(dz, expected):
        return
    name_the_slip(dz, _softmax_mistakes(dp, p), what, says="the result matches {}", rtol=1e-5, atol=1e-6,
                  scaled_atol=True)
    sums = dz.sum(axis=-1)
    if not np.allclose(sums, 0, atol=1e-8):
        raise CheckFailure(f"{what}: the rows of dz sum to {np.round(sums, 4).ravel().tolist()[:4]}..., not 0 "
                           "(adding a constant to all logits changes nothing, so the gradient's rows sum to 0)",
                           SM_HINT)
    raise CheckFailure(f"{what}: dz differs from the finite-difference gradient", SM_HINT)


@test("softmax_backward_visible", "softmax_backward")
def softmax_backward_visible(softmax_backward):
    """dz against finite differences: rows of 5, a square (4, 4) block, masked (-inf) logits, leading axes."""
    rng = rng_for("softmax_backward_visible")
    _check_softmax(softmax_backward, _SM_Z, rng.standard_normal(_SM_Z.shape), "softmax_backward(dp, p (3x5))")
    z = rng.standard_normal((4, 4)) * 1.5
    _check_softmax(softmax_backward, z, rng.standard_normal((4, 4)), "softmax_backward(dp, p (4x4))")
    masked = np.where(np.tril(np.ones((4, 4), bool)), rng.standard_normal((4, 4)), -np.inf)
    _check_softmax(softmax_backward, masked, rng.standard_normal((4, 4)),
                   "softmax_backward on causally masked rows (p = 0 above the diagonal)")
    z = rng.standard_normal((2, 3, 5))
    _check_softmax(softmax_backward, z, rng.standard_normal((2, 3, 5)), "softmax_backward(dp, p (2,3,5))")


@test("softmax_backward_random", "softmax_backward", hidden=True)
def softmax_backward_random(softmax_backward, ref):
    """Random logits of several sizes and scales with leading axes, float64 and float32."""
    rng = rng_for("softmax_backward_random")
    for dtype in (np.float64, np.float32):
        for shape, scale in [((6,), 1.0), ((4, 9), 2.0), ((2, 3, 16), 0.5), ((2, 2, 5, 5), 4.0)]:
            p = _softmax(rng.standard_normal(shape) * scale).astype(dtype)
            dp = rng.standard_normal(shape).astype(dtype)
            what = f"softmax_backward(dp, p {shape}) [{np.dtype(dtype)}]"
            dz = as_result_array(softmax_backward(dp, p), what)
            assert_shape(dz, shape, what, "dz has the shape of p")
            _match(dz, ref.softmax_backward(*_up(dp, p)), dtype, what, SM_HINT)


@test("softmax_backward_edge", "softmax_backward", hidden=True)
def softmax_backward_edge(softmax_backward, ref):
    """One-hot and uniform probabilities, a constant dp (gradient 0), one class, many zeros."""
    rng = rng_for("softmax_backward_edge")
    onehot = np.eye(4)[[2, 0, 3]]
    uniform = np.full((2, 5), 0.2)
    cases = [("one-hot p", onehot, rng.standard_normal((3, 4))),
             ("uniform p", uniform, rng.standard_normal((2, 5))),
             ("a constant dp", _softmax(rng.standard_normal((3, 6))), np.full((3, 6), 2.5)),
             ("one class (p = 1)", np.ones((4, 1)), rng.standard_normal((4, 1))),
             ("p with many zeros (masked logits)",
              _softmax(np.where(np.arange(8) <= np.arange(3)[:, None] + 1, rng.standard_normal((3, 8)), -np.inf)),
              rng.standard_normal((3, 8)))]
    for name, p, dp in cases:
        what = f"softmax_backward on {name}"
        dz = as_result_array(softmax_backward(dp, p), what)
        assert_shape(dz, p.shape, what, "dz has the shape of p")
        _match(dz, ref.softmax_backward(dp, p), np.float64, what, SM_HINT)


# ------------------------------------------------------------------ cross_entropy_backward

CE_HINT = "dlogits = (softmax(logits) - onehot(targets)) / N, with N = targets.size positions"
CE_BATCH_HINT = ("divide by N = targets.size, the number of positions: the loss is a mean over all "
                 "positions, so each one's gradient carries a factor 1/N")
CE_SIGN_HINT = "the sign: p - onehot (the gradient points to where the loss grows), not onehot - p"
CE_LOGITS_HINT = "subtract the one-hot from the probabilities softmax(logits), not from the logits"
CE_INDEX_HINT = ("subtract 1 only at each row's own target: index with (row, target) pairs, e.g. "
                 "p[np.arange(N), targets] on rows, or compare np.arange(V) == targets[..., None]; "
                 "p[:, targets] hits every row's targets in every row")
CE_STABLE_HINT = ("compute the softmax stably: subtract each row's maximum before exp (the given softmax "
                  "does); exp(1000) overflows to inf")
CE_DLOGP_HINT = ("that is the gradient with respect to the probabilities (-onehot / p); go on through the "
                 "softmax: for cross-entropy the two steps fuse into p - onehot")


def _ce(logits, targets):
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-np.take_along_axis(logp, targets[..., None], axis=-1).mean())


def _ce_mistakes(logits, targets):
    p = _softmax(logits)
    v = logits.shape[-1]
    onehot = (np.arange(v) == targets[..., None]).astype(float)
    n = targets.size
    out = {"(logits - onehot) / N": ((logits - onehot) / n, CE_LOGITS_HINT),
           "-onehot / p / N (the gradient with respect to p)": (-onehot / p / n, CE_DLOGP_HINT)}
    if logits.ndim == 2:
        wrong = p.copy()
        wrong[:, targets] -= 1
        out["p[:, targets] -= 1"] = (wrong / n, CE_INDEX_HINT)
    return out


def _check_ce(cross_entropy_backward, logits, targets, what, fd_logits=None):
    """fd_logits: where to take the finite differences (the gradient ignores a per-row shift)."""
    out = as_result_array(attempt(lambda: cross_entropy_backward(logits, targets), what, CE_HINT), what)
    assert_shape(out, logits.shape, what, "dlogits has the shape of the logits")
    ensure(np.all(np.isfinite(out)), f"{what}: the gradient has NaN or inf entries", CE_STABLE_HINT)
    base = logits if fd_logits is None else fd_logits
    expected = _fd(lambda z: _ce(z, targets), [base])[0]
    if _near(out, expected):
        return
    n = targets.size
    c = _ratio(out, expected)
    if c is not None:
        if abs(c + 1) < 1e-6:
            raise CheckFailure(f"{what}: the gradient has the wrong sign", CE_SIGN_HINT)
        if abs(c - n) < 1e-6 * n:
            raise CheckFailure(f"{what}: the gradient is {n} times too large (not divided by N = {n})",
                               CE_BATCH_HINT)
        if c > 1.5:
            raise CheckFailure(f"{what}: the gradient is {c:.3g} times too large: you divided by {n / c:.3g}, "
                               f"not by the {n} positions", CE_BATCH_HINT)
    for name, (value, hint) in _ce_mistakes(base, targets).items():
        if _near(out, value) or (c is None and _ratio(out, value) is not None):
            raise CheckFailure(f"{what}: the result matches {name}", hint)
    raise CheckFailure(f"{what}: dlogits differs from the finite-difference gradient", CE_HINT)


@test("cross_entropy_backward_visible", "cross_entropy_backward")
def cross_entropy_backward_visible(cross_entropy_backward):
    """dlogits against finite differences of the mean cross-entropy, batch axes and logits near +-1000.

    Cases: 4 rows of 5 classes, a (2, 3) batch of sequences, logits near +-1000 (a stable softmax)."""
    rng = rng_for("cross_entropy_backward_visible")
    logits = rng.standard_normal((4, 5)) * 2
    targets = np.array([1, 1, 4, 0])
    _check_ce(cross_entropy_backward, logits, targets, "cross_entropy_backward(logits (4x5), targets [1, 1, 4, 0])")
    logits = rng.standard_normal((2, 3, 6))
    targets = np.array([[0, 5, 2], [3, 3, 1]])
    _check_ce(cross_entropy_backward, logits, targets, "cross_entropy_backward(logits (2,3,6), targets (2,3))")
    small = rng.standard_normal((3, 4))
    shift = np.array([[1000.0], [-1000.0], [500.0]])
    _check_ce(cross_entropy_backward, small + shift, np.array([2, 0, 3]),
              "cross_entropy_backward(logits near +-1000 (3x4))", fd_logits=small)


@test("cross_entropy_backward_random", "cross_entropy_backward", hidden=True)
def cross_entropy_backward_random(cross_entropy_backward, ref):
    """Random logits and targets with leading axes, float64 and float32."""
    rng = rng_for("cross_entropy_backward_random")
    for dtype in (np.float64, np.float32):
        for shape, scale in [((5, 7), 1.0), ((2, 4, 11), 3.0), ((3, 2, 2, 30), 0.3), ((1, 9), 5.0)]:
            logits = (rng.standard_normal(shape) * scale).astype(dtype)
            targets = rng.integers(0, shape[-1], size=shape[:-1])
            what = f"cross_entropy_backward(logits {shape}) [{np.dtype(dtype)}]"
            out = as_result_array(cross_entropy_backward(logits, targets), what)
            assert_shape(out, shape, what, "dlogits has the shape of the logits")
            _match(out, ref.cross_entropy_backward(logits.astype(np.float64), targets), dtype, what, CE_HINT)


@test("cross_entropy_backward_edge", "cross_entropy_backward", hidden=True)
def cross_entropy_backward_edge(cross_entropy_backward, ref):
    """Huge logits in float32 and float64, one class, confident predictions, three leading axes."""
    rng = rng_for("cross_entropy_backward_edge")
    cases = [("huge logits (float64)", rng.standard_normal((4, 6)) * 1e4, rng.integers(0, 6, 4)),
             ("huge logits (float32)", (rng.standard_normal((4, 6)) * 1e4).astype(np.float32),
              rng.integers(0, 6, 4)),
             ("one class", rng.standard_normal((3, 1)), np.zeros(3, dtype=int)),
             ("confident and right", np.array([[50.0, 0.0, 0.0], [0.0, 0.0, 50.0]]), np.array([0, 2])),
             ("confident and wrong", np.array([[50.0, 0.0, 0.0], [0.0, 0.0, 50.0]]), np.array([1, 0])),
             ("three leading axes", rng.standard_normal((2, 2, 3, 4)), rng.integers(0, 4, (2, 2, 3)))]
    for name, logits, targets in cases:
        what = f"cross_entropy_backward on {name}"
        out = as_result_array(cross_entropy_backward(logits, targets), what)
        assert_shape(out, logits.shape, what, "dlogits has the shape of the logits")
        ensure(np.all(np.isfinite(out)), f"{what}: NaN or inf entries", CE_STABLE_HINT)
        _match(out, ref.cross_entropy_backward(logits.astype(np.float64), targets), logits.dtype, what, CE_HINT)


# ------------------------------------------------------------------ gelu_backward

GELU_C = math.sqrt(2 / math.pi)
GELU_HINT = ("gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) du/dx, "
             "u = sqrt(2/pi) (x + 0.044715 x^3); dx = dy * gelu'(x)")
GELU_TANH_HINT = ("the product rule on 0.5 x (1 + tanh(u)) gives two terms: also differentiate tanh(u), "
                  "+ 0.5 x (1 - tanh(u)^2) du/dx (the tanh chain term)")
GELU_INNER_HINT = "du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2): differentiate the cubic inside tanh too"
GELU_SECH_HINT = "d tanh(u) / du = 1 - tanh(u)^2 (tanh squared), not 1 - tanh(u)"
GELU_DY_HINT = "multiply by dy (the chain rule): dx = dy * gelu'(x), not gelu'(x) alone"
GELU_ERF_HINT = ("differentiate the tanh approximation (chapter 4's gelu), not the exact erf GELU: "
                 "its derivative Phi(x) + x phi(x) differs by up to ~1e-3")
GELU_FWD_HINT = "return the gradient dy * gelu'(x), not the forward value dy * gelu(x)"


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(GELU_C * (x + 0.044715 * x ** 3)))


def _gelu_mistakes(dy, x):
    t = np.tanh(GELU_C * (x + 0.044715 * x ** 3))
    du = GELU_C * (1 + 3 * 0.044715 * x ** 2)
    phi = np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    right = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du
    return {"0.5 (1 + tanh(u)), without the tanh chain term": (dy * 0.5 * (1 + t), GELU_TANH_HINT),
            "du/dx = sqrt(2/pi), without the cubic's derivative":
                (dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C), GELU_INNER_HINT),
            "1 - tanh(u) for the derivative of tanh": (dy * (0.5 * (1 + t) + 0.5 * x * (1 - t) * du), GELU_SECH_HINT),
            "gelu'(x) without dy": (right, GELU_DY_HINT),
            "the exact (erf) GELU's derivative": (dy * (cdf + x * phi), GELU_ERF_HINT),
            "dy * gelu(x) (the forward)": (dy * _gelu(x), GELU_FWD_HINT)}


def _check_gelu(gelu_backward, dy, x, what):
    out = as_result_array(attempt(lambda: gelu_backward(dy, x), what, GELU_HINT), what)
    assert_shape(out, x.shape, what, "dx has the shape of x")
    h = 1e-6  # GELU is elementwise: one pair of evaluations gives every partial derivative
    expected = dy * (_gelu(x + h) - _gelu(x - h)) / (2 * h)
    if _near(out, expected, rtol=1e-6, atol=1e-7):
        return
    name_the_slip(out, _gelu_mistakes(dy, x), what, says="the result matches {}", rtol=1e-6, atol=1e-7,
                  scaled_atol=True)
    raise CheckFailure(f"{what}: dx differs from the finite-difference gradient", GELU_HINT)


@test("gelu_backward_visible", "gelu_backward")
def gelu_backward_visible(gelu_backward):
    """dx against finite differences on x from -4 to 4, with dy = 1 and random dy, and a (2, 3, 4) batch.

    Between -4 and 4 GELU's slope dips below 0 and rises above 1."""
    rng = rng_for("gelu_backward_visible")
    x = np.linspace(-4, 4, 17)
    _check_gelu(gelu_backward, np.ones_like(x), x, "gelu_backward(dy = 1, x = linspace(-4, 4, 17))")
    _check_gelu(gelu_backward, rng.standard_normal(x.shape), x, "gelu_backward(dy random, x = linspace(-4, 4, 17))")
    x = rng.standard_normal((2, 3, 4)) * 2
    _check_gelu(gelu_backward, rng.standard_normal(x.shape), x, "gelu_backward(dy, x (2,3,4))")


@test("gelu_backward_random", "gelu_backward", hidden=True)
def gelu_backward_random(gelu_backward, ref):
    """Random x and dy of several shapes and scales, float64 and float32."""
    rng = rng_for("gelu_backward_random")
    for dtype in (np.float64, np.float32):
        for shape, scale in [((9,), 1.0), ((4, 8), 3.0), ((2, 3, 16), 0.5), ((2, 2, 2, 5), 6.0)]:
            x = (rng.standard_normal(shape) * scale).astype(dtype)
            dy = rng.standard_normal(shape).astype(dtype)
            what = f"gelu_backward(dy, x {shape}) [{np.dtype(dtype)}]"
            out = as_result_array(gelu_backward(dy, x), what)
            assert_shape(out, shape, what, "dx has the shape of x")
            _match(out, ref.gelu_backward(*_up(dy, x)), dtype, what, GELU_HINT)


@test("gelu_backward_edge", "gelu_backward", hidden=True)
def gelu_backward_edge(gelu_backward, ref):
    """x = 0 (slope 1/2), large |x| (slope 1 and 0, tanh saturated) in float64 and float32, dy = 0."""
    cases = [("x = 0", np.zeros(3), np.array([1.0, -2.0, 0.5])),
             ("large |x|", np.array([-60.0, -12.0, 12.0, 60.0, 1e3]), np.ones(5)),
             ("large |x| (float32)", np.array([-60.0, -12.0, 12.0, 60.0], np.float32), np.ones(4, np.float32)),
             ("dy = 0", np.linspace(-3, 3, 7), np.zeros(7))]
    for name, x, dy in cases:
        what = f"gelu_backward on {name}"
        out = as_result_array(gelu_backward(dy, x), what)
        assert_shape(out, x.shape, what, "dx has the shape of x")
        ensure(np.all(np.isfinite(out)), f"{what}: NaN or inf entries",
               "for large |x| tanh(u) is exactly +-1 and 1 - tanh(u)^2 is 0: compute it from tanh, "
               "not with cosh(u), which overflows")
        _match(out, ref.gelu_backward(*_up(dy, x)), x.dtype, what, GELU_HINT)


# ------------------------------------------------------------------ layer_norm_backward

LN_HINT = ("with g = dy * gamma: dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps), "
           "means over the last axis")
LN_MEAN_HINT = ("the row's mean depends on every x_j too: you treated it as a constant; its share of the "
                "gradient is the term - mean(g)")
LN_VAR_HINT = ("the row's variance depends on every x_j too: you treated it as a constant; its share of "
               "the gradient is the term - xhat * mean(g * xhat)")
LN_BOTH_HINT = ("dx is not just dy * gamma / sqrt(var + eps): the row's mean and variance depend on x too "
                "(the terms - mean(g) and - xhat * mean(g * xhat))")
LN_GAMMA_HINT = ("the gradient reaching xhat is dy * gamma: multiply by gamma before going back through the "
                 "normalisation")
LN_EPS_HINT = "use sqrt(var + eps) as the forward does: eps inside the square root, the eps argument"
LN_DGAMMA_HINT = "dgamma = dy * xhat summed over every leading axis (gamma multiplies the normalised x, not x)"
LN_DBETA_HINT = "dbeta = dy summed over every leading axis"
LN_SWAP_HINT = "dgamma and dbeta are swapped: return (dx, dgamma, dbeta), dgamma = sum(dy * xhat), dbeta = sum(dy)"
LN_SUM_HINT = "dgamma and dbeta have the shape (D,) of gamma and beta: sum over every leading (batch) axis"


def _ln_forward(frozen=None, mean_const=False, var_const=False, eps=1e-5):
    """LayerNorm, optionally with the mean and/or variance frozen at the values of `frozen`
    (the gradient of that variant is what a backward that treats them as constants returns)."""
    def f(x, gamma, beta):
        m = frozen.mean(-1, keepdims=True) if mean_const else x.mean(-1, keepdims=True)
        base = frozen if var_const else x
        bm = base.mean(-1, keepdims=True)
        v = ((base - bm) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + eps) * gamma + beta
    return f


def _check_ln(layer_norm_backward, dy, x, gamma, what, eps=None):
    d = x.shape[-1]
    beta = np.linspace(-0.5, 0.5, d)
    kw = {} if eps is None else {"eps": eps}
    e = 1e-5 if eps is None else eps
    res = attempt(lambda: layer_norm_backward(dy, x, gamma, **kw), what, LN_HINT)
    dx, dg, db = _results(res, what, ["dx", "dgamma", "dbeta"], [x.shape, (d,), (d,)],
                          ["dx has the shape of x", LN_SUM_HINT, LN_SUM_HINT])

    def fd(forward, g=gamma):
        return _fd(lambda a, b, c: float(np.sum(dy * forward(a, b, c))), [x, g, beta])

    gx, gg, gb = fd(_ln_forward(eps=e))
    if not _near(dx, gx):
        _diagnose_ln_dx(dx, x, gamma, e, fd, what)
    if not _near(db, gb):
        raise CheckFailure(f"{what}: dbeta differs from the finite-difference gradient",
                           LN_SWAP_HINT if _near(db, gg) else LN_DBETA_HINT)
    if not _near(dg, gg):
        if _near(dg, _sum_rows(dy * x)):
            raise CheckFailure(f"{what}: dgamma matches sum(dy * x), with x not normalised", LN_DGAMMA_HINT)
        raise CheckFailure(f"{what}: dgamma differs from the finite-difference gradient", LN_DGAMMA_HINT)


def _diagnose_ln_dx(dx, x, gamma, e, fd, what):
    d = x.shape[-1]
    ensure(np.all(np.isfinite(dx)), f"{what}: dx has NaN or inf entries", LN_EPS_HINT)
    variants = {"the mean treated as a constant": (dict(mean_const=True), LN_MEAN_HINT),
                "the variance treated as a constant": (dict(var_const=True), LN_VAR_HINT),
                "the mean and the variance treated as constants": (dict(mean_const=True, var_const=True),
                                                                   LN_BOTH_HINT)}
    for name, (flags, hint) in variants.items():
        if _near(dx, fd(_ln_forward(frozen=x, eps=e, **flags))[0]):
            raise CheckFailure(f"{what}: dx is the gradient of a LayerNorm with {name}", hint)
    if not np.allclose(gamma, 1) and _near(dx, fd(_ln_forward(eps=e), np.ones(d))[0]):
        raise CheckFailure(f"{what}: dx is the gradient for gamma = 1: gamma was left out", LN_GAMMA_HINT)
    for other in (0.0, 1e-5):
        if other != e and _near(dx, fd(_ln_forward(eps=other))[0]):
            raise CheckFailure(f"{what}: dx is the gradient of a LayerNorm with eps = {other:g}, not {e:g}",
                               LN_EPS_HINT)
    raise CheckFailure(f"{what}: dx differs from the finite-difference gradient", LN_HINT)


@test("layer_norm_backward_visible", "layer_norm_backward")
def layer_norm_backward_visible(layer_norm_backward):
    """dx, dgamma, dbeta against finite differences: rows of 6, a custom eps, a (2, 3, 6) batch.

    One of the rows has a tiny variance, where eps matters."""
    rng = rng_for("layer_norm_backward_visible")
    x = rng.standard_normal((3, 6)) * np.array([[1.0], [3.0], [0.005]]) + np.array([[0.5], [-1.0], [2.0]])
    gamma = 1 + 0.5 * rng.standard_normal(6)
    _check_ln(layer_norm_backward, rng.standard_normal((3, 6)), x, gamma,
              "layer_norm_backward(dy, x (3x6), gamma)")
    x = rng.standard_normal((2, 4))
    _check_ln(layer_norm_backward, rng.standard_normal((2, 4)), x, np.array([1.0, 2.0, -1.0, 0.5]),
              "layer_norm_backward(dy, x (2x4), gamma, eps=0.5)", eps=0.5)
    x = rng.standard_normal((2, 3, 6)) * 2
    _check_ln(layer_norm_backward, rng.standard_normal((2, 3, 6)), x, gamma,
              "layer_norm_backward(dy, x (2,3,6), gamma)")


@test("layer_norm_backward_random", "layer_norm_backward", hidden=True)
def layer_norm_backward_random(layer_norm_backward, ref):
    """Random rows, gamma and dy with leading axes, float64 and float32."""
    rng = rng_for("layer_norm_backward_random")
    for dtype in (np.float64, np.float32):
        for shape in [(5, 8), (2, 3, 16), (7,), (4, 1, 6, 32)]:
            d = shape[-1]
            x = (rng.standard_normal(shape) * rng.uniform(0.5, 3) + rng.uniform(-2, 2)).astype(dtype)
            gamma = (1 + 0.3 * rng.standard_normal(d)).astype(dtype)
            dy = rng.standard_normal(shape).astype(dtype)
            what = f"layer_norm_backward(dy, x {shape}, gamma) [{np.dtype(dtype)}]"
            got = _results(layer_norm_backward(dy, x, gamma), what, ["dx", "dgamma", "dbeta"],
                           [shape, (d,), (d,)], ["dx has the shape of x", LN_SUM_HINT, LN_SUM_HINT])
            for name, a, e, hint in zip(["dx", "dgamma", "dbeta"], got, ref.layer_norm_backward(*_up(dy, x, gamma)),
                                        [LN_HINT, LN_DGAMMA_HINT, LN_DBETA_HINT]):
                _match(a, e, dtype, f"{what}: {name}", hint)


@test("layer_norm_backward_edge", "layer_norm_backward", hidden=True)
def layer_norm_backward_edge(layer_norm_backward, ref):
    """Constant rows (var = 0: only eps is left), one feature, gamma = 0, a large eps."""
    rng = rng_for("layer_norm_backward_edge")
    cases = [("constant rows", np.full((3, 5), 1.5), 1 + rng.standard_normal(5), None),
             ("one feature", rng.standard_normal((4, 1)), np.array([2.0]), None),
             ("gamma = 0", rng.standard_normal((3, 4)), np.zeros(4), None),
             ("eps = 10", rng.standard_normal((2, 6)), 1 + rng.standard_normal(6), 10.0)]
    for name, x, gamma, eps in cases:
        dy = rng.standard_normal(x.shape)
        kw = {} if eps is None else {"eps": eps}
        what = f"layer_norm_backward on {name}"
        got = _results(layer_norm_backward(dy, x, gamma, **kw), what, ["dx", "dgamma", "dbeta"],
                       [x.shape, gamma.shape, gamma.shape], ["dx has the shape of x", LN_SUM_HINT, LN_SUM_HINT])
        for label, a, e in zip(["dx", "dgamma", "dbeta"], got, ref.layer_norm_backward(dy, x, gamma, **kw)):
            ensure(np.all(np.isfinite(a)), f"{what}: {label} has NaN or inf entries", LN_EPS_HINT)
            _match(a, e, np.float64, f"{what}: {label}", LN_EPS_HINT if eps else LN_HINT)


# ------------------------------------------------------------------ attention_head_backward

ATT_NAMES = ["dx", "dw_q", "dw_k", "dw_v"]
ATT_RAISE_HINT = ("check the shapes step by step: dp = dout @ v^T (T, T), dv = p^T @ dout (T, d_v), "
                  "dq = ds @ k, dk = ds^T @ q (T, d_k)")
ATT_HINT = ("recompute the forward, then go back: dv = p^T dout, dp = dout v^T, ds = softmax_backward(dp, p) "
            "/ sqrt(d_k), dq = ds k, dk = ds^T q, dx = dq w_q^T + dk w_k^T + dv w_v^T")
ATT_MASK_HINT = ("apply the causal mask in the backward too: the probabilities you go back through are the "
                 "masked ones (masked entries have p = 0 and get no gradient)")
ATT_SCALE_HINT = ("the forward divides the scores by sqrt(d_k), so the backward divides their gradient ds by "
                  "sqrt(d_k) exactly once (the 1/sqrt(d) scale)")
ATT_SCALE_BOTH_HINT = "the scores are q k^T / sqrt(d_k): keep the 1/sqrt(d) scale, in the recomputed forward too"
ATT_DV_HINT = "dv = p^T @ dout: value j collects dout[i] weighted by p[i, j] from every query i"
ATT_DK_HINT = ("dk = ds^T @ q (transpose ds): key j collects the gradient of every score s[i, j] "
               "it took part in, from every query i")
ATT_DQ_HINT = "dq = ds @ k: query i collects the gradient of its scores s[i, j] times each key k_j"
ATT_SOFTMAX_HINT = ("dw_v is right but dw_q and dw_k are not: look at the path through the softmax: "
                    "ds = p * (dp - sum(dp * p, axis=-1)) (the full Jacobian, not only p (1 - p)), dp = dout @ v^T")
ATT_DX_HINT = ("x feeds the queries, the keys and the values: dx is the sum of the three paths, "
               "dq @ w_q.T + dk @ w_k.T + dv @ w_v.T")
ATT_SUM_HINT = "the weight gradients have the weights' shapes: sum x^T @ dq (etc.) over every leading (batch) axis"


def _head(causal=True, scaled=True):
    def f(x, w_q, w_k, w_v):
        q, k, v = x @ w_q, x @ w_k, x @ w_v
        s = q @ np.swapaxes(k, -1, -2)
        if scaled:
            s = s / math.sqrt(w_q.shape[-1])
        if causal:
            t = x.shape[-2]
            s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
        return _softmax(s) @ v
    return f


def _check_head(attention_head_backward, dout, x, w_q, w_k, w_v, what, diagnose=True):
    d = x.shape[-1]
    res = attempt(lambda: attention_head_backward(dout, x, w_q, w_k, w_v), what, ATT_RAISE_HINT)
    got = _results(res, what, ATT_NAMES, [x.shape, w_q.shape, w_k.shape, w_v.shape],
                   ["dx has the shape of x"] + [ATT_SUM_HINT] * 3)
    for name, g in zip(ATT_NAMES, got):
        ensure(np.all(np.isfinite(g)), f"{what}: {name} has NaN or inf entries",
               "masked scores are -inf but their probabilities are exactly 0: go back through p, and never "
               "multiply a -inf score by anything")

    def fd(**variant):
        return _fd(lambda *a: float(np.sum(dout * _head(**variant)(*a))), [x, w_q, w_k, w_v])

    want = fd()
    ok = [_near(g, e) for g, e in zip(got, want)]
    if all(ok):
        return
    if diagnose:
        if _near(got[3], fd(causal=False)[3]) or all(_near(g, e) for g, e in zip(got, fd(causal=False))):
            raise CheckFailure(f"{what}: the gradients are those of attention without the causal mask",
                               ATT_MASK_HINT)
        if all(_near(g, e) for g, e in zip(got, fd(scaled=False))):
            raise CheckFailure(f"{what}: the gradients are those of attention without the 1/sqrt(d_k) scale",
                               ATT_SCALE_BOTH_HINT)
    dx, dwq, dwk, dwv = got
    if not ok[3]:
        raise CheckFailure(f"{what}: dw_v differs from the finite-difference gradient", ATT_DV_HINT)
    if not (ok[1] and ok[2]):
        cq, ck = _ratio(dwq, want[1]), _ratio(dwk, want[2])
        root = math.sqrt(w_q.shape[-1])
        for c in (cq, ck):
            if c is not None and (abs(c - root) < 1e-5 * root or abs(c * root - 1) < 1e-5):
                raise CheckFailure(f"{what}: dw_q and dw_k are {c:.4g} times the right ones "
                                   f"(sqrt(d_k) = {root:.4g})", ATT_SCALE_HINT)
        if ok[1]:
            raise CheckFailure(f"{what}: dw_k differs from the finite-difference gradient (dw_q is right)",
                               ATT_DK_HINT)
        if ok[2]:
            raise CheckFailure(f"{what}: dw_q differs from the finite-difference gradient (dw_k is right)",
                               ATT_DQ_HINT)
        raise CheckFailure(f"{what}: dw_q and dw_k differ from the finite-difference gradients",
                           ATT_SOFTMAX_HINT)
    raise CheckFailure(f"{what}: dx differs from the finite-difference gradient (the weight gradients are right)",
                       ATT_DX_HINT if x.ndim == 2 else ATT_DX_HINT + "; keep the leading axes")


def _head_args(rng, lead, t, d, d_k, d_v, scale=1.0, dtype=np.float64):
    x = rng.standard_normal(lead + (t, d))
    w_q = rng.standard_normal((d, d_k)) * scale / math.sqrt(d) * 2
    w_k = rng.standard_normal((d, d_k)) * scale / math.sqrt(d) * 2
    w_v = rng.standard_normal((d, d_v)) / math.sqrt(d)
    dout = rng.standard_normal(lead + (t, d_v))
    return [a.astype(dtype) for a in (dout, x, w_q, w_k, w_v)]


@test("attention_head_backward_visible", "attention_head_backward")
def attention_head_backward_visible(attention_head_backward):
    """dx, dw_q, dw_k, dw_v against finite differences of one causal head, then with batch axes.

    T = 4 tokens, D = 5, d_k = 3, d_v = 2; then leading axes (2, 3)."""
    rng = rng_for("attention_head_backward_visible")
    dout, x, w_q, w_k, w_v = _head_args(rng, (), 4, 5, 3, 2)
    _check_head(attention_head_backward, dout, x, w_q, w_k, w_v,
                "attention_head_backward(dout (4x2), x (4x5), w_q, w_k (5x3), w_v (5x2))")
    dout, x, w_q, w_k, w_v = _head_args(rng, (2, 3), 4, 3, 2, 2)
    _check_head(attention_head_backward, dout, x, w_q, w_k, w_v,
                "attention_head_backward(dout (2,3,4,2), x (2,3,4,3), w_q, w_k, w_v (3x2))", diagnose=False)


@test("attention_head_backward_random", "attention_head_backward", hidden=True)
def attention_head_backward_random(attention_head_backward, ref):
    """Random heads with leading axes, several widths, float64 and float32."""
    rng = rng_for("attention_head_backward_random")
    for dtype in (np.float64, np.float32):
        for lead, t, d, d_k, d_v in [((), 6, 8, 4, 4), ((2,), 5, 6, 3, 5), ((2, 2), 7, 8, 8, 2), ((3,), 9, 16, 4, 4)]:
            args = _head_args(rng, lead, t, d, d_k, d_v, dtype=dtype)
            what = f"attention_head_backward(x {args[1].shape}, d_k={d_k}, d_v={d_v}) [{np.dtype(dtype)}]"
            got = _results(attention_head_backward(*args), what, ATT_NAMES,
                           [args[1].shape, args[2].shape, args[3].shape, args[4].shape],
                           ["dx has the shape of x"] + [ATT_SUM_HINT] * 3)
            for name, a, e in zip(ATT_NAMES, got, ref.attention_head_backward(*_up(*args))):
                _match(a, e, dtype, f"{what}: {name}", ATT_HINT)


@test("attention_head_backward_edge", "attention_head_backward", hidden=True)
def attention_head_backward_edge(attention_head_backward, ref):
    """One token, nearly one-hot attention (float64 and float32), d_k = 1, dout = 0.

    With one token the softmax is constant, so no gradient reaches w_q and w_k."""
    rng = rng_for("attention_head_backward_edge")
    cases = [("one token", _head_args(rng, (2,), 1, 4, 3, 3)),
             ("large scores", _head_args(rng, (), 6, 4, 4, 3, scale=8.0)),
             ("large scores (float32)", _head_args(rng, (2,), 6, 4, 4, 3, scale=8.0, dtype=np.float32)),
             ("d_k = 1", _head_args(rng, (), 5, 3, 1, 2))]
    zero = _head_args(rng, (), 4, 3, 2, 2)
    zero[0] = np.zeros_like(zero[0])
    cases.append(("dout = 0", zero))
    for name, args in cases:
        what = f"attention_head_backward on {name}"
        got = _results(attention_head_backward(*args), what, ATT_NAMES,
                       [args[1].shape, args[2].shape, args[3].shape, args[4].shape],
                       ["dx has the shape of x"] + [ATT_SUM_HINT] * 3)
        for label, a, e in zip(ATT_NAMES, got, ref.attention_head_backward(*_up(*args))):
            ensure(np.all(np.isfinite(a)), f"{what}: {label} has NaN or inf entries",
                   "masked entries have p = 0: their gradient is 0, never NaN")
            _match(a, e, args[1].dtype, f"{what}: {label}", ATT_HINT)

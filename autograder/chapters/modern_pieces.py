"""Chapter 10 (10-modern-pieces): RoPE, RMSNorm, SwiGLU and grouped-query attention.

The visible tests need no answer key: they check properties that hold for any correct
implementation (RoPE scores depend only on the offset between positions, rotations keep
norms, RMSNorm's output has root mean square 1 before the gain, grouped-query attention
with one key/value head per query head is ordinary attention, ...) and small stored
values worked out by hand or stored to full precision. Classic mistakes are named by
comparing with what they return on the same stored inputs.

The hidden tests compare with the reference on seeded random inputs with leading batch
axes, in float64 (rtol 1e-10) and float32 (rtol 1e-4: a float32 result may be rounded
differently from the reference's), and on edge cases.
"""
import math

import numpy as np

from ..framework import (Chapter, CheckFailure, as_result_array, assert_close, assert_raises, assert_shape,
                         assert_values_close, attempt, ensure, rng_for)

chapter = Chapter("10-modern-pieces", reference="modern_pieces",
                  functions=["rope_angles", "apply_rope", "rms_norm", "swiglu", "grouped_query_attention"],
                  provided=["softmax", "causal_mask"],
                  sample_scores=(15, 9, 0, 0, 12))
test = chapter.test

F32 = dict(rtol=1e-4, atol=1e-5)     # float32 results against the reference on the same float32 inputs


def _call(thunk, what, hint=""):
    """`attempt`, with NumPy's floating-point warnings silenced: the checks look at the results
    themselves (NaN, inf), and a wrong answer's 0/0 need not also print a warning."""
    with np.errstate(all="ignore"):
        return attempt(thunk, what, hint)


def _tol(dtype):
    return F32 if np.dtype(dtype) == np.float32 else {}


def _result(value, shape, what, hint=""):
    """A numeric array of the given shape."""
    out = as_result_array(value, what)
    assert_shape(out, shape, what, hint)
    return out


def _named(out, candidates, atol=1e-9):
    """The name of the first (name, stored array) candidate that `out` equals, or None."""
    for name, arr in candidates:
        arr = np.asarray(arr, dtype=np.float64)
        if out.shape == arr.shape and np.allclose(out.astype(np.float64), arr, rtol=1e-9, atol=atol,
                                                  equal_nan=True):
            return name
    return None


# ------------------------------------------------------------------ rope_angles

ANGLES_HINT = ("angles[p, i] = p * base ** (-2i / head_dim) for positions p = 0 .. n_positions - 1 and "
               "pairs i = 0 .. head_dim/2 - 1")
ANGLE_SLIPS = {
    "exponent": "the exponent is -2i / head_dim with i counting pairs (equivalently -j / head_dim for the even "
                "feature index j = 2i): base ** (-i / head_dim) turns the slow pairs far too fast",
    "from_one": "positions start at 0: row 0 of the angles is all zeros (the first token is not rotated)",
    "increase": "the frequencies decrease with i: theta_i = base ** (-2i / head_dim), with a minus sign, so "
                "theta_0 = 1 and the last pair turns slowest",
    "base": "use the `base` argument (10000 is only its default)",
}


def _angle_candidates(n, d, base):
    """What the classic slips return for rope_angles(n, d, base), computed from the definition."""
    p = np.arange(n, dtype=np.float64)[:, None]
    j = np.arange(d // 2, dtype=np.float64)
    return [("exponent", p * base ** (-j / d)), ("from_one", (p + 1) * base ** (-2 * j / d)),
            ("increase", p * base ** (2 * j / d)), ("base", p * 10000.0 ** (-2 * j / d))]


def _check_angles(rope_angles, n, d, base, expected, what):
    args = (n, d) if base is None else (n, d, base)
    call = (lambda: rope_angles(*args)) if base is None else (lambda: rope_angles(n, d, base=base))
    out = as_result_array(_call(call, what, ANGLES_HINT), what)
    if out.shape == (n, d):
        raise CheckFailure(f"{what}: shape {out.shape}, expected {(n, d // 2)}",
                           "one angle per pair of features: the result has head_dim // 2 columns, not head_dim "
                           "(the 'rotate half' code copies the angles to the full width; here apply_rope does "
                           "that work)")
    assert_shape(out, (n, d // 2), what, "one row per position, one column per pair: (n_positions, head_dim // 2)")
    if not np.allclose(out.astype(np.float64), expected, rtol=1e-10, atol=1e-12):
        slip = _named(out, _angle_candidates(n, d, 10000.0 if base is None else base), atol=1e-12)
        if slip is not None:
            raise CheckFailure(f"{what}: gave {np.round(out, 4).tolist()}, expected {np.round(expected, 4).tolist()}",
                               ANGLE_SLIPS[slip])
    assert_close(out, np.asarray(expected, dtype=np.float64), what, ANGLES_HINT)
    return out


@test("rope_angles_visible", "rope_angles")
def rope_angles_visible(rope_angles):
    """Stored angles, one column per pair, linear in the position, base ** (-2/head_dim) ratios.

    Also: float64, and ValueError for an odd head_dim."""
    # base 100, head_dim 4: theta = (1, 100 ** (-2/4)) = (1, 0.1)
    _check_angles(rope_angles, 3, 4, 100.0, [[0.0, 0.0], [1.0, 0.1], [2.0, 0.2]],
                  "rope_angles(3, 4, base=100)")
    # default base 10000, head_dim 8: theta_i = 10000 ** (-2i/8) = 10 ** -i
    _check_angles(rope_angles, 5, 8, None, np.arange(5.0)[:, None] * np.array([1.0, 0.1, 0.01, 0.001]),
                  "rope_angles(5, 8)")
    what = "rope_angles(40, 64, base=500)"
    out = _result(_call(lambda: rope_angles(40, 64, base=500.0), what, ANGLES_HINT), (40, 32), what, ANGLES_HINT)
    ensure(out.dtype == np.float64, f"{what}: dtype {out.dtype}, expected float64", "compute in float64")
    ensure(np.allclose(out[0], 0.0, atol=0) and np.allclose(out[1, 0], 1.0, rtol=1e-12),
           f"{what}: row 0 should be all zeros and angles[1, 0] = 1", ANGLES_HINT)
    ensure(np.allclose(out, np.arange(40)[:, None] * out[1], rtol=1e-10, atol=1e-12),
           f"{what}: the angles are not proportional to the position", "angles[p, i] = p * theta_i")
    ratio = out[1, 1:] / out[1, :-1]
    ensure(np.allclose(ratio, 500.0 ** (-2 / 64), rtol=1e-10),
           f"{what}: theta_(i+1) / theta_i is not the constant base ** (-2 / head_dim) = {500 ** (-2 / 64):.6f} "
           f"(got {ratio[0]:.6f} for i = 0)", ANGLE_SLIPS["exponent"])
    assert_raises(lambda: rope_angles(4, 5), "ValueError", "rope_angles(4, 5) (odd head_dim)",
                  "features are rotated in pairs, so raise ValueError when head_dim is odd")


@test("rope_angles_random", "rope_angles", hidden=True)
def rope_angles_random(rope_angles, ref):
    """Random sizes and bases against the reference."""
    rng = rng_for("rope_angles_random")
    for _ in range(6):
        n, d = int(rng.integers(1, 300)), 2 * int(rng.integers(1, 65))
        base = float(10 ** rng.uniform(1, 6))
        what = f"rope_angles({n}, {d}, base={base:.4g})"
        out = _call(lambda: rope_angles(n, d, base=base), what, ANGLES_HINT)
        assert_close(out, ref.rope_angles(n, d, base=base), what, ANGLES_HINT)


@test("rope_angles_edge", "rope_angles", hidden=True)
def rope_angles_edge(rope_angles, ref):
    """Zero and one position, head_dim 2, an integer base, long contexts, odd head_dim raises."""
    for n, d, base in [(0, 8, 10000.0), (1, 16, 10000.0), (7, 2, 10000.0), (9, 12, 10000), (100000, 128, 10000.0),
                       (4096, 64, 500000.0)]:
        what = f"rope_angles({n}, {d}, base={base!r})"
        out = _call(lambda: rope_angles(n, d, base=base), what, ANGLES_HINT)
        assert_close(out, ref.rope_angles(n, d, base=base), what, ANGLES_HINT)
    for d in (1, 7):
        assert_raises(lambda: rope_angles(3, d), "ValueError", f"rope_angles(3, {d})",
                      "raise ValueError when head_dim is odd")


# ------------------------------------------------------------------ apply_rope

ROPE_HINT = ("rotate each interleaved pair (a, b) = (x[..., 2i], x[..., 2i+1]) at position t by phi = "
             "angles[t, i]: (a cos phi - b sin phi, a sin phi + b cos phi)")
ROPE_SLIPS = {
    "halves": "this course rotates interleaved pairs (2i, 2i + 1), that is (x[..., 0::2], x[..., 1::2]); you "
              "rotated the halves (i, i + head_dim/2), the other ('rotate half') convention",
    "sign": "rotate counter-clockwise by +phi: (a cos phi - b sin phi, a sin phi + b cos phi); your signs "
            "rotate by -phi",
    "nomix": "a rotation mixes the two features of a pair: the sine term of feature 2i is -b sin phi (the "
             "partner b = x[..., 2i+1]), and of feature 2i+1 it is +a sin phi; x * cos + x * sin only rescales",
    "tiled": "both features of pair i turn by the angle of pair i, angles[t, i]: spread the angles with "
             "np.repeat(.., 2, axis=-1) (angle i at features 2i and 2i+1), not np.tile",
}
# x = [1, 2, 3, 4] at three positions; angles (0, 0), (pi/2, pi), (pi, pi/2). Worked out by hand:
# at position 1 the pair (1, 2) turns a quarter -> (-2, 1) and the pair (3, 4) a half -> (-3, -4).
ROPE_X = [[1.0, 2.0, 3.0, 4.0]] * 3
ROPE_ANGLES = [[0.0, 0.0], [math.pi / 2, math.pi], [math.pi, math.pi / 2]]
ROPE_EXPECTED = [[1.0, 2.0, 3.0, 4.0], [-2.0, 1.0, -3.0, -4.0], [-1.0, -2.0, -4.0, 3.0]]
ROPE_WRONG = [("halves", [[1.0, 2.0, 3.0, 4.0], [-3.0, -2.0, 1.0, -4.0], [-1.0, -4.0, -3.0, 2.0]]),
              ("sign", [[1.0, 2.0, 3.0, 4.0], [2.0, -1.0, -3.0, -4.0], [-1.0, -2.0, 4.0, -3.0]]),
              ("nomix", [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, -3.0, -4.0], [-1.0, -2.0, 3.0, 4.0]]),
              ("tiled", [[1.0, 2.0, 3.0, 4.0], [-2.0, -2.0, -4.0, -4.0], [-1.0, 1.0, -3.0, 3.0]])]


def _rope_call(apply_rope, x, angles, what):
    return _result(_call(lambda: apply_rope(x, angles), what, ROPE_HINT), x.shape, what,
                   "return an array of x's shape (..., T, head_dim)")


@test("apply_rope_visible", "apply_rope")
def apply_rope_visible(apply_rope):
    """Stored rotations, pair lengths kept, scores that depend only on the offset, leading axes.

    The stored rotations are worked out by hand; the relative property is q.k at (m, n) equal to
    q.k at (m + s, n + s)."""
    x, angles = np.array(ROPE_X), np.array(ROPE_ANGLES)
    what = "apply_rope([1, 2, 3, 4] at 3 positions, angles (0, 0), (pi/2, pi), (pi, pi/2))"
    out = _rope_call(apply_rope, x, angles, what)
    if not np.allclose(out, ROPE_EXPECTED, atol=1e-9):
        slip = _named(out, ROPE_WRONG)
        raise CheckFailure(f"{what}: gave {np.round(out, 6).tolist()}, expected {ROPE_EXPECTED}",
                           ROPE_SLIPS[slip] if slip else ROPE_HINT)
    what = "apply_rope([[1, 0]], [[pi/2]])"
    out = _rope_call(apply_rope, np.array([[1.0, 0.0]]), np.array([[math.pi / 2]]), what)
    ensure(np.allclose(out, [[0.0, 1.0]], atol=1e-12), f"{what}: gave {np.round(out, 6).tolist()}, expected "
           "[[0, 1]] (a quarter turn counter-clockwise)", ROPE_SLIPS["sign"])

    rng = rng_for("apply_rope_visible")
    t, d = 12, 8
    theta = 10000.0 ** (-np.arange(0, d, 2) / d)
    angles = np.arange(t)[:, None] * theta
    x = rng.standard_normal((t, d))
    what = f"apply_rope(x ({t}, {d}), angles p * theta_i)"
    out = _rope_call(apply_rope, x, angles, what)
    pair_in = np.hypot(x[:, 0::2], x[:, 1::2])
    pair_out = np.hypot(out[:, 0::2], out[:, 1::2])
    ensure(np.allclose(pair_out, pair_in, rtol=1e-9, atol=1e-12),
           f"{what}: the length of a pair (x[2i], x[2i+1]) changed (a rotation keeps it)",
           ROPE_SLIPS["halves"] if np.allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1)) else ROPE_HINT)
    # The same query q at every position and the same key k at every position: after RoPE the score
    # between positions m and n must depend only on m - n (a Toeplitz matrix).
    q, k = rng.standard_normal(d), rng.standard_normal(d)
    rq = _rope_call(apply_rope, np.tile(q, (t, 1)), angles, what)
    rk = _rope_call(apply_rope, np.tile(k, (t, 1)), angles, what)
    s = rq @ rk.T
    for shift in (1, 5):
        ensure(np.allclose(s[shift:, shift:], s[:-shift, :-shift], rtol=1e-9, atol=1e-9),
               f"rotated scores q_m . k_n differ from q_(m+{shift}) . k_(n+{shift}): they should depend only "
               "on the offset m - n", ROPE_HINT)
    ensure(np.allclose(np.diag(s), q @ k, rtol=1e-9, atol=1e-9),
           "at equal positions (m = n) the rotated score should equal the plain q . k", ROPE_HINT)
    xb = rng.standard_normal((2, 3, t, d))
    what = f"apply_rope(x (2, 3, {t}, {d}), angles ({t}, {d // 2}))"
    outb = _rope_call(apply_rope, xb, angles, what)
    for b, h in [(0, 0), (1, 2)]:
        single = _rope_call(apply_rope, xb[b, h], angles, f"apply_rope(x ({t}, {d}), angles)")
        assert_values_close(outb[b, h], single, f"{what}[{b}, {h}]",
                            "leading axes (batch, heads) share the same angles: broadcast angles (T, d/2) "
                            "against x[..., 0::2] of shape (..., T, d/2)", rtol=1e-9, atol=1e-12)


@test("apply_rope_random", "apply_rope", hidden=True)
def apply_rope_random(apply_rope, ref):
    """Random x with leading axes and the angles of rope_angles, float64 and float32."""
    rng = rng_for("apply_rope_random")
    for dtype in (np.float64, np.float32):
        for shape in [(5, 2), (9, 16), (2, 7, 32), (2, 4, 6, 64)]:
            x = rng.standard_normal(shape).astype(dtype)
            angles = ref.rope_angles(shape[-2], shape[-1], base=float(rng.choice([100.0, 10000.0])))
            what = f"apply_rope(x {shape}, angles) [{np.dtype(dtype)}]"
            out = _call(lambda: apply_rope(x, angles), what, ROPE_HINT)
            assert_values_close(out, ref.apply_rope(x, angles), what, ROPE_HINT, **_tol(dtype))


@test("apply_rope_edge", "apply_rope", hidden=True)
def apply_rope_edge(apply_rope, ref):
    """One position, head_dim 2, zero angles (identity), large angles, arbitrary (not rope_angles) angles."""
    rng = rng_for("apply_rope_edge")
    cases = [("one position", rng.standard_normal((1, 8)), rng.uniform(-4, 4, (1, 4))),
             ("head_dim 2", rng.standard_normal((3, 6, 2)), rng.uniform(-4, 4, (6, 1))),
             ("zero angles", rng.standard_normal((4, 10)), np.zeros((4, 5))),
             ("large angles", rng.standard_normal((5, 6)), rng.uniform(1e3, 1e5, (5, 3))),
             ("arbitrary angles", rng.standard_normal((2, 2, 7, 12)), rng.uniform(-7, 7, (7, 6)))]
    for name, x, angles in cases:
        for dtype in (np.float64, np.float32):
            xx = x.astype(dtype)
            what = f"apply_rope on {name} [{np.dtype(dtype)}]"
            out = _call(lambda: apply_rope(xx, angles), what, ROPE_HINT)
            assert_values_close(out, ref.apply_rope(xx, angles), what, ROPE_HINT, **_tol(dtype))


# ------------------------------------------------------------------ rms_norm

RMS_HINT = "rms_norm(x) = x / sqrt(mean(x ** 2 over the last axis) + eps) * gain"
RMS_SLIPS = {
    "centered": "RMSNorm does not subtract the mean (that is LayerNorm): divide x itself by its root mean square",
    "sum": "divide by the root of the mean of the squares, sqrt(mean(x ** 2) + eps), not of their sum",
    "eps_outside": "put eps inside the square root: sqrt(mean(x ** 2) + eps), not sqrt(mean(x ** 2)) + eps",
    "eps_ignored": "add eps inside the sqrt, sqrt(mean(x ** 2) + eps): eps inside the sqrt keeps an all-zero row "
                   "finite and small rows bounded",
    "eps_default": "use the `eps` argument (1e-6 is only its default)",
    "axis": "normalise each row over the last axis (one token's features), keep the leading axes",
}


def _rms_call(rms_norm, x, gain, what, eps=None):
    call = (lambda: rms_norm(x, gain)) if eps is None else (lambda: rms_norm(x, gain, eps=eps))
    return _result(_call(call, what, RMS_HINT), x.shape, what, "return an array of x's shape")


@test("rms_norm_visible", "rms_norm")
def rms_norm_visible(rms_norm):
    """Stored values, and output / gain with root mean square 1 on random rows.

    The stored values check: no centering, eps inside the sqrt, the eps argument, an all-zero row,
    the gain per feature."""
    x, ones = np.array([[1.0, 2.0, 3.0, 4.0]]), np.ones(4)
    what = "rms_norm([[1, 2, 3, 4]], gain=1)"
    out = _rms_call(rms_norm, x, ones, what)
    expected = x / math.sqrt(7.5 + 1e-6)        # mean of the squares: (1 + 4 + 9 + 16) / 4 = 7.5
    if not np.allclose(out, expected, rtol=1e-10):
        slip = _named(out, [("eps_outside", x / (math.sqrt(7.5) + 1e-6)), ("eps_ignored", x / math.sqrt(7.5))],
                      atol=1e-12) or \
            _named(out, [("centered", (x - 2.5) / math.sqrt(1.25 + 1e-6)),
                            ("sum", x / math.sqrt(30 + 1e-6)), ("centered", x - 2.5),
                            ("axis", x / np.sqrt(x ** 2 + 1e-6))], atol=1e-6)
        if slip is None and abs(float(np.mean(out))) < 1e-6:
            slip = "centered"
        rel = float(np.max(np.abs(out - expected) / np.abs(expected)))
        raise CheckFailure(f"{what}: gave {np.round(out, 9).tolist()}, expected "
                           f"{np.round(expected, 9).tolist()} (= x / sqrt(7.5 + 1e-6)); relative difference "
                           f"up to {rel:.2g}",
                           RMS_SLIPS[slip] if slip else RMS_HINT)
    # Small features: here eps matters. mean(x^2) = 1e-6 = eps, so the root mean square is sqrt(2e-6).
    small = 1e-3 * np.array([[1.0, -1.0, 1.0, -1.0]])
    what = "rms_norm(1e-3 * [[1, -1, 1, -1]], gain=1, eps=1e-6)"
    out = _rms_call(rms_norm, small, ones, what, eps=1e-6)
    expected = small / math.sqrt(2e-6)
    if not np.allclose(out, expected, rtol=1e-9, equal_nan=False):
        slip = _named(out, [("eps_outside", small / (1e-3 + 1e-6)), ("eps_ignored", small / 1e-3)])
        raise CheckFailure(f"{what}: gave {np.round(out, 6).tolist()}, expected {np.round(expected, 6).tolist()} "
                           "(= x / sqrt(1e-6 + 1e-6))", RMS_SLIPS[slip] if slip else RMS_HINT)
    what = "rms_norm([[1, -1]], gain=1, eps=0.5)"
    out = _rms_call(rms_norm, np.array([[1.0, -1.0]]), np.ones(2), what, eps=0.5)
    if not np.allclose(out, [[1 / math.sqrt(1.5), -1 / math.sqrt(1.5)]], rtol=1e-10):
        slip = "eps_default" if np.allclose(out, [[1.0, -1.0]], rtol=1e-5) else None
        raise CheckFailure(f"{what}: gave {np.round(out, 6).tolist()}, expected +-1/sqrt(1.5) = +-0.816497",
                           RMS_SLIPS[slip] if slip else RMS_HINT)
    what = "rms_norm(an all-zero row, gain=1)"
    out = _rms_call(rms_norm, np.zeros((1, 5)), np.ones(5), what)
    ensure(np.all(np.isfinite(out)), f"{what}: NaN or inf", RMS_SLIPS["eps_ignored"])
    ensure(np.all(out == 0), f"{what}: gave {out.tolist()}, expected zeros", RMS_HINT)
    gain = np.array([1.0, 2.0, 3.0, 4.0])
    what = "rms_norm([[1, 2, 3, 4]], gain=[1, 2, 3, 4])"
    out = _rms_call(rms_norm, x, gain, what)
    assert_values_close(out, x * gain / math.sqrt(7.5 + 1e-6), what,
                        "multiply the normalised row by the gain, feature by feature (after dividing)")

    rng = rng_for("rms_norm_visible")
    xb = rng.standard_normal((2, 3, 8)) * np.array([[[0.5]], [[3.0]]]) + 1.0
    g = rng.uniform(0.5, 2.0, 8)
    what = "rms_norm(x (2, 3, 8), gain (8,))"
    out = _rms_call(rms_norm, xb, g, what)
    unit = out / g
    rms = np.sqrt(np.mean(unit ** 2, axis=-1))
    ms = np.mean(xb ** 2, axis=-1)
    if not np.allclose(rms, np.sqrt(ms / (ms + 1e-6)), rtol=1e-9):
        axis0 = np.sqrt(np.mean(xb ** 2, axis=0, keepdims=True) + 1e-6)
        slip = "axis" if np.allclose(out, xb / axis0 * g, rtol=1e-6) else None
        raise CheckFailure(f"{what}: each row of output / gain should have root mean square 1 (up to eps), got "
                           f"{np.round(rms, 6).ravel().tolist()}",
                           RMS_SLIPS["axis"] if slip else RMS_HINT)
    ensure(np.allclose(unit / xb, (unit / xb)[..., :1], rtol=1e-9),
           f"{what}: output / gain is not a positive multiple of x, row by row",
           RMS_SLIPS["centered"])


@test("rms_norm_random", "rms_norm", hidden=True)
def rms_norm_random(rms_norm, ref):
    """Random rows with leading axes, random gains and eps, float64 and float32."""
    rng = rng_for("rms_norm_random")
    for dtype in (np.float64, np.float32):
        for shape, eps in [((6,), 1e-6), ((4, 16), 1e-5), ((2, 5, 32), 1e-6), ((2, 2, 3, 64), 1e-3)]:
            x = (rng.standard_normal(shape) * rng.uniform(0.1, 5) + rng.uniform(-1, 1)).astype(dtype)
            gain = rng.uniform(-2, 2, shape[-1]).astype(dtype)
            what = f"rms_norm(x {shape}, gain, eps={eps}) [{np.dtype(dtype)}]"
            out = _call(lambda: rms_norm(x, gain, eps=eps), what, RMS_HINT)
            assert_values_close(out, ref.rms_norm(x, gain, eps=eps), what, RMS_HINT, **_tol(dtype))


@test("rms_norm_edge", "rms_norm", hidden=True)
def rms_norm_edge(rms_norm, ref):
    """Zero rows, tiny rows where eps dominates, huge rows, one feature, eps = 0, a constant row."""
    rng = rng_for("rms_norm_edge")
    cases = [("zero rows", np.zeros((3, 6)), 1e-6), ("tiny rows", rng.standard_normal((2, 8)) * 1e-5, 1e-6),
             ("huge rows", rng.standard_normal((2, 8)) * 1e100, 1e-6), ("one feature", rng.standard_normal((5, 1)), 1e-6),
             ("eps = 0", rng.standard_normal((3, 4)), 0.0), ("a constant row", np.full((1, 7), 3.0), 1e-6)]
    for name, x, eps in cases:
        gain = rng.uniform(0.5, 1.5, x.shape[-1])
        what = f"rms_norm on {name} (eps={eps})"
        out = _call(lambda: rms_norm(x, gain, eps=eps), what, RMS_HINT)
        assert_values_close(out, ref.rms_norm(x, gain, eps=eps), what, RMS_SLIPS["eps_outside"]
                            if name == "tiny rows" else RMS_HINT)


# ------------------------------------------------------------------ swiglu

SWIGLU_HINT = "swiglu(x) = (silu(x @ w_gate) * (x @ w_up)) @ w_down, with silu(z) = z * sigmoid(z)"
SWIGLU_SLIPS = {
    "silu_up": "silu acts on the gate branch x @ w_gate; the up branch x @ w_up stays linear",
    "sigmoid": "the gate is silu(z) = z * sigmoid(z), not sigmoid(z) (that would be the original GLU)",
    "after": "apply silu to the gate branch alone, before multiplying by the up branch",
    "no_up": "multiply the gate silu(x @ w_gate) elementwise by the up branch x @ w_up, then apply w_down",
}
SW_X = [[1.0, -1.0, 0.5], [2.0, 0.0, -1.0]]
SW_GATE = [[1.0, 0.0, -1.0, 0.5], [0.0, 2.0, 1.0, -1.0], [1.0, 1.0, 0.0, 0.0]]
SW_UP = [[0.5, 1.0, 0.0, -1.0], [1.0, 0.0, 1.0, 0.0], [0.0, -1.0, 2.0, 1.0]]
SW_DOWN = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, -1.0, 1.0]]
SW_EXPECTED = [[-1.2263617142904655, 0.4763617142904655, -0.6131808571452327],
               [-1.46211715726001, 1.3863514717800296, -1.7163640478015445]]
SW_WRONG = [("silu_up", [[-0.566311003197218, -0.18368899680278195, -0.283155501598609],
                         [0.5887809590973045, -2.7154447609345995, 0.33453406855576984]]),
            ("sigmoid", [[-0.8175744761936437, 0.5, -0.4087872380968218], [-1.46211715726001, 3.0, -2.43158157993425]]),
            ("after", [[-0.48123195123691054, 0.0, -0.24061597561845527], [0.5887809590973045, 0.0, 3.7857775406189336]]),
            ("no_up", [[2.452723428580931, -1.5, 0.9879558702462303], [1.4621171572600098, -1.0, 0.4926527345857698]])]


def _swiglu_call(swiglu, x, wg, wu, wd, what):
    shape = x.shape[:-1] + (wd.shape[-1],)
    return _result(_call(lambda: swiglu(x, wg, wu, wd), what,
                           "x (..., D) @ w_gate (D, H) and @ w_up (D, H), then (..., H) @ w_down (H, D)"),
                   shape, what, "the output has x's leading axes and w_down's output width: (..., D)")


@test("swiglu_visible", "swiglu")
def swiglu_visible(swiglu):
    """Stored values of a small MLP, silu through identity weights, zero up weights, leading axes.

    The small MLP has D = 3, H = 4; large gates must give no NaN."""
    x, wg, wu, wd = (np.array(a) for a in (SW_X, SW_GATE, SW_UP, SW_DOWN))
    what = "swiglu(x (2, 3), w_gate (3, 4), w_up (3, 4), w_down (4, 3))"
    out = _swiglu_call(swiglu, x, wg, wu, wd, what)
    if not np.allclose(out, SW_EXPECTED, rtol=1e-10, atol=1e-12):
        slip = _named(out, SW_WRONG)
        raise CheckFailure(f"{what}: gave {np.round(out, 6).tolist()}, expected {np.round(SW_EXPECTED, 6).tolist()}",
                           SWIGLU_SLIPS[slip] if slip else SWIGLU_HINT)
    # With identity weights the MLP is silu(z) * z elementwise: check silu at a few points.
    z = np.array([[-3.0, -1.0, 0.0, 1.0, 3.0]])
    eye = np.eye(5)
    what = "swiglu(z, I, I, I) = silu(z) * z for z = [-3, -1, 0, 1, 3]"
    out = _swiglu_call(swiglu, z, eye, eye, eye, what)
    silu = z / (1 + np.exp(-z))
    ensure(np.allclose(out, silu * z, rtol=1e-10, atol=1e-12), f"{what}: gave {np.round(out, 6).tolist()}, "
           f"expected {np.round(silu * z, 6).tolist()}", SWIGLU_SLIPS["sigmoid"])
    rng = rng_for("swiglu_visible")
    xb = rng.standard_normal((2, 4, 6))
    g, u, dn = rng.standard_normal((6, 10)), rng.standard_normal((6, 10)), rng.standard_normal((10, 6))
    what = "swiglu(x, w_gate, w_up = 0, w_down)"
    out = _swiglu_call(swiglu, xb, g, np.zeros((6, 10)), dn, what)
    ensure(np.allclose(out, 0, atol=1e-12), f"{what}: not zero", SWIGLU_SLIPS["no_up"])
    what = "swiglu(x (2, 4, 6), w_gate (6, 10), w_up (6, 10), w_down (10, 6))"
    out = _swiglu_call(swiglu, xb, g, u, dn, what)
    row = _swiglu_call(swiglu, xb[1, 2], g, u, dn, "swiglu(one row (6,), ...)")
    assert_values_close(out[1, 2], row, what + "[1, 2]", "act on the last axis and keep the leading axes",
                        rtol=1e-9, atol=1e-12)
    big = np.array([[40.0, -40.0], [-30.0, 30.0]])
    what = "swiglu(x, I, I, I) for x = [[40, -40], [-30, 30]]"
    out = _swiglu_call(swiglu, big, np.eye(2), np.eye(2), np.eye(2), what)
    ensure(np.all(np.isfinite(out)), f"{what}: NaN or inf in {out.tolist()}",
           "write silu so that large |z| gives no NaN or inf: z / (1 + exp(-z)) or z * sigmoid(z)")
    ensure(np.allclose(out, [[1600.0, 0.0], [0.0, 900.0]], rtol=1e-12, atol=1e-9),
           f"{what}: gave {out.tolist()}, expected [[1600, 0], [0, 900]] (silu(z) * z)", SWIGLU_HINT)


@test("swiglu_random", "swiglu", hidden=True)
def swiglu_random(swiglu, ref):
    """Random x with leading axes and random weights (H != D), float64 and float32."""
    rng = rng_for("swiglu_random")
    for dtype in (np.float64, np.float32):
        for shape, h in [((5,), 7), ((3, 8), 20), ((2, 4, 16), 40), ((2, 2, 3, 12), 32)]:
            d = shape[-1]
            x = rng.standard_normal(shape).astype(dtype)
            wg, wu = (rng.standard_normal((d, h)) / math.sqrt(d)).astype(dtype), \
                (rng.standard_normal((d, h)) / math.sqrt(d)).astype(dtype)
            wd = (rng.standard_normal((h, d)) / math.sqrt(h)).astype(dtype)
            what = f"swiglu(x {shape}, H = {h}) [{np.dtype(dtype)}]"
            out = _call(lambda: swiglu(x, wg, wu, wd), what, SWIGLU_HINT)
            assert_values_close(out, ref.swiglu(x, wg, wu, wd), what, SWIGLU_HINT, **_tol(dtype))


@test("swiglu_edge", "swiglu", hidden=True)
def swiglu_edge(swiglu, ref):
    """Large gates in float32 and float64, H = 1, zero weights, a different output width."""
    rng = rng_for("swiglu_edge")
    for dtype, scale in ((np.float64, 300.0), (np.float32, 60.0)):
        x = (rng.standard_normal((4, 3)) * scale).astype(dtype)
        eye = np.eye(3, dtype=dtype)
        what = f"swiglu with large gates [{np.dtype(dtype)}]"
        out = _call(lambda: swiglu(x, eye, eye, eye), what, SWIGLU_HINT)
        expected = ref.swiglu(x, eye, eye, eye)
        # Entries near 0 next to entries of order scale**2: allow rounding at the scale of the largest.
        atol = (1e-5 if dtype == np.float32 else 1e-12) * float(np.abs(expected).max())
        assert_values_close(out, expected, what, "silu must stay finite for large |z|: z / (1 + exp(-z))",
                            rtol=1e-4 if dtype == np.float32 else 1e-10, atol=atol)
    x = rng.standard_normal((3, 4))
    for name, wg, wu, wd in [("H = 1", rng.standard_normal((4, 1)), rng.standard_normal((4, 1)),
                              rng.standard_normal((1, 4))),
                             ("zero gate weights", np.zeros((4, 6)), rng.standard_normal((4, 6)),
                              rng.standard_normal((6, 4))),
                             ("output width 2", rng.standard_normal((4, 5)), rng.standard_normal((4, 5)),
                              rng.standard_normal((5, 2)))]:
        what = f"swiglu with {name}"
        out = _call(lambda: swiglu(x, wg, wu, wd), what, SWIGLU_HINT)
        assert_values_close(out, ref.swiglu(x, wg, wu, wd), what, SWIGLU_HINT)


# ------------------------------------------------------------------ grouped_query_attention

GQA_HINT = ("query head h attends with key/value head h // g (g = n_heads // n_kv_heads): "
            "softmax(q_h k^T / sqrt(d), masked causally) @ v")
GQA_SLIPS = {
    "no_scale": "divide the scores by sqrt(d), d the head dimension (the last axis of q)",
    "sees_next": "with causal=True position t sees positions <= t, never a later one: np.tril(...) without k=1",
    "hides_self": "position t sees the positions <= t, itself included: keep the diagonal of the mask",
    "after": "mask the scores with -inf before the softmax, so that the remaining weights add up to 1",
    "tiled": "the g consecutive query heads j*g, ..., j*g + g - 1 share key/value head j (head h uses h // g): "
             "expand the key/value heads with np.repeat(k, g, axis=-3), not np.tile",
}
# One head, T = 3, d = 2. Stored outputs (to full precision) and what the classic slips give.
GQA_Q = [[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]
GQA_K = [[[1.0, 1.0], [0.0, 2.0], [2.0, -1.0]]]
GQA_V = [[[1.0, 2.0], [3.0, -1.0], [0.0, 4.0]]]
GQA_CAUSAL = [[[1.0, 2.0], [2.3395230986533138, -0.00928464797997064], [1.6044483707191437, 1.1922153512414988]]]
GQA_FULL = [[[0.7040831448713941, 2.7318629553005893], [2.165650604973993, 0.28868390809702066],
             [1.6044483707191437, 1.1922153512414988]]]
GQA_WRONG_CAUSAL = [
    ("no_scale", [[[1.0, 2.0], [2.4621171572600096, -0.1931757358900147], [1.6892751930060728, 1.0437684122393727]]]),
    ("sees_next", [[[1.6604769013466862, 1.0092846479799706], [2.165650604973993, 0.28868390809702066],
                    [1.6044483707191437, 1.1922153512414988]]]),
    ("hides_self", [[[np.nan, np.nan], [1.0, 2.0], [2.0, 0.5]]]),
    ("after", [[[0.28399540974126003, 0.5679908194825201], [2.165650604973993, -0.008594616367057162],
                [1.6044483707191437, 1.1922153512414988]]])]
GQA_WRONG_FULL = [("no_scale", [[[0.5148201905659391, 3.060390192038502], [2.375649998437143, -0.04591548417604402],
                                 [1.6892751930060728, 1.0437684122393727]]])]


def _gqa_call(gqa, q, k, v, what, causal=True):
    return _result(_call(lambda: gqa(q, k, v, causal=causal), what, GQA_HINT), q.shape, what,
                   "the output has q's shape (..., n_heads, T, d)")


def _stored(gqa, causal, expected, wrong):
    q, k, v = (np.array(a) for a in (GQA_Q, GQA_K, GQA_V))
    what = f"grouped_query_attention(one head, T = 3, d = 2, causal={causal})"
    out = _gqa_call(gqa, q, k, v, what, causal)
    if np.allclose(out, expected, rtol=1e-10, atol=1e-12):
        return
    slip = _named(out, wrong)
    if slip is None and np.isnan(out).any():
        slip = "hides_self" if causal else None
    raise CheckFailure(f"{what}: gave {np.round(out, 6).tolist()}, expected {np.round(expected, 6).tolist()}",
                       GQA_SLIPS[slip] if slip else GQA_HINT)


@test("grouped_query_attention_visible", "grouped_query_attention")
def grouped_query_attention_visible(grouped_query_attention):
    """Stored values for one head, each query head h attending over key/value head h // g, causality.

    n_kv_heads == n_heads is then ordinary attention and 1 is multi-query; also leading axes and
    ValueError when n_heads is not a multiple of n_kv_heads."""
    gqa = grouped_query_attention
    _stored(gqa, True, GQA_CAUSAL, GQA_WRONG_CAUSAL)
    _stored(gqa, False, GQA_FULL, GQA_WRONG_FULL)
    rng = rng_for("grouped_query_attention_visible")
    t, d = 5, 4
    for n_heads, n_kv in [(3, 3), (4, 2), (6, 2), (4, 1)]:
        q = rng.standard_normal((n_heads, t, d))
        k, v = rng.standard_normal((n_kv, t, d)), rng.standard_normal((n_kv, t, d))
        what = f"grouped_query_attention(q ({n_heads}, {t}, {d}), k, v ({n_kv}, {t}, {d}))"
        out = _gqa_call(gqa, q, k, v, what)
        g = n_heads // n_kv
        single = [_gqa_call(gqa, q[h:h + 1], k[j:j + 1], v[j:j + 1], "grouped_query_attention(one head)")[0]
                  for h in range(n_heads) for j in [h // g]]
        for h in range(n_heads):
            if np.allclose(out[h], single[h], rtol=1e-9, atol=1e-12):
                continue
            tiled = _gqa_call(gqa, q[h:h + 1], k[h % n_kv:h % n_kv + 1], v[h % n_kv:h % n_kv + 1],
                              "grouped_query_attention(one head)")[0]
            hint = GQA_SLIPS["tiled"] if n_kv < n_heads and np.allclose(out[h], tiled, rtol=1e-9, atol=1e-12) \
                else GQA_HINT
            raise CheckFailure(f"{what}: query head {h} is not the attention of q[{h}] over key/value head "
                               f"{h // g} (= {h} // {g})", hint)
    # The past does not depend on the future.
    q, k, v = rng.standard_normal((2, t, d)), rng.standard_normal((1, t, d)), rng.standard_normal((1, t, d))
    k2, v2 = k.copy(), v.copy()
    k2[:, -2:], v2[:, -2:] = rng.standard_normal((1, 2, d)), rng.standard_normal((1, 2, d))
    what = "grouped_query_attention(q, k, v, causal=True)"
    a = _gqa_call(gqa, q, k, v, what)
    b = _gqa_call(gqa, q, k2, v2, what + " with the last two keys and values changed")
    ensure(np.allclose(a[:, :-2], b[:, :-2], rtol=1e-9, atol=1e-12),
           f"{what}: changing positions {t - 2} and {t - 1} changed the outputs of earlier positions",
           GQA_SLIPS["sees_next"])
    qb = rng.standard_normal((2, 3, 4, t, d))
    kb, vb = rng.standard_normal((2, 3, 2, t, d)), rng.standard_normal((2, 3, 2, t, d))
    what = f"grouped_query_attention(q (2, 3, 4, {t}, {d}), k, v (2, 3, 2, {t}, {d}))"
    out = _gqa_call(gqa, qb, kb, vb, what)
    one = _gqa_call(gqa, qb[1, 2], kb[1, 2], vb[1, 2], f"grouped_query_attention(q (4, {t}, {d}), ...)")
    assert_values_close(out[1, 2], one, what + "[1, 2]",
                        "keep the leading (batch) axes: work on the last three axes (heads, T, d)",
                        rtol=1e-9, atol=1e-12)
    assert_raises(lambda: gqa(rng.standard_normal((3, t, d)), rng.standard_normal((2, t, d)),
                              rng.standard_normal((2, t, d))), "ValueError",
                  "grouped_query_attention with 3 query heads and 2 key/value heads",
                  "raise ValueError when n_heads is not a multiple of n_kv_heads")


@test("grouped_query_attention_random", "grouped_query_attention", hidden=True)
def grouped_query_attention_random(grouped_query_attention, ref):
    """Random q, k, v with batch axes and several groupings, causal and not, float64 and float32."""
    rng = rng_for("grouped_query_attention_random")
    for dtype in (np.float64, np.float32):
        for lead, h, hk, t, d in [((), 4, 4, 6, 8), ((2,), 8, 2, 9, 16), ((2, 2), 6, 3, 5, 4), ((3,), 4, 1, 12, 8)]:
            q = rng.standard_normal(lead + (h, t, d)).astype(dtype)
            k = rng.standard_normal(lead + (hk, t, d)).astype(dtype)
            v = rng.standard_normal(lead + (hk, t, d)).astype(dtype)
            for causal in (True, False):
                what = f"grouped_query_attention(q {q.shape}, k, v {k.shape}, causal={causal}) [{np.dtype(dtype)}]"
                out = _call(lambda: grouped_query_attention(q, k, v, causal=causal), what, GQA_HINT)
                assert_values_close(out, ref.grouped_query_attention(q, k, v, causal=causal), what, GQA_HINT,
                                    **_tol(dtype))


@test("grouped_query_attention_edge", "grouped_query_attention", hidden=True)
def grouped_query_attention_edge(grouped_query_attention, ref):
    """One position, large scores (a stable softmax), one query head per group of 8, a non-multiple raises."""
    rng = rng_for("grouped_query_attention_edge")
    cases = [("one position", (2, 1, 4), (1, 1, 4), 1.0), ("large scores", (4, 6, 8), (2, 6, 8), 40.0),
             ("8 query heads on 1 key/value head", (8, 3, 2), (1, 3, 2), 1.0),
             ("head_dim 1", (2, 4, 1), (2, 4, 1), 1.0)]
    for name, qs, ks, scale in cases:
        q, k, v = rng.standard_normal(qs) * scale, rng.standard_normal(ks) * scale, rng.standard_normal(ks)
        for causal in (True, False):
            what = f"grouped_query_attention on {name}, causal={causal}"
            out = _call(lambda: grouped_query_attention(q, k, v, causal=causal), what, GQA_HINT)
            assert_values_close(out, ref.grouped_query_attention(q, k, v, causal=causal), what,
                                "subtract the row maximum before exp (the given softmax does)" if scale > 1
                                else GQA_HINT)
    assert_raises(lambda: grouped_query_attention(rng.standard_normal((4, 3, 2)), rng.standard_normal((3, 3, 2)),
                                                  rng.standard_normal((3, 3, 2))), "ValueError",
                  "grouped_query_attention with 4 query heads and 3 key/value heads",
                  "raise ValueError when n_heads is not a multiple of n_kv_heads")

"""Chapter 3 (03-self-attention): projections, heads, the causal mask and positions."""
import functools

import numpy as np

from ..framework import (Chapter, CheckFailure, as_result_array, assert_dtype, attempt, assert_finite,
                         assert_raises, assert_shape, assert_values_close, ensure, matches, rng_for)

chapter = Chapter("03-self-attention", reference="self_attention",
                  functions=["causal_mask", "split_heads", "merge_heads", "self_attention",
                             "sinusoidal_positions"],
                  provided=["softmax"],
                  sample_scores=(15, 6, 0, 0, 12))
test = chapter.test



def _cummean(v):
    """Causal running mean along the time axis (-2): row i averages rows 0..i."""
    return np.cumsum(v, axis=-2) / np.arange(1, v.shape[-2] + 1)[:, None]


_close = functools.partial(matches, rtol=1e-6, atol=1e-6)   # for naming a slip; assert_values_close decides


# ------------------------------------------------------------------ causal_mask

DIAG_HINT = "the diagonal must be True: a token may attend to itself (np.tril keeps it with k=0)"
FUTURE_HINT = ("entries above the diagonal must be False: query i must never see a later key j > i "
               "(np.tril with k=0, not k=1)")
PAST_HINT = "every entry below the diagonal must be True: a token may see its whole past"
TRIL_HINT = ("rows are queries and columns are keys: [i, j] is True when j <= i, the lower triangle "
             "(np.tril, not np.triu)")
SENSE_HINT = "True means 'may attend' (as in chapter 2's masks): the allowed entries j <= i are True"
BOOL_HINT = "return a boolean mask: build it from np.ones((n, n), dtype=bool) or a comparison"


def _check_mask(m, n, what):
    m = as_result_array(m, what)
    assert_shape(m, (n, n), what, "the mask has one row per query and one column per key: (n, n)")
    assert_dtype(m, bool, what, BOOL_HINT)
    return m


@test("causal_mask_visible", "causal_mask")
def causal_mask_visible(causal_mask):
    """Shape and dtype, the diagonal, nothing above it, everything below it; n = 1."""
    m = _check_mask(causal_mask(4), 4, "causal_mask(4)")
    lower = np.tril(np.ones((4, 4), bool), -1)
    if not m.diagonal().any() and m[lower].all() and not m[lower.T].any():
        raise CheckFailure("causal_mask(4): the diagonal is False", DIAG_HINT)
    if np.array_equal(m, ~np.tril(np.ones((4, 4), bool))):
        raise CheckFailure("causal_mask(4): True exactly where attention is forbidden", SENSE_HINT)
    if np.array_equal(m, np.triu(np.ones((4, 4), bool))):
        raise CheckFailure("causal_mask(4) is the upper triangle", TRIL_HINT)
    ensure(m.diagonal().all(), f"causal_mask(4): diagonal {m.diagonal().tolist()}", DIAG_HINT)
    ensure(not m[lower.T].any(), "causal_mask(4): some query may attend to a later key "
           f"(row 0 is {m[0].tolist()})", FUTURE_HINT)
    ensure(m[lower].all(), "causal_mask(4): some query may not attend to an earlier key", PAST_HINT)
    one = _check_mask(causal_mask(1), 1, "causal_mask(1)")
    ensure(one[0, 0], "causal_mask(1) must be [[True]]", DIAG_HINT)


@test("causal_mask_random", "causal_mask", hidden=True)
def causal_mask_random(causal_mask, ref):
    """Several sizes compared with the reference."""
    rng = rng_for("causal_mask_random")
    for n in [2, 3, 7] + rng.integers(8, 65, size=3).tolist():
        n = int(n)
        m = _check_mask(causal_mask(n), n, f"causal_mask({n})")
        expected = ref.causal_mask(n)
        ensure(np.array_equal(m, expected), f"causal_mask({n}): "
               f"{int((m != expected).sum())} entries differ from the causal pattern", TRIL_HINT)


@test("causal_mask_edge", "causal_mask", hidden=True)
def causal_mask_edge(causal_mask, ref):
    """n = 0 (an empty mask) and a long sequence, n = 512."""
    for n in (0, 512):
        m = _check_mask(causal_mask(n), n, f"causal_mask({n})")
        ensure(np.array_equal(m, ref.causal_mask(n)), f"causal_mask({n}) differs from the causal pattern",
               TRIL_HINT)


# ------------------------------------------------------------------ split_heads

SPLIT_HINT = ("reshape to (..., T, n_heads, d_head) first, then swap the T and head axes; reshaping "
              "straight to (..., n_heads, T, d_head) mixes positions into heads")
CONTIG_HINT = ("head h takes the contiguous features [h * d_head, (h + 1) * d_head): reshape the last "
               "axis as (n_heads, d_head), not (d_head, n_heads)")
HEADS_FIRST_HINT = ("the head axis goes before the time axis: (..., n_heads, T, d_head); swap axes -2 "
                    "and -3 after the reshape")
BATCH_HINT = ("keep the leading batch axes: reshape with x.shape[:-1] and swap axes -2 and -3 "
              "(np.swapaxes) instead of a fixed transpose")


@test("split_heads_visible", "split_heads")
def split_heads_visible(split_heads):
    """Head h holds features h*d_head to (h+1)*d_head - 1 of every position; batch dims; ValueError."""
    x = np.arange(18.0).reshape(3, 6)            # T = 3 positions, D = 6 features
    what = "split_heads(x (3, 6), n_heads=2)"
    out = as_result_array(attempt(lambda: split_heads(x, 2), what, BATCH_HINT), what)
    if out.shape == (3, 2, 3):
        raise CheckFailure(f"{what}: shape (3, 2, 3), expected (2, 3, 3)", HEADS_FIRST_HINT)
    assert_shape(out, (2, 3, 3), what, HEADS_FIRST_HINT)
    if np.array_equal(out, x.reshape(2, 3, 3)):
        raise CheckFailure(f"{what}: head 0 holds positions {out[0].tolist()}: rows of different "
                           "positions ended up in one head", SPLIT_HINT)
    if np.array_equal(out, x.reshape(3, 3, 2).transpose(2, 0, 1)):
        raise CheckFailure(f"{what}: head 0 got the features {out[0, 0].tolist()} of position 0, "
                           "expected [0.0, 1.0, 2.0]", CONTIG_HINT)
    assert_values_close(out[0], x[:, :3], f"{what}: head 0 (features 0..2 of every position)", SPLIT_HINT)
    assert_values_close(out[1], x[:, 3:], f"{what}: head 1 (features 3..5 of every position)", SPLIT_HINT)
    xb = np.arange(2 * 5 * 8, dtype=np.float32).reshape(2, 5, 8)
    what = "split_heads(x (2, 5, 8), n_heads=4)"
    outb = as_result_array(attempt(lambda: split_heads(xb, 4), what, BATCH_HINT), what)
    assert_shape(outb, (2, 4, 5, 2), what, BATCH_HINT)
    assert_dtype(outb, np.float32, what, "split_heads only moves numbers around: keep the dtype")
    assert_values_close(outb[1, 3], xb[1, :, 6:], f"{what}: batch 1, head 3", BATCH_HINT)
    assert_raises(lambda: split_heads(np.zeros((3, 7)), 2), "ValueError",
                  "split_heads(x (3, 7), n_heads=2)",
                  "raise ValueError when D is not divisible by n_heads")


@test("split_heads_random", "split_heads", hidden=True)
def split_heads_random(split_heads, ref):
    """Random arrays with 0 to 2 batch dims, several head counts, float64 and float32."""
    rng = rng_for("split_heads_random")
    for dtype in (np.float64, np.float32):
        for shape, h in [((5, 12), 3), ((2, 7, 16), 4), ((2, 3, 6, 8), 2), ((4, 10), 5)]:
            x = rng.standard_normal(shape).astype(dtype)
            what = f"split_heads(x {shape}, n_heads={h}) [{np.dtype(dtype)}]"
            out = as_result_array(attempt(lambda: split_heads(x, h), what, BATCH_HINT), what)
            expected = ref.split_heads(x, h)
            assert_shape(out, expected.shape, what, HEADS_FIRST_HINT)
            assert_values_close(out, expected, what, SPLIT_HINT)


@test("split_heads_edge", "split_heads", hidden=True)
def split_heads_edge(split_heads, ref):
    """One head, one feature per head, one position, and a width that does not divide."""
    rng = rng_for("split_heads_edge")
    for shape, h in [((4, 6), 1), ((2, 3, 6), 6), ((1, 8), 2)]:
        x = rng.standard_normal(shape)
        what = f"split_heads(x {shape}, n_heads={h})"
        out = as_result_array(attempt(lambda: split_heads(x, h), what, BATCH_HINT), what)
        assert_values_close(out, ref.split_heads(x, h), what, SPLIT_HINT)
    assert_raises(lambda: split_heads(np.zeros((2, 3, 10)), 4), "ValueError",
                  "split_heads(x (2, 3, 10), n_heads=4)", "raise ValueError when D % n_heads != 0")


# ------------------------------------------------------------------ merge_heads

MERGE_HINT = ("swap the head and time axes back before reshaping: (..., n_heads, T, d_head) -> "
              "(..., T, n_heads, d_head) -> (..., T, n_heads * d_head)")
MERGE_CONTIG_HINT = ("head h's features go to the contiguous columns [h * d_head, (h + 1) * d_head): "
                     "put the head axis before the d_head axis when you reshape")
MERGE_SHAPE_HINT = ("the result has shape (..., T, n_heads * d_head): concatenate the heads along the "
                    "feature axis, not the time axis")


def _split_by_hand(x, h):
    *lead, t, d = x.shape
    return np.swapaxes(x.reshape(*lead, t, h, d // h), -2, -3)


@test("merge_heads_visible", "merge_heads")
def merge_heads_visible(merge_heads):
    """Undoes the split: heads side by side again, one row per position; batch dims."""
    x = np.arange(18.0).reshape(3, 6)
    heads = _split_by_hand(x, 2)                 # (2 heads, 3 positions, 3 features)
    what = "merge_heads(heads (2, 3, 3))"
    out = as_result_array(attempt(lambda: merge_heads(heads), what, BATCH_HINT), what)
    if out.shape == (6, 3):
        raise CheckFailure(f"{what}: shape (6, 3), expected (3, 6)", MERGE_SHAPE_HINT)
    assert_shape(out, (3, 6), what, MERGE_SHAPE_HINT)
    if np.array_equal(out, heads.reshape(3, 6)):
        raise CheckFailure(f"{what}: row 0 is {out[0].tolist()}, which mixes positions 0 and 1 "
                           "of head 0", MERGE_HINT)
    if np.array_equal(out, np.moveaxis(heads, 0, -1).reshape(3, 6)):
        raise CheckFailure(f"{what}: row 0 is {out[0].tolist()}, the heads' features are "
                           "interleaved", MERGE_CONTIG_HINT)
    assert_values_close(out, x, f"{what}: should give back the (3, 6) array the heads were split from",
                        MERGE_HINT)
    xb = np.arange(2 * 5 * 8, dtype=np.float32).reshape(2, 5, 8)
    what = "merge_heads(heads (2, 4, 5, 2))"
    outb = as_result_array(attempt(lambda: merge_heads(_split_by_hand(xb, 4)), what, BATCH_HINT), what)
    assert_shape(outb, (2, 5, 8), what, BATCH_HINT)
    assert_dtype(outb, np.float32, what, "merge_heads only moves numbers around: keep the dtype")
    assert_values_close(outb, xb, f"{what}: should give back the array the heads were split from", MERGE_HINT)


@test("merge_heads_random", "merge_heads", hidden=True)
def merge_heads_random(merge_heads, ref):
    """Random heads with 0 to 2 batch dims, float64 and float32; merge undoes split."""
    rng = rng_for("merge_heads_random")
    for dtype in (np.float64, np.float32):
        for shape in [(3, 5, 4), (2, 4, 7, 8), (2, 3, 2, 6, 5)]:
            x = rng.standard_normal(shape).astype(dtype)
            what = f"merge_heads(x {shape}) [{np.dtype(dtype)}]"
            out = as_result_array(attempt(lambda: merge_heads(x), what, BATCH_HINT), what)
            expected = ref.merge_heads(x)
            assert_shape(out, expected.shape, what, MERGE_SHAPE_HINT)
            assert_values_close(out, expected, what, MERGE_HINT)
        y = rng.standard_normal((2, 6, 12)).astype(dtype)
        assert_values_close(merge_heads(ref.split_heads(y, 3)), y, "merge_heads(split_heads(y, 3)) should be y",
                            MERGE_HINT)


@test("merge_heads_edge", "merge_heads", hidden=True)
def merge_heads_edge(merge_heads, ref):
    """One head, one feature per head, one position."""
    rng = rng_for("merge_heads_edge")
    for shape in [(1, 4, 6), (6, 3, 1), (2, 4, 1, 3)]:
        x = rng.standard_normal(shape)
        what = f"merge_heads(x {shape})"
        out = as_result_array(attempt(lambda: merge_heads(x), what, BATCH_HINT), what)
        assert_values_close(out, ref.merge_heads(x), what, MERGE_HINT)


# ------------------------------------------------------------------ self_attention

MASK_BEFORE_HINT = ("apply the causal mask to the scores before the softmax (-inf where masked), so "
                    "each position's weights still sum to one")
OFF_BY_ONE_HINT = ("position i may attend to positions j <= i only: a leak from position i + 1 means "
                   "the causal mask's diagonal is off by one (np.tril with k=0)")
CAUSAL_FLAG_HINT = ("with causal=True, mask the scores with causal_mask(T) before the softmax; with "
                    "causal=False, don't mask at all")
WO_HINT = "multiply the merged heads by the output projection w_o: merge_heads(...) @ w_o"
PROJ_HINT = "apply each projection as x @ w (w has shape (D_in, D_out)), not x @ w.T"
SA_SPLIT_HINT = ("heads mix positions: " + SPLIT_HINT)
SA_MERGE_HINT = ("heads are merged wrongly: " + MERGE_HINT)
HEAD_SCALE_HINT = ("scale each head's scores by 1/sqrt(d_head) = 1/sqrt(D / n_heads), the width of "
                   "one head, not 1/sqrt(D)")
NO_SCALE_HINT = "divide each head's scores by sqrt(d_head), the square root of one head's width"
SOFTMAX_AXIS_HINT = ("the softmax must run over the keys (the last axis, axis=-1): each query's weights "
                     "over keys 0..i sum to one; softmax over axis -2 normalises each key's column "
                     "over the queries instead")
UNIFORM_HINT = ("with w_q = w_k = 0 every score is 0, so position i's output is the average of the "
                "projected values x @ w_v at positions 0..i, times w_o")


def _call_sa(fn, args, kwargs, what, hint=BATCH_HINT):
    out = attempt(lambda: fn(*args, **kwargs), what, hint)
    return as_result_array(out, what)


def _uniform_diagnosis(out, x, w_v, w_o, h, causal, what):
    """Zero scores: attention is a plain (running) mean. Name the slip that gives `out`."""
    v = x @ w_v
    expected = (_cummean(v) if causal else np.broadcast_to(v.mean(-2, keepdims=True), v.shape)) @ w_o
    if out.shape != expected.shape:
        raise CheckFailure(f"{what}: shape {out.shape}, expected {expected.shape}",
                           "the output has the shape of x: (..., T, D)")
    if _close(out, expected):
        return
    t = v.shape[-2]
    if causal:
        if _close(out, np.broadcast_to(v.mean(-2, keepdims=True), v.shape) @ w_o):
            raise CheckFailure(f"{what}: position 0 took the average over all positions", CAUSAL_FLAG_HINT)
        if _close(out, (np.cumsum(v, -2) / t) @ w_o):
            raise CheckFailure(f"{what}: position i's weights sum to (i + 1) / T, not 1", MASK_BEFORE_HINT)
        ahead = np.concatenate([np.cumsum(v, -2)[..., 1:, :] / np.arange(2, t + 1)[:, None],
                                v.mean(-2, keepdims=True)], axis=-2)
        if _close(out, ahead @ w_o):
            raise CheckFailure(f"{what}: position i also averaged position i + 1", OFF_BY_ONE_HINT)
        by_key = np.tril(np.ones((t, t))) / (t - np.arange(t))[None, :]   # columns sum to one
        if _close(out, (by_key @ v) @ w_o):
            raise CheckFailure(f"{what}: position i's weight on key j is 1 / (T - j), so the weights of "
                               "each key (a column) sum to one, not those of each query (a row)",
                               SOFTMAX_AXIS_HINT)
    else:
        if _close(out, _cummean(v) @ w_o):
            raise CheckFailure(f"{what}: masked although causal=False", CAUSAL_FLAG_HINT)
    mean = _cummean if causal else (lambda a: np.broadcast_to(a.mean(-2, keepdims=True), a.shape))
    if _close(out, mean(v)):
        raise CheckFailure(f"{what}: the output equals the averaged values without w_o", WO_HINT)
    if _close(out, mean(x @ w_v.T) @ w_o.T):
        raise CheckFailure(f"{what}: the projections were transposed", PROJ_HINT)
    d = v.shape[-1]
    mixed = mean(v.reshape(h, t, d // h)).reshape(t, d) @ w_o
    if _close(out, mixed):
        raise CheckFailure(f"{what}: with n_heads={h} the heads attend over slices of rows, not over positions",
                           SA_SPLIT_HINT)
    unmerged = mean(_split_by_hand(v, h)).reshape(t, d) @ w_o
    if _close(out, unmerged):
        raise CheckFailure(f"{what}: with n_heads={h} the output rows mix positions", SA_MERGE_HINT)
    assert_values_close(out, expected, what, UNIFORM_HINT)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@test("self_attention_visible", "self_attention")
def self_attention_visible(self_attention):
    """Uniform attention is a running mean; a hand-made two-head case; the future-token experiment."""
    rng = rng_for("self_attention_visible")
    # 1. Zero query and key projections: every score is 0, attention is a plain average.
    x = rng.standard_normal((5, 8))
    w_v, w_o = rng.standard_normal((8, 8)), rng.standard_normal((8, 8))
    zero = np.zeros((8, 8))
    for h in (1, 2, 4):
        for causal in (True, False):
            what = f"self_attention(w_q = w_k = 0, n_heads={h}, causal={causal})"
            out = _call_sa(self_attention, (x, zero, zero, w_v, w_o, h), {"causal": causal}, what)
            if causal:
                assert_finite(out, what, DIAG_HINT + "; with a False diagonal position 0 has nothing "
                              "to attend to and gives NaN")
            _uniform_diagnosis(out, x, w_v, w_o, h, causal, what)
    # 2. A two-head case worked out by hand (identity projections, D = 4, d_head = 2).
    x2 = np.array([[2.0, 0.0, 0.0, 0.0],
                   [2.0, 0.0, 0.0, 2.0]])
    eye = np.eye(4)
    what = "self_attention(hand-made x (2, 4), identity weights, n_heads=2)"
    out = _call_sa(self_attention, (x2, eye, eye, eye, eye, 2), {"causal": True}, what)
    assert_shape(out, (2, 4), what, "the output has the shape of x: (..., T, D)")
    # Head 1 of position 1: scores 0 and 4 / sqrt(d_head) = 2 sqrt(2) on values (0, 0) and (0, 2).
    expected = np.array([[2.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 2 * _sigmoid(2 * np.sqrt(2))]])
    if _close(out, np.array([[2.0, 0, 0, 0], [2.0, 0, 0, 2 * _sigmoid(2.0)]])):
        raise CheckFailure(f"{what}: position 1, head 1 scaled its scores by 1/sqrt(4)", HEAD_SCALE_HINT)
    if _close(out, np.array([[2.0, 0, 0, 0], [2.0, 0, 0, 2 * _sigmoid(4.0)]])):
        raise CheckFailure(f"{what}: position 1, head 1 did not scale its scores", NO_SCALE_HINT)
    assert_values_close(out, expected, what, HEAD_SCALE_HINT)
    # 3. The future-token experiment: changing the last token leaves earlier outputs unchanged.
    x3 = rng.standard_normal((6, 8))
    ws = [rng.standard_normal((8, 8)) / np.sqrt(8) for _ in range(4)]
    x3b = x3.copy()
    x3b[-1] = rng.standard_normal(8) * 3
    for causal in (True, False):
        what = f"self_attention(random x (6, 8), n_heads=2, causal={causal})"
        a = _call_sa(self_attention, (x3, *ws, 2), {"causal": causal}, what)
        b = _call_sa(self_attention, (x3b, *ws, 2), {"causal": causal}, what)
        assert_shape(a, (6, 8), what, "the output has the shape of x: (..., T, D)")
        change = np.abs(a - b).max(axis=-1)
        if causal:
            leak = np.flatnonzero(change[:-1] > 1e-9)
            ensure(leak.size == 0, f"{what}: changing the last token changed the outputs at earlier "
                   f"positions {leak.tolist()}", "position i may attend to positions j <= i only: "
                   "mask the scores with causal_mask(T) before the softmax")
            ensure(change[-1] > 1e-6, f"{what}: changing the last token did not change its own output",
                   DIAG_HINT)
        else:
            ensure(change[0] > 1e-6, f"{what}: changing the last token did not change position 0",
                   CAUSAL_FLAG_HINT)
    # 4. Batch dims: a batch of sequences is processed like each sequence on its own.
    xb = rng.standard_normal((2, 3, 4, 8))
    what = "self_attention(x (2, 3, 4, 8), n_heads=2)"
    outb = _call_sa(self_attention, (xb, *ws, 2), {}, what)
    assert_shape(outb, (2, 3, 4, 8), what, BATCH_HINT)
    one = _call_sa(self_attention, (xb[1, 2], *ws, 2), {}, "self_attention(x (4, 8), n_heads=2)")
    assert_values_close(outb[1, 2], one, f"{what}: sequence [1, 2] of the batch should match the same "
                        "sequence on its own", BATCH_HINT)


@test("self_attention_random", "self_attention", hidden=True)
def self_attention_random(self_attention, ref):
    """Random inputs and weights, 1 to 4 heads, batch dims, causal and not, float64 and float32."""
    rng = rng_for("self_attention_random")
    for dtype in (np.float64, np.float32):
        for shape, h in [((7, 16), 4), ((2, 5, 12), 3), ((2, 2, 6, 8), 2), ((9, 8), 1)]:
            d = shape[-1]
            x = rng.standard_normal(shape).astype(dtype)
            ws = [(rng.standard_normal((d, d)) / np.sqrt(d)).astype(dtype) for _ in range(4)]
            for causal in (True, False):
                what = f"self_attention(x {shape}, n_heads={h}, causal={causal}) [{np.dtype(dtype)}]"
                out = _call_sa(self_attention, (x, *ws, h), {"causal": causal}, what)
                expected = ref.self_attention(x, *ws, h, causal=causal)
                assert_shape(out, expected.shape, what, "the output has the shape of x: (..., T, D)")
                assert_values_close(out, expected, what, HEAD_SCALE_HINT,
                                    **({"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {}))


@test("self_attention_edge", "self_attention", hidden=True)
def self_attention_edge(self_attention, ref):
    """One token; one feature per head; large activations (masked scores must stay exactly out)."""
    rng = rng_for("self_attention_edge")
    cases = [(rng.standard_normal((1, 8)), 2), (rng.standard_normal((5, 6)), 6),
             (rng.standard_normal((2, 6, 8)) * 30, 2)]
    for x, h in cases:
        d = x.shape[-1]
        ws = [rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(4)]
        for causal in (True, False):
            what = f"self_attention(x {x.shape}, n_heads={h}, causal={causal})"
            out = _call_sa(self_attention, (x, *ws, h), {"causal": causal}, what)
            assert_finite(out, what, "subtract the row maximum in the softmax; mask with -inf only "
                          "where a row keeps at least its diagonal")
            assert_values_close(out, ref.self_attention(x, *ws, h, causal=causal), what, HEAD_SCALE_HINT)


# ------------------------------------------------------------------ sinusoidal_positions

DTYPE_HINT = ("compute in float64 and return a float64 array (np.arange(n) and np.zeros((n, d)) are "
              "float64 by default): the values are right only to float32 precision, and the angles "
              "p / 10000**(2i/d) lose digits for long sequences")
SINCOS_HINT = "column 2i holds the sine and column 2i + 1 the cosine (sin 0 = 0, cos 0 = 1 in row 0)"
INTERLEAVE_HINT = ("interleave: columns 2i and 2i + 1 hold sin and cos of the same frequency "
                   "(not all sines in the first half and all cosines in the second)")
FREQ_HINT = ("the pair i = 0, 1, ..., d/2 - 1 uses the angle p / 10000**(2i / d): the exponent is 2i/d, "
             "the even column index over d, not i/d")
DIVIDE_HINT = "divide the position by 10000**(2i / d): the frequencies fall from 1 to about 1/10000"
POS_HINT = "row p is position p = 0, 1, ..., n - 1 (start at 0)"


def _sinusoid(n, d, exponent):
    p = np.arange(n)[:, None]
    out = np.zeros((n, d))
    out[:, 0::2] = np.sin(p / 10000.0 ** (exponent(np.arange(d // 2)) / d))
    out[:, 1::2] = np.cos(p / 10000.0 ** (exponent(np.arange(d // 2)) / d))
    return out


@test("sinusoidal_positions_visible", "sinusoidal_positions")
def sinusoidal_positions_visible(sinusoidal_positions):
    """Row 0 alternates 0, 1; columns 0-1 are sin p, cos p; the frequencies; odd d raises."""
    what = "sinusoidal_positions(5, 6)"
    pe = as_result_array(attempt(lambda: sinusoidal_positions(5, 6), what), what)
    assert_shape(pe, (5, 6), what, "one row per position, one column per feature: (n, d)")
    assert_finite(pe, what, DIVIDE_HINT)
    if pe.dtype != np.float64 and _close(pe, _sinusoid(5, 6, lambda i: 2 * i), rtol=1e-5, atol=1e-5):
        raise CheckFailure(f"{what}: the values are right to float32 precision, but the dtype is "
                           f"{pe.dtype}, expected float64", DTYPE_HINT)
    if _close(pe[0], [1, 0, 1, 0, 1, 0]):
        raise CheckFailure(f"{what}: row 0 is {pe[0].round(3).tolist()}, expected [0, 1, 0, 1, 0, 1]",
                           SINCOS_HINT)
    if _close(pe[0], [0, 0, 0, 1, 1, 1]):
        raise CheckFailure(f"{what}: row 0 is {pe[0].round(3).tolist()}, expected [0, 1, 0, 1, 0, 1]",
                           INTERLEAVE_HINT)
    if _close(pe, _sinusoid(6, 6, lambda i: 2 * i)[1:]):
        raise CheckFailure(f"{what}: row 0 is position 1", POS_HINT)
    assert_values_close(pe[0], [0, 1, 0, 1, 0, 1], f"{what}, row 0 (position 0)", SINCOS_HINT)
    p = np.arange(5.0)
    assert_values_close(pe[:, :2], np.stack([np.sin(p), np.cos(p)], axis=1),
                        f"{what}, columns 0 and 1 (frequency 1: sin p and cos p)", SINCOS_HINT)
    for name, exponent, hint in [("i/d", lambda i: i, FREQ_HINT), ("4i/d", lambda i: 4 * i, FREQ_HINT),
                                 ("-2i/d", lambda i: -2 * i, DIVIDE_HINT)]:
        if _close(pe, _sinusoid(5, 6, exponent)):
            raise CheckFailure(f"{what}: the angles are p / 10000**({name})", hint)
    assert_values_close(pe[:, 2:4], np.stack([np.sin(p / 10000 ** (2 / 6)), np.cos(p / 10000 ** (2 / 6))], axis=1),
                        f"{what}, columns 2 and 3 (angle p / 10000**(2/6))", FREQ_HINT)
    assert_values_close(pe, _sinusoid(5, 6, lambda i: 2 * i), what, FREQ_HINT)
    assert_dtype(pe, np.float64, what, DTYPE_HINT)
    assert_raises(lambda: sinusoidal_positions(4, 5), "ValueError", "sinusoidal_positions(4, 5)",
                  "raise ValueError when d is odd: sin and cos come in pairs")


@test("sinusoidal_positions_random", "sinusoidal_positions", hidden=True)
def sinusoidal_positions_random(sinusoidal_positions, ref):
    """Several sizes compared with the reference."""
    rng = rng_for("sinusoidal_positions_random")
    for _ in range(4):
        n, d = int(rng.integers(2, 100)), 2 * int(rng.integers(1, 65))
        what = f"sinusoidal_positions({n}, {d})"
        pe = as_result_array(attempt(lambda: sinusoidal_positions(n, d), what), what)
        assert_dtype(pe, np.float64, what, DTYPE_HINT)
        assert_values_close(pe, ref.sinusoidal_positions(n, d), what, FREQ_HINT, rtol=1e-9, atol=1e-9)


@test("sinusoidal_positions_edge", "sinusoidal_positions", hidden=True)
def sinusoidal_positions_edge(sinusoidal_positions, ref):
    """One position, d = 2, a long sequence (n = 4096), a wide model, odd d raises."""
    for n, d in [(1, 8), (7, 2), (4096, 16), (3, 1024)]:
        what = f"sinusoidal_positions({n}, {d})"
        pe = as_result_array(attempt(lambda: sinusoidal_positions(n, d), what), what)
        assert_dtype(pe, np.float64, what, DTYPE_HINT)
        assert_values_close(pe, ref.sinusoidal_positions(n, d), what, FREQ_HINT, rtol=1e-9, atol=1e-9)
    assert_raises(lambda: sinusoidal_positions(3, 7), "ValueError", "sinusoidal_positions(3, 7)",
                  "raise ValueError when d is odd")

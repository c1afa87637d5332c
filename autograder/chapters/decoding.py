"""Chapter 6 (06-decoding): greedy, temperature, top-k, top-p and the generation loop.

Sampling tests are statistical, with fixed seeds. Each compares the frequencies of n
draws with the intended probabilities and fails when some token's frequency is off by
more than t = sqrt(ln(2 V / delta) / (2 n)). By Hoeffding's inequality and a union bound
over the V tokens, a correct sampler fails one such comparison with probability at most
delta; every comparison below uses delta = 1e-7 and a test makes at most 8 of them, so a
correct implementation fails a test with probability below 1e-6.
"""
import math

import numpy as np

from ..framework import (Chapter, CheckFailure, assert_close, assert_raises, assert_shape,
                         as_result_array, attempt, ensure, rng_for)
from . import _gpt_formulas

chapter = Chapter("06-decoding", reference="decoding",
                  functions=["greedy", "sample", "top_k_filter", "top_p_filter", "generate"],
                  provided=["softmax", "causal_mask", "split_heads", "merge_heads", "self_attention",
                            "layer_norm", "gelu", "mlp", "transformer_block", "embed_tokens", "final_logits",
                            "gpt_forward"],
                  sample_scores=(15, 7, 0, 0, 12))
test = chapter.test

DELTA = 1e-7  # false-failure probability of one frequency comparison (see the module docstring)


def _softmax(x):
    z = np.asarray(x, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _bound(n, v):
    """Hoeffding + union bound: a correct sampler exceeds it with probability <= DELTA."""
    return math.sqrt(math.log(2 * v / DELTA) / (2 * n))


def _frequencies(draws, v):
    return np.bincount(draws.ravel().astype(np.int64), minlength=v)[:v] / draws.size


def _ids(value, shape, what, v=None):
    """An integer array of the given shape with ids in [0, v)."""
    out = as_result_array(value, what)
    if out.dtype.kind not in "iu":
        raise CheckFailure(f"{what}: dtype {out.dtype}, expected integer token ids",
                           "return the index of the chosen token (an integer), not its logit "
                           "or probability")
    assert_shape(out, shape, what, "reduce only the last axis (the vocabulary); keep the leading axes")
    if v is not None and out.size and (out.min() < 0 or out.max() >= v):
        raise CheckFailure(f"{what}: ids outside [0, {v})", "return token ids, indices into the last axis")
    return out


# ------------------------------------------------------------------ greedy

GREEDY_AXIS_HINT = "take the argmax over the last axis (the vocabulary): np.argmax(logits, axis=-1)"


@test("greedy_visible", "greedy")
def greedy_visible(greedy):
    """The largest logit's index per row, leading dims kept, ties to the smallest index."""
    logits = np.array([[0.1, 2.0, -1.0, 0.5],
                       [3.0, -2.0, 1.0, 2.5],
                       [-1.0, -0.5, -3.0, -0.25]])
    out = _ids(attempt(lambda: greedy(logits), "greedy(logits (3x4))", GREEDY_AXIS_HINT), (3,),
               "greedy(logits (3x4))", 4)
    if np.array_equal(out, [2, 1, 2]):
        raise CheckFailure("greedy picked the smallest logit", "greedy takes the argmax, not the argmin")
    ensure(np.array_equal(out, [1, 0, 3]), f"greedy(logits (3x4)) gave {out.tolist()}, expected [1, 0, 3]",
           GREEDY_AXIS_HINT)
    batch = np.zeros((2, 3, 5))
    batch[..., 4] = 1.0
    batch[1, 2, 0] = 7.0
    out = _ids(attempt(lambda: greedy(batch), "greedy(logits (2,3,5))", GREEDY_AXIS_HINT), (2, 3),
               "greedy(logits (2,3,5))", 5)
    ensure(np.array_equal(out, [[4, 4, 4], [4, 4, 0]]), f"greedy(logits (2,3,5)) gave {out.tolist()}",
           GREEDY_AXIS_HINT)
    tie = _ids(greedy(np.array([[1.0, 3.0, 3.0, 0.0]])), (1,), "greedy with a tie")
    ensure(tie[0] == 1, f"greedy([1, 3, 3, 0]) gave {int(tie[0])}, expected 1",
           "on ties take the smallest index (np.argmax does)")


@test("greedy_random", "greedy", hidden=True)
def greedy_random(greedy, ref):
    """Random logits with leading dims, float64 and float32."""
    rng = rng_for("greedy_random")
    for dtype in (np.float64, np.float32):
        for shape in [(7,), (4, 10), (2, 3, 50), (2, 2, 2, 257)]:
            x = (rng.standard_normal(shape) * 3).astype(dtype)
            what = f"greedy(logits {shape}) [{np.dtype(dtype)}]"
            out = _ids(greedy(x), shape[:-1], what, shape[-1])
            ensure(np.array_equal(out, ref.greedy(x)), f"{what}: wrong ids", GREEDY_AXIS_HINT)


@test("greedy_edge", "greedy", hidden=True)
def greedy_edge(greedy, ref):
    """One token, -inf logits, huge logits, all-equal rows."""
    cases = {"a vocabulary of one token": np.array([[0.3], [-2.0]]),
             "logits with -inf": np.array([[-np.inf, -1.0, -np.inf], [5.0, -np.inf, 6.0]]),
             "huge logits": np.array([[1e300, -1e300, 1e301]]),
             "all-equal rows": np.zeros((3, 6))}
    for name, x in cases.items():
        out = _ids(greedy(x), x.shape[:-1], f"greedy on {name}", x.shape[-1])
        ensure(np.array_equal(out, ref.greedy(x)), f"greedy on {name}: got {out.tolist()}, "
               f"expected {ref.greedy(x).tolist()}", GREEDY_AXIS_HINT + "; ties go to the smallest index")


# ------------------------------------------------------------------ sample

RNG_HINT = ("draw only from the `rng` argument (rng.random, rng.choice, ...), never np.random.*: "
            "equal generators must give equal draws")
TEMP_BEFORE_HINT = "divide the logits by the temperature before the softmax"
TEMP_DIVIDE_HINT = "divide the logits by the temperature, don't multiply"
RANDOM_HINT = "sample at random from the softmax probabilities; only temperature 0 means argmax"
SAMPLE_HINT = "draw each id with probability softmax(logits / temperature)"
SAMPLE_LOGITS = np.array([2.0, 1.0, 0.0, -1.0, 3.0])


def _check_distribution(draws, logits_row, temperature, what, hint=SAMPLE_HINT, probs=None):
    """Frequencies of `draws` against the intended probabilities, with diagnoses."""
    v = logits_row.shape[-1]
    freq = _frequencies(draws, v)
    t = _bound(draws.size, v)
    want = _softmax(logits_row / temperature) if probs is None else probs
    if np.max(np.abs(freq - want)) <= t:
        return
    if probs is None and temperature != 1:
        if np.max(np.abs(freq - _softmax(logits_row))) <= t:
            raise CheckFailure(f"{what}: the draws follow softmax(logits), the temperature had no effect",
                               TEMP_BEFORE_HINT)
        if np.max(np.abs(freq - _softmax(logits_row * temperature))) <= t:
            raise CheckFailure(f"{what}: the draws follow softmax(logits * temperature)", TEMP_DIVIDE_HINT)
    if np.max(freq) == 1.0:
        raise CheckFailure(f"{what}: every draw is token {int(np.argmax(freq))}", RANDOM_HINT)
    worst = int(np.argmax(np.abs(freq - want)))
    raise CheckFailure(f"{what}: token {worst} was drawn with frequency {freq[worst]:.4f}, its probability "
                       f"is {want[worst]:.4f} ({draws.size} draws; a correct sampler is off by more than "
                       f"{t:.4f} with probability below {DELTA:g})", hint)


@test("sample_visible", "sample")
def sample_visible(sample):
    """Integer ids with leading dims kept, reproducible from rng, temperature 0 = greedy.

    Also, the frequencies match softmax(logits / T) at T = 2 and T = 0.5 (20000 draws each; a correct
    sampler fails with probability < 1e-6, see the module docstring)."""
    n = 20000
    batch = np.broadcast_to(SAMPLE_LOGITS, (4, 3, 5)).copy()
    out = _ids(attempt(lambda: sample(batch, np.random.default_rng(0)), "sample(logits (4,3,5), rng)",
                       "work on the last axis and keep the leading axes"),
               (4, 3), "sample(logits (4,3,5), rng)", 5)
    many = np.broadcast_to(SAMPLE_LOGITS, (n, 5)).copy()
    a = _ids(sample(many, np.random.default_rng(1), 2.0), (n,), "sample(logits (20000,5), rng, 2.0)", 5)
    b = _ids(sample(many, np.random.default_rng(1), 2.0), (n,), "sample(logits (20000,5), rng, 2.0)", 5)
    ensure(np.array_equal(a, b), "two generators in the same state gave different draws", RNG_HINT)
    _check_distribution(a, SAMPLE_LOGITS, 2.0, "sample at temperature 2")
    c = _ids(sample(many, np.random.default_rng(2), 0.5), (n,), "sample(logits (20000,5), rng, 0.5)", 5)
    _check_distribution(c, SAMPLE_LOGITS, 0.5, "sample at temperature 0.5")
    close = np.broadcast_to(np.array([0.5, 0.5, 0.499, 0.0]), (1000, 4)).copy()
    z = _ids(sample(close, np.random.default_rng(3), 0.0), (1000,), "sample(logits, rng, temperature=0)", 4)
    ensure(np.all(z == 0), "sample at temperature 0 did not always return the argmax",
           "temperature 0 means greedy: return the argmax (no randomness; ties to the smallest index)")
    masked = np.broadcast_to(np.array([0.0, -np.inf, 0.0, -np.inf]), (n, 4)).copy()
    d = _ids(sample(masked, np.random.default_rng(4)), (n,), "sample with -inf logits", 4)
    ensure(not np.isin(d, [1, 3]).any(), "sample drew a token whose logit is -inf",
           "a -inf logit has probability exactly 0 and must never be drawn")


@test("sample_random", "sample", hidden=True)
def sample_random(sample, ref):
    """Random logits and temperatures, float32 and float64, checked by their frequencies.

    The frequencies of 20000 draws per case are compared against the softmax probabilities (false-failure probability < 1e-6, module docstring)."""
    rng = rng_for("sample_random")
    n = 20000
    for dtype, v, temperature in [(np.float64, 7, 1.0), (np.float32, 12, 0.7), (np.float64, 30, 1.6)]:
        row = (rng.standard_normal(v) * 2).astype(dtype)
        what = f"sample(V={v}, temperature={temperature}) [{np.dtype(dtype)}]"
        draws = _ids(sample(np.broadcast_to(row, (n // 40, 40, v)).copy(), np.random.default_rng(v),
                            temperature), (n // 40, 40), what, v)
        _check_distribution(draws, row.astype(np.float64), temperature, what)
        again = _ids(sample(np.broadcast_to(row, (n // 40, 40, v)).copy(), np.random.default_rng(v),
                            temperature), (n // 40, 40), what, v)
        ensure(np.array_equal(draws, again), f"{what}: equal generators gave different draws", RNG_HINT)
    # Different rows have different distributions: row i must follow its own logits.
    rows = rng.standard_normal((2, 6)) * 2
    draws = _ids(sample(np.repeat(rows[:, None, :], n, axis=1), np.random.default_rng(5)), (2, n),
                 "sample(two different rows, each repeated 20000 times)", 6)
    for i in range(2):
        _check_distribution(draws[i], rows[i], 1.0, f"sample, row {i} of two different rows",
                            "each row's draws follow that row's softmax (softmax over the last axis)")


@test("sample_edge", "sample", hidden=True)
def sample_edge(sample, ref):
    """One live token among -inf, huge logits, temperature 0 with batch dims, negative temperature."""
    x = np.full((50, 6), -np.inf)
    x[:, 2] = 0.0
    out = _ids(sample(x, np.random.default_rng(0)), (50,), "sample with one finite logit", 6)
    ensure(np.all(out == 2), "sample drew a token whose logit is -inf", "-inf means probability 0")
    big = np.broadcast_to(np.array([1000.0, 999.0, -1000.0]), (20000, 3)).copy()
    out = _ids(sample(big, np.random.default_rng(1)), (20000,), "sample with logits around 1000", 3)
    _check_distribution(out, big[0], 1.0, "sample with logits around 1000",
                        "subtract the maximum before exp (or reuse softmax): exp(1000) overflows")
    rng = rng_for("sample_edge")
    x = rng.standard_normal((2, 3, 9))
    out = _ids(sample(x, np.random.default_rng(2), 0), (2, 3), "sample(logits (2,3,9), rng, 0)", 9)
    ensure(np.array_equal(out, ref.greedy(x)), "sample at temperature 0 is not the argmax",
           "temperature 0 means greedy")
    assert_raises(lambda: sample(x, np.random.default_rng(3), -1.0), "ValueError",
                  "sample with temperature -1", "raise ValueError for a negative temperature")


# ------------------------------------------------------------------ top_k_filter

TOPK_COUNT_HINT = "keep exactly k entries per row"
TOPK_NEG_HINT = "filtered logits must become -inf, not 0 (exp(0) = 1 still gives them probability)"
TOPK_AXIS_HINT = "filter along the last axis (the vocabulary), separately for each row"
TOPK_TIE_HINT = "on ties keep the smallest indices, so that exactly k survive (a stable sort does it)"


def _filtered(value, x, what):
    out = as_result_array(value, what)
    assert_shape(out, x.shape, what, "return the logits with the same shape, the dropped ones set to -inf")
    if np.isnan(out).any():
        raise CheckFailure(f"{what}: NaN in the result", "keep at least one token per row")
    kept = np.isfinite(out) | (out == x)
    if np.any(out[kept] != x[kept]):
        if np.any((out == 0) & (x != 0)):
            raise CheckFailure(f"{what}: filtered logits were set to 0", TOPK_NEG_HINT)
        raise CheckFailure(f"{what}: kept logits were changed", "leave the kept logits exactly as they were")
    return out


@test("top_k_filter_visible", "top_k_filter")
def top_k_filter_visible(top_k_filter):
    """Exactly k per row survive unchanged, the rest are -inf, ties go to the smallest index.

    Filtering runs along the last axis; k >= V keeps everything."""
    x = np.array([[1.0, 4.0, -2.0, 3.0, 0.5],
                  [-1.0, -3.0, 2.0, 0.0, 5.0],
                  [2.0, 0.0, 1.0, 6.0, 3.0]])
    out = _filtered(attempt(lambda: top_k_filter(x, 2), "top_k_filter(x (3x5), 2)", TOPK_AXIS_HINT),
                    x, "top_k_filter(x (3x5), 2)")
    counts = np.isfinite(out).sum(axis=-1)
    if np.any(counts != 2) and np.isfinite(out).sum() == 2 * x.shape[1]:
        raise CheckFailure("top_k_filter(x (3x5), 2) kept 2 per column, not per row", TOPK_AXIS_HINT)
    ensure(np.all(counts == 2), f"top_k_filter(x (3x5), 2) kept {counts.tolist()} entries per row, "
           "expected 2 each", TOPK_COUNT_HINT)
    expected = np.array([[False, True, False, True, False], [False, False, True, False, True],
                         [False, False, False, True, True]])
    ensure(np.array_equal(np.isfinite(out), expected), "top_k_filter(x (3x5), 2) kept the wrong entries",
           "keep the k largest logits of each row")
    one = _filtered(top_k_filter(x, 1), x, "top_k_filter(x, 1)")
    ensure(np.array_equal(np.isfinite(one).sum(-1), [1, 1, 1]),
           f"top_k_filter(x, 1) kept {np.isfinite(one).sum(-1).tolist()} entries per row", TOPK_COUNT_HINT)
    tie = np.array([[1.0, 2.0, 2.0, 2.0, 0.0]])
    out = _filtered(top_k_filter(tie, 2), tie, "top_k_filter([1, 2, 2, 2, 0], 2)")
    ensure(np.array_equal(np.isfinite(out[0]), [False, True, True, False, False]),
           f"top_k_filter([1, 2, 2, 2, 0], 2) gave {out[0].tolist()}, expected [-inf, 2, 2, -inf, -inf]",
           TOPK_TIE_HINT)
    all_kept = _filtered(top_k_filter(x, 9), x, "top_k_filter(x (3x5), 9)")
    ensure(np.array_equal(all_kept, x), "top_k_filter with k >= V must keep every logit", TOPK_COUNT_HINT)
    batch = np.stack([x, -x])
    out = _filtered(top_k_filter(batch, 3), batch, "top_k_filter(x (2,3,5), 3)")
    ensure(np.all(np.isfinite(out).sum(-1) == 3), "top_k_filter(x (2,3,5), 3) did not keep 3 per row",
           TOPK_AXIS_HINT)


@test("top_k_filter_random", "top_k_filter", hidden=True)
def top_k_filter_random(top_k_filter, ref):
    """Random logits with leading dims, several k, float64 and float32."""
    rng = rng_for("top_k_filter_random")
    for dtype in (np.float64, np.float32):
        for shape, k in [((10,), 3), ((4, 20), 5), ((2, 3, 50), 1), ((3, 100), 40)]:
            x = (rng.standard_normal(shape) * 2).astype(dtype)
            what = f"top_k_filter(x {shape}, {k}) [{np.dtype(dtype)}]"
            out = _filtered(top_k_filter(x, k), x, what)
            assert_close(out, ref.top_k_filter(x, k), what, TOPK_COUNT_HINT)


@test("top_k_filter_edge", "top_k_filter", hidden=True)
def top_k_filter_edge(top_k_filter, ref):
    """Many ties, -inf already present, k = V, a 1-D row, k < 1 raises ValueError."""
    cases = [(np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]), 4, "all-equal logits"),
             (np.array([3.0, 1.0, 3.0, 1.0, 3.0]), 2, "a 1-D row with ties"),
             (np.array([[-np.inf, 1.0, -np.inf, 0.0]]), 3, "-inf already present"),
             (np.arange(6.0).reshape(2, 3), 3, "k = V")]
    for x, k, name in cases:
        what = f"top_k_filter on {name} (k={k})"
        out = _filtered(top_k_filter(x, k), x, what)
        assert_close(out, ref.top_k_filter(x, k), what, TOPK_TIE_HINT)
    assert_raises(lambda: top_k_filter(np.zeros((2, 3)), 0), "ValueError", "top_k_filter(x, 0)",
                  "raise ValueError when k < 1")


# ------------------------------------------------------------------ top_p_filter

TOPP_CROSS_HINT = "the token that crosses p is kept: keep a token while the mass *before* it is below p"
TOPP_SORT_HINT = "sort the probabilities largest first before the cumulative sum"
TOPP_ONE_HINT = "always keep at least the most probable token"
TOPP_CROSS_ONE_HINT = (TOPP_CROSS_HINT + "; then you always keep at least the most probable token, "
                       "whose mass before it is 0")
TOPP_PROBS_HINT = "accumulate probabilities (softmax of the logits), not raw logits"


def _top_p_diagnose(out, x, p, expected_keep, what):
    kept = np.isfinite(out)
    if np.array_equal(kept, expected_keep):
        return
    probs = _softmax(x)
    order = np.argsort(-probs, axis=-1, kind="stable")
    srt = np.take_along_axis(probs, order, axis=-1)
    cum = np.cumsum(srt, axis=-1)
    for below in (cum < p, cum <= p):        # kept while the mass *including* the token is below p
        strict = np.zeros_like(kept)
        np.put_along_axis(strict, order, below, axis=-1)
        if np.array_equal(kept, strict):     # ... so a row whose top token crosses p is left empty
            empty = ("" if kept.any(axis=-1).all() else
                     " (so a row whose most probable token crosses p has no token left)")
            raise CheckFailure(f"{what}: the token that crosses p was dropped{empty}", TOPP_CROSS_ONE_HINT)
        np.put_along_axis(strict, order[..., :1], True, axis=-1)  # ... with at least one token kept
        if np.array_equal(kept, strict):
            raise CheckFailure(f"{what}: the token that crosses p was dropped", TOPP_CROSS_HINT)
    if not kept.any(axis=-1).all():
        raise CheckFailure(f"{what}: a row has no token left", TOPP_ONE_HINT)
    unsorted = (np.cumsum(probs, axis=-1) - probs) < p
    if np.array_equal(kept, unsorted):
        raise CheckFailure(f"{what}: the cumulative sum was taken in vocabulary order", TOPP_SORT_HINT)
    raise CheckFailure(f"{what}: kept {kept.astype(int).tolist()}, expected {expected_keep.astype(int).tolist()}",
                       "keep the smallest set of most probable tokens whose probabilities sum to at least p")


@test("top_p_filter_visible", "top_p_filter")
def top_p_filter_visible(top_p_filter):
    """Keeps the most probable tokens up to and including the one that crosses p.

    Tokens are taken in sorted order, the rest set to -inf, at least one is kept, p = 1 keeps all."""
    probs = np.array([[0.15, 0.5, 0.05, 0.3], [0.25, 0.1, 0.4, 0.25]])
    x = np.log(probs)
    what = "top_p_filter(log([.15, .5, .05, .3]), 0.2)"
    out = _filtered(attempt(lambda: top_p_filter(x[:1], 0.2), what, TOPP_SORT_HINT), x[:1], what)
    _top_p_diagnose(out, x[:1], 0.2, np.array([[0, 1, 0, 0]], bool), what)
    what = "top_p_filter(log([[.15, .5, .05, .3], [.25, .1, .4, .25]]), 0.7)"
    out = _filtered(top_p_filter(x, 0.7), x, what)
    _top_p_diagnose(out, x, 0.7, np.array([[0, 1, 0, 1], [1, 0, 1, 1]], bool), what)
    what = "top_p_filter(logits (2,4), 1.0)"
    out = _filtered(top_p_filter(x, 1.0), x, what)
    ensure(np.array_equal(out, x), f"{what}: p = 1 must keep every token", TOPP_CROSS_HINT)
    scaled = x * 3.0
    what = "top_p_filter(3 * log(probs), 0.8)"
    out = _filtered(top_p_filter(scaled, 0.8), scaled, what)
    _top_p_diagnose(out, scaled, 0.8, np.array([[0, 1, 0, 0], [1, 0, 1, 0]], bool), what)


def _random_top_p_case(rng, shape, scale):
    x = rng.standard_normal(shape) * scale
    probs = np.sort(_softmax(x), axis=-1)[..., ::-1]
    cum = np.cumsum(probs, axis=-1)
    for _ in range(100):  # a p not within 1e-6 of any cumulative sum: no rounding-sensitive boundary
        p = float(rng.uniform(0.05, 0.98))
        if np.min(np.abs(cum - p)) > 1e-6:
            return x, p
    raise RuntimeError("no safe p")


@test("top_p_filter_random", "top_p_filter", hidden=True)
def top_p_filter_random(top_p_filter, ref):
    """Random logits with leading dims and random p, float64 and float32."""
    rng = rng_for("top_p_filter_random")
    for dtype in (np.float64, np.float32):
        for shape, scale in [((12,), 1.0), ((5, 30), 2.0), ((2, 3, 64), 3.0), ((4, 7), 0.3)]:
            x, p = _random_top_p_case(rng, shape, scale)
            x = x.astype(dtype)
            what = f"top_p_filter(x {shape}, {p:.3f}) [{np.dtype(dtype)}]"
            out = _filtered(top_p_filter(x, p), x, what)
            expected = ref.top_p_filter(x, p)
            _top_p_diagnose(out, x.astype(np.float64), p, np.isfinite(expected), what)
            assert_close(out, expected, what)


@test("top_p_filter_edge", "top_p_filter", hidden=True)
def top_p_filter_edge(top_p_filter, ref):
    """Tiny p, uniform ties, -inf already present, a dominant token, bad p raises ValueError."""
    cases = [(np.array([[0.0, 0.0, 0.0, 0.0]]), 0.5, "four equal tokens"),
             (np.array([0.0, 2.0, 1.0, 2.0, -1.0]), 1e-9, "a tiny p (1-D row)"),
             (np.array([[-np.inf, 0.0, 1.0, -np.inf, 0.5]]), 0.99, "-inf already present"),
             (np.array([[50.0, 0.0, 0.0, 0.0]]), 0.9, "one dominant token"),
             (np.array([[1.0, 1.0, 3.0]]), 1.0, "p = 1")]
    for x, p, name in cases:
        what = f"top_p_filter on {name} (p={p})"
        out = _filtered(top_p_filter(x, p), x, what)
        expected = ref.top_p_filter(x, p)
        _top_p_diagnose(out, x, p, np.isfinite(expected), what)
        assert_close(out, expected, what)
    for bad in (0.0, 1.5, -0.2):
        assert_raises(lambda: top_p_filter(np.zeros((1, 3)), bad), "ValueError", f"top_p_filter(x, {bad})",
                      "raise ValueError unless 0 < p <= 1")


# ------------------------------------------------------------------ generate

APPEND_HINT = ("append each new id to the sequence before the next step, and read the logits of the "
               "last position (logits[..., -1, :])")
CONTEXT_HINT = ("feed the model the whole sequence so far (up to its last block_size tokens), "
                "not only the last token: the next token depends on the context")
WINDOW_HINT = ("crop the input to the last block_size = params['wpe'].shape[0] tokens "
               "(ids[..., -block_size:]): the model has no positions beyond its context window")
PROMPT_HINT = "return the prompt followed by the n_new new ids, shape (..., T + n_new)"
FILTER_HINT = "with temperature > 0, apply top_k_filter / top_p_filter to the logits before sampling"


def toy_gpt(v=13, d=16, block_size=8, n_layers=2, phase=2.2):
    """A small GPT whose weights are fixed smooth functions of their index (no rng: the
    same numbers on every machine and NumPy version). Shapes as in chapter 5."""
    def w(shape, scale, k):
        n = int(np.prod(shape))
        return (np.sin(np.arange(n) * (0.7 + 0.13 * k) + phase + k) * scale).reshape(shape)
    blocks = []
    for layer in range(n_layers):
        k = 10 * (layer + 1)
        blocks.append({"ln1_g": 1 + w((d,), 0.1, k), "ln1_b": w((d,), 0.1, k + 1),
                       "w_q": w((d, d), 0.5, k + 2), "w_k": w((d, d), 0.5, k + 3),
                       "w_v": w((d, d), 0.5, k + 4), "w_o": w((d, d), 0.3, k + 5),
                       "ln2_g": 1 + w((d,), 0.1, k + 6), "ln2_b": w((d,), 0.1, k + 7),
                       "w_fc": w((d, 4 * d), 0.3, k + 8), "b_fc": w((4 * d,), 0.1, k + 9),
                       "w_proj": w((4 * d, d), 0.2, k + 10), "b_proj": w((d,), 0.1, k + 11)})
    return {"wte": w((v, d), 1.0, 1), "wpe": w((block_size, d), 0.8, 2),
            "lnf_g": 1 + w((d,), 0.1, 3), "lnf_b": w((d,), 0.1, 4), "blocks": blocks}


def random_gpt(rng, v, d, block_size, n_layers):
    """A random GPT for the hidden tests (gentler LayerNorms and positions than chapter 15's)."""
    return _gpt_formulas.random_gpt(rng, v, d, block_size, n_layers, spread=0.1, wpe_scale=0.5)


# Greedy continuations of toy_gpt() (2 heads, block_size 8), stored so that the visible test
# needs no answer key; and what the classic mistakes produce, to name them.
TOY_PROMPT = [3, 1, 4]
TOY_GREEDY = [3, 1, 4, 12, 4, 3, 4, 4]
TOY_GREEDY_LAST_ONLY = [3, 1, 4, 12, 3, 3, 3, 3]
TOY_PROMPT_2 = [7, 7, 2]
TOY_GREEDY_2 = [7, 7, 2, 2, 3, 11, 3, 2]
TOY_LONG_PROMPT = [1, 2, 3, 4, 5, 6]
TOY_GREEDY_LONG = [1, 2, 3, 4, 5, 6, 6, 7, 6, 5, 4, 4]


def _new_ids(value, prompt, n_new, what, v):
    prompt = np.asarray(prompt)
    shape = prompt.shape[:-1] + (prompt.shape[-1] + n_new,)
    out = as_result_array(value, what)
    if out.shape == prompt.shape[:-1] + (n_new,):
        raise CheckFailure(f"{what}: returned only the {n_new} new ids", PROMPT_HINT)
    out = _ids(out, shape, what, v)
    ensure(np.array_equal(out[..., :prompt.shape[-1]], prompt), f"{what}: the output does not start with "
           "the prompt", PROMPT_HINT)
    return out


TOY_TOP3 = [3, 4, 12]   # the 3 largest logits of toy_gpt() after TOY_PROMPT


def _probe_top_k(generate, params, prompt, top3, what_model):
    """Is top_k_filter (as generate uses it) keeping k = 3 tokens? At temperature 50 the
    logits are nearly flat, so 600 draws of one new id show every token the filter keeps
    (a correct generate misses one with probability < 1e-12). Blames top_k_filter only when
    the unfiltered draws show the whole vocabulary (sampling itself works)."""
    v = params["wte"].shape[0]
    many = np.tile(np.asarray(prompt), (600, 1))
    what = f"generate(600 copies of {np.asarray(prompt).tolist()}, 1, {what_model}, 2, rng, temperature=50"
    free = _new_ids(generate(many, 1, params, 2, np.random.default_rng(11), temperature=50.0),
                    many, 1, what + ")", v)[:, -1]
    if len(set(free.tolist())) < v:
        return      # sampling itself is off: the sampling checks name that
    what += ", top_k=3)"
    drawn = sorted(set(_new_ids(generate(many, 1, params, 2, np.random.default_rng(12), temperature=50.0,
                                         top_k=3), many, 1, what, v)[:, -1].tolist()))
    if drawn == sorted(top3):
        return
    if len(drawn) == v:
        raise CheckFailure(f"{what}: drew all {v} tokens, as without top_k", FILTER_HINT)
    if len(drawn) != 3:     # (3 wrong ids may come from wrong logits: the later checks name that)
        raise CheckFailure(f"{what}: drew only {len(drawn)} different ids {drawn}" if len(drawn) < 3 else
                           f"{what}: drew {len(drawn)} different ids {drawn}",
                           f"check top_k_filter first: as generate uses it, it keeps {len(drawn)} tokens "
                           "per row, expected k = 3 (the order of the filters is not the problem)")


def _diagnose_greedy(out, expected, last_only, what):
    if np.array_equal(out, expected):
        return
    t = len(TOY_PROMPT)
    expected = np.asarray(expected)
    new = np.asarray(out)[..., t:]
    if np.all(new == new[..., :1]) and not np.all(np.asarray(expected)[..., t:] == expected[..., t]):
        raise CheckFailure(f"{what}: every new id is {int(new.ravel()[0])}, expected {expected.tolist()}",
                           APPEND_HINT)
    if last_only is not None and np.array_equal(out, last_only):
        raise CheckFailure(f"{what}: gave {out.tolist()}, what the model predicts from the last token alone",
                           CONTEXT_HINT)
    raise CheckFailure(f"{what}: gave {out.tolist()}, expected {expected.tolist()}",
                       "at temperature 0 every step takes greedy(logits of the last position); " + APPEND_HINT)


@test("generate_visible", "generate")
def generate_visible(generate):
    """Greedy continuations of a small fixed GPT, top_k, batches, cropping and sampling from rng.

    The greedy continuations are stored; top_k=1 must give them too, as must a batch of prompts
    and a prompt that outgrows the context window; sampling is reproducible from rng."""
    params = toy_gpt()
    v = params["wte"].shape[0]
    what = "generate([3, 1, 4], 5, toy_gpt, 2, rng, temperature=0)"
    out = _new_ids(attempt(lambda: generate(np.array(TOY_PROMPT), 5, params, 2, np.random.default_rng(0),
                                            temperature=0.0), what, APPEND_HINT), TOY_PROMPT, 5, what, v)
    _diagnose_greedy(out, TOY_GREEDY, TOY_GREEDY_LAST_ONLY, what)
    _probe_top_k(generate, params, TOY_PROMPT, TOY_TOP3, "toy_gpt")
    what = "generate([3, 1, 4], 5, toy_gpt, 2, rng, temperature=1, top_k=1)"
    out = _new_ids(generate(np.array(TOY_PROMPT), 5, params, 2, np.random.default_rng(0), temperature=1.0,
                            top_k=1), TOY_PROMPT, 5, what, v)
    ensure(np.array_equal(out, TOY_GREEDY), f"{what}: gave {out.tolist()}, expected the greedy "
           f"continuation {TOY_GREEDY}", FILTER_HINT)
    prompts = np.array([TOY_PROMPT, TOY_PROMPT_2])
    what = "generate(prompts (2, 3), 5, toy_gpt, 2, rng, temperature=0)"
    out = _new_ids(attempt(lambda: generate(prompts, 5, params, 2, np.random.default_rng(0), temperature=0.0),
                           what, "handle a batch of prompts (B, T): work on the last axis"), prompts, 5, what, v)
    ensure(np.array_equal(out, [TOY_GREEDY, TOY_GREEDY_2]), f"{what}: gave {out.tolist()}",
           "each row of the batch is continued on its own: append along the last axis")
    what = "generate(6-token prompt, 6, toy_gpt with block_size 8, 2, rng, temperature=0)"
    out = _new_ids(attempt(lambda: generate(np.array(TOY_LONG_PROMPT), 6, params, 2, np.random.default_rng(0),
                                            temperature=0.0), what, WINDOW_HINT), TOY_LONG_PROMPT, 6, what, v)
    ensure(np.array_equal(out, TOY_GREEDY_LONG), f"{what}: gave {out.tolist()}, expected {TOY_GREEDY_LONG}",
           WINDOW_HINT)
    what = "generate([3, 1, 4], 6, toy_gpt, 2, rng, temperature=1.5)"
    a = _new_ids(generate(np.array(TOY_PROMPT), 6, params, 2, np.random.default_rng(7), temperature=1.5),
                 TOY_PROMPT, 6, what, v)
    b = _new_ids(generate(np.array(TOY_PROMPT), 6, params, 2, np.random.default_rng(7), temperature=1.5),
                 TOY_PROMPT, 6, what, v)
    ensure(np.array_equal(a, b), f"{what}: equal generators gave different sequences", RNG_HINT)
    many = np.tile(np.array(TOY_PROMPT), (200, 1))
    what = "generate(200 copies of [3, 1, 4], 3, toy_gpt, 2, rng, temperature=1.5)"
    c = _new_ids(generate(many, 3, params, 2, np.random.default_rng(8), temperature=1.5), many, 3, what, v)
    ensure(len({tuple(r) for r in c.tolist()}) > 1, f"{what}: all 200 samples are identical",
           "with temperature > 0 draw the next id with sample(), don't take the argmax")


def _allowed(ref, logits, temperature, top_k, top_p):
    """Tokens the filters may keep (with a little slack on p for rounding)."""
    z = logits / temperature
    if top_k is not None:
        z = ref.top_k_filter(z, top_k)
    if top_p is not None:
        z = ref.top_p_filter(z, min(1.0, top_p + 1e-6))
    return np.isfinite(z)


@test("generate_greedy_random", "generate", hidden=True)
def generate_greedy_random(generate, ref):
    """Random GPTs, single prompts and batches, with and without cropping, must match greedily.

    Temperature 0, top_k=1 and a tiny top_p must all give the reference's greedy continuation exactly;
    n_new = 0, a one-token prompt, a prompt of exactly block_size tokens, a negative temperature."""
    rng = rng_for("generate_greedy_random")
    for v, d, block, layers, heads, shape, n_new in [(11, 8, 6, 1, 2, (4,), 5), (20, 16, 10, 2, 4, (3, 5), 8),
                                                     (7, 12, 4, 2, 3, (2, 3), 6)]:
        params = random_gpt(rng, v, d, block, layers)
        prompt = rng.integers(0, v, size=shape)
        expected = ref.generate(prompt, n_new, params, heads, np.random.default_rng(0), temperature=0.0)
        for kw in ({"temperature": 0.0}, {"temperature": 1.0, "top_k": 1}, {"temperature": 0.8, "top_p": 1e-9}):
            what = f"generate(prompt {shape}, {n_new}, GPT(V={v}, block_size={block}), {heads}, rng, {kw})"
            out = _new_ids(generate(prompt, n_new, params, heads, np.random.default_rng(1), **kw),
                           prompt, n_new, what, v)
            new, want = out[..., shape[-1]:], expected[..., shape[-1]:]
            stuck = np.all(new == new[..., :1]) and not np.all(want == want[..., :1])
            ensure(np.array_equal(out, expected), f"{what}: gave {out.tolist()}, expected {expected.tolist()}",
                   WINDOW_HINT if shape[-1] + n_new > block and not stuck else APPEND_HINT)
    params = random_gpt(rng, 9, 8, 5, 1)
    _new_ids(generate(np.array([4, 2]), 0, params, 2, np.random.default_rng(0)), [4, 2], 0,
             "generate(prompt, 0 new ids)", 9)
    for prompt, n_new in (([6], 7), ([1, 2, 3, 4, 5], 4)):
        what = f"generate({prompt}, {n_new}, GPT(block_size=5), 2, rng, temperature=0)"
        expected = ref.generate(np.array(prompt), n_new, params, 2, np.random.default_rng(0), temperature=0.0)
        out = _new_ids(generate(np.array(prompt), n_new, params, 2, np.random.default_rng(0), temperature=0.0),
                       prompt, n_new, what, 9)
        ensure(np.array_equal(out, expected), f"{what}: gave {out.tolist()}, expected {expected.tolist()}",
               WINDOW_HINT)
    assert_raises(lambda: generate(np.array([1]), 2, params, 2, np.random.default_rng(0), temperature=-0.5),
                  "ValueError", "generate with temperature -0.5", "raise ValueError for a negative temperature")


@test("generate_sampling", "generate", hidden=True)
def generate_sampling(generate, ref):
    """Sampling with temperature, top_k and top_p draws only ids the filters keep, as often as expected.

    Every drawn id is one the filters keep, and the first new id's frequencies over 10000 copies of a prompt match the filtered softmax
    (false-failure probability < 1e-6, see the module docstring)."""
    rng = rng_for("generate_sampling")
    params = random_gpt(rng, 12, 8, 8, 1)
    prompt = rng.integers(0, 12, size=3)
    top3 = np.argsort(-ref.gpt_forward(prompt, params, 2)[-1], kind="stable")[:3].tolist()
    _probe_top_k(generate, params, prompt, top3, "GPT(V=12)")
    for temperature, top_k, top_p in [(0.8, 6, None), (1.3, None, 0.8), (1.0, 5, 0.7)]:
        what = f"generate(10000 copies, 1, rng, temperature={temperature}, top_k={top_k}, top_p={top_p})"
        many = np.tile(prompt, (10000, 1))
        out = _new_ids(generate(many, 1, params, 2, np.random.default_rng(3), temperature=temperature,
                                top_k=top_k, top_p=top_p), many, 1, what, 12)
        logits = ref.gpt_forward(prompt, params, 2)[-1]
        z = logits / temperature
        if top_k is not None:
            z = ref.top_k_filter(z, top_k)
        if top_p is not None:
            z = ref.top_p_filter(z, top_p)
        allowed = _allowed(ref, logits, temperature, top_k, top_p)
        ensure(allowed[out[:, -1]].all(), f"{what}: drew ids that the filters remove",
               FILTER_HINT + " (temperature first, then top_k, then top_p)")
        _check_distribution(out[:, -1], z, 1.0, what, "divide by the temperature, then top_k_filter, then "
                            "top_p_filter, then sample", probs=_softmax(z))
    what = "generate(500 copies, 6 new ids, rng, temperature=1.2, top_k=4, top_p=0.9)"
    many = np.tile(prompt, (500, 1))
    out = _new_ids(generate(many, 6, params, 2, np.random.default_rng(4), temperature=1.2, top_k=4, top_p=0.9),
                   many, 6, what, 12)
    logits = ref.gpt_forward(out[:, :-1], params, 2)[:, 2:, :]  # the logits every step saw (no cropping)
    allowed = _allowed(ref, logits, 1.2, 4, 0.9)
    got = np.take_along_axis(allowed, out[:, 3:, None], axis=-1)
    ensure(got.all(), f"{what}: some drawn ids are ones the filters remove at their step", FILTER_HINT)

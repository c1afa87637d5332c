"""Chapter 18 (18-looking-inside): measurements on a trained transformer's activations.

Visible tests use small inputs built from fixed smooth functions (no rng), their expected
values stored as literals, plus properties (LayerNorm's invariance to scale and shift, a
perfect induction head scoring 1); when an answer is wrong they recompute the classic
mistakes on the same input to name the one that was made. Hidden tests compare with the
reference on seeded random inputs, in float64 and float32, and on edge cases.
"""
import functools
import math

import numpy as np

from ..framework import (Chapter, CheckFailure, as_result_array, assert_close, assert_raises, assert_shape,
                         assert_values_close, attempt, ensure, matches, rng_for)

chapter = Chapter("18-looking-inside", reference="looking_inside",
                  functions=["head_entropy", "prefix_matching_score", "logit_lens", "patch_head",
                             "induction_loss_gap"],
                  provided=["layer_norm"],
                  sample_scores=(15, 9, 0, 0, 12))
test = chapter.test


def _result(value, what):
    """The answer as an array; a plain Python number counts as a 0-d float64 array."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return np.asarray(value, dtype=np.float64)
    return as_result_array(value, what)


def _assert_answer(out, expected, what, hint):
    """Compared with the reference; the dtype too, except for a single number (which a
    student may return as a Python float)."""
    if expected.ndim:
        assert_close(out, expected, what, hint)
    else:
        assert_values_close(out, expected, what, hint)


def _softmax(s):
    z = s - np.max(s, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def causal_weights(t, phase, scale=1.5):
    """A (t, t) causal attention pattern from a fixed smooth score table (the same numbers everywhere)."""
    s = np.sin(np.arange(t * t).reshape(t, t) * 0.9 + phase) * scale
    return _softmax(np.where(np.tril(np.ones((t, t), dtype=bool)), s, -np.inf))


def random_causal_weights(rng, shape, t, dtype, sharp=2.0):
    s = rng.standard_normal(tuple(shape) + (t, t)) * sharp
    return _softmax(np.where(np.tril(np.ones((t, t), dtype=bool)), s, -np.inf)).astype(dtype)


_same = functools.partial(matches, rtol=1e-4, atol=1e-5)   # float32 rounding; a diagnosis, assert_close decides


# ------------------------------------------------------------------ head_entropy

ENT_HINT = ("for each query row compute -sum_k w_k ln w_k over the keys (the last axis), with 0 ln 0 = 0, "
            "then average the rows")
ENT_NAN_HINT = "0 log 0 counts as 0: masked keys (weight 0) must contribute nothing, not log(0) = -inf times 0 = NaN"
ENT_BITS_HINT = "use the natural log (nats), not log2 (bits)"
ENT_SIGN_HINT = "entropy is -sum w ln w: don't forget the minus sign (it is never negative)"
ENT_MEAN_HINT = "average the row entropies over the query positions (the second-to-last axis): one number per head"
ENT_AXIS_HINT = ("each ROW (the last axis) is one query's distribution over the keys: sum over the keys, "
                 "then average over the queries, not the other way round")
ENT_ROWS = np.array([0.79745393547921, 0.5502366079299531])   # head_entropy of the two patterns below


def _entropy_rows(w, axis, log):
    w = np.asarray(w, dtype=np.float64)
    return -np.where(w > 0, w * log(np.where(w > 0, w, 1)), 0).sum(axis=axis)


def _diagnose_entropy(out, w, expected, what):
    if out.shape == w.shape[:-1]:
        raise CheckFailure(f"{what}: shape {out.shape}, one entropy per query", ENT_MEAN_HINT)
    if out.shape == w.shape[:-2] and np.isnan(out).any():
        raise CheckFailure(f"{what}: NaN", ENT_NAN_HINT)
    assert_shape(out, w.shape[:-2], what, ENT_MEAN_HINT)
    if _same(out, expected):
        return
    if _same(out, np.asarray(expected) / math.log(2)):
        raise CheckFailure(f"{what}: the values are the right ones divided by ln 2 (bits)", ENT_BITS_HINT)
    if _same(out, -np.asarray(expected)):
        raise CheckFailure(f"{what}: the values have the wrong sign", ENT_SIGN_HINT)
    if _same(out, _entropy_rows(w, -1, np.log).sum(-1)):
        raise CheckFailure(f"{what}: the row entropies were added up, not averaged", ENT_MEAN_HINT)
    if _same(out, _entropy_rows(w, -2, np.log).mean(-1)):
        raise CheckFailure(f"{what}: summed over the queries (columns) instead of the keys", ENT_AXIS_HINT)


@test("head_entropy_visible", "head_entropy")
def head_entropy_visible(head_entropy):
    """One-hot rows give 0, uniform rows ln(n), rows are queries (a 2 x 4 pattern), two stored patterns, float32 kept."""
    eye = np.eye(4)[None]
    out = _result(attempt(lambda: head_entropy(eye), "head_entropy(identity pattern (1, 4, 4))", ENT_HINT),
                  "head_entropy(identity pattern)")
    what = "head_entropy(identity pattern (1, 4, 4)), every row one-hot"
    _diagnose_entropy(out, eye, np.zeros(1), what)
    assert_close(out, [0.0], what, ENT_HINT, check_dtype=False)
    uniform = np.tril(np.ones((4, 4))) / np.arange(1, 5)[:, None]
    what = "head_entropy(uniform causal pattern (1, 4, 4))"
    out = _result(head_entropy(uniform[None]), what)
    _diagnose_entropy(out, uniform[None], np.array([np.log(np.arange(1, 5)).mean()]), what)
    assert_close(out, [np.log(np.arange(1, 5)).mean()], what, ENT_HINT)
    wide = np.array([[[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]]])
    what = "head_entropy(2 queries over 4 keys (1, 2, 4))"
    out = _result(attempt(lambda: head_entropy(wide), what, ENT_HINT), what)
    _diagnose_entropy(out, wide, np.array([1.5 * math.log(2)]), what)
    assert_close(out, [1.5 * math.log(2)], what, ENT_HINT)
    pair = np.stack([causal_weights(5, 0.3), causal_weights(5, 1.1, 3.0)])
    what = "head_entropy(two causal heads (2, 5, 5))"
    out = _result(attempt(lambda: head_entropy(pair), what, ENT_HINT), what)
    _diagnose_entropy(out, pair, ENT_ROWS, what)
    assert_close(out, ENT_ROWS, what, ENT_HINT)
    what = "head_entropy(two causal heads (2, 5, 5), float32)"
    out = _result(head_entropy(pair.astype(np.float32)), what)
    _diagnose_entropy(out, pair, ENT_ROWS, what)
    assert_close(out, ENT_ROWS.astype(np.float32), what, ENT_HINT)


@test("head_entropy_random", "head_entropy", hidden=True)
def head_entropy_random(head_entropy, ref):
    """Random causal patterns with leading axes (layers, heads), float64 and float32."""
    rng = rng_for("head_entropy_random")
    for dtype in (np.float64, np.float32):
        for lead, t in [((3,), 6), ((2, 4), 9), ((), 7), ((2, 1, 3), 12)]:
            w = random_causal_weights(rng, lead, t, dtype, sharp=float(rng.uniform(0.5, 4)))
            what = f"head_entropy(weights {w.shape}) [{np.dtype(dtype)}]"
            out = _result(head_entropy(w), what)
            expected = ref.head_entropy(w)
            _diagnose_entropy(out, w, expected, what)
            assert_close(out, expected, what, ENT_HINT)


@test("head_entropy_edge", "head_entropy", hidden=True)
def head_entropy_edge(head_entropy, ref):
    """A single query, a single key, exact zeros everywhere but one key, non-square (T_q != T_k) patterns."""
    cases = {"one query, one key": np.ones((2, 1, 1)),
             "one query over 5 keys": np.full((1, 1, 5), 0.2),
             "all weight on key 0": np.tile(np.eye(1, 6), (3, 6, 1)),
             "non-square (3 queries, 7 keys)": _softmax(np.sin(np.arange(42.0)).reshape(2, 3, 7)),
             "tiny weights": np.array([[[1 - 1e-300, 1e-300, 0.0]]])}
    for name, w in cases.items():
        for dtype in (np.float64, np.float32):
            x = w.astype(dtype)
            what = f"head_entropy on {name} [{np.dtype(dtype)}]"
            out = _result(head_entropy(x), what)
            expected = ref.head_entropy(x)
            _diagnose_entropy(out, x, expected, what)
            assert_close(out, expected, what, ENT_HINT, nan_hint=ENT_NAN_HINT)


# ------------------------------------------------------------------ prefix_matching_score

PM_HINT = ("for each query i in the second half, add up weights[..., i, j] over the keys j (1 <= j <= i) with "
           "tokens[j - 1] == tokens[i], then average over those queries")
PM_SELF_HINT = ("attend to the token AFTER the earlier occurrence: key j with tokens[j - 1] == tokens[i], "
                "not the earlier occurrence itself (tokens[j] == tokens[i])")
PM_HALF_HINT = "average only over the queries of the repeated half, i = T/2 .. T-1, not over every position"
PM_ALL_HINT = ("add up the weight on the next token of EVERY earlier occurrence of the current token (the "
               "first half can repeat a token too), not only the copy at i - T/2")
PM_SUM_HINT = "a query's score is the total (sum) of the weights on its targets, not their mean"
PM_TOKENS = np.array([5, 2, 5, 7, 5, 2, 5, 7])      # token 5 occurs four times
PM_EXPECTED = np.array([0.20550629999096395, 0.309892373732083])


def _pm_targets(tokens, shift):
    """targets[i, j]: key j is `shift` after an earlier (or the same, for shift 0) occurrence of tokens[i]."""
    t = len(tokens)
    same = np.asarray(tokens)[:, None] == np.asarray(tokens)[None, :]
    out = np.zeros((t, t), dtype=bool)
    out[:, shift:] = same[:, :t - shift]
    out &= np.tril(np.ones((t, t), dtype=bool), -1 if shift == 0 else 0)
    return out


def _pm_variants(w, tokens):
    """The classic mistakes, computed on (w, tokens): name -> value."""
    t = len(tokens)
    w = np.asarray(w, dtype=np.float64)
    right = _pm_targets(tokens, 1)
    diag = np.zeros((t, t), dtype=bool)
    diag[np.arange(t // 2, t), np.arange(1, t // 2 + 1)] = True
    counts = np.maximum(right.sum(-1), 1)
    return {PM_SELF_HINT: (w * _pm_targets(tokens, 0)).sum(-1)[..., t // 2:].mean(-1),
            PM_HALF_HINT: (w * right).sum(-1).mean(-1),
            PM_ALL_HINT: (w * diag).sum(-1)[..., t // 2:].mean(-1),
            PM_SUM_HINT: ((w * right).sum(-1) / counts)[..., t // 2:].mean(-1)}


def _diagnose_pm(out, w, tokens, expected, what):
    assert_shape(out, w.shape[:-2], what, "reduce the last two axes (queries and keys), keep the leading ones")
    if _same(out, expected):
        return
    for hint, value in _pm_variants(w, tokens).items():
        if _same(out, value) and not _same(value, expected):
            raise CheckFailure(f"{what}: got {np.round(out, 6).tolist()}, expected "
                               f"{np.round(expected, 6).tolist()}", hint)


@test("prefix_matching_score_visible", "prefix_matching_score")
def prefix_matching_score_visible(prefix_matching_score):
    """A perfect induction head scores 1 and a previous-token head 0; two stored patterns with a repeated token."""
    half = 6
    tokens = np.array([3, 1, 4, 0, 5, 9] * 2)
    t = 2 * half
    induction = np.eye(t)[np.r_[np.zeros(half, dtype=int), np.arange(1, half + 1)]]   # i -> i - half + 1
    previous = np.eye(t)[np.r_[0, np.arange(t - 1)]]                                  # i -> i - 1
    itself = np.eye(t)[np.r_[np.zeros(half, dtype=int), np.arange(half)]]            # i -> i - half
    heads = np.stack([induction, previous, itself])
    what = "prefix_matching_score(3 heads: induction, previous-token, occurrence-itself; tokens 2 x 6)"
    out = _result(attempt(lambda: prefix_matching_score(heads, tokens), what, PM_HINT), what)
    expected = np.array([1.0, 0.0, 0.0])
    _diagnose_pm(out, heads, tokens, expected, what)
    assert_close(out, expected, what, PM_HINT, check_dtype=False)
    pair = np.stack([causal_weights(8, 0.2, 2.0), causal_weights(8, 2.0, 2.0)])
    what = "prefix_matching_score(2 heads (2, 8, 8), tokens [5, 2, 5, 7, 5, 2, 5, 7])"
    out = _result(attempt(lambda: prefix_matching_score(pair, PM_TOKENS), what, PM_HINT), what)
    _diagnose_pm(out, pair, PM_TOKENS, PM_EXPECTED, what)
    assert_close(out, PM_EXPECTED, what, PM_HINT)
    what = "prefix_matching_score(one head (8, 8), same tokens)"
    out = _result(attempt(lambda: prefix_matching_score(pair[1], PM_TOKENS), what, PM_HINT), what)
    _diagnose_pm(out, pair[1], PM_TOKENS, PM_EXPECTED[1], what)
    assert_values_close(out, np.float64(PM_EXPECTED[1]), what, PM_HINT)
    what = "prefix_matching_score(2 heads, float32)"
    out = _result(prefix_matching_score(pair.astype(np.float32), PM_TOKENS), what)
    _diagnose_pm(out, pair, PM_TOKENS, PM_EXPECTED, what)
    assert_close(out, PM_EXPECTED.astype(np.float32), what, PM_HINT)


@test("prefix_matching_score_random", "prefix_matching_score", hidden=True)
def prefix_matching_score_random(prefix_matching_score, ref):
    """Random patterns and repeated random tokens (small vocabularies, so tokens recur), float64 and float32."""
    rng = rng_for("prefix_matching_score_random")
    for dtype in (np.float64, np.float32):
        for lead, half, vocab in [((4,), 5, 3), ((2, 3), 8, 6), ((), 10, 50), ((1, 2, 2), 4, 2)]:
            first = rng.integers(0, vocab, size=half)
            tokens = np.concatenate([first, first])
            w = random_causal_weights(rng, lead, 2 * half, dtype)
            what = f"prefix_matching_score(weights {w.shape}, tokens {tokens.tolist()}) [{np.dtype(dtype)}]"
            out = _result(prefix_matching_score(w, tokens), what)
            expected = ref.prefix_matching_score(w, tokens)
            _diagnose_pm(out, w, tokens, expected, what)
            _assert_answer(out, expected, what, PM_HINT)


@test("prefix_matching_score_edge", "prefix_matching_score", hidden=True)
def prefix_matching_score_edge(prefix_matching_score, ref):
    """T = 2, one token repeated everywhere, no earlier occurrence at all (first half all distinct, second not)."""
    t2 = np.array([[[1.0, 0.0], [0.3, 0.7]]])
    cases = [("T = 2", t2, np.array([4, 4])),
             ("one token everywhere", random_causal_weights(rng_for("pm_edge"), (2,), 8, np.float64),
              np.zeros(8, dtype=int)),
             ("a perfect induction head with repeats", None, np.array([1, 1, 2, 1, 1, 2])),
             ("second half not a copy (tokens never seen before)", random_causal_weights(
                 rng_for("pm_edge", 1), (3,), 6, np.float64), np.array([0, 1, 2, 3, 4, 5]))]
    for name, w, tokens in cases:
        if w is None:
            t = len(tokens)
            w = np.tril(np.ones((t, t))) / np.arange(1, t + 1)[:, None]
            w = w[None]
        what = f"prefix_matching_score on {name} (tokens {tokens.tolist()})"
        out = _result(prefix_matching_score(w, tokens), what)
        expected = ref.prefix_matching_score(w, tokens)
        _diagnose_pm(out, w, tokens, expected, what)
        assert_close(out, expected, what, PM_HINT)


# ------------------------------------------------------------------ logit_lens

LL_HINT = "normalise with the final LayerNorm (layer_norm(residual, lnf_g, lnf_b)), then multiply by wte.T"
LL_NO_LN_HINT = ("apply the final LayerNorm before the unembedding: the model never reads the raw stream "
                 "(residual @ wte.T skips lnf)")
LL_GAIN_HINT = "the final LayerNorm includes its gain and bias: layer_norm(residual, lnf_g, lnf_b), not a bare standardisation"
LL_AXIS_HINT = "LayerNorm normalises each position's vector over the features (the last axis), not over positions"
LL_PROBS_HINT = "return the raw logits (..., T, V), not probabilities (no softmax)"

LL_D, LL_V = 4, 3
LL_EXPECTED = [[[1.9720139932352, -1.2566428786376, 0.3960599957539],
                [0.1884738599618, -0.3910883020201, 0.5485104107133]],
               [[-1.5842248063296, 0.9082966954446, -0.1274100704773],
                [-1.8808566420548, 1.4001903678533, -0.757724649506]]]


def lens_inputs(dtype=np.float64):
    """residual (2, 2, 4), lnf_g, lnf_b (4,), wte (3, 4): fixed smooth numbers."""
    x = np.sin(np.arange(2 * 2 * LL_D).reshape(2, 2, LL_D) * 1.3 + 0.4) * 2
    g = 1 + 0.5 * np.sin(np.arange(LL_D) * 2.1)
    b = 0.3 * np.cos(np.arange(LL_D) * 1.7)
    wte = np.sin(np.arange(LL_V * LL_D).reshape(LL_V, LL_D) * 0.7 + 1.0)
    return tuple(a.astype(dtype) for a in (x, g, b, wte))


def _ln(x, g, b, axis=-1):
    m = x.mean(axis=axis, keepdims=True)
    v = ((x - m) ** 2).mean(axis=axis, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * g + b


def _diagnose_lens(out, x, g, b, wte, expected, what):
    x, g, b, wte = (np.asarray(a, dtype=np.float64) for a in (x, g, b, wte))
    assert_shape(out, x.shape[:-1] + (wte.shape[0],), what, "one logit per vocabulary entry: (..., T, V) = "
                 "layer_norm(...) @ wte.T")
    if _same(out, expected):
        return
    variants = {LL_NO_LN_HINT: x @ wte.T, LL_GAIN_HINT: _ln(x, 1.0, 0.0) @ wte.T,
                LL_PROBS_HINT: _softmax(np.asarray(expected, dtype=np.float64))}
    if x.shape[-2] > 1:
        variants[LL_AXIS_HINT] = (_ln(x, 1.0, 0.0, axis=-2) * g + b) @ wte.T
    for hint, value in variants.items():
        if _same(out, value):
            raise CheckFailure(f"{what}: wrong logits", hint)


@test("logit_lens_visible", "logit_lens")
def logit_lens_visible(logit_lens):
    """Stored logits of a small stream, invariant to scaling and shifting the stream, float32 kept."""
    x, g, b, wte = lens_inputs()
    what = "logit_lens(residual (2, 2, 4), lnf_g, lnf_b, wte (3, 4))"
    out = as_result_array(attempt(lambda: logit_lens(x, g, b, wte), what, LL_HINT), what)
    expected = np.array(LL_EXPECTED)
    _diagnose_lens(out, x, g, b, wte, expected, what)
    assert_close(out, LL_EXPECTED, what, LL_HINT, rtol=1e-9, atol=1e-11)
    what = "logit_lens(3.0 * residual + 1.5, ...): LayerNorm ignores the scale and the mean of each vector"
    out2 = as_result_array(logit_lens(3.0 * x + 1.5, g, b, wte), what)
    ensure(out2.shape == out.shape and np.allclose(out2, expected, rtol=1e-4, atol=1e-5), what + ": the logits "
           "changed", LL_NO_LN_HINT)
    what = "logit_lens(one position (1, 4), ...)"
    out1 = as_result_array(attempt(lambda: logit_lens(x[1, 0][None], g, b, wte), what, LL_HINT), what)
    _diagnose_lens(out1, x[1, 0][None], g, b, wte, expected[1, :1], what)
    assert_close(out1, expected[1, :1], what, LL_HINT, rtol=1e-9, atol=1e-11)
    xf, gf, bf, wf = lens_inputs(np.float32)
    what = "logit_lens(residual, ...) [float32]"
    out = as_result_array(logit_lens(xf, gf, bf, wf), what)
    _diagnose_lens(out, xf, gf, bf, wf, expected, what)
    assert_close(out, expected.astype(np.float32), what, LL_HINT, rtol=1e-4, atol=1e-5)


@test("logit_lens_random", "logit_lens", hidden=True)
def logit_lens_random(logit_lens, ref):
    """Random streams with a layer axis, random final LayerNorms and unembeddings, float64 and float32."""
    rng = rng_for("logit_lens_random")
    for dtype in (np.float64, np.float32):
        for lead, t, d, v in [((3,), 5, 8, 11), ((2, 2), 4, 16, 7), ((), 6, 12, 20)]:
            x = (rng.standard_normal(lead + (t, d)) * 3 + rng.standard_normal(d)).astype(dtype)
            g = (1 + 0.3 * rng.standard_normal(d)).astype(dtype)
            b = (0.3 * rng.standard_normal(d)).astype(dtype)
            wte = rng.standard_normal((v, d)).astype(dtype)
            what = f"logit_lens(residual {x.shape}, wte {wte.shape}) [{np.dtype(dtype)}]"
            out = as_result_array(logit_lens(x, g, b, wte), what)
            expected = ref.logit_lens(x, g, b, wte)
            _diagnose_lens(out, x, g, b, wte, expected, what)
            assert_close(out, expected, what, LL_HINT, rtol=1e-4 if dtype == np.float32 else None,
                         atol=1e-4 if dtype == np.float32 else None)


@test("logit_lens_edge", "logit_lens", hidden=True)
def logit_lens_edge(logit_lens, ref):
    """A constant vector (variance 0: eps inside the sqrt keeps it finite), a huge stream, D = 2, V = 1."""
    rng = rng_for("logit_lens_edge")
    d = 6
    g, b = 1 + 0.2 * rng.standard_normal(d), 0.1 * rng.standard_normal(d)
    wte = rng.standard_normal((9, d))
    cases = {"a constant vector": (np.full((2, d), 3.0), g, b, wte),
             "a huge stream (1e6)": (rng.standard_normal((3, d)) * 1e6, g, b, wte),
             "D = 2": (rng.standard_normal((2, 4, 2)), np.array([1.0, 2.0]), np.array([0.5, -0.5]),
                       rng.standard_normal((5, 2))),
             "a vocabulary of one token": (rng.standard_normal((3, d)), g, b, wte[:1])}
    for name, args in cases.items():
        what = f"logit_lens on {name}"
        out = as_result_array(logit_lens(*args), what)
        expected = ref.logit_lens(*args)
        _diagnose_lens(out, *args, expected, what)
        assert_close(out, expected, what, LL_HINT + " (eps = 1e-5 inside the square root)",
                     rtol=1e-8, atol=1e-9)


# ------------------------------------------------------------------ patch_head

PATCH_HINT = ("copy the corrupted outputs, then overwrite the single entry [layer, head, position] with the "
              "clean run's")
PATCH_ALL_POS_HINT = "patch only the given position: [layer, head, position], not [layer, head, :] (every position)"
PATCH_ALL_HEADS_HINT = "patch only the given head: [layer, head, position], not every head of the layer"
PATCH_ROLES_HINT = ("start from the CORRUPTED run and bring in the clean run's entry (the result is mostly "
                    "corrupted), not the other way round")
PATCH_AXIS_HINT = ("the axes are (layer, head, position, feature): position indexes the third axis, "
                   "[layer, head, position] is a whole D-vector")
PATCH_ORDER_HINT = "the first axis is the layer, the second the head: index [layer, head, position]"


def _patch_variants(clean, corrupt, layer, head, position):
    def put(index, src=clean, dst=corrupt):
        out = np.array(dst, copy=True)
        out[index] = src[index]
        return out
    variants = {PATCH_ALL_POS_HINT: put((layer, head)), PATCH_ALL_HEADS_HINT: put((layer, slice(None), position)),
                PATCH_ROLES_HINT: put((layer, head, position), corrupt, clean),
                PATCH_AXIS_HINT: put((layer, head, slice(None), position)) if position < clean.shape[-1] else None}
    if head < clean.shape[0] and layer < clean.shape[1]:
        variants[PATCH_ORDER_HINT] = put((head, layer, position))
    return {h: v for h, v in variants.items() if v is not None}


def _diagnose_patch(out, clean, corrupt, layer, head, position, what):
    assert_shape(out, corrupt.shape, what, "return the whole (L, H, T, D) array, with one entry patched")
    expected = np.array(corrupt, copy=True)
    expected[layer, head, position] = clean[layer, head, position]
    if np.array_equal(out, expected):
        return expected
    for hint, value in _patch_variants(clean, corrupt, layer, head, position).items():
        if np.array_equal(out, value):
            raise CheckFailure(f"{what}: the wrong entries were patched", hint)
    changed = np.argwhere(np.any(out != corrupt, axis=-1))
    raise CheckFailure(f"{what}: the result differs from the corrupted run at [layer, head, position] = "
                       f"{changed.tolist()[:6]}, expected only {[[layer, head, position % corrupt.shape[2]]]}",
                       PATCH_HINT)


@test("patch_head_visible", "patch_head")
def patch_head_visible(patch_head):
    """Exactly one (layer, head, position) vector comes from the clean run, negative positions count from the end."""
    shape = (2, 3, 4, 5)                                     # (L, H, T, D)
    clean = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    corrupt = -1.0 - clean[..., ::-1]
    for layer, head, position in [(1, 2, 3), (0, 1, 2), (1, 0, -1)]:
        what = f"patch_head(clean, corrupt (2, 3, 4, 5), layer={layer}, head={head}, position={position})"
        out = as_result_array(attempt(lambda: patch_head(clean, corrupt, layer, head, position), what, PATCH_HINT),
                              what)
        expected = _diagnose_patch(out, clean, corrupt, layer, head, position, what)
        assert_close(out, expected, what, PATCH_HINT)
    what = "patch_head on float32 activations"
    out = as_result_array(patch_head(clean.astype(np.float32), corrupt.astype(np.float32), 0, 2, 1), what)
    expected = _diagnose_patch(out, clean.astype(np.float32), corrupt.astype(np.float32), 0, 2, 1, what)
    assert_close(out, expected, what, PATCH_HINT)


@test("patch_head_random", "patch_head", hidden=True)
def patch_head_random(patch_head, ref):
    """Random activations of several shapes, every kind of index, float64 and float32."""
    rng = rng_for("patch_head_random")
    for dtype in (np.float64, np.float32):
        for shape in [(2, 4, 7, 8), (3, 2, 5, 16), (1, 1, 3, 4), (4, 3, 6, 2)]:
            clean = rng.standard_normal(shape).astype(dtype)
            corrupt = rng.standard_normal(shape).astype(dtype)
            for _ in range(3):
                layer, head = int(rng.integers(shape[0])), int(rng.integers(shape[1]))
                position = int(rng.integers(-shape[2], shape[2]))
                what = f"patch_head(activations {shape}, {layer}, {head}, {position}) [{np.dtype(dtype)}]"
                out = as_result_array(patch_head(clean, corrupt, layer, head, position), what)
                _diagnose_patch(out, clean, corrupt, layer, head, position, what)
                assert_close(out, ref.patch_head(clean, corrupt, layer, head, position), what, PATCH_HINT)


@test("patch_head_edge", "patch_head", hidden=True)
def patch_head_edge(patch_head, ref):
    """Identical runs (nothing changes), one layer and one head, the last position, an index out of range raises."""
    rng = rng_for("patch_head_edge")
    a = rng.standard_normal((2, 2, 3, 4))
    for name, clean, corrupt, idx in [("identical runs", a, a.copy(), (1, 1, 2)),
                                      ("one layer, one head, one position", a[:1, :1, :1], -a[:1, :1, :1], (0, 0, 0)),
                                      ("the last position as -1", a, 2 * a, (0, 1, -1)),
                                      ("the first position as -T", a, 2 * a, (1, 0, -3))]:
        what = f"patch_head on {name}, index {idx}"
        out = as_result_array(patch_head(clean, corrupt, *idx), what)
        _diagnose_patch(out, clean, corrupt, *idx, what)
        assert_close(out, ref.patch_head(clean, corrupt, *idx), what, PATCH_HINT)
    assert_raises(lambda: patch_head(a, a, 0, 0, 3), "IndexError", "patch_head(activations with T = 3, position=3)",
                  "index the arrays directly (out[layer, head, position]): NumPy raises IndexError out of range")


# ------------------------------------------------------------------ induction_loss_gap

GAP_HINT = ("losses[..., :half - 1] are the first half's tokens 1..half-1, losses[..., half - 1:] the repeated "
            "half's; return the mean of the first minus the mean of the second, along the last axis")
GAP_OFF_HINT = ("split at half - 1, not at half: losses[..., t] is the loss on token t + 1, so the first repeated "
                "token (token half) is losses[..., half - 1]")
GAP_SWAP_HINT = "first half minus repeated half, not the other way round: the gap is positive when the repeat helps"
GAP_RATIO_HINT = "a difference of means (first - repeated), not a ratio"
GAP_FLAT_HINT = "average along the last axis only: keep the leading axes, one gap per row"
GAP_LEN_HINT = "raise ValueError when half < 2 or losses.shape[-1] != 2 * half - 1"
GAP_LOSSES = [[4.0, 4.0, 4.0, 3.0, 1.0, 1.0, 1.0],
              [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0],
              [1.0, 3.0, 2.0, 2.5, 0.5, 0.0, 1.0]]
GAP_EXPECTED = [2.5, 0.0, 1.0]


def _diagnose_gap(out, losses, half, expected, what):
    losses = np.asarray(losses, dtype=np.float64)
    if out.shape == () and losses.ndim > 1:
        raise CheckFailure(f"{what}: one number for {losses.shape[:-1]} rows", GAP_FLAT_HINT)
    assert_shape(out, losses.shape[:-1], what, GAP_FLAT_HINT)
    if _same(out, expected):
        return
    a, b = losses[..., :half - 1].mean(-1), losses[..., half - 1:].mean(-1)
    variants = {GAP_OFF_HINT: losses[..., :half].mean(-1) - losses[..., half:].mean(-1),
                GAP_SWAP_HINT: b - a, GAP_RATIO_HINT: a / np.where(b == 0, np.nan, b)}
    for hint, value in variants.items():
        if _same(out, value):
            raise CheckFailure(f"{what}: got {np.round(out, 6).tolist()}, expected "
                               f"{np.round(expected, 6).tolist()}", hint)


@test("induction_loss_gap_visible", "induction_loss_gap")
def induction_loss_gap_visible(induction_loss_gap):
    """Stored gaps of three loss rows (half = 4), float32 kept, a wrong length raises ValueError."""
    losses = np.array(GAP_LOSSES)
    what = "induction_loss_gap(losses (3, 7), half=4)"
    out = _result(attempt(lambda: induction_loss_gap(losses, 4), what, GAP_HINT), what)
    _diagnose_gap(out, losses, 4, GAP_EXPECTED, what)
    assert_close(out, GAP_EXPECTED, what, GAP_HINT)
    what = "induction_loss_gap(losses (7,), half=4)"
    out = _result(attempt(lambda: induction_loss_gap(losses[0], 4), what, GAP_HINT), what)
    _diagnose_gap(out, losses[0], 4, np.float64(GAP_EXPECTED[0]), what)
    assert_values_close(out, np.float64(GAP_EXPECTED[0]), what, GAP_HINT)
    what = "induction_loss_gap(losses (3, 7), half=4) [float32]"
    out = _result(induction_loss_gap(losses.astype(np.float32), 4), what)
    _diagnose_gap(out, losses, 4, GAP_EXPECTED, what)
    assert_close(out, np.array(GAP_EXPECTED, dtype=np.float32), what, GAP_HINT)
    assert_raises(lambda: induction_loss_gap(losses, 3), "ValueError", "induction_loss_gap(losses (3, 7), half=3)",
                  GAP_LEN_HINT)
    assert_raises(lambda: induction_loss_gap(np.ones((2, 8)), 4), "ValueError",
                  "induction_loss_gap(losses (2, 8), half=4)", GAP_LEN_HINT)


@test("induction_loss_gap_random", "induction_loss_gap", hidden=True)
def induction_loss_gap_random(induction_loss_gap, ref):
    """Random losses with leading axes (training steps, batch), float64 and float32."""
    rng = rng_for("induction_loss_gap_random")
    for dtype in (np.float64, np.float32):
        for lead, half in [((5,), 6), ((2, 3), 10), ((), 32), ((4, 1), 2)]:
            losses = rng.exponential(2.0, size=lead + (2 * half - 1,)).astype(dtype)
            what = f"induction_loss_gap(losses {losses.shape}, half={half}) [{np.dtype(dtype)}]"
            out = _result(induction_loss_gap(losses, half), what)
            expected = ref.induction_loss_gap(losses, half)
            _diagnose_gap(out, losses, half, expected, what)
            _assert_answer(out, expected, what, GAP_HINT)


@test("induction_loss_gap_edge", "induction_loss_gap", hidden=True)
def induction_loss_gap_edge(induction_loss_gap, ref):
    """half = 2 (one loss in the first half), zero losses, half < 2 and a wrong length raise ValueError."""
    cases = [(np.array([[3.0, 1.0, 2.0]]), 2), (np.zeros((2, 9)), 5), (np.array([[0.0, 0.0, 5.0, 5.0, 5.0]]), 3)]
    for losses, half in cases:
        what = f"induction_loss_gap(losses {losses.tolist()}, half={half})"
        out = _result(induction_loss_gap(losses, half), what)
        expected = ref.induction_loss_gap(losses, half)
        _diagnose_gap(out, losses, half, expected, what)
        assert_close(out, expected, what, GAP_HINT)
    for shape, half in [((1,), 1), ((2, 5), 2), ((3, 3), 3)]:
        assert_raises(lambda: induction_loss_gap(np.ones(shape), half), "ValueError",
                      f"induction_loss_gap(losses {shape}, half={half})", GAP_LEN_HINT)

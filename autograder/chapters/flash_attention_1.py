"""Chapter 13 (13-flash-attention-1): the online softmax, tiled attention and its log-sum-exp."""
import math

import numpy as np

from ..framework import (Chapter, CheckFailure, as_result_array, attempt, assert_finite, assert_shape,
                         assert_values_close, matches, rng_for)

chapter = Chapter("13-flash-attention-1", reference="flash_attention_1",
                  functions=["attention_logsumexp", "online_softmax_update", "online_softmax",
                             "tiled_attention"],
                  provided=["naive_attention"],
                  sample_scores=(12, 6, 0, 0, 9))
test = chapter.test


# ------------------------------------------------------------------ helpers (plain formulas)

def _close(a, b):
    """Equal up to rounding at a's precision: for naming a slip (NaN never equals anything)."""
    tol = 1e-5 if getattr(a, "dtype", None) == np.float32 else 1e-7
    return matches(a, b, rtol=tol, atol=tol)


def _scores(q, k, causal=False, scale=True, fill=-np.inf, diag=0):
    s = q @ np.swapaxes(k, -1, -2)
    if scale:
        s = s / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tri(s.shape[-2], s.shape[-1], diag, dtype=bool), s, fill)
    return s


def _lse(s):
    m = s.max(axis=-1)
    with np.errstate(all="ignore"):
        return m + np.log(np.exp(s - m[..., None]).sum(axis=-1))


def _softmax(s):
    with np.errstate(all="ignore"):
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


def _pair(result, what, n):
    """A student's tuple result as n plain arrays, or a failure saying what came back."""
    if not isinstance(result, (tuple, list)) or len(result) != n:
        got = f"a tuple of {len(result)} items" if isinstance(result, (tuple, list)) else \
            ("one array" if isinstance(result, np.ndarray) else f"{type(result).__name__}")
        raise CheckFailure(f"{what} returned {got}, expected a tuple of {n} arrays", TUPLE_HINTS[n])
    return [as_result_array(r, f"{what}[{i}]") for i, r in enumerate(result)]


TUPLE_HINTS = {
    2: "return (output, logsumexp): FlashAttention keeps the logsumexp m + log(l) of every query "
       "for the backward pass",
    3: "return the new state as a tuple (m, l, acc)",
}

SCALE_HINT = "scale the scores by 1/sqrt(d): s = q k^T / sqrt(d), d = q.shape[-1]"
ADD_MAX_HINT = ("the log-sum-exp is m + log(sum exp(s - m)): add the maximum m back after "
                "taking the log (FlashAttention's logsumexp is m + log(l), not log(l))")
STABLE_HINT = ("subtract the row maximum before exp and add it back after the log: exp of a score "
               "of 1000 overflows to inf")
OFF_BY_ONE_HINT = ("query i may see keys j <= i, no more and no less: the causal diagonal is off by "
                   "one (keep the diagonal, mask only j > i)")
MASK_ZERO_HINT = ("mask with -inf, not 0: a score of 0 still gets weight exp(0 - m) in the sum; only "
                  "-inf gives exactly nothing")
DIAG_HINT = ("the causal diagonal: query i attends to keys 0..i inclusive. In block [start, stop) "
             "compare the global key index j = start + (0..stop-start-1) with i, keep j <= i (the "
             "diagonal included) and set j > i to -inf")
CAUSAL_HINT = "with causal=True, set the scores of keys j > i to -inf before the exponentials"
BATCH_HINT = "keep the leading batch axes: transpose only the last two axes (np.swapaxes(k, -1, -2))"


# ------------------------------------------------------------------ attention_logsumexp

def _call(fn, args, kwargs, what, hint=BATCH_HINT):
    return attempt(lambda: fn(*args, **kwargs), what, hint)


def _check_lse(out, q, k, causal, what):
    """Compare a log-sum-exp with the formula, naming the slip that gives `out`."""
    expected = _lse(_scores(q, k, causal))
    out = as_result_array(out, what)
    assert_shape(out, expected.shape, what, "one number per query: shape (..., n_q)")
    if _close(out, expected):
        return
    if _close(out, _lse(_scores(q, k, causal, scale=False))):
        raise CheckFailure(f"{what}: the scores were not scaled", SCALE_HINT)
    s = _scores(q, k, causal)
    if _close(out, expected - s.max(axis=-1)):
        raise CheckFailure(f"{what}: the result is log(sum exp(s - m)) without m", ADD_MAX_HINT)
    if causal:
        if np.isneginf(out).any() or _close(out, _lse(_scores(q, k, True, diag=-1))):
            raise CheckFailure(f"{what}: query i does not see key i (query 0 sees nothing)", OFF_BY_ONE_HINT)
        if _close(out, _lse(_scores(q, k, True, diag=1))):
            raise CheckFailure(f"{what}: query i also sees key i + 1", OFF_BY_ONE_HINT)
        if _close(out, _lse(_scores(q, k, True, fill=0.0))):
            raise CheckFailure(f"{what}: masked keys still count", MASK_ZERO_HINT)
        if _close(out, _lse(_scores(q, k, False))):
            raise CheckFailure(f"{what}: every query saw every key", CAUSAL_HINT)
    assert_values_close(out, expected, what, "log(sum_j exp(s_ij)) over the keys j of each query i, "
                        "s = q k^T / sqrt(d)")


@test("attention_logsumexp_visible", "attention_logsumexp")
def attention_logsumexp_visible(attention_logsumexp):
    """One key; a stored 2x2 case; huge scores stay finite; the causal mask; batch dims."""
    rng = rng_for("attention_logsumexp_visible")
    # 1. One key: the log-sum-exp is that key's scaled score.
    q, k = rng.standard_normal((3, 4)), rng.standard_normal((1, 4))
    what = "attention_logsumexp(q (3, 4), k (1, 4))"
    out = as_result_array(_call(attention_logsumexp, (q, k), {}, what), what)
    assert_shape(out, (3,), what, "one number per query: shape (..., n_q)")
    _check_lse(out, q, k, False, what)
    # 2. Stored values: d = 4, scores [[1, 1], [2, 0]] -> [1 + log 2, log(e^2 + 1)].
    q2 = np.array([[2.0, 0, 0, 0], [0, 4.0, 0, 0]])
    k2 = np.array([[1.0, 0, 0, 0], [1.0, 1.0, 0, 0]])
    what = "attention_logsumexp(q (2, 4), k (2, 4)), scores [[1, 1], [0, 2]]"
    out = as_result_array(_call(attention_logsumexp, (q2, k2), {}, what), what)
    _check_lse(out, q2, k2, False, what)
    assert_values_close(out, [1 + math.log(2), math.log(1 + math.exp(2))], what, SCALE_HINT)
    # 3. Huge scores: stable.
    q3, k3 = 300 * rng.standard_normal((4, 8)), 300 * rng.standard_normal((6, 8))
    what = "attention_logsumexp(scores of size about 10^5)"
    out = as_result_array(_call(attention_logsumexp, (q3, k3), {}, what), what)
    assert_finite(out, what, STABLE_HINT)
    _check_lse(out, q3, k3, False, what)
    # 4. The causal mask: query 0 sees only key 0.
    q4, k4 = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    what = "attention_logsumexp(q (5, 4), k (5, 4), causal=True)"
    out = as_result_array(_call(attention_logsumexp, (q4, k4), {"causal": True}, what), what)
    assert_shape(out, (5,), what, "one number per query: shape (..., n_q)")
    _check_lse(out, q4, k4, True, what)
    what = "attention_logsumexp(q (5, 4), k (5, 4), causal=False)"
    out = as_result_array(_call(attention_logsumexp, (q4, k4), {"causal": False}, what), what)
    _check_lse(out, q4, k4, False, what)
    # 5. Batch dims.
    qb, kb = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 5, 4))
    what = "attention_logsumexp(q (2, 3, 5, 4), k (2, 3, 5, 4), causal=True)"
    out = as_result_array(_call(attention_logsumexp, (qb, kb), {"causal": True}, what), what)
    assert_shape(out, (2, 3, 5), what, BATCH_HINT)
    _check_lse(out, qb, kb, True, what)


@test("attention_logsumexp_random", "attention_logsumexp", hidden=True)
def attention_logsumexp_random(attention_logsumexp, ref):
    """Random q and k with batch dims, causal and not, float64 and float32."""
    rng = rng_for("attention_logsumexp_random")
    for dtype in (np.float64, np.float32):
        for lead, n_q, n_k, d in [((), 7, 9, 8), ((2,), 5, 5, 16), ((2, 3), 6, 6, 4), ((), 33, 33, 32)]:
            q = rng.standard_normal(lead + (n_q, d)).astype(dtype)
            k = rng.standard_normal(lead + (n_k, d)).astype(dtype)
            for causal in ((False, True) if n_q == n_k else (False,)):
                what = f"attention_logsumexp(q {q.shape}, k {k.shape}, causal={causal}) [{np.dtype(dtype)}]"
                out = as_result_array(_call(attention_logsumexp, (q, k), {"causal": causal}, what), what)
                expected = ref.attention_logsumexp(q, k, causal=causal)
                assert_shape(out, expected.shape, what, BATCH_HINT)
                assert_values_close(out, expected, what, SCALE_HINT)


@test("attention_logsumexp_edge", "attention_logsumexp", hidden=True)
def attention_logsumexp_edge(attention_logsumexp, ref):
    """One query and one key; equal scores (log n); huge scores; a long causal sequence."""
    rng = rng_for("attention_logsumexp_edge")
    q1, k1 = rng.standard_normal((1, 3)), rng.standard_normal((1, 3))
    cases = [(q1, k1, True), (np.zeros((3, 4)), rng.standard_normal((10, 4)), False),
             (500 * rng.standard_normal((3, 6)), 500 * rng.standard_normal((6, 6)), False),
             (1e3 * rng.standard_normal((4, 4)), 1e3 * rng.standard_normal((4, 4)), True),
             (rng.standard_normal((300, 16)), rng.standard_normal((300, 16)), True)]
    for q, k, causal in cases:
        what = f"attention_logsumexp(q {q.shape}, k {k.shape}, causal={causal})"
        out = as_result_array(_call(attention_logsumexp, (q, k), {"causal": causal}, what), what)
        assert_finite(out, what, STABLE_HINT)
        assert_values_close(out, ref.attention_logsumexp(q, k, causal=causal), what, STABLE_HINT)
    what = "attention_logsumexp(q = 0, 10 keys)"
    out = as_result_array(_call(attention_logsumexp, (np.zeros((3, 4)), rng.standard_normal((10, 4))), {},
                                what), what)
    assert_values_close(out, np.full(3, math.log(10)), f"{what}: all scores are 0, so log(10)", ADD_MAX_HINT)


# ------------------------------------------------------------------ online_softmax_update

RESCALE_L_HINT = ("rescale the running sum: l_new = exp(m_old - m_new) * l_old + sum(exp(scores - m_new)); "
                  "the old terms were exponentiated relative to the old maximum")
RESCALE_ACC_HINT = ("rescale the accumulator too: acc_new = exp(m_old - m_new) * acc_old + "
                    "exp(scores - m_new) @ values")
SIGN_HINT = ("the rescaling factor is exp(m_old - m_new), which is at most 1; exp(m_new - m_old) is "
             "its inverse")
RUNNING_MAX_HINT = ("the running max is the larger of the old m and the block's max: "
                    "m_new = np.maximum(m, scores.max(axis=-1))")
SAFE_MAX_HINT = ("a row whose scores so far are all -inf has m_new = -inf, and -inf - (-inf) is NaN: "
                 "subtract a safe maximum, 0 where m_new is -inf (np.where(np.isneginf(m_new), 0, m_new))")
UPDATE_HINT = ("m_new = max(m, block max); alpha = exp(m - m_new); p = exp(scores - m_new); "
               "l_new = alpha * l + p.sum(-1); acc_new = alpha[..., None] * acc + p @ values")


def _update_formula(m, l, acc, s, v, variant=""):
    with np.errstate(all="ignore"):
        return _update_formula_(m, l, acc, s, v, variant)


def _update_formula_(m, l, acc, s, v, variant):
    m_new = np.maximum(m, s.max(-1)) if variant != "block_max" else s.max(-1)
    safe = np.where(np.isneginf(m_new), 0.0, m_new)
    alpha = np.exp(m - safe) if variant != "sign" else np.exp(safe - m)
    p = np.exp(s - safe[..., None])
    l_new = (alpha if variant != "no_l" else 1.0) * l + p.sum(-1)
    acc_new = (alpha[..., None] if variant != "no_acc" else 1.0) * acc + p @ v
    return m_new, l_new, acc_new


def _check_update(fn, state, s, v, what):
    m, l, acc = state
    res = _pair(_call(fn, (m, l, acc, s, v), {}, what), what, 3)
    em, el, eacc = _update_formula(m, l, acc, s, v)
    for got, exp, name in zip(res, (em, el, eacc), ("m", "l", "acc")):
        assert_shape(got, exp.shape, f"{what}: {name}", "m and l have shape (..., n_q), acc (..., n_q, d_v)")
    gm, gl, gacc = res
    for name, got in (("l", gl), ("acc", gacc)):
        if np.isnan(got).any():
            raise CheckFailure(f"{what}: {name} has NaN", SAFE_MAX_HINT if np.isneginf(em).any() else
                               SIGN_HINT + " (with m_old = -inf, exp(m_new - m_old) is inf and inf * 0 is NaN)")
    if not _close(gm, em):
        if _close(gm, s.max(-1)):
            raise CheckFailure(f"{what}: m is the block's maximum {gm.tolist()}, expected {em.tolist()}",
                               RUNNING_MAX_HINT)
        assert_values_close(gm, em, f"{what}: m", RUNNING_MAX_HINT)
    for variant, hint in (("sign", SIGN_HINT), ("no_l", RESCALE_L_HINT), ("no_acc", RESCALE_ACC_HINT)):
        wm, wl, wacc = _update_formula(m, l, acc, s, v, variant)
        if (_close(gl, wl) and not _close(gl, el)) or (_close(gacc, wacc) and not _close(gacc, eacc)):
            raise CheckFailure(f"{what}: got l = {np.round(gl, 4).tolist()}, acc = {np.round(gacc, 4).tolist()}; "
                               f"expected l = {np.round(el, 4).tolist()}, acc = {np.round(eacc, 4).tolist()}", hint)
    assert_values_close(gl, el, f"{what}: l", UPDATE_HINT)
    assert_values_close(gacc, eacc, f"{what}: acc", UPDATE_HINT)


@test("online_softmax_update_visible", "online_softmax_update")
def online_softmax_update_visible(online_softmax_update):
    """Hand-computed steps from a known state; a fully masked block stays NaN-free; blocks add up to attention."""
    e = math.exp
    eye = np.eye(2)
    # 1. From the start state, one query, a block of 2 keys: m = 3, l = e^-2 + 1, acc = [e^-2, 1].
    start = (np.array([-np.inf]), np.zeros(1), np.zeros((1, 2)))
    s = np.array([[1.0, 3.0]])
    what = "online_softmax_update(start state, scores [[1, 3]], values I)"
    res = _pair(_call(online_softmax_update, (*start, s, eye), {}, what), what, 3)
    if not np.isnan(res[1]).any():
        assert_values_close(res[0], [3.0], f"{what}: m", RUNNING_MAX_HINT)
        assert_values_close(res[1], [e(-2) + 1], f"{what}: l", UPDATE_HINT)
    # 2. From m = 2, l = 1.5, acc = [[0.5, 1.0]]: the maximum grows to 3, old terms shrink by e^-1.
    state = (np.array([2.0]), np.array([1.5]), np.array([[0.5, 1.0]]))
    what = "online_softmax_update(m=[2], l=[1.5], acc=[[0.5, 1]], scores [[1, 3]], values I)"
    _check_update(online_softmax_update, state, s, eye, what)
    res = _pair(online_softmax_update(*state, s, eye), what, 3)
    assert_values_close(res[1], [1.5 * e(-1) + e(-2) + 1], f"{what}: l", RESCALE_L_HINT)
    assert_values_close(res[2], [[0.5 * e(-1) + e(-2), e(-1) + 1]], f"{what}: acc", RESCALE_ACC_HINT)
    # 3. The maximum does not grow: m stays 5.
    state = (np.array([5.0]), np.array([1.0]), np.array([[1.0, 1.0]]))
    _check_update(online_softmax_update, state, s, eye,
                  "online_softmax_update(m=[5], l=[1], acc=[[1, 1]], scores [[1, 3]], values I)")
    # 4. Now the start state works too.
    _check_update(online_softmax_update, start, s, eye, "online_softmax_update(start state, scores [[1, 3]])")
    # 5. A fully masked block, from the start and from a finite state: nothing changes, no NaN.
    masked = np.array([[-np.inf, -np.inf]])
    for st, name in ((start, "start state"), (state, "m=[5], l=[1], acc=[[1, 1]]")):
        what = f"online_softmax_update({name}, scores [[-inf, -inf]])"
        _check_update(online_softmax_update, st, masked, eye, what)
    # 6. Blocks of a random problem, with batch dims, give the softmax-weighted values.
    rng = rng_for("online_softmax_update_visible")
    s = rng.standard_normal((2, 3, 10)) * 3
    s[0, 0, :4] = -np.inf
    v = rng.standard_normal((2, 10, 5))
    state = (np.full((2, 3), -np.inf), np.zeros((2, 3)), np.zeros((2, 3, 5)))
    for start_col in range(0, 10, 4):
        blk = slice(start_col, start_col + 4)
        what = f"online_softmax_update on keys {start_col}..{min(start_col + 4, 10) - 1} (shapes (2, 3, ...))"
        _check_update(online_softmax_update, state, s[..., blk], v[..., blk, :], what)
        state = tuple(_pair(online_softmax_update(*state, s[..., blk], v[..., blk, :]), what, 3))
    assert_values_close(state[2] / state[1][..., None], _softmax(s) @ v,
                        "acc / l after all blocks should equal softmax(scores) @ values", UPDATE_HINT)


def _random_states(rng, lead, n_q, b, d_v, dtype):
    m = (rng.standard_normal(lead + (n_q,)) * 2).astype(dtype)
    l = rng.uniform(0.5, 3, lead + (n_q,)).astype(dtype)
    acc = rng.standard_normal(lead + (n_q, d_v)).astype(dtype)
    s = (rng.standard_normal(lead + (n_q, b)) * 2).astype(dtype)
    v = rng.standard_normal(lead + (b, d_v)).astype(dtype)
    return m, l, acc, s, v


@test("online_softmax_update_random", "online_softmax_update", hidden=True)
def online_softmax_update_random(online_softmax_update, ref):
    """Random states and blocks with batch dims, float64 and float32."""
    rng = rng_for("online_softmax_update_random")
    for dtype in (np.float64, np.float32):
        for lead, n_q, b, d_v in [((), 4, 3, 2), ((2,), 5, 8, 6), ((2, 3), 3, 1, 4), ((), 16, 16, 16)]:
            args = _random_states(rng, lead, n_q, b, d_v, dtype)
            what = f"online_softmax_update(state {lead + (n_q,)}, block of {b} keys) [{np.dtype(dtype)}]"
            res = _pair(_call(online_softmax_update, args, {}, what), what, 3)
            for got, exp, name in zip(res, ref.online_softmax_update(*args), ("m", "l", "acc")):
                assert_shape(got, exp.shape, f"{what}: {name}", BATCH_HINT)
                assert_values_close(got, exp, f"{what}: {name}", UPDATE_HINT)


@test("online_softmax_update_edge", "online_softmax_update", hidden=True)
def online_softmax_update_edge(online_softmax_update, ref):
    """Partly and fully masked rows; a block of one key; huge scores; a whole row's blocks from the start."""
    rng = rng_for("online_softmax_update_edge")
    m, l, acc, s, v = _random_states(rng, (3,), 4, 5, 3, np.float64)
    m[0, :2] = -np.inf
    l[0, :2] = 0
    acc[0, :2] = 0
    s[0, 0] = -np.inf
    s[1, 1, :3] = -np.inf
    s[2] *= 300
    cases = [((m, l, acc, s, v), "mixed masked and huge"),
             ((m, l, acc, s[..., :1], v[..., :1, :]), "one key")]
    for args, name in cases:
        what = f"online_softmax_update({name})"
        res = _pair(_call(online_softmax_update, args, {}, what), what, 3)
        for got, exp, part in zip(res, ref.online_softmax_update(*args), ("m", "l", "acc")):
            if part != "m":
                assert_finite(got, f"{what}: {part}", SAFE_MAX_HINT)
            assert_values_close(got, exp, f"{what}: {part}", UPDATE_HINT)


# ------------------------------------------------------------------ online_softmax

SECOND_PASS_HINT = ("normalise once, at the end: the first pass only finds the final m and l; the "
                    "probabilities exp(x - m) / l need the final values, not the ones seen so far")
RAGGED_HINT = ("the last block may be shorter than block_size: loop over range(0, n, block_size) "
               "and slice x[..., start:start + block_size] (slicing past the end is fine)")
SOFTMAX_HINT = "the result must equal exp(x - max) / sum(exp(x - max)) along the last axis"


def _online_softmax_variant(x, b, variant):
    n = x.shape[-1]
    m = np.full(x.shape[:-1], -np.inf)
    l = np.zeros(x.shape[:-1])
    out = np.zeros(x.shape)
    for st in range(0, n, b):
        blk = x[..., st:st + b]
        m_new = np.maximum(m, blk.max(-1))
        l = (l if variant == "no_l" else l * np.exp(m - m_new)) + np.exp(blk - m_new[..., None]).sum(-1)
        m = m_new
        if variant == "in_loop":
            out[..., st:st + b] = np.exp(blk - m[..., None]) / l[..., None]
    return out if variant == "in_loop" else np.exp(x - m[..., None]) / l[..., None]


def _check_online(fn, x, b, what, ragged=False):
    out = as_result_array(_call(fn, (x, b), {}, what, RAGGED_HINT if ragged else BATCH_HINT), what)
    assert_shape(out, x.shape, what, "the result has the shape of x")
    expected = _softmax(x)
    if np.isnan(out).any():
        blocked = any(np.isneginf(x[..., st:st + b]).all(-1).any() for st in range(0, x.shape[-1], b))
        raise CheckFailure(f"{what}: {int(np.isnan(out).sum())} entries are NaN",
                           SAFE_MAX_HINT if blocked else SIGN_HINT + " (with m_old = -inf at the start, "
                           "exp(m_new - m_old) is inf, and inf * 0 is NaN)")
    if _close(out, expected):
        return
    if ragged:
        raise CheckFailure(f"{what}: wrong when block_size does not divide n = {x.shape[-1]} "
                           f"(columns {x.shape[-1] // b * b}.. are the ragged last block)", RAGGED_HINT)
    for variant, hint in (("no_l", RESCALE_L_HINT), ("in_loop", SECOND_PASS_HINT)):
        if _close(out, _online_softmax_variant(x, b, variant)):
            raise CheckFailure(f"{what}: rows sum to {np.round(out.sum(-1), 4).tolist()}", hint)
    assert_values_close(out, expected, what, SOFTMAX_HINT)


@test("online_softmax_visible", "online_softmax")
def online_softmax_visible(online_softmax):
    """Equals a stored softmax for block sizes 5, 1, 2 and 3 (ragged); masked blocks; huge values; batch dims."""
    x = np.array([[1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 1.0, 0.0, 2.0, -1.0]])
    stored = np.array([[0.01165623, 0.03168492, 0.08612854, 0.23412166, 0.63640865],
                       [0.63640865, 0.08612854, 0.03168492, 0.23412166, 0.01165623]])
    _check_online(online_softmax, x, 5, "online_softmax(x (2, 5), block_size=5) (one block)")
    assert_values_close(online_softmax(x, 5), stored, "online_softmax(x (2, 5), 5)", SOFTMAX_HINT, rtol=1e-6, atol=1e-8)
    _check_online(online_softmax, x, 1, "online_softmax(x (2, 5), block_size=1)")
    xs = np.array([[0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0], [1.0, 5.0, 2.0, 8.0]])
    _check_online(online_softmax, xs, 2, "online_softmax(x (3, 4), block_size=2)")
    for b in (2, 3, 7):
        _check_online(online_softmax, x, b, f"online_softmax(x (2, 5), block_size={b})", ragged=True)
    assert_values_close(online_softmax(x, 3), stored, "online_softmax(x (2, 5), 3)", RAGGED_HINT, rtol=1e-6, atol=1e-8)
    xm = np.array([[-np.inf, -np.inf, 0.0, 1.0, 2.0], [0.0, -np.inf, 1.0, -np.inf, -np.inf]])
    _check_online(online_softmax, xm, 2, "online_softmax(x with a block of -inf, block_size=2)")
    rng = rng_for("online_softmax_visible")
    big = 1000 + 50 * rng.standard_normal((3, 9))
    _check_online(online_softmax, big, 4, "online_softmax(x about 1000, block_size=4)", ragged=True)
    xb = rng.standard_normal((2, 3, 8))
    _check_online(online_softmax, xb, 4, "online_softmax(x (2, 3, 8), block_size=4)")


@test("online_softmax_random", "online_softmax", hidden=True)
def online_softmax_random(online_softmax, ref):
    """Random rows with batch dims and several block sizes, float64 and float32."""
    rng = rng_for("online_softmax_random")
    for dtype in (np.float64, np.float32):
        for shape, b in [((4, 10), 3), ((2, 3, 16), 4), ((50,), 7), ((3, 64), 64), ((2, 100), 16)]:
            x = (3 * rng.standard_normal(shape)).astype(dtype)
            what = f"online_softmax(x {shape}, block_size={b}) [{np.dtype(dtype)}]"
            out = as_result_array(_call(online_softmax, (x, b), {}, what), what)
            assert_values_close(out, ref.online_softmax(x, b), what, SOFTMAX_HINT)


@test("online_softmax_edge", "online_softmax", hidden=True)
def online_softmax_edge(online_softmax, ref):
    """One column; block larger than the row; block of 1; -inf blocks; huge values; a long row."""
    rng = rng_for("online_softmax_edge")
    xm = rng.standard_normal((4, 12))
    xm[0, :6] = -np.inf
    xm[1, ::2] = -np.inf
    xm[2, 6:] = -np.inf
    cases = [(rng.standard_normal((3, 1)), 4), (rng.standard_normal((2, 5)), 100), (rng.standard_normal(9), 1),
             (xm, 3), (xm, 6), (1e4 * rng.standard_normal((2, 11)), 4), (rng.standard_normal((2, 3000)), 128)]
    for x, b in cases:
        what = f"online_softmax(x {x.shape}, block_size={b})"
        out = as_result_array(_call(online_softmax, (x, b), {}, what), what)
        assert_finite(out, what, SAFE_MAX_HINT)
        assert_values_close(out, ref.online_softmax(x, b), what, RAGGED_HINT)


# ------------------------------------------------------------------ tiled_attention

AFTER_LOOP_HINT = ("the blocks must combine exactly: rescale the old l and acc by exp(m_old - m_new) "
                   "(online_softmax_update) and divide acc by l once, after the loop")
ONE_KEY_HINT = "with a single key every query's weight on it is 1, so the output is that key's value"


def _naive(q, k, v, causal=False, **kw):
    s = _scores(q, k, causal, **kw)
    return _softmax(s) @ v, _lse(s)


def _check_tiled(fn, q, k, v, b, causal, what, after=None):
    """Compare (output, logsumexp) with the formulas; name the slip. `after`: hint when only this fails."""
    res = _pair(_call(fn, (q, k, v), {"block_size": b, "causal": causal}, what), what, 2)
    out, lse = res
    e_out, e_lse = _naive(q, k, v, causal)
    assert_shape(out, e_out.shape, f"{what}: output", "the output has shape (..., n_q, d_v)")
    assert_shape(lse, e_lse.shape, f"{what}: logsumexp", "the logsumexp has one number per query: (..., n_q)")
    if causal and np.isnan(out[..., 0, :]).all() and not np.isnan(out[..., 1:, :]).any():
        raise CheckFailure(f"{what}: output row 0 is NaN (query 0 saw no key)", OFF_BY_ONE_HINT)
    if _close(out, e_out) and _close(lse, e_lse):
        return
    if _close(out, _naive(q, k, v, causal, scale=False)[0]) and not _close(out, e_out):
        raise CheckFailure(f"{what}: the output matches unscaled scores", SCALE_HINT)
    if _close(lse, _naive(q, k, v, causal, scale=False)[1]) and not _close(lse, e_lse):
        raise CheckFailure(f"{what}: the logsumexp matches unscaled scores", SCALE_HINT)
    if causal:
        for kw, hint in (({"diag": 1}, OFF_BY_ONE_HINT), ({"fill": 0.0}, MASK_ZERO_HINT), ({"causal": False},
                                                                                           CAUSAL_HINT)):
            w_out, _ = _naive(q, k, v, **{"causal": True, **kw})
            if _close(out, w_out):
                raise CheckFailure(f"{what}: row 0 of the output is {np.round(out[..., 0, :], 3).tolist()}, "
                                   f"expected v[0] = {np.round(v[..., 0, :], 3).tolist()}", hint)
    if _close(out, e_out):
        s = _scores(q, k, causal)
        if _close(lse, e_lse - s.max(-1)) or _close(lse, np.zeros_like(e_lse)):
            raise CheckFailure(f"{what}: the logsumexp is log(l) without m", ADD_MAX_HINT)
        assert_values_close(lse, e_lse, f"{what}: logsumexp", ADD_MAX_HINT)
    if causal:
        _causal_diagnosis(fn, q, k, v, b, out, e_out, what)
    assert_values_close(out, e_out, f"{what}: output", after or AFTER_LOOP_HINT)


def _causal_diagnosis(fn, q, k, v, b, out, e_out, what):
    """A causal result is wrong: if the same call without the mask is right, or the rows match
    a shifted diagonal, the causal mask is at fault, not the rescaling."""
    with np.errstate(invalid="ignore"):   # under j < i query 0 sees nothing (0/0, or 0 if guarded)
        strict = _softmax(_scores(q, k, True, diag=-1))[..., 1:, :] @ v
    if _close(out[..., 1:, :], strict):
        raise CheckFailure(f"{what}: query i attended to keys 0..i-1 only, not to key i", DIAG_HINT)
    free = _pair(_call(fn, (q, k, v), {"block_size": b, "causal": False}, what), what, 2)[0]
    if _close(free, _naive(q, k, v, False)[0]):
        bad = np.flatnonzero(~np.isclose(out, e_out, rtol=1e-4, atol=1e-4).reshape(-1, *out.shape[-2:])
                             .all(axis=(0, 2)))
        raise CheckFailure(f"{what}: right with causal=False, wrong with causal=True (query rows "
                           f"{bad.tolist()} differ)", DIAG_HINT)


@test("tiled_attention_visible", "tiled_attention")
def tiled_attention_visible(tiled_attention):
    """One key gives v; equals softmax(q k^T / sqrt d) v for block sizes 7, 1 and ragged ones; causal; batch."""
    rng = rng_for("tiled_attention_visible")
    # 1. One key.
    q, k, v = rng.standard_normal((3, 4)), rng.standard_normal((1, 4)), rng.standard_normal((1, 5))
    what = "tiled_attention(q (3, 4), k (1, 4), v (1, 5), block_size=1)"
    out, lse = _pair(_call(tiled_attention, (q, k, v), {"block_size": 1}, what), what, 2)
    assert_shape(out, (3, 5), f"{what}: output", "the output has shape (..., n_q, d_v)")
    assert_values_close(out, np.repeat(v, 3, axis=0), f"{what}: output", ONE_KEY_HINT)
    if _close(lse, np.zeros(3)):
        raise CheckFailure(f"{what}: logsumexp is 0 for every query", ADD_MAX_HINT)
    _check_tiled(tiled_attention, q, k, v, 1, False, what)
    # 2. One block, several blocks of one key, ragged blocks.
    q, k, v = rng.standard_normal((6, 4)), rng.standard_normal((7, 4)), rng.standard_normal((7, 3))
    _check_tiled(tiled_attention, q, k, v, 7, False, "tiled_attention(q (6, 4), k (7, 4), v (7, 3), "
                 "block_size=7) (one block)")
    _check_tiled(tiled_attention, q, k, v, 1, False, "tiled_attention(q (6, 4), k (7, 4), v (7, 3), block_size=1)")
    for b in (3, 4, 64):
        _check_tiled(tiled_attention, q, k, v, b, False,
                     f"tiled_attention(q (6, 4), k (7, 4), v (7, 3), block_size={b}) (ragged last block)",
                     after=RAGGED_HINT)
    # 3. Causal: query 0 sees only key 0.
    x = rng.standard_normal((6, 4))
    v = rng.standard_normal((6, 2))
    for b in (6, 2, 4):
        _check_tiled(tiled_attention, x, 2 * x[::-1], v, b, True,
                     f"tiled_attention(q (6, 4), k (6, 4), v (6, 2), block_size={b}, causal=True)")
    # 4. Batch dims, float32.
    qb, kb, vb = (rng.standard_normal((2, 3, 9, 8)).astype(np.float32) for _ in range(3))
    for causal in (False, True):
        _check_tiled(tiled_attention, qb, kb, vb, 4, causal,
                     f"tiled_attention(q, k, v (2, 3, 9, 8) float32, block_size=4, causal={causal})")


@test("tiled_attention_random", "tiled_attention", hidden=True)
def tiled_attention_random(tiled_attention, ref):
    """Random q, k, v with batch dims, n_q != n_k, d_v != d, several block sizes, causal, float64 and float32."""
    rng = rng_for("tiled_attention_random")
    for dtype in (np.float64, np.float32):
        for lead, n_q, n_k, d, d_v, b in [((), 10, 13, 8, 5, 4), ((2,), 17, 17, 16, 16, 5),
                                          ((2, 2), 9, 9, 4, 6, 3), ((), 70, 70, 32, 32, 16)]:
            q = rng.standard_normal(lead + (n_q, d)).astype(dtype)
            k = rng.standard_normal(lead + (n_k, d)).astype(dtype)
            v = rng.standard_normal(lead + (n_k, d_v)).astype(dtype)
            for causal in ((False, True) if n_q == n_k else (False,)):
                what = f"tiled_attention(q {q.shape}, k {k.shape}, v {v.shape}, block_size={b}, " \
                       f"causal={causal}) [{np.dtype(dtype)}]"
                out, lse = _pair(_call(tiled_attention, (q, k, v), {"block_size": b, "causal": causal}, what),
                                 what, 2)
                e_out, e_lse = ref.tiled_attention(q, k, v, block_size=b, causal=causal)
                assert_shape(out, e_out.shape, f"{what}: output", BATCH_HINT)
                if causal and not _close(out, e_out):
                    _causal_diagnosis(tiled_attention, q, k, v, b, out, e_out, what)
                assert_values_close(out, e_out, f"{what}: output", AFTER_LOOP_HINT)
                assert_values_close(lse, e_lse, f"{what}: logsumexp", ADD_MAX_HINT)


@test("tiled_attention_edge", "tiled_attention", hidden=True)
def tiled_attention_edge(tiled_attention, ref):
    """One token; block larger than n; huge scores; a long causal sequence with the default block size."""
    rng = rng_for("tiled_attention_edge")
    cases = [((1, 4), (1, 4), (1, 3), 64, True), ((5, 8), (11, 8), (11, 2), 100, False),
             ((8, 8), (8, 8), (8, 8), 3, True), ((700, 16), (700, 16), (700, 16), None, True)]
    for qs, ks, vs, b, causal in cases:
        q, k, v = rng.standard_normal(qs), rng.standard_normal(ks), rng.standard_normal(vs)
        if qs == (8, 8):
            q, k = 200 * q, 200 * k
        kw = {"causal": causal} if b is None else {"block_size": b, "causal": causal}
        what = f"tiled_attention(q {qs}, k {ks}, v {vs}, {', '.join(f'{a}={c}' for a, c in kw.items())})"
        out, lse = _pair(_call(tiled_attention, (q, k, v), kw, what), what, 2)
        e_out, e_lse = ref.tiled_attention(q, k, v, **kw)
        assert_finite(out, f"{what}: output", SAFE_MAX_HINT)
        assert_values_close(out, e_out, f"{what}: output", AFTER_LOOP_HINT)
        assert_values_close(lse, e_lse, f"{what}: logsumexp", ADD_MAX_HINT)

"""Chapter 15 (15-kv-cache): incremental decoding with a KV cache on chapter 5's GPT.

The visible tests need no answer key: their oracle is the definition of the cache,
*recomputation*. `recompute` (from _gpt_formulas) runs chapter 5's model (given to students
anyway) on the whole sequence and collects the keys and values every block uses; a cached step must
give the same logits and the same cache, to rounding. `_step` is the same formula for one
new token, with the classic slips as variants, so that a failure can name its cause.
Hidden tests compare with the reference on small random models (never the course
checkpoint: the grader's sandbox has no models/ folder), in float64 and float32.

Values are compared with `assert_values_close` (at the input's precision, dtype not
graded): `x / np.sqrt(d)` turns float32 into float64 under NumPy 2, harmless here.
"""
import math

import numpy as np

from ..framework import (Chapter, CheckFailure, as_result_array, assert_raises, assert_shape,
                         assert_values_close, attempt, describe, ensure, matches, rng_for)
from ._gpt_formulas import add_mlp, layer_norm, merge_heads, random_gpt, recompute, softmax, split_heads

chapter = Chapter("15-kv-cache", reference="kv_cache",
                  functions=["append_kv", "attend_one", "prefill", "decode_step", "generate_cached"],
                  provided=["softmax", "causal_mask", "split_heads", "merge_heads", "self_attention",
                            "layer_norm", "gelu", "mlp", "transformer_block", "embed_tokens", "final_logits",
                            "gpt_forward", "greedy", "sample", "top_k_filter", "top_p_filter", "generate",
                            "next_id"],
                  sample_scores=(15, 6, 0, 0, 12))
test = chapter.test


# ------------------------------------------------------------------ the model, as formulas (with slips)

def _kv_from_x(x, y, p):
    """A slip, for recompute's kv_source: keys and values from the raw stream x, not ln1(x)."""
    return x


def _kv_from_output(x, y, p):
    """A slip, for recompute's kv_source: keys and values from ln1 of the block's output."""
    return layer_norm(y, p["ln1_g"], p["ln1_b"])


def _attend(q, k, v, length, variant=""):
    """One query (..., d) over the first `length` slots of k, v (..., S, d): with slips."""
    d = q.shape[-1]
    if variant == "swap":
        k, v = v, k
    if variant == "all_slots":
        length = k.shape[-2]
    if variant == "exclude_last":
        length = length - 1
    if length < 1:
        return np.zeros(q.shape[:-1] + v.shape[-1:])
    s = (k[..., :length, :] @ q[..., None])[..., 0]
    s = s / {"no_scale": 1.0, "scale_d": d}.get(variant, math.sqrt(d))
    return (softmax(s)[..., None, :] @ v[..., :length, :])[..., 0, :]


def _step(token, k_cache, v_cache, t, params, n_heads, variant=""):
    """The new token at position t over the cached k, v (L, ..., H, t, dh): logits (..., V),
    k, v (L, ..., H, t + 1, dh). Variants: "pos0", "pos_plus1", "pos_minus1" (wrong row of
    wpe), "no_self" (attend over the old cache only), "only_self" (ignore the old cache),
    "no_scale", "swap" (keys and values swapped in the cache and in attention)."""
    token = np.asarray(token)
    pos = {"pos0": 0, "pos_plus1": t + 1, "pos_minus1": t - 1}.get(variant, t)
    x = params["wte"][token] + params["wpe"][pos]
    ks, vs = [], []
    for layer, p in enumerate(params["blocks"]):
        a = layer_norm(x, p["ln1_g"], p["ln1_b"])[..., None, :]
        q = split_heads(a @ p["w_q"], n_heads)[..., 0, :]
        kn, vn = split_heads(a @ p["w_k"], n_heads), split_heads(a @ p["w_v"], n_heads)
        k = np.concatenate([k_cache[layer], kn], axis=-2)
        v = np.concatenate([v_cache[layer], vn], axis=-2)
        if variant == "swap":
            k, v = np.concatenate([v_cache[layer], vn], axis=-2), np.concatenate([k_cache[layer], kn], axis=-2)
        if variant == "no_self":
            o = _attend(q, k_cache[layer], v_cache[layer], t)
        elif variant == "only_self":
            o = _attend(q, kn, vn, 1)
        else:
            o = _attend(q, k, v, t + 1, "no_scale" if variant == "no_scale" else "")
        x = add_mlp(x + merge_heads(o[..., None, :])[..., 0, :] @ p["w_o"], p)
        ks.append(k)
        vs.append(v)
    return layer_norm(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T, np.stack(ks), np.stack(vs)


def _greedy_generate(prompt, n_new, params, n_heads):
    """Chapter 6's generate at temperature 0, by recomputation (the definition)."""
    ids = np.asarray(prompt)
    block = params["wpe"].shape[0]
    for _ in range(n_new):
        nxt = np.argmax(recompute(ids[..., -block:], params, n_heads)[0][..., -1, :], axis=-1)
        ids = np.concatenate([ids, np.asarray(nxt, dtype=ids.dtype)[..., None]], axis=-1)
    return ids


def _same(a, b):
    """Equal up to rounding, float32's when either side is float32: for naming a slip."""
    tol = 1e-4 if np.float32 in (getattr(a, "dtype", None), getattr(b, "dtype", None)) else 1e-8
    return matches(a, b, rtol=tol, atol=tol)


# ------------------------------------------------------------------ results: pairs and caches

CACHE_HINT = ('a cache is a dict {"k": array (L, ..., H, T, d_head), "v": array of the same shape, '
              '"length": T}: the keys and values of every block, head and position, and the number of '
              'positions as an int')
PAIR_HINT = "return a tuple (logits, cache)"


def _pair(result, what, hint=PAIR_HINT, names=("logits", "cache")):
    """A student's 2-tuple result, as its two items."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        got = f"a tuple of {len(result)} items" if isinstance(result, (tuple, list)) else describe(result)
        raise CheckFailure(f"{what} returned {got}, expected a tuple ({', '.join(names)})", hint)
    return result


def _cache(value, what):
    """(k, v, length) of a student's cache, or a failure that says what is wrong with it."""
    if not isinstance(value, dict):
        raise CheckFailure(f"{what}: the cache is {describe(value)}, expected a dict", CACHE_HINT)
    missing = [key for key in ("k", "v", "length") if key not in value]
    if missing:
        raise CheckFailure(f"{what}: the cache has no {', '.join(repr(m) for m in missing)} "
                           f"(its keys: {sorted(value)})", CACHE_HINT)
    k = as_result_array(value["k"], f'{what}: cache["k"]')
    v = as_result_array(value["v"], f'{what}: cache["v"]')
    length = value["length"]
    if isinstance(length, np.ndarray) and length.shape == () and length.dtype.kind in "iu":
        length = int(length)
    if isinstance(length, bool) or not isinstance(length, int):
        raise CheckFailure(f'{what}: cache["length"] is {describe(length)}, expected an int', CACHE_HINT)
    return k, v, length


# ------------------------------------------------------------------ append_kv

AXIS_HINT = ("concatenate along the time axis, the second to last: (..., T, d_head) and (..., t, d_head) "
             "give (..., T + t, d_head) (np.concatenate(..., axis=-2))")
KEEP_OLD_HINT = "keep the cached positions: the result holds the T old positions and then the t new ones"
ORDER_HINT = "the old positions come first, then the new ones: np.concatenate([cache_k, k_new], axis=-2)"
KV_PAIR_HINT = "return (k, v) in that order, keys with keys and values with values"
APPEND_HINT = "k = old keys then new keys along axis -2, v = old values then new values"


def _check_append(append_kv, ck, cv, kn, vn, what):
    res = _pair(attempt(lambda: append_kv(ck, cv, kn, vn), what, AXIS_HINT), what, KV_PAIR_HINT, ("k", "v"))
    k = as_result_array(res[0], f"{what}[0] (the keys)")
    v = as_result_array(res[1], f"{what}[1] (the values)")
    ek, ev = np.concatenate([ck, kn], axis=-2), np.concatenate([cv, vn], axis=-2)
    if k.shape == kn.shape and kn.shape != ek.shape:
        raise CheckFailure(f"{what}: the keys have shape {k.shape}, only the new positions", KEEP_OLD_HINT)
    assert_shape(k, ek.shape, f"{what}: the keys", AXIS_HINT)
    assert_shape(v, ev.shape, f"{what}: the values", AXIS_HINT)
    if _same(k, ev) and _same(v, ek) and not _same(ek, ev):
        raise CheckFailure(f"{what}: the keys came back as the values and the values as the keys", KV_PAIR_HINT)
    if _same(k, np.concatenate([kn, ck], axis=-2)) and not _same(k, ek):
        raise CheckFailure(f"{what}: the new positions come before the cached ones", ORDER_HINT)
    if kn.shape == vn.shape and ck.shape == cv.shape and not _same(kn, vn) and \
            (_same(v, np.concatenate([cv, kn], axis=-2)) or _same(k, np.concatenate([ck, vn], axis=-2))):
        raise CheckFailure(f"{what}: new keys ended up among the values (or new values among the keys)",
                           KV_PAIR_HINT)
    assert_values_close(k, ek, f"{what}: the keys", APPEND_HINT)
    assert_values_close(v, ev, f"{what}: the values", APPEND_HINT)


def _readable(h, t0, t, d):
    """Keys whose entries say where they are: 100 (head + 1) + 10 position + feature."""
    return (100.0 * (np.arange(h)[:, None, None] + 1) + 10.0 * (t0 + np.arange(t))[None, :, None]
            + np.arange(d)[None, None, :])


@test("append_kv_visible", "append_kv")
def append_kv_visible(append_kv):
    """Readable keys: one new position, a chunk of three with batch axes (float32), an empty cache.

    The keys say where they are: 100 (head + 1) + 10 position + feature."""
    ck, kn = _readable(2, 0, 3, 2), _readable(2, 3, 1, 2) + 0.5
    _check_append(append_kv, ck, -ck, kn, -kn, "append_kv(cache (2, 3, 2), new (2, 1, 2))")
    rng = rng_for("append_kv_visible")
    ck, cv = (rng.standard_normal((2, 3, 4, 5)).astype(np.float32) for _ in range(2))
    kn, vn = (rng.standard_normal((2, 3, 3, 5)).astype(np.float32) for _ in range(2))
    _check_append(append_kv, ck, cv, kn, vn, "append_kv(cache (2, 3, 4, 5), new (2, 3, 3, 5)) [float32]")
    empty = np.zeros((3, 0, 4))
    kn, vn = rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 2, 4))
    _check_append(append_kv, empty, empty.copy(), kn, vn, "append_kv(empty cache (3, 0, 4), new (3, 2, 4))")


@test("append_kv_random", "append_kv", hidden=True)
def append_kv_random(append_kv, ref):
    """Random caches with 0 to 3 leading axes, 1 to 5 new positions, float64 and float32."""
    rng = rng_for("append_kv_random")
    for dtype in (np.float64, np.float32):
        for lead, t_old, t_new, d in [((), 4, 1, 3), ((4,), 6, 2, 8), ((2, 3), 5, 5, 4), ((2, 2, 3), 1, 1, 6)]:
            ck, cv = (rng.standard_normal(lead + (t_old, d)).astype(dtype) for _ in range(2))
            kn, vn = (rng.standard_normal(lead + (t_new, d)).astype(dtype) for _ in range(2))
            what = f"append_kv(cache {ck.shape}, new {kn.shape}) [{np.dtype(dtype)}]"
            _check_append(append_kv, ck, cv, kn, vn, what)
            ek, ev = ref.append_kv(ck, cv, kn, vn)
            k, v = append_kv(ck, cv, kn, vn)
            assert_values_close(k, ek, what + ": keys", APPEND_HINT)
            assert_values_close(v, ev, what + ": values", APPEND_HINT)


@test("append_kv_edge", "append_kv", hidden=True)
def append_kv_edge(append_kv, ref):
    """Appending to an empty cache, appending nothing, values wider than keys, repeated appends."""
    rng = rng_for("append_kv_edge")
    ck, cv = np.zeros((2, 0, 3)), np.zeros((2, 0, 5))
    kn, vn = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4, 5))
    _check_append(append_kv, ck, cv, kn, vn, "append_kv(empty cache, 4 new positions, d_v = 5)")
    ck, cv = rng.standard_normal((2, 3, 3)), rng.standard_normal((2, 3, 5))
    _check_append(append_kv, ck, cv, np.zeros((2, 0, 3)), np.zeros((2, 0, 5)), "append_kv(cache, no new positions)")
    k, v = np.zeros((1, 2, 0, 4)), np.zeros((1, 2, 0, 4))
    for step in range(5):
        kn, vn = rng.standard_normal((1, 2, 1, 4)), rng.standard_normal((1, 2, 1, 4))
        what = f"append_kv, step {step + 1} of 5 from an empty cache"
        _check_append(append_kv, k, v, kn, vn, what)
        k, v = ref.append_kv(k, v, kn, vn)


# ------------------------------------------------------------------ attend_one

TAIL_HINT = ("only the first `length` slots are valid: slice k_cache[..., :length, :] and "
             "v_cache[..., :length, :] (or mask the other scores with -inf, not 0: a score of 0 still gets "
             "weight exp(0)); the unwritten tail of a static cache must get weight exactly 0")
SELF_HINT = ("the new token's own key and value are in slot length - 1 and it attends to itself: "
             "use slots 0 .. length - 1, that is [:length]")
SCALE_HINT = "scale the scores by 1/sqrt(d), d = q.shape[-1]: s = k . q / sqrt(d)"
SCALE_D_HINT = "scale by 1/sqrt(d), not 1/d"
ROLES_HINT = "the scores compare the query with the KEYS; the weights then average the VALUES"
ATTEND_HINT = "out = softmax(k[:length] . q / sqrt(d)) @ v[:length], over the slots axis"
ONE_SLOT_HINT = "with one valid slot its weight is 1, so the output is that slot's value"


def _check_attend(attend_one, q, k, v, length, what):
    out = as_result_array(attempt(lambda: attend_one(q, k, v, length), what, ATTEND_HINT), what)
    expected = _attend(q, k, v, length)
    assert_shape(out, expected.shape, what, "one output per query: shape (..., d_v), q's leading axes kept")
    if _same(out, expected):
        assert_values_close(out, expected, what, ATTEND_HINT)
        return
    slips = [("all_slots", "the unwritten slots after `length` took part", TAIL_HINT),
             ("exclude_last", "slot length - 1 (the new token itself) was left out", SELF_HINT),
             ("no_scale", "the scores were not scaled", SCALE_HINT),
             ("scale_d", "the scores were divided by d", SCALE_D_HINT),
             ("swap", "the keys and values swapped roles", ROLES_HINT)]
    for variant, says, hint in slips:
        if (variant != "all_slots" or length < k.shape[-2]) and (variant != "swap" or k.shape == v.shape):
            if _same(out, _attend(q, k, v, length, variant)):
                raise CheckFailure(f"{what}: {says}", hint)
    if length < k.shape[-2] and np.any(k[..., length:, :] != 0):
        masked0 = _attend(q, np.where(np.arange(k.shape[-2])[:, None] < length, k, 0), v, length)
        tail0 = q.shape[:-1] + (k.shape[-2] - length,)
        s = np.concatenate([(k[..., :length, :] @ q[..., None])[..., 0] / math.sqrt(q.shape[-1]),
                            np.zeros(tail0)], axis=-1)
        if _same(out, (softmax(s)[..., None, :] @ v)[..., 0, :]) and not _same(out, masked0):
            raise CheckFailure(f"{what}: the unwritten slots got score 0 instead of -inf", TAIL_HINT)
    assert_values_close(out, expected, what, ATTEND_HINT)


@test("attend_one_visible", "attend_one")
def attend_one_visible(attend_one):
    """One valid slot; a static cache with a zero tail, then with leftovers; batch axes; bad lengths.

    One valid slot gives its value; the tail of a static cache (zeros, then leftovers of an
    earlier sequence) is ignored; a full cache; batch and head axes in float32; a length outside
    1..S raises ValueError."""
    rng = rng_for("attend_one_visible")
    q = rng.standard_normal((2, 4))
    k, v = np.zeros((2, 5, 4)), np.zeros((2, 5, 4))
    k[:, 0], v[:, 0] = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    what = "attend_one(q (2, 4), static cache (2, 5, 4), length=1)"
    out = as_result_array(attempt(lambda: attend_one(q, k, v, 1), what, ATTEND_HINT), what)
    assert_shape(out, (2, 4), what, "one output per query: shape (..., d_v), q's leading axes kept")
    if _same(out, _attend(q, k, v, 1, "all_slots")):
        raise CheckFailure(f"{what}: the four unwritten (zero) slots took part", TAIL_HINT)
    if not _same(out, v[:, 0]):
        _check_attend(attend_one, q, k, v, 1, what)  # names the slip, if it is a known one
    assert_values_close(out, v[:, 0], what + " (the only valid slot's value)", ONE_SLOT_HINT)
    # A static cache of 7 slots, 4 written; the tail is zeros, then leftovers of another sequence.
    k, v = np.zeros((2, 7, 4)), np.zeros((2, 7, 4))
    k[:, :4], v[:, :4] = 2 * rng.standard_normal((2, 4, 4)), rng.standard_normal((2, 4, 4))
    _check_attend(attend_one, q, k, v, 4, "attend_one(q (2, 4), static cache (2, 7, 4) with a zero tail, length=4)")
    k[:, 4:], v[:, 4:] = 2 * rng.standard_normal((2, 3, 4)), 5 + rng.standard_normal((2, 3, 4))
    _check_attend(attend_one, q, k, v, 4, "attend_one(q (2, 4), static cache (2, 7, 4) with leftovers in "
                  "slots 4-6, length=4)")
    _check_attend(attend_one, q, k, v, 7, "attend_one(q (2, 4), cache (2, 7, 4), length=7 (all slots))")
    qb = rng.standard_normal((2, 3, 8)).astype(np.float32)
    kb, vb = (rng.standard_normal((2, 3, 6, 8)).astype(np.float32) for _ in range(2))
    _check_attend(attend_one, qb, kb, vb, 5, "attend_one(q (2, 3, 8), cache (2, 3, 6, 8), length=5) [float32]")
    for bad in (0, 8):
        assert_raises(lambda: attend_one(q, k, v, bad), "ValueError",
                      f"attend_one(q, cache with 7 slots, length={bad})",
                      "raise ValueError unless 1 <= length <= S (the number of slots)")


@test("attend_one_random", "attend_one", hidden=True)
def attend_one_random(attend_one, ref):
    """Random queries and static caches with leftovers, several lengths, float64 and float32.

    Leading axes from none to three, d_v != d."""
    rng = rng_for("attend_one_random")
    for dtype in (np.float64, np.float32):
        for lead, s, d, dv in [((), 5, 4, 4), ((3,), 9, 8, 5), ((2, 4), 16, 16, 16), ((2, 2, 2), 3, 2, 7)]:
            q = rng.standard_normal(lead + (d,)).astype(dtype)
            k = (1.5 * rng.standard_normal(lead + (s, d))).astype(dtype)
            v = rng.standard_normal(lead + (s, dv)).astype(dtype)
            for length in sorted({1, max(1, s // 2), s}):
                what = f"attend_one(q {q.shape}, cache {k.shape}, length={length}) [{np.dtype(dtype)}]"
                _check_attend(attend_one, q, k, v, length, what)
                assert_values_close(attend_one(q, k, v, length), ref.attend_one(q, k, v, length), what, ATTEND_HINT)


@test("attend_one_edge", "attend_one", hidden=True)
def attend_one_edge(attend_one, ref):
    """Huge scores, equal keys, large leftovers in the tail, bad lengths raise ValueError."""
    rng = rng_for("attend_one_edge")
    q = np.array([[30.0, -30.0, 30.0, 0.0]])
    k = np.array([[[40.0, -40.0, 40.0, 1.0], [-40.0, 40.0, 0.0, 0.0], [1e4, 1e4, 1e4, 1e4]]])
    v = rng.standard_normal((1, 3, 2))
    _check_attend(attend_one, q, k, v, 2, "attend_one with scores near 1200 (subtract the max before exp)")
    k = np.broadcast_to(rng.standard_normal(4), (2, 5, 4)).copy()
    v = rng.standard_normal((2, 5, 3))
    _check_attend(attend_one, rng.standard_normal((2, 4)), k, v, 4, "attend_one with equal keys (uniform weights)")
    k, v = 1e3 * rng.standard_normal((3, 10, 4)), 1e3 * rng.standard_normal((3, 10, 4))
    k[:, :2], v[:, :2] = rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 2, 4))
    _check_attend(attend_one, rng.standard_normal((3, 4)), k, v, 2, "attend_one with 8 slots of large leftovers")
    for bad in (0, -1, 11):
        assert_raises(lambda: attend_one(np.ones((3, 4)), k, v, bad), "ValueError",
                      f"attend_one(length={bad}) with 10 slots",
                      "raise ValueError unless 1 <= length <= S (the number of slots)")


# ------------------------------------------------------------------ prefill

LOGITS_HINT = ("prefill's logits are gpt_forward's: every position, shape (..., T, V) "
               "(embed, the blocks, final_logits)")
KV_SWAP_HINT = 'keys go to cache["k"] (x @ w_k) and values to cache["v"] (x @ w_v): they are swapped'
SPLIT_HINT = ("store the keys split into heads, layers stacked first: split_heads(h @ w_k, n_heads) is "
              "(..., H, T, d_head), and np.stack over the blocks gives (L, ..., H, T, d_head)")
KV_LN_HINT = ("the keys and values are computed from ln1(x), the block's first LayerNorm of its input, "
              "as attention computes them: h = layer_norm(x, ln1_g, ln1_b); k = h @ w_k")
KV_INPUT_HINT = ("compute block l's keys and values from the block's INPUT, before "
                 "x = transformer_block(x, ...) moves the stream on to the next block")
LENGTH_HINT = 'cache["length"] is the number of positions T = ids.shape[-1] (not len(ids), the batch size)'
PREFILL_HINT = ("for each block: h = layer_norm(x, ln1_g, ln1_b); keep split_heads(h @ w_k, H) and "
                "split_heads(h @ w_v, H); then x = transformer_block(x, block, H)")
TOO_LONG_HINT = "raise ValueError when T > block_size = params['wpe'].shape[0] (embed_tokens does)"


def _check_kv(k, v, ids, params, n_heads, ek, ev, what, hint):
    """Compare a returned cache's k, v with the recomputed ones; name the classic slips."""
    if k.shape != ek.shape:
        lead = ids.shape[:-1]
        if k.shape == (len(params["blocks"]),) + lead + (ids.shape[-1], params["wte"].shape[1]):
            raise CheckFailure(f'{what}: cache["k"] has shape {k.shape}, the heads are not split', SPLIT_HINT)
        assert_shape(k, ek.shape, f'{what}: cache["k"]', SPLIT_HINT)
    assert_shape(v, ev.shape, f'{what}: cache["v"]', SPLIT_HINT)
    if _same(k, ev) and _same(v, ek):
        raise CheckFailure(f"{what}: the cache's keys are the values and its values the keys", KV_SWAP_HINT)
    for source, says, h in ((_kv_from_x, "from x without ln1", KV_LN_HINT),
                            (_kv_from_output, "after the block (from its output)", KV_INPUT_HINT)):
        _, wk, wv = recompute(ids, params, n_heads, source)
        if _same(k, wk) or _same(v, wv):
            raise CheckFailure(f"{what}: the cached keys/values were computed {says}", h)
    assert_values_close(k, ek, f'{what}: cache["k"]', hint)
    assert_values_close(v, ev, f'{what}: cache["v"]', hint)


def _check_prefill(prefill, ids, params, n_heads, what):
    res = _pair(attempt(lambda: prefill(ids, params, n_heads), what, PREFILL_HINT), what)
    logits = as_result_array(res[0], f"{what}: logits")
    k, v, length = _cache(res[1], what)
    el, ek, ev = recompute(ids, params, n_heads)
    if logits.shape == el.shape[:-2] + el.shape[-1:] and ids.shape[-1] > 1:
        raise CheckFailure(f"{what}: logits of shape {logits.shape}, only the last position", LOGITS_HINT)
    assert_shape(logits, el.shape, f"{what}: logits", LOGITS_HINT)
    assert_values_close(logits, el, f"{what}: logits (they should equal gpt_forward's)", LOGITS_HINT)
    if length != ids.shape[-1]:
        raise CheckFailure(f'{what}: cache["length"] is {length}, expected {ids.shape[-1]}', LENGTH_HINT)
    _check_kv(k, v, ids, params, n_heads, ek, ev, what, PREFILL_HINT)


@test("prefill_visible", "prefill")
def prefill_visible(prefill):
    """Logits and cache equal recomputation; a batch; one token; T > block_size raises ValueError.

    The logits are gpt_forward's; the cache holds every block's keys and values of ln1(x),
    split into heads, and length T."""
    rng = rng_for("prefill_visible")
    params = random_gpt(rng, 11, 8, 8, 2)
    ids = np.array([3, 1, 4, 1, 5])
    _check_prefill(prefill, ids, params, 2, "prefill(ids (5,), 2-block GPT (D=8), 2 heads)")
    batch = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])
    _check_prefill(prefill, batch, params, 2, "prefill(ids (2, 5), 2-block GPT, 2 heads)")
    _check_prefill(prefill, np.array([7]), params, 4, "prefill(ids (1,), 2-block GPT, 4 heads)")
    assert_raises(lambda: prefill(np.zeros(9, dtype=np.int64), params, 2), "ValueError",
                  "prefill of 9 tokens with block_size 8", TOO_LONG_HINT)


@test("prefill_random", "prefill", hidden=True)
def prefill_random(prefill, ref):
    """Random models (1 to 3 blocks, 1 to 4 heads), batch axes, float64 and float32."""
    rng = rng_for("prefill_random")
    for dtype in (np.float64, np.float32):
        for layers, heads, shape in [(1, 1, (4,)), (2, 2, (3, 6)), (3, 4, (2, 2, 5))]:
            params = random_gpt(rng, 10, 8, 8, layers, dtype)
            ids = rng.integers(0, 10, size=shape)
            what = f"prefill({layers} blocks, {heads} heads, ids {shape}) [{np.dtype(dtype)}]"
            _check_prefill(prefill, ids, params, heads, what)
            el, ecache = ref.prefill(ids, params, heads)
            logits, cache = prefill(ids, params, heads)
            assert_values_close(logits, el, what + ": logits", LOGITS_HINT)
            k, v, _ = _cache(cache, what)
            assert_values_close(k, ecache["k"], what + ': cache["k"]', PREFILL_HINT)
            assert_values_close(v, ecache["v"], what + ': cache["v"]', PREFILL_HINT)


@test("prefill_edge", "prefill", hidden=True)
def prefill_edge(prefill, ref):
    """T = block_size, one block of one head, a wider model, too long raises ValueError."""
    rng = rng_for("prefill_edge")
    params = random_gpt(rng, 7, 8, 6, 2)
    _check_prefill(prefill, rng.integers(0, 7, (2, 6)), params, 2, "prefill with T = block_size")
    one = random_gpt(rng, 5, 4, 4, 1)
    _check_prefill(prefill, np.array([2, 2, 0]), one, 1, "prefill, 1 block, 1 head")
    wide = random_gpt(rng, 20, 16, 12, 3)
    _check_prefill(prefill, rng.integers(0, 20, 12), wide, 4, "prefill, 3 blocks, D = 16, 4 heads")
    assert_raises(lambda: prefill(np.zeros((2, 7), dtype=np.int64), params, 2), "ValueError",
                  "prefill of 7 tokens with block_size 6", TOO_LONG_HINT)


# ------------------------------------------------------------------ decode_step

POSITION_HINT = ("the new token sits at position T = cache['length'] (the cached positions are 0 .. T-1): "
                 "its input is wte[token] + wpe[T]")
NO_SELF_HINT = ("append the new key and value to the cache BEFORE attending: the new token attends to "
                "itself and to the past (T + 1 positions)")
ONLY_SELF_HINT = "attend over the cached positions AND the new one: append to the block's cache, then attend"
STEP_SCALE_HINT = "scale the scores by 1/sqrt(d_head), as attention always does"
STEP_SWAP_HINT = ("keys and values are swapped: the new key goes with the cached keys (and is compared "
                  "with the query), the new value with the cached values")
GROW_HINT = ('return the grown cache: the keys and values of all T + 1 positions and "length" T + 1; '
             'the next step starts from it')
FULL_HINT = "raise ValueError when the cache already holds block_size positions: there is no position T"
STEP_HINT = ("per block: h = ln1(x); q, k, v of the new token; append k, v to the block's cache; attend with q "
             "over all T + 1 positions; merge heads, @ w_o, add; then the MLP part; final_logits at the end")
STEP_SLIPS = [("pos0", "the new token got the position embedding of position 0", POSITION_HINT),
              ("pos_plus1", "the new token got the position embedding of position T + 1", POSITION_HINT),
              ("pos_minus1", "the new token got the position embedding of position T - 1", POSITION_HINT),
              ("no_self", "the new token did not attend to itself", NO_SELF_HINT),
              ("only_self", "the new token attended only to itself", ONLY_SELF_HINT),
              ("no_scale", "the attention scores were not scaled", STEP_SCALE_HINT),
              ("swap", "the keys and values are swapped", STEP_SWAP_HINT)]


def _as_cache(k, v, length):
    return {"k": k, "v": v, "length": length}


def _check_step(decode_step, token, ids, params, n_heads, what, cache=None):
    """decode_step(token) on the cache of ids must give the recomputation of ids + [token].
    Returns the student's new cache."""
    t = ids.shape[-1]
    if cache is None:
        _, k0, v0 = recompute(ids, params, n_heads)
        cache = _as_cache(k0, v0, t)
    res = _pair(attempt(lambda: decode_step(token, cache, params, n_heads), what, STEP_HINT), what)
    logits = as_result_array(res[0], f"{what}: logits")
    k, v, length = _cache(res[1], what)
    full = np.concatenate([ids, np.asarray(token, dtype=ids.dtype)[..., None]], axis=-1)
    el, ek, ev = recompute(full, params, n_heads)
    el = el[..., -1, :]
    if logits.shape == el.shape[:-1] + (1,) + el.shape[-1:]:
        raise CheckFailure(f"{what}: logits of shape {logits.shape}", "return the logits of the new token only, "
                           "shape (..., V), without a position axis")
    assert_shape(logits, el.shape, f"{what}: logits", "one row of V logits per sequence: shape (..., V)")
    if length == t and k.shape == cache["k"].shape:
        raise CheckFailure(f"{what}: the returned cache is the old one (length {t})", GROW_HINT)
    if _same(k, ev) and _same(v, ek):
        raise CheckFailure(f"{what}: the returned cache has the keys and values swapped", STEP_SWAP_HINT)
    if not _same(logits, el):
        for variant, says, hint in STEP_SLIPS:
            if variant in ("pos_minus1", "no_self") and t == 0:
                continue
            if variant == "pos_plus1" and t + 1 >= params["wpe"].shape[0]:
                continue
            wl = _step(token, cache["k"], cache["v"], t, params, n_heads, variant)[0]
            if _same(logits, wl):
                raise CheckFailure(f"{what}: {says}", hint)
    assert_values_close(logits, el, f"{what}: logits (they should equal gpt_forward of all {t + 1} ids, "
                        "last position)", STEP_HINT)
    if length != t + 1:
        raise CheckFailure(f'{what}: cache["length"] is {length}, expected {t + 1}', GROW_HINT)
    _check_kv(k, v, full, params, n_heads, ek, ev, what, GROW_HINT)
    return _as_cache(k, v, length)


@test("decode_step_visible", "decode_step")
def decode_step_visible(decode_step):
    """Cache equals recompute at every step until the context is full; a batch; a full cache raises.

    One step on a recomputed cache, then a chain of steps, each on the cache the previous one
    returned, every step's logits and cache against gpt_forward's; ValueError on a full cache."""
    rng = rng_for("decode_step_visible")
    params = random_gpt(rng, 11, 8, 8, 2)
    ids = np.array([3, 1, 4, 1, 5])
    _check_step(decode_step, 9, ids, params, 2, "decode_step(token 9, cache of [3, 1, 4, 1, 5], 2-block GPT, 2 heads)")
    seq = np.array([6])
    _, k0, v0 = recompute(seq, params, 2)
    cache = _as_cache(k0, v0, 1)
    for token in (2, 7, 1, 8, 2, 8, 0):  # 1 + 7 = 8 = block_size positions
        what = f"decode_step, step {len(seq)} of a chain from the cache of [6] (each step on the cache it returned)"
        cache = _check_step(decode_step, token, seq, params, 2, what, cache)
        seq = np.append(seq, token)
    assert_raises(lambda: decode_step(4, cache, params, 2), "ValueError",
                  "decode_step on a full cache (8 positions, block_size 8)", FULL_HINT)
    batch = np.array([[3, 1, 4], [2, 7, 1]])
    _check_step(decode_step, np.array([5, 9]), batch, params, 4,
                "decode_step(tokens [5, 9], cache of a batch (2, 3), 4 heads)")


@test("decode_step_random", "decode_step", hidden=True)
def decode_step_random(decode_step, ref):
    """Random models and prompts, batch axes, float64 and float32: logits and cache."""
    rng = rng_for("decode_step_random")
    for dtype in (np.float64, np.float32):
        for layers, heads, shape in [(1, 1, (4,)), (2, 2, (3, 5)), (3, 4, (2, 2, 3))]:
            params = random_gpt(rng, 10, 8, 8, layers, dtype)
            ids = rng.integers(0, 10, size=shape)
            token = rng.integers(0, 10, size=shape[:-1])
            _, cache = ref.prefill(ids, params, heads)
            what = f"decode_step({layers} blocks, {heads} heads, cache of ids {shape}) [{np.dtype(dtype)}]"
            _check_step(decode_step, token, ids, params, heads, what, cache)
            el, ecache = ref.decode_step(token, cache, params, heads)
            logits, new = decode_step(token, cache, params, heads)
            assert_values_close(logits, el, what + ": logits", STEP_HINT)
            k, v, _ = _cache(new, what)
            assert_values_close(k, ecache["k"], what + ': cache["k"]', GROW_HINT)
            assert_values_close(v, ecache["v"], what + ': cache["v"]', GROW_HINT)


@test("decode_step_edge", "decode_step", hidden=True)
def decode_step_edge(decode_step, ref):
    """A one-token cache, the step that fills the context, a full cache, a chain of eight steps.

    An int token; ValueError on a full cache; the chain must equal recomputation at every step."""
    rng = rng_for("decode_step_edge")
    params = random_gpt(rng, 9, 12, 6, 2)
    _check_step(decode_step, 4, np.array([2]), params, 3, "decode_step on a one-token cache")
    ids = rng.integers(0, 9, 5)
    _check_step(decode_step, int(ids[0]), ids, params, 3, "decode_step filling the context (position 5 of 6)")
    _, full = ref.prefill(rng.integers(0, 9, (2, 6)), params, 3)
    assert_raises(lambda: decode_step(np.array([1, 2]), full, params, 3), "ValueError",
                  "decode_step on a full cache", FULL_HINT)
    wide = random_gpt(rng, 15, 16, 10, 3)
    seq = rng.integers(0, 15, (2, 2))
    _, cache = ref.prefill(seq, wide, 4)
    for _ in range(8):
        token = rng.integers(0, 15, 2)
        cache = _check_step(decode_step, token, seq, wide, 4, f"decode_step chain, position {seq.shape[-1]}", cache)
        seq = np.concatenate([seq, token[:, None]], axis=-1)


# ------------------------------------------------------------------ generate_cached

GEN_HINT = ("prefill the prompt once, then per step: choose the id from the last logits with next_id "
            "(as generate does), append it, and decode_step on it; no model call after the last id")
TWICE_HINT = ("prefill's last logits already predict the first new token: don't feed the prompt's last "
              "token to decode_step again")
WINDOW_HINT = ("a cache cannot slide past block_size: when it is full (cache['length'] == block_size), "
               "rebuild it with prefill on the last block_size ids, which is what generate feeds the model; "
               "and prefill only the last block_size ids of a long prompt")
STALE_HINT = ("build a fresh cache in every call (prefill this call's prompt): a cache kept from an "
              "earlier call (a global, a default argument) belongs to another prompt")
SAME_AS_GENERATE_HINT = ("choose each id with next_id(logits, rng, temperature, top_k, top_p), exactly as generate "
                         "does: one call per step, on the logits of the last position")
PROMPT_HINT = "return the prompt followed by the n_new new ids, shape (..., T + n_new)"

# Draws of generate (chapter 6, recomputing) on the visible test's model, stored so that the
# visible test needs no answer key: prompt SAMPLED_PROMPT, 7 new ids, np.random.default_rng(5),
# model random_gpt(rng_for("generate_cached_visible"), 13, 16, 8, 2), 2 heads.
SAMPLED_PROMPT = [5, 0, 3]
SAMPLED = {(2.0, None, None): [5, 0, 3, 6, 6, 6, 6, 3, 3, 3],
           (3.0, 4, 0.9): [5, 0, 3, 3, 11, 5, 5, 2, 2, 2]}


def _new_ids(value, prompt, n_new, what, v):
    prompt = np.asarray(prompt)
    shape = prompt.shape[:-1] + (prompt.shape[-1] + n_new,)
    out = as_result_array(value, what)
    if out.dtype.kind not in "iu":
        raise CheckFailure(f"{what}: dtype {out.dtype}, expected integer token ids", PROMPT_HINT)
    if out.shape == prompt.shape[:-1] + (n_new,) and n_new != prompt.shape[-1] + n_new:
        raise CheckFailure(f"{what}: returned only the {n_new} new ids", PROMPT_HINT)
    assert_shape(out, shape, what, PROMPT_HINT)
    ensure(np.array_equal(out[..., :prompt.shape[-1]], prompt), f"{what}: the output does not start with the "
           "prompt", PROMPT_HINT)
    ensure(out.size == 0 or (out.min() >= 0 and out.max() < v), f"{what}: ids outside [0, {v})", PROMPT_HINT)
    return out


def _check_greedy(generate_cached, prompt, n_new, params, n_heads, what, expected=None, after=None):
    """Temperature 0 against generate's definition (recomputation). `after`: the call that
    came just before, with another prompt and a correct result (a failure now points at state
    kept between calls)."""
    prompt = np.asarray(prompt)
    block = params["wpe"].shape[0]
    hint = WINDOW_HINT if prompt.shape[-1] + n_new > block + 1 or prompt.shape[-1] > block else GEN_HINT
    if after is not None:
        hint = STALE_HINT
    out = _new_ids(attempt(lambda: generate_cached(prompt, n_new, params, n_heads, np.random.default_rng(0),
                                                   temperature=0.0), what, hint),
                   prompt, n_new, what, params["wte"].shape[0])
    if expected is None:
        expected = _greedy_generate(prompt, n_new, params, n_heads)
    if np.array_equal(out, expected):
        return
    if after is not None:
        raise CheckFailure(f"{what}: gave {out.tolist()}, expected {expected.tolist()}; the same function was "
                           f"right for {after} in the call before", STALE_HINT)
    t = prompt.shape[-1]
    if t < block:
        twice = _greedy_generate(np.concatenate([prompt, prompt[..., -1:]], axis=-1), n_new, params, n_heads)
        if np.array_equal(out, np.concatenate([prompt, twice[..., t + 1:]], axis=-1)):
            raise CheckFailure(f"{what}: gave {out.tolist()}, what the model writes after the prompt with its last "
                               "token repeated", TWICE_HINT)
    diff = np.nonzero(np.any((out != expected).reshape(-1, out.shape[-1]), axis=0))[0]
    first = int(diff[0])
    if first >= block or t > block:
        raise CheckFailure(f"{what}: gave {out.tolist()}, expected {expected.tolist()}: the ids differ from "
                           f"position {first} on, after the context window of {block} tokens filled", WINDOW_HINT)
    raise CheckFailure(f"{what}: gave {out.tolist()}, expected {expected.tolist()}", GEN_HINT)


@test("generate_cached_visible", "generate_cached")
def generate_cached_visible(generate_cached):
    """Same tokens as generate: two prompts in a row, a batch, past the window; stored samples.

    Greedy continuations against generate's definition (recomputation): two different prompts
    one after the other, a batch, past the context window, a prompt longer than it; sampled
    continuations against draws of generate stored here."""
    rng = rng_for("generate_cached_visible")
    params = random_gpt(rng, 13, 16, 8, 2)
    _check_greedy(generate_cached, [3, 1, 4], 5, params, 2, "generate_cached([3, 1, 4], 5, GPT(block_size=8), "
                  "2, rng, temperature=0)")
    _check_greedy(generate_cached, [9, 5, 2], 5, params, 2, "generate_cached([9, 5, 2], 5, GPT(block_size=8), "
                  "2, rng, temperature=0), called after the one with [3, 1, 4]", after="[3, 1, 4]")
    _check_greedy(generate_cached, np.array([[3, 1, 4], [7, 7, 2]]), 4, params, 2,
                  "generate_cached(prompts (2, 3), 4, GPT(block_size=8), 2, rng, temperature=0)")
    _check_greedy(generate_cached, [1, 2, 3, 4, 5, 6], 6, params, 2,
                  "generate_cached(6-token prompt, 6, GPT(block_size=8), 2, rng, temperature=0) (past the window)")
    _check_greedy(generate_cached, [8, 0, 8, 1, 4, 2, 12, 3, 9, 10], 3, params, 2,
                  "generate_cached(10-token prompt, 3, GPT(block_size=8), 2, rng, temperature=0)")
    for (temperature, top_k, top_p), want in SAMPLED.items():
        what = (f"generate_cached({SAMPLED_PROMPT}, 7, GPT, 2, np.random.default_rng(5), temperature={temperature}, "
                f"top_k={top_k}, top_p={top_p})")
        out = _new_ids(attempt(lambda: generate_cached(np.array(SAMPLED_PROMPT), 7, params, 2,
                                                       np.random.default_rng(5), temperature=temperature,
                                                       top_k=top_k, top_p=top_p), what, GEN_HINT),
                       SAMPLED_PROMPT, 7, what, 13)
        ensure(np.array_equal(out, want), f"{what}: gave {out.tolist()}, generate gives {want}",
               SAME_AS_GENERATE_HINT)


def _check_like_generate(generate_cached, ref, prompt, n_new, params, n_heads, what, seed, **kw):
    expected = ref.generate(prompt, n_new, params, n_heads, np.random.default_rng(seed), **kw)
    if kw.get("temperature", 1.0) == 0:
        _check_greedy(generate_cached, prompt, n_new, params, n_heads, what, expected)
        return
    out = _new_ids(attempt(lambda: generate_cached(prompt, n_new, params, n_heads, np.random.default_rng(seed),
                                                   **kw), what, GEN_HINT), prompt, n_new, what,
                   params["wte"].shape[0])
    ensure(np.array_equal(out, expected), f"{what}: gave {out.tolist()}, generate gives {expected.tolist()}",
           SAME_AS_GENERATE_HINT)


@test("generate_cached_greedy_random", "generate_cached", hidden=True)
def generate_cached_greedy_random(generate_cached, ref):
    """Greedy on random GPTs, inside and past the window, float64 and float32; edge cases.

    n_new = 0, a one-token prompt, a prompt longer than block_size, a negative temperature."""
    rng = rng_for("generate_cached_greedy_random")
    for dtype in (np.float64, np.float32):
        for v, d, block, layers, heads, shape, n_new in [(11, 8, 6, 1, 2, (4,), 5), (20, 16, 10, 2, 4, (3, 5), 8),
                                                         (7, 12, 4, 2, 3, (2, 3), 6)]:
            params = random_gpt(rng, v, d, block, layers, dtype)
            prompt = rng.integers(0, v, size=shape)
            _check_like_generate(generate_cached, ref, prompt, n_new, params, heads,
                                 f"generate_cached(prompt {shape}, {n_new}, GPT(V={v}, block_size={block}), "
                                 f"{heads}, rng, temperature=0) [{np.dtype(dtype)}]", 0, temperature=0.0)
    params = random_gpt(rng, 9, 8, 5, 1)
    _new_ids(generate_cached(np.array([4, 2]), 0, params, 2, np.random.default_rng(0)), [4, 2], 0,
             "generate_cached(prompt, 0 new ids)", 9)
    for prompt, n_new in (([6], 7), ([1, 2, 3, 4, 5], 4), ([1, 2, 3, 4, 5, 6, 7], 2)):
        _check_like_generate(generate_cached, ref, np.array(prompt), n_new, params, 2,
                             f"generate_cached({prompt}, {n_new}, GPT(block_size=5), 2, rng, temperature=0)", 0,
                             temperature=0.0)
    assert_raises(lambda: generate_cached(np.array([1]), 2, params, 2, np.random.default_rng(0), temperature=-0.5),
                  "ValueError", "generate_cached with temperature -0.5", "raise ValueError for a negative temperature")


@test("generate_cached_sampling", "generate_cached", hidden=True)
def generate_cached_sampling(generate_cached, ref):
    """Sampling with temperature, top_k and top_p: the same draws from rng as generate.

    Single prompts and batches, inside and past the window, float64."""
    rng = rng_for("generate_cached_sampling")
    params = random_gpt(rng, 12, 8, 8, 2)
    cases = [((3,), 6, dict(temperature=1.0)), ((4, 2), 9, dict(temperature=1.3, top_k=5)),
             ((5,), 10, dict(temperature=0.8, top_p=0.9)), ((2, 6), 7, dict(temperature=1.1, top_k=6, top_p=0.8))]
    for i, (shape, n_new, kw) in enumerate(cases):
        prompt = rng.integers(0, 12, size=shape)
        _check_like_generate(generate_cached, ref, prompt, n_new, params, 2,
                             f"generate_cached(prompt {shape}, {n_new}, GPT(block_size=8), 2, rng, {kw})", 10 + i, **kw)

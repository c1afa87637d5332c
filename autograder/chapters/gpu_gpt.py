"""Chapter 16 (16-gpu-gpt): a static KV cache, steps of fixed shape, sampling on the device,
and a flash-decoding kernel.

Visible tests need no answer key. The positions, the cache writes and the sampler are
checked against their definitions (a few lines of NumPy below); the model step against
chapter 15's oracle, recomputation of the whole sequence (`recompute` and `random_gpt`, shared
with chapter 15's checks in _gpt_formulas); the kernel against attention written out in
float64. `_static_np` is the static step in NumPy with the classic slips as variants, so that
a failure can name its cause. Hidden tests add random shapes, dtypes and edge cases and
compare with the reference.

Every tensor a test hands over is a CPU tensor, except the kernel's inputs, which go to a
GPU when the student's own kernel has one (`tensor_device`); the grader's sandbox always
runs Triton's interpreter on the CPU.
"""
import math

import numpy as np

from ..framework import (Chapter, CheckFailure, StudentError, as_result_array, assert_raises,
                         assert_rel_close, assert_shape, assert_values_close, attempt, describe, dtype_name,
                         ensure, matches, relative_error, rng_for, REL_TOL, tensor_device, torch)
from ._gpt_formulas import add_mlp, layer_norm, merge_heads, random_gpt, recompute, softmax, split_heads

chapter = Chapter("16-gpu-gpt", reference="gpu_gpt",
                  functions=["positions_for_step", "write_cache", "static_step", "sample_next",
                             "decode_attention"],
                  provided=["to_heads", "from_heads", "check_decode_inputs", "decode_settings"],
                  helpers=["_decode_split_kernel", "_decode_combine_kernel"],
                  imports=("numpy", "torch", "triton"),
                  kernels={"decode_attention": ["_decode_split_kernel", "_decode_combine_kernel"]},
                  sample_scores=(20, 6, 0, 0, 14))
test = chapter.test


def _long(values):
    return torch.tensor(np.asarray(values, dtype=np.int64))


def _tensor(a, dtype=None):
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if dtype is None else t.to(dtype)


def _pair(result, what, names, hint):
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        got = f"a tuple of {len(result)} items" if isinstance(result, (tuple, list)) else describe(result)
        raise CheckFailure(f"{what} returned {got}, expected a tuple ({', '.join(names)})", hint)
    return result


def _tol(dtype):
    """(rtol, atol) for comparing a model's logits or a cache at the inputs' precision."""
    return (1e-8, 1e-8) if np.dtype(dtype) == np.float64 else (2e-4, 2e-4)


def _same(a, b, dtype=np.float64):
    """Equal up to rounding at the inputs' precision: for naming a slip."""
    return matches(a, b, *_tol(dtype))


# ==================================================================== positions_for_step

POS_PAIR_HINT = "return a tuple (positions, allowed)"
POSITIONS_HINT = ("positions[b, i] = start[b] + i: new token i of sequence b sits right after the start[b] "
                  "slots already written (start[:, None] + torch.arange(n_tokens))")
POS_PLUS_ONE_HINT = ("start[b] counts the written slots 0 .. start[b] - 1, so the first new token is at "
                     "position start[b] itself, not start[b] + 1")
PER_SEQUENCE_HINT = ("every sequence has its own start[b]: use the whole tensor (start[:, None] + ...), "
                     "not start[0] for all of them")
DIAGONAL_HINT = ("allowed[b, i, j] = (j <= start[b] + i): a new token sees its own slot (<=, not <), since "
                 "its key and value are written before it attends")
CHUNK_CAUSAL_HINT = ("with several new tokens, token i must not see the later new tokens: allowed[b, i, j] = "
                     "(j <= start[b] + i), one row per new token, not one limit start[b] + n_tokens for all")
TAIL_HINT = ("the slots past start[b] + i are unwritten (zeros, or leftovers of an earlier or padded "
             "sequence): allowed must be False there")
STATIC_SHAPE_HINT = ("the shapes must not depend on the values in start: positions is (B, n_tokens) and "
                     "allowed (B, n_tokens, max_len) at every step, so that a decode step can be replayed as "
                     "a CUDA graph; compare torch.arange(max_len) with the positions instead of slicing")
MASK_DTYPE_HINT = "allowed is a bool tensor (a comparison such as slots <= positions gives one)"
POS_DTYPE_HINT = "positions are integer slot indices (int64), usable to index wpe and the cache"
N_TOKENS_HINT = "raise ValueError unless 1 <= n_tokens <= max_len (no value of start needs to be read)"


def _positions_expected(start, n, max_len):
    start = np.asarray(start, dtype=np.int64)
    positions = start[:, None] + np.arange(n)[None, :]
    allowed = np.arange(max_len)[None, None, :] <= positions[:, :, None]
    return positions, allowed


def _check_positions(fn, start, n, max_len, what):
    res = _pair(attempt(lambda: fn(_long(start), n, max_len), what, POSITIONS_HINT), what,
                ("positions", "allowed"), POS_PAIR_HINT)
    positions = as_result_array(res[0], f"{what}: positions")
    allowed = as_result_array(res[1], f"{what}: allowed")
    b = len(start)
    ep, ea = _positions_expected(start, n, max_len)
    if positions.dtype.kind not in "iu":
        raise CheckFailure(f"{what}: positions have dtype {positions.dtype}", POS_DTYPE_HINT)
    assert_shape(positions, (b, n), f"{what}: positions", "positions is (B, n_tokens): one per new token "
                 "of every sequence")
    if allowed.shape != (b, n, max_len) and allowed.ndim == 3 and allowed.shape[:2] == (b, n):
        raise CheckFailure(f"{what}: allowed has shape {allowed.shape}, expected {(b, n, max_len)} "
                           f"(max_len = {max_len} slots)", STATIC_SHAPE_HINT)
    assert_shape(allowed, (b, n, max_len), f"{what}: allowed", STATIC_SHAPE_HINT)
    if allowed.dtype != np.bool_:
        raise CheckFailure(f"{what}: allowed has dtype {allowed.dtype}", MASK_DTYPE_HINT)
    if not np.array_equal(positions, ep):
        if np.array_equal(positions, ep + 1):
            raise CheckFailure(f"{what}: positions are one too far (start + 1 + i)", POS_PLUS_ONE_HINT)
        if b > 1 and np.array_equal(positions, np.broadcast_to(ep[:1], ep.shape)):
            raise CheckFailure(f"{what}: every sequence got the positions of sequence 0", PER_SEQUENCE_HINT)
        raise CheckFailure(f"{what}: positions {positions.tolist()}, expected {ep.tolist()}", POSITIONS_HINT)
    if not np.array_equal(allowed, ea):
        slots = np.arange(max_len)[None, None, :]
        if np.array_equal(allowed, slots < ep[:, :, None]):
            raise CheckFailure(f"{what}: a new token does not see its own slot", DIAGONAL_HINT)
        if n > 1 and np.array_equal(allowed, np.broadcast_to(slots <= ep[:, -1:, None], ea.shape)):
            raise CheckFailure(f"{what}: every new token sees all the new tokens, the later ones too",
                               CHUNK_CAUSAL_HINT)
        if allowed[~ea].any():
            j = tuple(int(i) for i in np.argwhere(allowed & ~ea)[0])
            raise CheckFailure(f"{what}: allowed{list(j)} is True, but slot {j[2]} lies past position "
                               f"{int(ep[j[0], j[1]])}", TAIL_HINT)
        if b > 1 and np.array_equal(allowed, np.broadcast_to(ea[:1], ea.shape)):
            raise CheckFailure(f"{what}: every sequence got the mask of sequence 0", PER_SEQUENCE_HINT)
        raise CheckFailure(f"{what}: allowed differs from (slot j <= start[b] + i)", DIAGONAL_HINT)
    return positions, allowed


@test("positions_for_step_visible", "positions_for_step")
def positions_for_step_visible(positions_for_step):
    """A prefill and decode steps of a batch at different positions; fixed shapes; ValueError.

    The mask hides the unwritten tail and the later new tokens and keeps each token's own slot;
    the shapes are the same whatever the values in start."""
    fn = positions_for_step
    _check_positions(fn, [0, 0], 4, 6, "positions_for_step(start=[0, 0], n_tokens=4, max_len=6) (a prefill)")
    _check_positions(fn, [0, 3, 5], 2, 8, "positions_for_step(start=[0, 3, 5], n_tokens=2, max_len=8)")
    p1, a1 = _check_positions(fn, [2, 6, 4], 1, 8, "positions_for_step(start=[2, 6, 4], n_tokens=1, max_len=8) "
                              "(a decode step)")
    p2, a2 = _check_positions(fn, [7, 0, 1], 1, 8, "positions_for_step(start=[7, 0, 1], n_tokens=1, max_len=8)")
    ensure(p1.shape == p2.shape and a1.shape == a2.shape, "the shapes changed with the values in start",
           STATIC_SHAPE_HINT)
    for n, max_len in ((0, 8), (9, 8)):
        assert_raises(lambda: fn(_long([0, 1]), n, max_len), "ValueError",
                      f"positions_for_step(start=[0, 1], n_tokens={n}, max_len={max_len})", N_TOKENS_HINT)


@test("positions_for_step_random", "positions_for_step", hidden=True)
def positions_for_step_random(positions_for_step, ref):
    """Random batches, starts, step lengths and cache sizes, against the reference."""
    rng = rng_for("positions_for_step_random")
    for _ in range(6):
        max_len = int(rng.integers(1, 40))
        n = int(rng.integers(1, max_len + 1))
        b = int(rng.integers(1, 6))
        start = rng.integers(0, max_len - n + 1, size=b)
        what = f"positions_for_step(start={start.tolist()}, n_tokens={n}, max_len={max_len})"
        positions, allowed = _check_positions(positions_for_step, start, n, max_len, what)
        ep, ea = ref.positions_for_step(_long(start), n, max_len)
        ensure(np.array_equal(positions, ep.numpy()) and np.array_equal(allowed, ea.numpy()),
               f"{what}: differs from the reference", DIAGONAL_HINT)


@test("positions_for_step_edge", "positions_for_step", hidden=True)
def positions_for_step_edge(positions_for_step, ref):
    """One slot; a prefill of the whole cache; the last slot; one sequence; n_tokens < 1 raises."""
    fn = positions_for_step
    _check_positions(fn, [0], 1, 1, "positions_for_step(start=[0], n_tokens=1, max_len=1)")
    _check_positions(fn, [0, 0, 0], 7, 7, "positions_for_step(start=[0, 0, 0], n_tokens=7, max_len=7)")
    _check_positions(fn, [9, 4], 1, 10, "positions_for_step(start=[9, 4], n_tokens=1, max_len=10) (the last slot)")
    _check_positions(fn, [3], 3, 9, "positions_for_step(start=[3], n_tokens=3, max_len=9)")
    assert_raises(lambda: fn(_long([0]), -1, 4), "ValueError", "positions_for_step(start=[0], n_tokens=-1, "
                  "max_len=4)", N_TOKENS_HINT)


# ==================================================================== write_cache

WRITE_HINT = ("k_new[b, :, i] goes to cache[0, b, :, positions[b, i]] and v_new[b, :, i] to "
              "cache[1, b, :, positions[b, i]]; every other slot stays as it was")
RETURN_CACHE_HINT = "return cache, the (2, B, H, S, d_head) tensor you wrote into"
IN_PLACE_HINT = ("the cache came back unchanged: write into the cache tensor itself, in place (indexed "
                 "assignment such as cache[0, ...] = ..., index_put_ or index_copy_ with the underscore); "
                 "index_copy without the underscore, or writing into a .clone(), leaves the cache as it was")
SLOT_PLUS_ONE_HINT = "write at slot positions[b, i] itself, not positions[b, i] + 1"
WHOLE_CACHE_HINT = ("only the slots in positions may change: the new keys were written over other slots too "
                    "(a broadcast into the whole time axis?)")
SWAP_HINT = "keys go to cache[0] and values to cache[1]: they are swapped"
WRITE_PER_SEQ_HINT = "each sequence has its own positions[b]: sequence b's tokens go to its own slots"
SLOT_ZERO_HINT = ("write at the slots given by positions, not at 0 .. n-1 (a decode step writes slot "
                  "start[b], after the slots already filled)")


def _write_expected(cache, k, v, positions):
    out = cache.copy()
    for b in range(cache.shape[1]):
        for i, p in enumerate(positions[b]):
            out[0, b, :, p] = k[b, :, i]
            out[1, b, :, p] = v[b, :, i]
    return out


def _check_write(fn, cache, k, v, positions, what, k_view=None):
    """Run write_cache on NumPy inputs (`k_view`: the tensor to pass for k_new, when a view);
    compare with the definition and name the slip."""
    dtype = cache.dtype
    tensors = (_tensor(cache), k_view if k_view is not None else _tensor(k), _tensor(v), _long(positions))
    out = attempt(lambda: fn(*tensors), what, WRITE_HINT)
    if isinstance(out, (tuple, list)) or out is None:
        raise CheckFailure(f"{what} returned {describe(out) if out is not None else 'None'}", RETURN_CACHE_HINT)
    out = as_result_array(out, what)
    assert_shape(out, cache.shape, what, RETURN_CACHE_HINT + " (same shape: the cache never grows)")
    expected = _write_expected(cache, k, v, positions)
    if np.array_equal(out, expected):
        return out
    if np.array_equal(out, cache):
        raise CheckFailure(f"{what}: the returned cache is unchanged", IN_PLACE_HINT)
    s = cache.shape[3]
    if positions.max() + 1 < s and np.array_equal(out, _write_expected(cache, k, v, positions + 1)):
        raise CheckFailure(f"{what}: the new keys and values went one slot too far", SLOT_PLUS_ONE_HINT)
    if np.array_equal(out, _write_expected(cache, v, k, positions)):
        raise CheckFailure(f"{what}: keys and values swapped", SWAP_HINT)
    if cache.shape[1] > 1 and np.array_equal(out, _write_expected(cache, k, v, np.broadcast_to(positions[:1],
                                                                                                 positions.shape))):
        raise CheckFailure(f"{what}: every sequence was written at the slots of sequence 0", WRITE_PER_SEQ_HINT)
    n = positions.shape[1]
    if np.array_equal(out, _write_expected(cache, k, v, np.broadcast_to(np.arange(n), positions.shape))):
        raise CheckFailure(f"{what}: the new keys and values went to slots 0 .. {n - 1}", SLOT_ZERO_HINT)
    written = np.zeros(cache.shape[1:4], dtype=bool)  # (B, H, S)
    for b in range(cache.shape[1]):
        written[b, :, positions[b]] = True
    changed = np.any(out != cache, axis=-1)  # (2, B, H, S)
    if (changed & ~written[None]).any():
        idx = tuple(int(i) for i in np.argwhere(changed & ~written[None])[0])
        raise CheckFailure(f"{what}: slot {idx[3]} of sequence {idx[1]} changed, but positions holds "
                           f"{positions[idx[1]].tolist()} for it", WHOLE_CACHE_HINT)
    assert_values_close(out, expected, what, WRITE_HINT, rtol=0, atol=0)
    return out


def _write_case(rng, b, h, s, d, positions, dtype=np.float64):
    cache = rng.standard_normal((2, b, h, s, d)).astype(dtype)  # leftovers of an earlier sequence
    n = np.asarray(positions).shape[1]
    k = rng.standard_normal((b, h, n, d)).astype(dtype)
    v = rng.standard_normal((b, h, n, d)).astype(dtype)
    return cache, k, v, np.asarray(positions, dtype=np.int64)


@test("write_cache_visible", "write_cache")
def write_cache_visible(write_cache):
    """One decode step's keys and values at each sequence's slot; a prompt of three; float32.

    Everything else in the preallocated cache (old slots, leftovers in the tail) stays unchanged."""
    rng = rng_for("write_cache_visible")
    _check_write(write_cache, *_write_case(rng, 2, 3, 7, 4, [[2], [5]]),
                 "write_cache(cache (2, 2, 3, 7, 4), k_new, v_new (2, 3, 1, 4), positions [[2], [5]])")
    _check_write(write_cache, *_write_case(rng, 2, 2, 8, 4, [[0, 1, 2], [3, 4, 5]]),
                 "write_cache(cache (2, 2, 2, 8, 4), three new tokens, positions [[0, 1, 2], [3, 4, 5]])")
    _check_write(write_cache, *_write_case(rng, 3, 1, 5, 8, [[4], [0], [1]], np.float32),
                 "write_cache(cache (2, 3, 1, 5, 8) float32, positions [[4], [0], [1]])")


@test("write_cache_random", "write_cache", hidden=True)
def write_cache_random(write_cache, ref):
    """Random shapes and positions, float32 and float64, against the reference."""
    rng = rng_for("write_cache_random")
    for dtype in (np.float64, np.float32):
        for b, h, s, d, n in [(1, 2, 9, 8, 1), (3, 2, 12, 4, 2), (2, 4, 16, 16, 5)]:
            start = rng.integers(0, s - n + 1, size=b)
            positions = start[:, None] + np.arange(n)
            cache, k, v, positions = _write_case(rng, b, h, s, d, positions, dtype)
            what = f"write_cache(cache {cache.shape}, positions {positions.tolist()}) [{np.dtype(dtype)}]"
            out = _check_write(write_cache, cache, k, v, positions, what)
            expected = ref.write_cache(_tensor(cache), _tensor(k), _tensor(v), _long(positions)).numpy()
            assert_values_close(out, expected, what, WRITE_HINT, rtol=0, atol=0)


@test("write_cache_edge", "write_cache", hidden=True)
def write_cache_edge(write_cache, ref):
    """The last slot; every slot at once; k_new as a transposed view (what to_heads returns)."""
    rng = rng_for("write_cache_edge")
    _check_write(write_cache, *_write_case(rng, 2, 2, 6, 4, [[5], [5]]), "write_cache at the last slot")
    _check_write(write_cache, *_write_case(rng, 1, 3, 4, 2, [[0, 1, 2, 3]]), "write_cache filling all 4 slots")
    cache, k, v, positions = _write_case(rng, 2, 3, 6, 4, [[1, 2], [3, 4]])
    view = _tensor(np.ascontiguousarray(k.transpose(0, 2, 1, 3))).transpose(1, 2)  # (B, H, n, d), not contiguous
    _check_write(write_cache, cache, k, v, positions, "write_cache with k_new a transposed (non-contiguous) view",
                 k_view=view)


# ==================================================================== static_step

STEP_PAIR_HINT = "return a tuple (logits, kv): logits (B, n, V) and the cache you wrote into"
STEP_HINT = ("per block: h = ln1(x); q, k, v = to_heads(h @ w, n_head); write_cache(kv[l], k, v, positions); "
             "attention of q over all S slots of kv[l] masked with `allowed`; from_heads, @ w_o, add; then "
             "the MLP part; compare with recomputing each sequence from scratch")
IS_CAUSAL_HINT = ("F.scaled_dot_product_attention(..., is_causal=True) aligns its mask to the top-left corner: "
                  "with n new queries against S slots, query i sees slots 0..i, so a decode step sees slot 0 "
                  "only. Pass the mask from positions_for_step instead: attn_mask=allowed[:, None]")
LEFTOVER_HINT = ("the new tokens attended to slots that hold no keys of theirs (padding, or leftovers of an "
                 "earlier sequence): mask the scores with `allowed` from positions_for_step")
EMBED_HINT = ("the input of new token i is wte[ids[b, i]] + wpe[positions[b, i]], with positions[b, i] = "
              "start[b] + i: a decode step is not at position 0")
BEFORE_WRITE_HINT = ("write the new keys and values into the cache BEFORE attending: a token attends to "
                     "itself, and its slot holds someone else's key until it is written")
STEP_SCALE_HINT = "scale the scores by 1/sqrt(d_head) (F.scaled_dot_product_attention does it by default)"
KV_SHAPE_HINT = ("the cache keeps its S slots: write into kv in place (write_cache) and return it; never "
                 "grow it with torch.cat")
KV_CONTENT_HINT = ("kv[l, 0, b, :, p] must hold the key of position p of sequence b in block l: "
                   "to_heads(ln1(x_l) @ w_k) of that position, written with write_cache")
TAIL_KEPT_HINT = ("slots past the written positions must stay as they were: write only the new tokens' "
                  "slots (write_cache with the positions from positions_for_step)")
STEP_SLIPS = [("top_left", "query i saw slots 0..i only (top-left causal mask)", IS_CAUSAL_HINT),
              ("all_slots", "the new tokens also attended to unwritten slots", LEFTOVER_HINT),
              ("no_start", "the position embedding ignored start", EMBED_HINT),
              ("read_before_write", "attention read the cache before the new keys were written", BEFORE_WRITE_HINT),
              ("no_scale", "the scores were not scaled", STEP_SCALE_HINT)]


def _torch_params(params, dtype):
    t = {k: _tensor(params[k], dtype) for k in ("wte", "wpe", "lnf_g", "lnf_b")}
    t["blocks"] = [{k: _tensor(v, dtype) for k, v in block.items()} for block in params["blocks"]]
    return t


def _static_np(params, kv, ids, start, n_head, variant=""):
    """The static step in NumPy float64: (logits (B, n, V), kv after). Variants reproduce slips:
    'top_left' (is_causal's mask), 'all_slots' (no mask), 'no_start' (wpe[0..n-1]),
    'read_before_write' (attention over the cache as it was), 'no_scale'."""
    kv = np.array(kv, dtype=np.float64)
    ids, start = np.asarray(ids), np.asarray(start, dtype=np.int64)
    b, n = ids.shape
    s = kv.shape[4]
    positions = start[:, None] + np.arange(n)[None, :]
    emb = np.broadcast_to(np.arange(n), positions.shape) if variant == "no_start" else positions
    x = params["wte"][ids] + params["wpe"][emb]
    slots = np.arange(s)[None, None, :]
    allowed = slots <= positions[:, :, None]
    if variant == "all_slots":
        allowed = np.ones_like(allowed)
    if variant == "top_left":
        allowed = np.broadcast_to(slots <= np.arange(n)[None, :, None], allowed.shape)
    for layer, p in enumerate(params["blocks"]):
        a = layer_norm(x, p["ln1_g"], p["ln1_b"])
        q, k, v = (split_heads(a @ p[w], n_head) for w in ("w_q", "w_k", "w_v"))   # (B, H, n, dh)
        before = kv[layer].copy()
        for i in range(b):
            kv[layer, 0, i][:, positions[i]] = k[i]
            kv[layer, 1, i][:, positions[i]] = v[i]
        keys = before if variant == "read_before_write" else kv[layer]
        scores = q @ np.swapaxes(keys[0], -1, -2)
        scores = scores if variant == "no_scale" else scores / math.sqrt(q.shape[-1])
        weights = softmax(np.where(allowed[:, None], scores, -np.inf))
        x = add_mlp(x + merge_heads(weights @ keys[1]) @ p["w_o"], p)
    return layer_norm(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T, kv


def _run_step(fn, tp, kv, ids, start, n_head, dtype, what):
    res = _pair(attempt(lambda: fn(tp, _tensor(kv, _TORCH[np.dtype(dtype)]), _long(ids), _long(start), n_head),
                        what, STEP_HINT), what, ("logits", "kv"), STEP_PAIR_HINT)
    logits = as_result_array(res[0], f"{what}: logits")
    out_kv = as_result_array(res[1], f"{what}: kv")
    b, n = np.shape(ids)
    v = tp["wte"].shape[0]
    if logits.shape == (b, v) and n == 1:
        raise CheckFailure(f"{what}: logits of shape {logits.shape}", "return the logits of every new token: "
                           "(B, n, V), also when n = 1")
    assert_shape(logits, (b, n, v), f"{what}: logits", "logits are (B, n, V): one row per new token")
    if out_kv.shape != np.shape(kv):
        raise CheckFailure(f"{what}: the returned cache has shape {out_kv.shape}, the cache passed in "
                           f"{np.shape(kv)}", KV_SHAPE_HINT)
    return logits, out_kv


_TORCH = {}


def _torch_dtypes():
    if not _TORCH:
        _TORCH.update({np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32})


def _check_static(fn, params, kv, ids, start, n_head, sequences, what, dtype=np.float64):
    """One call of static_step. `sequences[b]`: every real token of sequence b so far,
    this step's included (the oracle recomputes it); rows past a sequence's real tokens
    (padding) are not checked. Returns the student's cache as float64."""
    _torch_dtypes()
    tp = _torch_params(params, _TORCH[np.dtype(dtype)])
    kv = np.asarray(kv, dtype=dtype)
    p = {k: (np.asarray(v, dtype=dtype) if k != "blocks" else [{kk: np.asarray(vv, dtype=dtype)
                                                               for kk, vv in blk.items()} for blk in v])
         for k, v in params.items()}
    logits, out_kv = _run_step(fn, tp, kv, ids, start, n_head, dtype, what)
    start = np.asarray(start)
    n = np.shape(ids)[1]
    rtol, atol = _tol(dtype)
    written = np.zeros(kv.shape[2:5], dtype=bool)                      # (B, H, S)
    for b, seq in enumerate(sequences):
        seq = np.asarray(seq)
        real = min(n, len(seq) - int(start[b]))                         # this step's real tokens
        el, ek, ev = recompute(seq, p, n_head)
        got = logits[b, :real]
        want = el[int(start[b]):int(start[b]) + real]
        if not _same(got, want, dtype):
            for variant, says, hint in STEP_SLIPS:
                wl = _static_np(p, kv, ids, start, n_head, variant)[0][b, :real]
                if _same(got, wl, dtype) and not _same(wl, want, dtype):
                    raise CheckFailure(f"{what}: sequence {b}: {says}", hint)
            assert_values_close(got, want, f"{what}: logits of sequence {b} (recomputing its {len(seq)} tokens "
                                "from scratch gives the expected ones)", STEP_HINT, rtol=rtol, atol=atol)
        m = len(seq)
        written[b, :, :m] = True
        for half, name, exp in ((0, "keys", ek), (1, "values", ev)):
            got_kv = out_kv[:, half, b, :, :m]                          # (L, H, m, dh)
            if not np.allclose(got_kv, exp, rtol=rtol, atol=atol):
                assert_values_close(got_kv, exp, f"{what}: the cache's {name} of sequence {b}, slots 0..{m - 1}",
                                    KV_CONTENT_HINT, rtol=rtol, atol=atol)
    # Slots that no real token and no padding of this step wrote keep their leftovers.
    touched = written.copy()
    for b in range(len(sequences)):
        touched[b, :, int(start[b]):int(start[b]) + n] = True
    untouched = np.broadcast_to(~touched, out_kv.shape[:2] + touched.shape)[..., None]
    if not np.array_equal(np.where(untouched, out_kv, 0), np.where(untouched, kv, 0)):
        raise CheckFailure(f"{what}: slots that this step does not write were changed", TAIL_KEPT_HINT)
    return out_kv.astype(np.float64)


def _flow(fn, rng, params, n_head, prompts, s, steps, what, dtype=np.float64):
    """Prefill right-padded prompts into a cache of leftovers, then `steps` decode steps with
    random tokens (the sequences at different positions), each checked against recomputation."""
    b = len(prompts)
    v, d = params["wte"].shape
    layers = len(params["blocks"])
    kv = rng.standard_normal((layers, 2, b, n_head, s, d // n_head)) * 2.0    # leftovers, finite
    t = max(len(pr) for pr in prompts)
    ids = np.array([list(pr) + list(rng.integers(0, v, t - len(pr))) for pr in prompts], dtype=np.int64)
    seqs = [list(pr) for pr in prompts]
    kv = _check_static(fn, params, kv, ids, [0] * b, n_head, seqs,
                       f"{what}: prefill of prompts of lengths {[len(pr) for pr in prompts]} (right-padded to {t})",
                       dtype)
    for step in range(steps):
        start = [len(sq) for sq in seqs]
        new = rng.integers(0, v, b)
        for sq, tok in zip(seqs, new):
            sq.append(int(tok))
        kv = _check_static(fn, params, kv, new[:, None], start, n_head, seqs,
                           f"{what}: decode step {step + 1} (start={start})", dtype)
    return kv, seqs


@test("static_step_visible", "static_step", points=2)
def static_step_visible(static_step):
    """Cache equals recompute: a ragged prefill over leftovers, then decode steps at different positions.

    Logits and cache against chapter 15's recomputation in float64, then in float32; the cache keeps
    its shape and the slots a step does not write keep their leftovers; a step of two tokens."""
    rng = rng_for("static_step_visible")
    params = random_gpt(rng, 13, 16, 12, 2)
    kv, seqs = _flow(static_step, rng, params, 2, [[3, 1, 4], [1, 5, 9, 2, 6]], 10, 3, "static_step")
    start = [len(sq) for sq in seqs]
    new = rng.integers(0, 13, (2, 2))
    for sq, toks in zip(seqs, new):
        sq.extend(int(t) for t in toks)
    _check_static(static_step, params, kv, new, start, 2, seqs,
                  f"static_step: a step of two new tokens per sequence (start={start})")
    params32 = random_gpt(rng, 11, 16, 10, 2)
    _flow(static_step, rng, params32, 4, [[2, 7], [1, 8, 2]], 8, 2, "static_step [float32]", np.float32)


@test("static_step_random", "static_step", points=2, hidden=True)
def static_step_random(static_step, ref):
    """Random models, batches and prompt lengths, several steps, float64 and float32."""
    rng = rng_for("static_step_random")
    for dtype, layers, heads, d, b in [(np.float64, 1, 1, 8, 1), (np.float64, 3, 4, 16, 3),
                                       (np.float32, 2, 2, 16, 2)]:
        params = random_gpt(rng, 17, d, 14, layers)
        prompts = [list(rng.integers(0, 17, int(rng.integers(1, 6)))) for _ in range(b)]
        _flow(static_step, rng, params, heads, prompts, 12, 4,
              f"static_step ({layers} blocks, {heads} heads, batch {b}) [{np.dtype(dtype)}]", dtype)


@test("static_step_edge", "static_step", hidden=True)
def static_step_edge(static_step, ref):
    """A one-token prompt; filling the cache to its last slot (S = block_size); a zero cache."""
    rng = rng_for("static_step_edge")
    params = random_gpt(rng, 9, 8, 6, 2)
    _flow(static_step, rng, params, 2, [[4]], 6, 5, "static_step filling all 6 slots from a one-token prompt")
    kv = np.zeros((2, 2, 2, 2, 6, 4))
    _check_static(static_step, params, kv, np.array([[1, 2], [3, 4]]), [0, 0], 2, [[1, 2], [3, 4]],
                  "static_step on a cache of zeros")


# ==================================================================== sample_next

DELTA = 1e-7  # false-failure probability of one frequency comparison (chapter 6's bound)
GUMBEL_HINT = ("add Gumbel noise g = -log(-log(uniform)) to logits / temperature and take the argmax over "
               "the last axis")
UNIFORM_NOISE_HINT = ("the noise must be Gumbel, g = -log(-log(uniform)): adding the uniform draws themselves "
                      "does not give softmax's distribution")
TEMP_AFTER_HINT = ("divide the logits by the temperature BEFORE adding the noise: argmax((logits + g) / T) "
                   "is argmax(logits + g), so the temperature has no effect")
SIGN_HINT = "g = -log(-log(uniform)), with both minus signs: +log(-log(u)) favours the wrong tokens"
TEMP_MULT_HINT = "divide the logits by the temperature, don't multiply"
GREEDY_HINT = ("temperature 0 means greedy: return torch.argmax(logits, -1) and ignore the noise (logits / 0 "
               "gives inf and NaN)")
IDS_HINT = "return the argmax indices (int64) over the last axis, shape logits.shape[:-1]"
NEG_TEMP_HINT = "raise ValueError for a negative temperature"


def _gumbel_variants(z, u, t):
    g = -np.log(-np.log(u))
    with np.errstate(all="ignore"):
        return {"right": np.argmax(z / t + g, -1) if t else np.argmax(z, -1),
                "uniform": np.argmax(z / t + u, -1) if t else None,
                "after": np.argmax(z + g, -1),
                "sign": np.argmax(z / t - g, -1) if t else None,
                "mult": np.argmax(z * t + g, -1)}


def _safe_rows(z, u, t):
    """Rows whose winner beats the runner-up by a margin no rounding can flip."""
    if z.shape[-1] == 1:
        return np.ones(z.shape[:-1], dtype=bool)
    with np.errstate(all="ignore"):
        key = z if t == 0 else z / t - np.log(-np.log(u))
    top2 = np.sort(key, axis=-1)[..., -2:]
    with np.errstate(invalid="ignore"):
        return (top2[..., 1] - top2[..., 0]) > 1e-3


def _ids(value, shape, what, v):
    out = as_result_array(value, what)
    if out.dtype.kind not in "iu":
        raise CheckFailure(f"{what}: dtype {out.dtype}, expected integer token ids", IDS_HINT)
    assert_shape(out, shape, what, IDS_HINT)
    if out.size and (out.min() < 0 or out.max() >= v):
        raise CheckFailure(f"{what}: ids outside [0, {v})", IDS_HINT)
    return out


def _check_sample(fn, z, u, t, what, dtype=np.float64):
    """Exact check against the Gumbel-max formula (on rows no rounding can flip), with diagnoses."""
    zt, ut = _tensor(z.astype(dtype)), _tensor(u.astype(dtype))
    out = _ids(attempt(lambda: fn(zt, t, ut), what, GUMBEL_HINT), z.shape[:-1], what, z.shape[-1])
    variants = _gumbel_variants(z.astype(np.float64), u.astype(np.float64), t)
    safe = _safe_rows(z.astype(np.float64), u.astype(np.float64), t)
    if np.array_equal(out[safe], variants["right"][safe]):
        return out
    if t == 0:
        raise CheckFailure(f"{what}: at temperature 0 got {out.ravel()[:8].tolist()}, expected the argmax "
                           f"{variants['right'].ravel()[:8].tolist()}", GREEDY_HINT)
    for name, rule, hint in (("uniform", "argmax(logits / T + uniform)", UNIFORM_NOISE_HINT),
                             ("sign", "argmax(logits / T + log(-log(uniform)))", SIGN_HINT),
                             ("after", "argmax((logits + g) / T)", TEMP_AFTER_HINT),
                             ("mult", "argmax(logits * T + g)", TEMP_MULT_HINT)):
        w = variants[name]
        if w is not None and np.array_equal(out[safe], w[safe]) and not np.array_equal(w[safe],
                                                                                    variants["right"][safe]):
            raise CheckFailure(f"{what}: the ids are those of {rule}, not of argmax(logits / T + g) with "
                               "g = -log(-log(uniform))", hint)
    bad = int(np.sum(out[safe] != variants["right"][safe]))
    raise CheckFailure(f"{what}: {bad} of {int(safe.sum())} ids differ from argmax(logits / T - log(-log(u)))",
                       GUMBEL_HINT)


def _check_frequencies(fn, row, t, n, rng, what, dtype=np.float32):
    v = row.shape[-1]
    z = np.broadcast_to(row, (n, v)).astype(dtype)
    u = rng.uniform(1e-12, 1.0, (n, v))
    out = _check_sample(fn, z, u, t, what, dtype)
    freq = np.bincount(out, minlength=v)[:v] / n
    want = softmax(row.astype(np.float64) / t)
    bound = math.sqrt(math.log(2 * v / DELTA) / (2 * n))
    worst = int(np.argmax(np.abs(freq - want)))
    ensure(abs(freq[worst] - want[worst]) <= bound,
           f"{what}: token {worst} was drawn with frequency {freq[worst]:.4f}, its probability is "
           f"{want[worst]:.4f} ({n} draws; a correct sampler is off by more than {bound:.4f} with probability "
           f"below {DELTA:g})", GUMBEL_HINT)


@test("sample_next_visible", "sample_next")
def sample_next_visible(sample_next):
    """Gumbel-max on given noise: exact ids, softmax(logits / T) frequencies, T = 0 greedy, -inf never.

    Also: leading axes kept, int64 ids, ValueError for a negative temperature (20000 draws per
    frequency check; a correct sampler fails with probability below 1e-6)."""
    rng = rng_for("sample_next_visible")
    z = rng.standard_normal((6, 7)) * 2
    u = rng.uniform(0.01, 0.99, (6, 7))
    _check_sample(sample_next, z, u, 0.8, "sample_next(logits (6, 7), 0.8, uniform)")
    row = np.array([2.0, 1.0, 0.0, -1.0, 3.0])
    _check_frequencies(sample_next, row, 2.0, 20000, rng, "sample_next at temperature 2 (20000 rows)")
    _check_frequencies(sample_next, row, 0.5, 20000, rng, "sample_next at temperature 0.5 (20000 rows)")
    greedy = np.array([[-1.0, 0.5, 2.0, 0.1], [3.0, -2.0, 0.0, 3.5], [0.2, -0.3, 0.1, -5.0]])
    _check_sample(sample_next, greedy, rng.uniform(0.01, 0.99, greedy.shape), 0.0,
                  "sample_next(logits (3, 4), temperature 0, uniform)")
    batch = rng.standard_normal((2, 3, 9))
    _check_sample(sample_next, batch, rng.uniform(0.01, 0.99, batch.shape), 1.0,
                  "sample_next(logits (2, 3, 9), 1.0, uniform)")
    masked = np.broadcast_to(np.array([0.0, -np.inf, 5.0, -np.inf]), (500, 4)).copy()
    out = _check_sample(sample_next, masked, rng.uniform(1e-9, 1.0, masked.shape), 3.0,
                        "sample_next with -inf logits (500 rows, temperature 3)")
    ensure(not np.isin(out, [1, 3]).any(), "sample_next drew a token whose logit is -inf",
           "a -inf logit stays -inf after dividing and adding finite noise: it can never be the argmax")
    assert_raises(lambda: sample_next(_tensor(z), -0.5, _tensor(u)), "ValueError",
                  "sample_next with temperature -0.5", NEG_TEMP_HINT)


@test("sample_next_random", "sample_next", hidden=True)
def sample_next_random(sample_next, ref):
    """Random logits, noise and temperatures, float32 and float64; frequencies at T = 1.3."""
    rng = rng_for("sample_next_random")
    for dtype in (np.float64, np.float32):
        for shape, t in [((5, 11), 1.0), ((3, 4, 20), 0.6), ((7,), 2.5), ((2, 50), 0.05)]:
            z = rng.standard_normal(shape) * 3
            u = rng.uniform(1e-6, 1 - 1e-6, shape)
            what = f"sample_next(logits {shape}, {t}, uniform) [{np.dtype(dtype)}]"
            out = _check_sample(sample_next, z, u, t, what, dtype)
            expected = ref.sample_next(_tensor(z), t, _tensor(u)).numpy()
            safe = _safe_rows(z, u, t)
            ensure(np.array_equal(out[safe], expected[safe]), f"{what}: differs from the reference", GUMBEL_HINT)
    _check_frequencies(sample_next, rng.standard_normal(8), 1.3, 20000, rng, "sample_next at temperature 1.3")


@test("sample_next_edge", "sample_next", hidden=True)
def sample_next_edge(sample_next, ref):
    """Huge logits; one token; a tiny temperature; noise near 0 and 1; temperature 0 with batch axes."""
    rng = rng_for("sample_next_edge")
    big = np.broadcast_to(np.array([1000.0, 999.0, -1000.0]), (20000, 3)).copy()
    _check_frequencies(sample_next, big[0], 1.0, 20000, rng, "sample_next with logits around 1000",
                       np.float64)
    _check_sample(sample_next, np.zeros((4, 1)), rng.uniform(0.1, 0.9, (4, 1)), 1.0, "sample_next with V = 1")
    z = rng.standard_normal((6, 10))
    _check_sample(sample_next, z, rng.uniform(0.01, 0.99, z.shape), 1e-4, "sample_next at temperature 1e-4")
    u = np.where(rng.random((6, 10)) < 0.5, 1e-12, 1 - 1e-12)
    _check_sample(sample_next, z, u, 1.0, "sample_next with noise at 1e-12 and 1 - 1e-12")
    x = rng.standard_normal((2, 3, 9))
    _check_sample(sample_next, x, rng.uniform(0.01, 0.99, x.shape), 0, "sample_next(logits (2, 3, 9), 0)")


# ==================================================================== decode_attention

D_TAIL_HINT = ("the slots at and past lengths[b] are unwritten: mask them in the split kernel "
               "(valid = slots < length, loaded from LENGTHS for the program's sequence), with -inf scores")
D_OFF_BY_ONE_HINT = ("slots 0 .. lengths[b] - 1 are valid (the new token is at lengths[b] - 1): "
                     "valid = slots < length, not <=")
NO_RESCALE_HINT = ("combining partial outputs needs their weights: o = sum_i exp(lse_i - lse) * o_i with "
                   "lse = log(sum_i exp(lse_i)); adding the chunks' outputs without rescaling by "
                   "exp(lse_i - lse) is wrong as soon as there are two chunks")
AVERAGE_HINT = ("averaging the chunks' outputs weighs every chunk alike; a chunk's weight is its share of "
                "the softmax mass, exp(lse_i - lse), with lse = log(sum_i exp(lse_i))")
D_SCALE_HINT = "scale the scores by 1/sqrt(d) before the softmax"
EMPTY_CHUNK_HINT = ("a chunk entirely past the length has only -inf scores: its max m is -inf and "
                    "exp(s - m) is NaN. Use 0 instead of m for such a chunk and store o_i = 0, lse_i = -inf, "
                    "which the combine then weighs with exp(-inf) = 0")
STABLE_COMBINE_HINT = ("combine from the largest lse_i: w_i = exp(lse_i - max_j lse_j) / sum_j exp(lse_j - "
                       "max_j lse_j); exp(lse_i) alone overflows for large scores")
GRID_HINT = ("launch cdiv(S, CHUNK) programs along the cache, so the last, partial chunk runs too "
             "(S // CHUNK drops it)")
D_BATCH_HINT = ("right for one (sequence, head), wrong for several: program_id(1) = b * H + h picks the "
                "cache rows at (program_id(1) * S) * d and the length of sequence program_id(1) // H")
D_DTYPE_HINT = "return o in q's dtype (cast when storing: .to(O.dtype.element_ty))"
D_VALUE_ERROR_HINT = ("call check_decode_inputs(q, k_cache, v_cache, lengths) first: unsupported inputs must "
                      "raise a ValueError that says what is wrong")
D_RAISED_HINT = "the kernel raised: run it on this input in your notebook and read the message"
D_SHAPE_HINT = ("shapes that do not broadcast: a vector of one number per slot (s, p, valid) must become a "
                "column with [:, None] before it meets a (CHUNK, d) block (p[:, None] * v), and a vector of "
                "dims gets [None, :] (q[None, :] * k)")
D_RESULT_HINT = "return o, a tensor shaped like q: (B, H, d)"


def _chunk_size():
    return 16 if tensor_device() == "cpu" else 64


def _decode_expected(q, k, v, lengths, variant="", chunk=16):
    """float64 attention of q (B, H, d) over k, v (B, H, S, d), slots < lengths[b]; variants
    reproduce slips: 'tail' (every slot), 'plus_one' (length + 1 slots), 'no_scale', 'floor'
    (the last partial chunk dropped), 'sum' (chunk outputs added), 'mean' (chunk outputs averaged)."""
    q, k, v = (np.asarray(t, dtype=np.float64) for t in (q, k, v))
    b, h, s, d = k.shape
    scale = 1.0 if variant == "no_scale" else 1.0 / math.sqrt(d)
    out = np.zeros((b, h, d))
    for i in range(b):
        n = int(lengths[i])
        if variant == "tail":
            n = s
        elif variant == "plus_one":
            n = min(n + 1, s)
        elif variant == "floor":
            n = min(n, (s // chunk) * chunk)
        if n == 0:
            return None
        scores = np.einsum("hd,hsd->hs", q[i], k[i, :, :n]) * scale
        if variant in ("sum", "mean"):
            parts = [np.einsum("hs,hsd->hd", softmax(scores[:, c:c + chunk]), v[i, :, c:min(c + chunk, n)])
                     for c in range(0, n, chunk)]
            out[i] = np.sum(parts, axis=0) if variant == "sum" else np.mean(parts, axis=0)
        else:
            out[i] = np.einsum("hs,hsd->hd", softmax(scores), v[i, :, :n])
    return out


def _decode_inputs(rng, b, h, s, d, dtype, q_scale=1.0):
    dev = tensor_device()
    q = torch.from_numpy(q_scale * rng.standard_normal((b, h, d))).to(dtype).to(dev)
    k = torch.from_numpy(rng.standard_normal((b, h, s, d))).to(dtype).to(dev)
    v = torch.from_numpy(rng.standard_normal((b, h, s, d))).to(dtype).to(dev)
    return q, k, v


def _check_decode(fn, q, k, v, lengths, what, fallback_hint):
    precision = dtype_name(q.dtype)
    lengths_t = torch.tensor(lengths, dtype=torch.int64, device=q.device)
    try:
        out = fn(q, k, v, lengths_t)
    except StudentError as err:
        text = err.message.lower()
        hint = D_SHAPE_HINT if ("broadcast" in text or "shape" in text or "incompatible" in text) else D_RAISED_HINT
        raise CheckFailure(f"{what} raised {err.type_name}: {err.message}", hint) from None
    if isinstance(out, (tuple, list)):
        raise CheckFailure(f"{what} returned a tuple of {len(out)} items", D_RESULT_HINT)
    out = as_result_array(out, what)
    assert_shape(out, tuple(q.shape), what, D_RESULT_HINT)
    if out.dtype != np.dtype(precision):
        raise CheckFailure(f"{what}: dtype {out.dtype}, expected {precision}", D_DTYPE_HINT)
    qn, kn, vn = (t.double().cpu().numpy() for t in (q, k, v))
    chunk = _chunk_size()
    expected = _decode_expected(qn, kn, vn, lengths, chunk=chunk)
    tol = REL_TOL[precision]
    if np.isfinite(out).all() and relative_error(out, expected) <= tol:
        return out
    if not np.isfinite(out).all():
        empty = any(-(-int(n) // chunk) < -(-k.shape[2] // chunk) for n in lengths)
        big = np.abs(np.einsum("bhd,bhsd->bhs", qn, kn)).max() / math.sqrt(qn.shape[-1]) > 80
        if big:
            raise CheckFailure(f"{what}: {int((~np.isfinite(out)).sum())} entries are NaN or inf (scores "
                               "reach about 100 here)", STABLE_COMBINE_HINT)
        if empty:
            raise CheckFailure(f"{what}: {int((~np.isfinite(out)).sum())} entries are NaN or inf, and some "
                               "chunks lie entirely past the length", EMPTY_CHUNK_HINT)
    for variant, says, hint in (("tail", "the unwritten slots took part", D_TAIL_HINT),
                                ("plus_one", "one slot past the length took part", D_OFF_BY_ONE_HINT),
                                ("sum", "the chunks' outputs were added without their weights", NO_RESCALE_HINT),
                                ("mean", "the chunks' outputs were averaged", AVERAGE_HINT),
                                ("no_scale", "the scores were not scaled", D_SCALE_HINT),
                                ("floor", "the last, partial chunk was dropped", GRID_HINT)):
        wrong = _decode_expected(qn, kn, vn, lengths, variant, chunk)
        if wrong is not None and np.isfinite(out).all() and relative_error(wrong, expected) > 10 * tol \
                and relative_error(out, wrong) <= tol:
            raise CheckFailure(f"{what}: {says}", hint)
    assert_rel_close(out, expected, what, fallback_hint, precision)
    return out


def _decode_value_errors(fn):
    rng = rng_for("decode_value_errors")
    dev = tensor_device()
    q, k, v = _decode_inputs(rng, 1, 2, 8, 16, torch.float32)
    lengths = torch.tensor([8], device=dev)
    q48, k48, v48 = _decode_inputs(rng, 1, 2, 8, 48, torch.float32)
    assert_raises(lambda: fn(q48, k48, v48, lengths), "ValueError", "decode_attention with head dimension 48",
                  D_VALUE_ERROR_HINT)
    assert_raises(lambda: fn(q, k, v, torch.tensor([8, 8], device=dev)), "ValueError",
                  "decode_attention with lengths of shape (2,) for a batch of 1", D_VALUE_ERROR_HINT)
    kt, vt = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (k, v))  # same shape, not contiguous
    assert_raises(lambda: fn(q, kt, vt, lengths), "ValueError",
                  "decode_attention with transposed (non-contiguous) caches", D_VALUE_ERROR_HINT)


@test("decode_attention_visible", "decode_attention", points=3)
def decode_attention_visible(decode_attention):
    """Bad inputs; lengths 37 and 5 of 37 slots (tail unwritten); four full chunks; large scores; float16/64.

    Against softmax(k[:length] q / sqrt(d)) v[:length] in float64. On the CPU a chunk is 16
    slots: several chunks per sequence, chunks entirely past the length, a last partial chunk."""
    fn = decode_attention
    rng = rng_for("decode_attention_visible")
    _decode_value_errors(fn)
    q, k, v = _decode_inputs(rng, 2, 2, 37, 16, torch.float32)
    _check_decode(fn, q, k, v, [37, 5], "decode_attention(q (2, 2, 16), caches (2, 2, 37, 16), lengths [37, 5])",
                  NO_RESCALE_HINT)
    q, k, v = _decode_inputs(rng, 1, 3, 64, 32, torch.float32)
    _check_decode(fn, q, k, v, [64], "decode_attention(q (1, 3, 32), caches (1, 3, 64, 32), lengths [64])",
                  NO_RESCALE_HINT)
    q, k, v = _decode_inputs(rng, 1, 2, 40, 16, torch.float32, q_scale=40.0)
    _check_decode(fn, q, k, v, [33], "decode_attention with scores up to about 100 (q scaled by 40), lengths [33]",
                  STABLE_COMBINE_HINT)
    q, k, v = _decode_inputs(rng, 3, 2, 20, 16, torch.float16)
    _check_decode(fn, q, k, v, [1, 20, 17], "decode_attention float16, lengths [1, 20, 17] of 20 slots",
                  "float16 inputs: accumulate in float32 (ACC), store o as float16")
    q, k, v = _decode_inputs(rng, 2, 1, 50, 64, torch.float64)
    _check_decode(fn, q, k, v, [18, 49], "decode_attention float64, lengths [18, 49] of 50 slots", D_BATCH_HINT)


@test("decode_attention_random", "decode_attention", points=2, hidden=True)
def decode_attention_random(decode_attention, ref):
    """Random batches, heads, head dims 16-128, cache sizes and lengths; float16/32/64."""
    rng = rng_for("decode_attention_random")
    for b, h, s, d, dtype in [(2, 3, 30, 16, torch.float64), (1, 2, 70, 64, torch.float32),
                              (3, 1, 45, 128, torch.float16), (2, 2, 16, 32, torch.float32)]:
        lengths = [int(x) for x in rng.integers(1, s + 1, b)]
        q, k, v = _decode_inputs(rng, b, h, s, d, dtype)
        _check_decode(decode_attention, q, k, v, lengths,
                      f"decode_attention(B={b}, H={h}, S={s}, d={d}, lengths {lengths}) [{dtype_name(dtype)}]",
                      "compare with softmax attention over the first lengths[b] slots")


@test("decode_attention_edge", "decode_attention", hidden=True)
def decode_attention_edge(decode_attention, ref):
    """One slot; length 1 in a long cache; a single chunk; equal scores; int32 lengths."""
    rng = rng_for("decode_attention_edge")
    fn = decode_attention
    q, k, v = _decode_inputs(rng, 1, 1, 1, 16, torch.float32)
    _check_decode(fn, q, k, v, [1], "decode_attention with a one-slot cache", "with one slot, o is its value")
    q, k, v = _decode_inputs(rng, 2, 2, 60, 16, torch.float32)
    _check_decode(fn, q, k, v, [1, 1], "decode_attention with lengths [1, 1] of 60 slots", EMPTY_CHUNK_HINT)
    q, k, v = _decode_inputs(rng, 2, 2, 10, 32, torch.float64)
    _check_decode(fn, q, k, v, [10, 3], "decode_attention with 10 slots (a single chunk)", D_TAIL_HINT)
    q = torch.zeros(1, 2, 16, dtype=torch.float64, device=tensor_device())
    k = torch.from_numpy(rng.standard_normal((1, 2, 40, 16))).to(tensor_device())
    v = torch.from_numpy(rng.standard_normal((1, 2, 40, 16))).to(tensor_device())
    _check_decode(fn, q, k, v, [40], "decode_attention with equal scores (q = 0): the mean of the values",
                  AVERAGE_HINT)
    q, k, v = _decode_inputs(rng, 2, 1, 24, 16, torch.float32)
    out = fn(q, k, v, torch.tensor([7, 24], dtype=torch.int32, device=q.device))
    expected = _decode_expected(*(t.double().cpu().numpy() for t in (q, k, v)), [7, 24])
    assert_rel_close(out, expected, "decode_attention with int32 lengths", "load LENGTHS as it comes (int32 or "
                     "int64)", "float32")

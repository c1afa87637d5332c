"""Chapter 17 (17-distributed): data parallelism, simulated in NumPy.

Why simulated: a real process group needs several processes talking over sockets, and the
grader's sandbox runs one process with no network; functions and process groups cannot cross
its wire either. So every graded function works on all ranks at once, the first axis being
the rank (see solutions/reference/distributed.py), and the chapter's page runs the same
algorithms for real with torch.distributed.

The visible tests need no answer key: stored small results (shards, send counts, the ring's
rounding on values chosen so that the order of additions shows), and properties (every rank
ends with the same vector; ZeRO-1 equals plain AdamW on the averaged gradient, which the test
computes itself, unsharded). Each checks the classic slips first, so a failure names its cause.
Hidden tests compare with the reference on seeded random inputs, float32 and float64.
"""
import math

import numpy as np

from ..framework import (Chapter, CheckFailure, as_result_array, assert_close, assert_raises, assert_shape,
                         assert_values_close, attempt, describe, ensure, rng_for)

chapter = Chapter("17-distributed", reference="distributed",
                  functions=["shard_batch", "average_gradients", "ring_allreduce", "zero1_step"],
                  sample_scores=(12, 6, 0, 0, 9))
test = chapter.test


def _tuple(value, n, what, hint):
    """A tuple (or list) of n arrays, or a failure saying what came back."""
    if not isinstance(value, (tuple, list)) or len(value) != n:
        got = f"a tuple of {len(value)} items" if isinstance(value, (tuple, list)) else describe(value)
        raise CheckFailure(f"{what} returned {got}, expected a tuple of {n} arrays", hint)
    return [as_result_array(v, f"{what}[{i}]") for i, v in enumerate(value)]


def _bounds(n, p):
    """np.array_split's pieces of range(n) into p parts, as (start, stop) pairs."""
    base, extra = divmod(n, p)
    starts = [c * base + min(c, extra) for c in range(p + 1)]
    return [(starts[c], starts[c + 1]) for c in range(p)]


# ------------------------------------------------------------------ shard_batch

DROP_HINT = ("uneven shards must not drop items: with n_items % world_size = e left over, the first e ranks "
             "get one item more (n_items // world_size + 1)")
REMAINDER_HINT = ("balance the shards: the first n_items % world_size ranks get one item more, so sizes "
                  "differ by at most 1 (not all of the remainder on one rank)")
SAME_HINT = ("the shard must depend on the rank: every rank got the same items (the same seed or slice on "
             "every rank?), so the ranks would compute the same gradient")
OVERLAP_HINT = "each item goes to exactly one rank: shards must not overlap, and indices lie in [0, n_items)"
CONTIGUOUS_HINT = ("contiguous shards in rank order: rank 0 gets the first items, rank 1 the next ones, "
                   "... (not every world_size-th item)")
SHARD_CASES = [  # (n_items, world_size) -> every rank's indices
    ((8, 2), [[0, 1, 2, 3], [4, 5, 6, 7]]),
    ((10, 4), [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]),
    ((11, 3), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]),
    ((3, 5), [[0], [1], [2], [], []]),
    ((7, 1), [[0, 1, 2, 3, 4, 5, 6]]),
]


def _shards(shard_batch, n, p):
    """Every rank's shard as a list of integer arrays, or a failure."""
    out = []
    for r in range(p):
        what = f"shard_batch({n}, {r}, {p})"
        got = as_result_array(attempt(lambda: shard_batch(n, r, p), what,
                                      "return np.arange(start, stop) for this rank's contiguous shard"), what)
        if got.ndim != 1:
            raise CheckFailure(f"{what}: shape {got.shape}, expected a 1-D array of indices",
                               "return a 1-D array of item indices")
        if got.size and (got.dtype.kind not in "iu" and not np.all(got == np.round(got))):
            raise CheckFailure(f"{what}: returned non-integer values", "return integer item indices")
        if got.size and got.dtype.kind not in "iu":
            raise CheckFailure(f"{what}: dtype {got.dtype}, expected integer indices",
                               "return integer indices (np.arange(start, stop) gives int64)")
        out.append(got.astype(np.int64))
    return out


def _diagnose_shards(shards, n, p, expected):
    what = f"shard_batch({n}, rank, {p}) for rank = 0..{p - 1}"
    sizes = [len(s) for s in shards]
    if p > 1 and n >= p and all(np.array_equal(s, shards[0]) for s in shards):
        raise CheckFailure(f"{what}: every rank got the same indices {shards[0].tolist()}", SAME_HINT)
    allidx = np.concatenate(shards) if shards else np.zeros(0, np.int64)
    if allidx.size and (allidx.min() < 0 or allidx.max() >= n or len(np.unique(allidx)) < allidx.size):
        raise CheckFailure(f"{what}: shards overlap or leave [0, {n}): {[s.tolist() for s in shards]}",
                           OVERLAP_HINT)
    if allidx.size < n:
        raise CheckFailure(f"{what}: the shards hold {allidx.size} of the {n} items "
                           f"(sizes {sizes}); items {sorted(set(range(n)) - set(allidx.tolist()))} are dropped",
                           DROP_HINT)
    if max(sizes) - min(sizes) > 1 or sizes != [len(e) for e in expected]:
        raise CheckFailure(f"{what}: shard sizes {sizes}, expected {[len(e) for e in expected]}", REMAINDER_HINT)
    for r, (got, want) in enumerate(zip(shards, expected)):
        if not np.array_equal(got, want):
            raise CheckFailure(f"shard_batch({n}, {r}, {p}) gave {got.tolist()}, expected {want}", CONTIGUOUS_HINT)


@test("shard_batch_visible", "shard_batch")
def shard_batch_visible(shard_batch):
    """Contiguous shards in rank order covering every item once, the first n % p ranks one item larger."""
    for (n, p), expected in SHARD_CASES:
        _diagnose_shards(_shards(shard_batch, n, p), n, p, expected)


@test("shard_batch_random", "shard_batch", hidden=True)
def shard_batch_random(shard_batch, ref):
    """Random batch sizes and world sizes: every rank's shard equals the reference's."""
    rng = rng_for("shard_batch_random")
    for _ in range(25):
        p = int(rng.integers(1, 9))
        n = int(rng.integers(0, 60))
        expected = [ref.shard_batch(n, r, p).tolist() for r in range(p)]
        _diagnose_shards(_shards(shard_batch, n, p), n, p, expected)


@test("shard_batch_edge", "shard_batch", hidden=True)
def shard_batch_edge(shard_batch, ref):
    """An empty batch, fewer items than ranks, one rank, a large batch; bad ranks raise ValueError."""
    for n, p in [(0, 3), (1, 4), (5, 8), (1, 1), (100003, 7), (64, 64)]:
        expected = [ref.shard_batch(n, r, p).tolist() for r in range(p)]
        _diagnose_shards(_shards(shard_batch, n, p), n, p, expected)
    for n, r, p in [(10, 4, 4), (10, -1, 4), (10, 0, 0)]:
        assert_raises(lambda: shard_batch(n, r, p), "ValueError", f"shard_batch({n}, {r}, {p})",
                      "raise ValueError unless world_size >= 1 and 0 <= rank < world_size")


# ------------------------------------------------------------------ average_gradients

EVERY_RANK_HINT = ("every rank must hold the result after an all-reduce: return an array of the input's shape "
                   "(p, ...) whose rows are all the average")
MEAN_HINT = "average, not the sum: divide by the number of ranks (the gradient of the mean loss)"
WEIGHT_HINT = ("the shards are uneven: weight each rank by its number of items, sum_r n_r g_r / sum_r n_r "
               "(a plain mean over ranks over-weights the small shards)")
TOTAL_HINT = "divide the weighted sum by the total number of items sum_r n_r, not by the number of ranks"


def _average(average_gradients, g, counts, expected, what):
    got = as_result_array(attempt(lambda: average_gradients(g, counts) if counts is not None
                                  else average_gradients(g), what, EVERY_RANK_HINT), what)
    if got.shape == g.shape[1:]:
        raise CheckFailure(f"{what}: shape {got.shape}, one result instead of one per rank {g.shape}",
                           EVERY_RANK_HINT)
    assert_shape(got, g.shape, what, EVERY_RANK_HINT)
    want = np.broadcast_to(expected, g.shape)
    if np.allclose(got, want, rtol=1e-4, atol=1e-6):
        return assert_values_close(got, want.astype(g.dtype), what, "")
    c = np.ones(len(g)) if counts is None else np.asarray(counts, dtype=np.float64)
    live = c > 0
    alternatives = [(np.tensordot(c[live], g[live].astype(np.float64), axes=1), MEAN_HINT),
                    (g.astype(np.float64).sum(0), MEAN_HINT),
                    (g.astype(np.float64).mean(0), WEIGHT_HINT),
                    (np.tensordot(c[live], g[live].astype(np.float64), axes=1) / len(g), TOTAL_HINT)]
    for alt, hint in alternatives:
        if np.allclose(got, np.broadcast_to(alt, g.shape), rtol=1e-4, atol=1e-6):
            raise CheckFailure(f"{what}: every rank got {_short(got[0])}, expected {_short(want[0])}", hint)
    rows = got.reshape(len(g), -1)
    if not np.allclose(rows, rows[:1]):
        raise CheckFailure(f"{what}: the ranks ended with different results", EVERY_RANK_HINT)
    assert_values_close(got, want.astype(g.dtype), what, MEAN_HINT if counts is None else WEIGHT_HINT)


def _short(x):
    return np.array2string(np.asarray(x, dtype=np.float64).ravel()[:4], precision=4)


@test("average_gradients_visible", "average_gradients")
def average_gradients_visible(average_gradients):
    """Every rank gets the mean over ranks (equal shards) or the item-weighted mean (counts given)."""
    g = np.array([[1.0, 2.0, 3.0], [3.0, 6.0, 9.0]], dtype=np.float32)
    _average(average_gradients, g, None, np.array([2.0, 4.0, 6.0]), "average_gradients(2 ranks x 3)")
    g = np.array([[[1.0, -2.0], [0.5, 4.0]], [[3.0, 2.0], [1.5, 0.0]], [[2.0, 3.0], [-2.0, 2.0]]])
    _average(average_gradients, g, None, np.array([[2.0, 1.0], [0.0, 2.0]]), "average_gradients(3 ranks x (2, 2))")
    g = np.array([[1.0, 1.0, -1.0], [5.0, 9.0, 3.0]])
    _average(average_gradients, g, (3, 1), np.array([2.0, 3.0, 0.0]),
             "average_gradients(2 ranks x 3, counts=(3, 1))")
    g = np.array([[2.0, 0.0], [4.0, 4.0], [0.0, 8.0]], dtype=np.float32)
    _average(average_gradients, g, (2, 2, 2), np.array([2.0, 4.0]),
             "average_gradients(3 ranks x 2, counts=(2, 2, 2))")


@test("average_gradients_random", "average_gradients", hidden=True)
def average_gradients_random(average_gradients, ref):
    """Random gradients of several shapes, equal and uneven shards, float64 and float32."""
    rng = rng_for("average_gradients_random")
    for dtype in (np.float64, np.float32):
        for shape in [(2, 5), (4, 3, 3), (3, 2, 2, 4), (7, 11)]:
            g = rng.standard_normal(shape).astype(dtype)
            what = f"average_gradients(grads {shape}) [{np.dtype(dtype)}]"
            _average(average_gradients, g, None, ref.average_gradients(g)[0], what)
            counts = tuple(int(c) for c in rng.integers(1, 9, size=shape[0]))
            what = f"average_gradients(grads {shape}, counts={counts}) [{np.dtype(dtype)}]"
            _average(average_gradients, g, counts, ref.average_gradients(g, counts)[0], what)


@test("average_gradients_edge", "average_gradients", hidden=True)
def average_gradients_edge(average_gradients, ref):
    """One rank, a rank with no items (its row NaN), one item on one rank, large values."""
    g = np.array([[1.0, 2.0]])
    _average(average_gradients, g, None, g[0], "average_gradients(1 rank)")
    g = np.array([[1.0, 2.0], [np.nan, np.nan], [4.0, -1.0]])
    what = "average_gradients(3 ranks, counts=(2, 0, 1)): rank 1 has no items, its row is NaN"
    got = as_result_array(attempt(lambda: average_gradients(g, (2, 0, 1)), what,
                                  "a rank with no items contributes nothing: leave its row out"), what)
    assert_values_close(got, np.broadcast_to(ref.average_gradients(g, (2, 0, 1))[0], g.shape), what,
                        "a rank with no items (count 0) contributes nothing: leave its row out, even if it is NaN",
                        nan_hint="a rank with no items (count 0) contributes nothing: leave its row out "
                                 "(0 * NaN is NaN)")
    g = np.array([[7.0, 7.0], [1.0, 3.0]], dtype=np.float32)
    _average(average_gradients, g, (0, 5), np.array([1.0, 3.0]), "average_gradients(counts=(0, 5))")
    g = np.array([[1e30, -1e30], [3e30, 1e30]])
    _average(average_gradients, g, None, np.array([2e30, 0.0]), "average_gradients(values near 1e30)")


# ------------------------------------------------------------------ ring_allreduce

PAIR_HINT = "return the tuple (result, sent): result (p, n), sent (p,) elements sent per rank"
SUM_HINT = "this all-reduce adds the vectors (a sum, like dist.all_reduce's default): don't divide by p"
GATHER_HINT = ("after the reduce-scatter each rank holds one complete chunk; the all-gather (p - 1 more steps) "
               "passes the complete chunks around the ring so every rank holds the whole sum")
ROTATION_HINT = ("at reduce-scatter step s, rank r sends chunk (r - s) mod p to rank (r + 1) mod p, which adds it "
                 "to its own copy; at all-gather step s it sends chunk (r + 1 - s) mod p; take every message of a "
                 "step before anyone receives")
NAIVE_HINT = ("a ring rank sends one chunk of n / p elements per step, 2 (p - 1) chunks in all: 2 (p - 1) / p * n "
              "elements, not its whole vector to every other rank ((p - 1) * n)")
COUNT_HINT = "sent counts every element a rank sends in both phases, reduce-scatter and all-gather"
ORDER_HINT = ("the sum is right only up to rounding: add the way the ring does, chunk c starting from rank c's "
              "part, then rank c + 1 adds its own, and so on (no np.sum over the ranks)")

RING_X = np.arange(21.0).reshape(3, 7) ** 1.5          # 3 ranks, 7 elements: chunks of 3, 2, 2
RING_SENT = [10, 9, 9]                                  # reduce-scatter 5, 4, 4 + all-gather 5, 5, 5
BIG = 1e8                                               # 1e8 + 3 rounds to 1e8 in float32
RING_ORDER_X = np.array([[BIG, 3, -BIG], [3, -BIG, BIG], [-BIG, BIG, 3]], dtype=np.float32)
RING_ORDER_SUM = [0.0, 3.0, 0.0]                        # the ring's rounding; np.sum(axis=0) gives [0, 0, 3]


def _ring(ring_allreduce, x, what):
    return _tuple(attempt(lambda: ring_allreduce(x), what, ROTATION_HINT), 2, what, PAIR_HINT)


def _check_ring_result(result, x, what, expected=None):
    p, n = x.shape
    assert_shape(result, x.shape, what + " result", "return every rank's vector: shape (p, n)")
    want = x.astype(np.float64).sum(0) if expected is None else np.asarray(expected, dtype=np.float64)
    got = result.astype(np.float64)
    tol = dict(rtol=1e-6, atol=1e-9 * (1 + np.abs(x).max()))
    if np.allclose(got, want, **tol):
        return
    if p > 1 and np.allclose(got, want / p, **tol):
        raise CheckFailure(f"{what}: every rank holds the mean, not the sum", SUM_HINT)
    bounds = _bounds(n, p)
    owned = all(np.allclose(got[r, slice(*bounds[(r + 1) % p])], want[slice(*bounds[(r + 1) % p])], **tol)
                for r in range(p))
    if owned and not all(np.allclose(got[r], want, **tol) for r in range(p)):
        raise CheckFailure(f"{what}: rank r holds the sum only in chunk (r + 1) mod p", GATHER_HINT)
    bad = [r for r in range(p) if not np.allclose(got[r], want, **tol)]
    raise CheckFailure(f"{what}: rank {bad[0]} holds {_short(got[bad[0]])}..., expected the sum "
                       f"{_short(want)}... ({len(bad)} of {p} ranks wrong)", ROTATION_HINT)


def _check_sent(sent, p, n, expected, what):
    assert_shape(sent, (p,), what + " sent", "sent has one count per rank: shape (p,)")
    got = sent.astype(np.float64)
    if np.array_equal(got, expected):
        return
    if p > 1 and np.array_equal(got, np.full(p, (p - 1) * n)):
        raise CheckFailure(f"{what}: every rank sent {(p - 1) * n} elements", NAIVE_HINT)
    if got.sum() * 2 == sum(expected):
        raise CheckFailure(f"{what}: sent {got.astype(int).tolist()}, half of {list(map(int, expected))}",
                           COUNT_HINT)
    raise CheckFailure(f"{what}: sent {got.astype(int).tolist()}, expected {list(map(int, expected))}",
                       NAIVE_HINT if got.sum() > sum(expected) else COUNT_HINT)


@test("ring_allreduce_visible", "ring_allreduce")
def ring_allreduce_visible(ring_allreduce):
    """Every rank ends with the sum, in the ring's order of additions, each rank sending 2 (p - 1) / p * n elements.

    The last case uses float32 values for which the order of the additions shows in the result."""
    what = "ring_allreduce(3 ranks x 7)"
    result, sent = _ring(ring_allreduce, RING_X, what)
    _check_ring_result(result, RING_X, what)
    _check_sent(sent, 3, 7, RING_SENT, what)
    x = np.arange(32.0).reshape(4, 8) % 5
    what = "ring_allreduce(4 ranks x 8)"
    result, sent = _ring(ring_allreduce, x, what)
    _check_ring_result(result, x, what)
    _check_sent(sent, 4, 8, [2 * 3 * 8 // 4] * 4, what)
    what = "ring_allreduce(3 ranks x 3 of +-1e8 and 3, float32)"
    result, sent = _ring(ring_allreduce, RING_ORDER_X, what)
    assert_shape(result, RING_ORDER_X.shape, what + " result", "return every rank's vector: shape (p, n)")
    ensure(result.dtype == np.float32, f"{what}: dtype {result.dtype}, expected float32",
           "keep the input's dtype (copy the input with np.array(chunks) and add in place)")
    if np.array_equal(result, np.tile(RING_ORDER_SUM, (3, 1))):
        return
    if np.array_equal(result, np.tile(RING_ORDER_X.sum(0), (3, 1))):
        raise CheckFailure(f"{what}: every rank holds {result[0].tolist()}, the sum in np.sum's order; "
                           f"the ring's order gives {RING_ORDER_SUM}", ORDER_HINT)
    raise CheckFailure(f"{what}: the ranks hold {result.tolist()}, expected {RING_ORDER_SUM} on every rank",
                       ROTATION_HINT)


def _ring_vs_ref(ring_allreduce, ref, x, what):
    result, sent = _ring(ring_allreduce, x, what)
    want, want_sent = ref.ring_allreduce(x)
    _check_ring_result(result, x, what)
    _check_sent(sent, x.shape[0], x.shape[1], want_sent.astype(np.float64), what)
    assert_close(result, want, what, ORDER_HINT)
    ensure(np.array_equal(result, want), f"{what}: not bit for bit the ring's sum", ORDER_HINT)


@test("ring_allreduce_random", "ring_allreduce", hidden=True)
def ring_allreduce_random(ring_allreduce, ref):
    """Random vectors on 2 to 8 ranks, lengths multiple of p and not, float64 and float32, bit for bit."""
    rng = rng_for("ring_allreduce_random")
    for dtype in (np.float64, np.float32):
        for p, n in [(2, 6), (3, 10), (4, 16), (5, 23), (8, 40), (6, 7)]:
            x = (rng.standard_normal((p, n)) * 10 ** rng.uniform(-3, 6, size=(p, 1))).astype(dtype)
            _ring_vs_ref(ring_allreduce, ref, x, f"ring_allreduce({p} ranks x {n}) [{np.dtype(dtype)}]")


@test("ring_allreduce_edge", "ring_allreduce", hidden=True)
def ring_allreduce_edge(ring_allreduce, ref):
    """One rank (nothing sent), fewer elements than ranks (empty chunks), two ranks, cancellation."""
    for x in [np.array([[1.0, 2.0, 3.0]]), np.arange(10.0).reshape(5, 2), np.array([[1.5], [2.5]]),
              np.array([[1e16, 1.0, -1e16, 3.0], [-1e16, 1e16, 1.0, 2.0], [1.0, -1e16, 1e16, 1e16]])]:
        _ring_vs_ref(ring_allreduce, ref, x, f"ring_allreduce({x.shape[0]} ranks x {x.shape[1]})")


# ------------------------------------------------------------------ zero1_step

TRIPLE_HINT = "return the tuple (new_params, new_m, new_v)"
ALLGATHER_HINT = ("all-gather: after updating its own shard, every rank must receive the other ranks' updated "
                  "shards, so all ranks hold the same whole vector")
REDUCE_HINT = ("reduce-scatter: a rank updates its shard with the gradient of the whole batch, the mean over "
               "all ranks of grads[:, shard], not with its own rank's gradient")
ZERO_MEAN_HINT = "average the ranks' gradients (mean over ranks), not the sum"
ONCE_HINT = ("each shard's moments are updated once per step, by the rank that owns it: a rank updates only "
             "its own shard, not every shard")
LAYOUT_HINT = ("rank r owns the indices shard_batch(n, r, p) (the first n % p ranks one more), its moments "
               "in m[r, :len(indices)]; the padding slot stays 0")
ADAM_HINT = ("AdamW as torch does it: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, m_hat = m / (1 - b1^t), "
             "v_hat = v / (1 - b2^t), w = w (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps)")


def _adamw(w, g, m, v, t, lr, b1, b2, eps, wd):
    """Plain, unsharded AdamW on flat vectors (the property ZeRO-1 must reproduce)."""
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    w = w * (1 - lr * wd) - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return w, m, v


def _to_shards(full, p, layout="shard"):
    """A flat (n,) vector as the (p, ceil(n / p)) sharded layout, padding 0."""
    n = full.shape[0]
    k = -(-n // p)
    out = np.zeros((p, k), dtype=full.dtype)
    bounds = _bounds(n, p) if layout == "shard" else [(min(r * k, n), min((r + 1) * k, n)) for r in range(p)]
    for r, (a, b) in enumerate(bounds):
        out[r, :b - a] = full[a:b]
    return out


def _zero_case(zero1_step, w, grads, m_full, v_full, t, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, what=""):
    p, n = grads.shape
    params = np.tile(w, (p, 1))
    m, v = _to_shards(m_full, p), _to_shards(v_full, p)
    kw = dict(beta1=b1, beta2=b2, eps=eps, weight_decay=wd)
    out = _tuple(attempt(lambda: zero1_step(params, grads, m, v, t, lr, **kw), what, ADAM_HINT), 3, what,
                 TRIPLE_HINT)
    new_p, new_m, new_v = out
    assert_shape(new_p, (p, n), what + " new_params", "new_params is every rank's copy: shape (p, n)")
    assert_shape(new_m, m.shape, what + " new_m", "new_m keeps the sharded layout (p, ceil(n / p))")
    assert_shape(new_v, v.shape, what + " new_v", "new_v keeps the sharded layout (p, ceil(n / p))")
    g = grads.mean(0)
    w_want, m_want, v_want = _adamw(w, g, m_full, v_full, t, lr, b1, b2, eps, wd)
    tol = dict(rtol=1e-4, atol=1e-7)
    if not np.allclose(new_m, _to_shards(m_want, p), **tol):
        # Name the slip: which moments would this have been?
        bounds = _bounds(n, p)
        local = np.concatenate([grads[r, a:b] for r, (a, b) in enumerate(bounds)])
        many = m_full
        for _ in range(p):
            many = b1 * many + (1 - b1) * g
        for alt, hint in [(_to_shards(b1 * m_full + (1 - b1) * local, p), REDUCE_HINT),
                          (_to_shards(b1 * m_full + (1 - b1) * grads.sum(0), p), ZERO_MEAN_HINT),
                          (_to_shards(many, p), ONCE_HINT),
                          (_to_shards(m_want, p, "ceil"), LAYOUT_HINT)]:
            if p > 1 and np.allclose(new_m, alt, **tol):
                raise CheckFailure(f"{what}: the first moments new_m are wrong", hint)
        assert_values_close(new_m, _to_shards(m_want, p).astype(grads.dtype), what + " new_m",
                            LAYOUT_HINT + "; " + ADAM_HINT)
    assert_values_close(new_v, _to_shards(v_want, p).astype(grads.dtype), what + " new_v", ADAM_HINT)
    if p > 1 and not np.allclose(new_p, new_p[:1], **tol):
        mine = all(np.allclose(new_p[r, a:b], w_want[a:b], **tol) and
                   np.allclose(np.delete(new_p[r], np.arange(a, b)), np.delete(w, np.arange(a, b)), **tol)
                   for r, (a, b) in enumerate(_bounds(n, p)))
        raise CheckFailure(f"{what}: the ranks hold different parameters" +
                           (" (each updated only its own shard)" if mine else ""), ALLGATHER_HINT)
    assert_values_close(new_p, np.tile(w_want, (p, 1)).astype(grads.dtype), what + " new_params", ADAM_HINT)


@test("zero1_step_visible", "zero1_step")
def zero1_step_visible(zero1_step):
    """Sharded AdamW equals plain AdamW on the averaged gradient, with every rank holding the whole updated vector.

    Moments in the sharded layout; 4 ranks x 10 (uneven shards), 2 ranks x 6 in float32, 1 rank."""
    n, p = 10, 4
    i = np.arange(n)
    w = np.sin(i + 0.5)
    grads = np.stack([np.cos(0.7 * i * (r + 1)) + 0.3 * r for r in range(p)])
    m_full, v_full = 0.05 * np.sin(2.0 * i), 0.01 + 0.01 * np.cos(i) ** 2
    _zero_case(zero1_step, w, grads, m_full, v_full, 3, 0.01, wd=0.1, what="zero1_step(4 ranks x 10, t=3)")
    n, p = 6, 2
    i = np.arange(n, dtype=np.float32)
    _zero_case(zero1_step, np.cos(i), np.stack([np.sin(i), 1 - i / 4]).astype(np.float32),
               np.zeros(n, np.float32), np.zeros(n, np.float32), 1, 0.1, b1=0.8, b2=0.99,
               what="zero1_step(2 ranks x 6, t=1, float32)")
    i = np.arange(5.0)
    _zero_case(zero1_step, i / 5, np.cos(i)[None], 0.1 * i, 0.2 + 0 * i, 2, 0.01, wd=0.05,
               what="zero1_step(1 rank x 5, t=2)")


def _zero_vs_ref(zero1_step, ref, rng, p, n, dtype, steps, what, **kw):
    w = rng.standard_normal(n).astype(dtype)
    params = np.tile(w, (p, 1))
    k = -(-n // p)
    m, v = np.zeros((p, k), dtype), np.zeros((p, k), dtype)
    lr = float(kw.pop("lr", 1e-2))
    for t in range(1, steps + 1):
        grads = rng.standard_normal((p, n)).astype(dtype)
        here = f"{what}, step t={t}"
        out = _tuple(attempt(lambda: zero1_step(params, grads, m, v, t, lr, **kw), here, ADAM_HINT), 3, here,
                     TRIPLE_HINT)
        want = ref.zero1_step(params, grads, m, v, t, lr, **kw)
        for got, exp, name in zip(out, want, ("new_params", "new_m", "new_v")):
            assert_values_close(got, exp, f"{here} {name}", LAYOUT_HINT + "; " + ADAM_HINT if name != "new_params"
                                else ALLGATHER_HINT + "; " + ADAM_HINT)
        params, m, v = want


@test("zero1_step_random", "zero1_step", hidden=True)
def zero1_step_random(zero1_step, ref):
    """Three chained steps on random problems, 2 to 5 ranks, even and uneven shards, float64 and float32."""
    rng = rng_for("zero1_step_random")
    for dtype in (np.float64, np.float32):
        for p, n, kw in [(2, 8, {}), (3, 11, {"weight_decay": 0.1}), (5, 23, {"beta1": 0.8, "lr": 3e-3}),
                         (4, 4, {"beta2": 0.95, "eps": 1e-6})]:
            _zero_vs_ref(zero1_step, ref, rng, p, n, dtype, 3, f"zero1_step({p} ranks x {n}, {kw}) "
                         f"[{np.dtype(dtype)}]", **dict(kw))


@test("zero1_step_edge", "zero1_step", hidden=True)
def zero1_step_edge(zero1_step, ref):
    """Fewer parameters than ranks (ranks that own nothing), one rank, a late step t, zero gradients."""
    rng = rng_for("zero1_step_edge")
    _zero_vs_ref(zero1_step, ref, rng, 5, 3, np.float64, 2, "zero1_step(5 ranks x 3)")
    _zero_vs_ref(zero1_step, ref, rng, 1, 7, np.float32, 2, "zero1_step(1 rank x 7)", weight_decay=0.2)
    p, n = 3, 7
    params = np.tile(rng.standard_normal(n), (p, 1))
    m = np.abs(rng.standard_normal((p, 3))) * 0.1
    v = np.abs(rng.standard_normal((p, 3))) * 0.1
    m[1:, 2] = v[1:, 2] = 0.0
    for grads, t in [(np.zeros((p, n)), 1000), (rng.standard_normal((p, n)), 50)]:
        what = f"zero1_step(3 ranks x 7, t={t})"
        out = _tuple(attempt(lambda: zero1_step(params, grads, m, v, t, 1e-3), what, ADAM_HINT), 3, what,
                     TRIPLE_HINT)
        for got, exp, name in zip(out, ref.zero1_step(params, grads, m, v, t, 1e-3),
                                  ("new_params", "new_m", "new_v")):
            assert_values_close(got, exp, f"{what} {name}", ADAM_HINT)

"""Chapter 9 (09-gpt-pytorch): the pieces of a training loop.

`get_batch` is checked by properties: the batch is made of real windows of the data,
the targets are the windows shifted by one, equal generators give equal batches, and over
many draws every valid start appears about equally often. Those frequency comparisons
fail a correct sampler with probability below 1e-6 (Hoeffding's inequality with a union
bound over the starts, as in chapter 6). Any uniform sampler that draws from `rng` passes.

`cross_entropy` and `adamw_step` receive torch tensors and their results come back as
NumPy arrays. Their visible tests use stored values of small fixed examples and
properties that need no answer key (uniform logits give log V, adding a constant to the
logits changes nothing; Adam's first bias-corrected step moves each weight by about lr;
with a zero gradient only the decay acts). `weight_decay_groups` and `lr_at` are checked
against stored values and the rules of their docstrings. Hidden tests compare with the
reference on seeded random inputs, in float32 and float64 where numeric.
"""
import functools
import math

import numpy as np

from ..framework import (Chapter, CheckFailure, as_result_array, assert_close, assert_raises,
                         assert_shape, attempt, describe, ensure, matches, rng_for, torch)

chapter = Chapter("09-gpt-pytorch", reference="gpt_training",
                  functions=["get_batch", "cross_entropy", "weight_decay_groups", "lr_at", "adamw_step"],
                  imports=("numpy", "torch"),
                  sample_scores=(15, 9, 0, 3, 12))
test = chapter.test

DELTA = 1e-7  # false-failure probability of one frequency comparison


def _bound(n, k):
    """Hoeffding + union bound over k outcomes: a correct sampler exceeds it with probability <= DELTA."""
    return math.sqrt(math.log(2 * k / DELTA) / (2 * n))


def _tensor(a, dtype):
    return torch.from_numpy(np.array(a)).to(getattr(torch, np.dtype(dtype).name))


# ------------------------------------------------------------------ get_batch

RNG_HINT = ("draw the starts only from the `rng` argument (rng.integers, ...), never np.random.*: "
            "equal generators must give equal batches, different ones different batches")
SHIFT_HINT = "the targets are the inputs shifted by ONE position: y[b] = data[s + 1 : s + 1 + block_size]"
SWAP_HINT = "return (x, y) in this order: x[b] = data[s : s + block_size], y[b] = data[s + 1 : s + 1 + block_size]"
WINDOW_HINT = "each row of x must be a contiguous window data[s : s + block_size] of the data"
PAST_END_HINT = ("every start s must leave room for the target window: s + block_size < len(data), so the "
                 "largest start is len(data) - block_size - 1 (rng.integers(0, len(data) - block_size) "
                 "excludes its upper end)")
LAST_START_HINT = ("draw among ALL valid starts, up to len(data) - block_size - 1 included: "
                   "rng.integers(0, len(data) - block_size) (its upper end is excluded already)")
MANY_HINT = "draw batch_size starts, one per row (size=batch_size), not one start for the whole batch"


def _batch(value, b, t, dtype, what):
    """(x, y): two integer arrays (b, t) of the data's dtype."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise CheckFailure(f"{what} returned {describe(value)}, expected a tuple (x, y) of two arrays",
                           "return x, y")
    x, y = (as_result_array(a, f"{what}[{i}]") for i, a in enumerate(value))
    for name, a in (("x", x), ("y", y)):
        assert_shape(a, (b, t), f"{what}: {name}", "return arrays of shape (batch_size, block_size)")
        ensure(a.dtype == np.dtype(dtype), f"{what}: {name} has dtype {a.dtype}, expected {np.dtype(dtype)}",
               "return token ids of data's dtype: index the data, don't build new numbers")
    return x, y


def _starts(x, y, data, what):
    """The start of every row, checking that x is a window and y its shift by one (data unique)."""
    index = {value: i for i, value in enumerate(data.tolist())}
    n, t = len(data), x.shape[1]
    starts = []
    for row_x, row_y in zip(x, y):
        s = index.get(int(row_x[0]))
        if s is None or s + t > n or not np.array_equal(row_x, data[s:s + t]):
            raise CheckFailure(f"{what}: a row of x, {row_x.tolist()}, is not a window of the data", WINDOW_HINT)
        if np.array_equal(row_y, row_x):
            raise CheckFailure(f"{what}: y equals x", SHIFT_HINT)
        if s >= 1 and np.array_equal(row_y, data[s - 1:s - 1 + t]):
            raise CheckFailure(f"{what}: y is the window shifted to the left, x the one shifted to the right",
                               SWAP_HINT)
        if s + t >= n:
            raise CheckFailure(f"{what}: a window starts at {s}, where its target window would run past the "
                               "end of the data", PAST_END_HINT)
        if not np.array_equal(row_y, data[s + 1:s + 1 + t]):
            raise CheckFailure(f"{what}: for the window starting at {s}, y is {row_y.tolist()}, expected "
                               f"{data[s + 1:s + 1 + t].tolist()}", SHIFT_HINT)
        starts.append(s)
    return np.array(starts, dtype=np.int64)


def _check_coverage(starts, n_valid, what):
    """Every valid start is drawn about equally often."""
    counts = np.bincount(starts, minlength=n_valid)
    freq = counts / len(starts)
    if counts[n_valid - 1] == 0 and counts[:n_valid - 1].all():
        raise CheckFailure(f"{what}: the last valid start, {n_valid - 1}, was never drawn in {len(starts)} draws",
                           LAST_START_HINT)
    t = _bound(len(starts), n_valid)
    worst = int(np.argmax(np.abs(freq - 1 / n_valid)))
    ensure(abs(freq[worst] - 1 / n_valid) <= t,
           f"{what}: start {worst} was drawn with frequency {freq[worst]:.4f}, expected {1 / n_valid:.4f} "
           f"for each of the {n_valid} valid starts ({len(starts)} draws; a uniform sampler is off by more "
           f"than {t:.4f} with probability below {DELTA:g})",
           "draw every valid start 0 .. len(data) - block_size - 1 with the same probability")


@test("get_batch_visible", "get_batch")
def get_batch_visible(get_batch):
    """Real windows of the data, targets shifted by one, reproducible from rng, all starts drawn.

    Every valid start, the last one included, is drawn about equally often (2000 draws; a
    correct sampler fails with probability < 1e-6)."""
    data = np.arange(100, 160, dtype=np.int64)
    what = "get_batch(data = 100..159, 5, 8, rng)"
    x, y = _batch(attempt(lambda: get_batch(data, 5, 8, np.random.default_rng(0)), what, PAST_END_HINT),
                  5, 8, np.int64, what)
    _starts(x, y, data, what)
    again = _batch(get_batch(data, 5, 8, np.random.default_rng(0)), 5, 8, np.int64, what)
    ensure(np.array_equal(again[0], x) and np.array_equal(again[1], y),
           f"{what}: two generators in the same state gave different batches", RNG_HINT)
    other = _batch(get_batch(data, 5, 8, np.random.default_rng(1)), 5, 8, np.int64, what)
    ensure(not np.array_equal(other[0], x), f"{what}: generators with different seeds gave the same batch",
           RNG_HINT)
    ensure(len(set(x[:, 0].tolist())) > 1, f"{what}: every row is the same window", MANY_HINT)
    small = np.arange(50, 62, dtype=np.int32)     # 12 tokens, block_size 8: valid starts 0..3
    what = "get_batch(12 tokens (int32), 2000, 8, rng)"
    x, y = _batch(attempt(lambda: get_batch(small, 2000, 8, np.random.default_rng(2)), what, PAST_END_HINT),
                  2000, 8, np.int32, what)
    _check_coverage(_starts(x, y, small, what), 4, what)
    assert_raises(lambda: get_batch(small[:8], 2, 8, np.random.default_rng(0)), "ValueError",
                  "get_batch(8 tokens, 2, block_size=8, rng)",
                  "with len(data) <= block_size no window and target fit: raise ValueError")


@test("get_batch_random", "get_batch", hidden=True)
def get_batch_random(get_batch, ref):
    """Shuffled data of several dtypes and sizes: windows, shifted targets, every start drawn evenly.

    Reproducible from rng; the frequency check's false-failure probability is below 1e-6."""
    rng = rng_for("get_batch_random")
    for n, b, t, dtype in [(300, 16, 32, np.int64), (40, 7, 5, np.int32), (1000, 3, 100, np.int16),
                           (25, 1, 1, np.int64)]:
        data = (rng.permutation(n) + 3).astype(dtype)
        seed = int(rng.integers(1 << 30))
        what = f"get_batch(data ({n} tokens, {np.dtype(dtype)}), {b}, {t}, rng)"
        x, y = _batch(attempt(lambda: get_batch(data, b, t, np.random.default_rng(seed)), what, PAST_END_HINT),
                      b, t, dtype, what)
        _starts(x, y, data, what)
        x2, _ = _batch(get_batch(data, b, t, np.random.default_rng(seed)), b, t, dtype, what)
        ensure(np.array_equal(x, x2), f"{what}: equal generators gave different batches", RNG_HINT)
    data = (rng.permutation(30) + 1).astype(np.int64)
    what = "get_batch(30 tokens, 3000, 20, rng)"
    x, y = _batch(attempt(lambda: get_batch(data, 3000, 20, np.random.default_rng(5)), what, PAST_END_HINT),
                  3000, 20, np.int64, what)
    _check_coverage(_starts(x, y, data, what), 10, what)


@test("get_batch_edge", "get_batch", hidden=True)
def get_batch_edge(get_batch, ref):
    """One valid start only, block_size 1, a batch of one, too little data raises ValueError."""
    rng = rng_for("get_batch_edge")
    data = (rng.permutation(17) + 5).astype(np.int64)
    what = "get_batch(17 tokens, 6, block_size=16, rng) (only start 0 fits)"
    x, y = _batch(attempt(lambda: get_batch(data, 6, 16, np.random.default_rng(0)), what, PAST_END_HINT),
                  6, 16, np.int64, what)
    ensure(np.array_equal(_starts(x, y, data, what), np.zeros(6, int)), f"{what}: starts other than 0",
           PAST_END_HINT)
    what = "get_batch(2 tokens, 50, block_size=1, rng)"
    x, y = _batch(attempt(lambda: get_batch(data[:2], 50, 1, np.random.default_rng(1)), what, PAST_END_HINT),
                  50, 1, np.int64, what)
    _starts(x, y, data[:2], what)
    what = "get_batch(data, 1, 4, rng)"
    x, y = _batch(get_batch(data, 1, 4, np.random.default_rng(2)), 1, 4, np.int64, what)
    _starts(x, y, data, what)
    for n in (5, 3):
        assert_raises(lambda: get_batch(data[:n], 2, 5, np.random.default_rng(0)), "ValueError",
                      f"get_batch({n} tokens, 2, block_size=5, rng)",
                      "with len(data) <= block_size no window and target fit: raise ValueError")


# ------------------------------------------------------------------ cross_entropy

CE_FLOAT_HINT = ("return the loss as a 0-dim tensor (loss.item() or float(loss) would cut it off from "
                 "autograd, and training needs loss.backward())")
CE_IGNORE_HINT = ("leave out the positions whose target is ignore_index (mask them) before you pick "
                  "log-probabilities: their targets are not token ids")
CE_MEAN_HINT = "divide by the number of COUNTED positions, not by all positions: ignored ones do not count"
CE_SUM_HINT = "return the mean over the counted positions, not the sum"
CE_SIGN_HINT = "the loss is MINUS the log-probability of the target (it is >= 0)"
CE_AXIS_HINT = "take the (log-)softmax over the last axis, the vocabulary (dim=-1)"
CE_STABLE_HINT = ("compute it stably, with torch.log_softmax or torch.logsumexp (which subtract the maximum): "
                  "exp of large logits overflows to inf")
CE_HINT = "the loss at a position is logsumexp(logits) - logits[target]; average it over counted positions"

TOY_TARGETS = [[0, 3, -100], [2, -100, 1]]
CE_TOY = 1.9543098985471916        # cross_entropy(toy logits, TOY_TARGETS)
CE_TOY_SUM = 7.8172395941887665    # the sum instead of the mean
CE_TOY_ALL = 1.3028732656981277    # divided by all 6 positions
CE_TOY_AXIS1 = 0.7159163165362298  # log-softmax over axis 1 instead of the vocabulary


def _toy_logits():
    """(2, 3, 4) fixed logits, the same on every machine."""
    return (np.sin(np.arange(24) * 1.3 + 0.4) * 2.0).reshape(2, 3, 4)


def _loss(value, dtype, what):
    """A 0-dim array of `dtype` (what a 0-dim tensor becomes on the way back)."""
    if isinstance(value, float):
        raise CheckFailure(f"{what} returned a Python float", CE_FLOAT_HINT)
    out = as_result_array(value, what)
    if out.shape != ():
        raise CheckFailure(f"{what}: shape {out.shape}, expected a 0-dim tensor (one number)",
                           "average over every counted position of every sequence: return a single number, "
                           "not one per position or per row")
    ensure(out.dtype == np.dtype(dtype), f"{what}: dtype {out.dtype}, expected {np.dtype(dtype)}",
           "keep the logits' dtype: compute with torch operations on the logits")
    return out


def _diagnose_ce(got, expected, what, variants=()):
    if np.isnan(got) or np.isinf(got):
        raise CheckFailure(f"{what}: got {got}", CE_STABLE_HINT)
    if math.isclose(got, expected, rel_tol=1e-5, abs_tol=1e-6):
        return
    if math.isclose(got, -expected, rel_tol=1e-5):
        raise CheckFailure(f"{what}: got {got:.6g}, expected {expected:.6g}", CE_SIGN_HINT)
    for value, hint in variants:
        if math.isclose(got, value, rel_tol=1e-5):
            raise CheckFailure(f"{what}: got {got:.6g}, expected {expected:.6g}", hint)
    raise CheckFailure(f"{what}: got {got:.6g}, expected {expected:.6g}", CE_HINT)


@test("cross_entropy_visible", "cross_entropy")
def cross_entropy_visible(cross_entropy):
    """A stored value with ignored positions, uniform logits give log V, large logits stay finite.

    In float64 and float32; adding 100 to every logit changes nothing (exp(100) overflows float32)."""
    toy = _toy_logits()
    targets = torch.tensor(TOY_TARGETS)
    variants = [(CE_TOY_ALL, CE_MEAN_HINT), (CE_TOY_SUM, CE_SUM_HINT), (CE_TOY_AXIS1, CE_AXIS_HINT)]
    for dtype in (np.float64, np.float32):
        what = f"cross_entropy(logits (2,3,4) [{np.dtype(dtype).name}], targets {TOY_TARGETS})"
        got = _loss(attempt(lambda: cross_entropy(_tensor(toy, dtype), targets), what, CE_IGNORE_HINT),
                    dtype, what)
        _diagnose_ce(float(got), CE_TOY, what, variants)
    what = "cross_entropy(zeros (3, 5, 7), targets)"
    uniform = _loss(cross_entropy(torch.zeros(3, 5, 7, dtype=torch.float64),
                                  torch.tensor(np.arange(15).reshape(3, 5) % 7)), np.float64, what)
    _diagnose_ce(float(uniform), math.log(7), what + " (equal logits: log 7)")
    flat = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    what = "cross_entropy(logits (1, 3), targets [2])"
    got = _loss(cross_entropy(flat, torch.tensor([2])), np.float64, what)
    _diagnose_ce(float(got), math.log(1 + math.exp(-1) + math.exp(-2)), what + " (any leading shape)")
    big = _tensor(toy + 100.0, np.float32)
    what = "cross_entropy(toy logits + 100 [float32], targets)"
    got = _loss(cross_entropy(big, targets), np.float32, what)
    _diagnose_ce(float(got), CE_TOY, what + " (adding a constant to the logits changes nothing)",
                 [(CE_TOY_ALL, CE_MEAN_HINT)])


def _random_ce_case(rng, shape, dtype, scale=3.0, ignore_index=-100, p_ignore=0.2):
    logits = rng.standard_normal(shape) * scale
    targets = rng.integers(0, shape[-1], size=shape[:-1])
    drop = rng.random(shape[:-1]) < p_ignore
    drop.flat[0] = False  # at least one counted position
    targets = np.where(drop, ignore_index, targets)
    return _tensor(logits, dtype), torch.from_numpy(targets.astype(np.int64))


@test("cross_entropy_random", "cross_entropy", hidden=True)
def cross_entropy_random(cross_entropy, ref):
    """Random logits and targets with ignored positions, several shapes, float32 and float64."""
    rng = rng_for("cross_entropy_random")
    for dtype in (np.float64, np.float32):
        for shape, ignore in [((4, 16, 10), -100), ((37, 65), -100), ((2, 3, 5, 200), -1), ((8, 2), 7)]:
            logits, targets = _random_ce_case(rng, shape, dtype, ignore_index=ignore)
            what = f"cross_entropy(logits {shape} [{np.dtype(dtype).name}], targets, ignore_index={ignore})"
            got = _loss(attempt(lambda: cross_entropy(logits, targets, ignore_index=ignore), what,
                                CE_IGNORE_HINT), dtype, what)
            expected = ref.cross_entropy(logits, targets, ignore_index=ignore).numpy()
            assert_close(got, expected, what, CE_HINT, nan_hint=CE_STABLE_HINT)


@test("cross_entropy_edge", "cross_entropy", hidden=True)
def cross_entropy_edge(cross_entropy, ref):
    """Huge logits, -inf logits, a vocabulary of one, one counted position, near-certain predictions."""
    rng = rng_for("cross_entropy_edge")
    huge = rng.standard_normal((3, 4, 6)) * 1e4
    masked = rng.standard_normal((2, 5, 8))
    masked[..., 5:] = -np.inf
    certain = np.zeros((2, 6, 4))
    cases = [("huge logits (std 1e4)", huge, rng.integers(0, 6, size=(3, 4)), np.float32),
             ("huge logits (std 1e4)", huge, rng.integers(0, 6, size=(3, 4)), np.float64),
             ("-inf logits of masked tokens", masked, rng.integers(0, 5, size=(2, 5)), np.float32),
             ("a vocabulary of one token", rng.standard_normal((2, 3, 1)), np.zeros((2, 3), int), np.float64),
             ("one counted position", rng.standard_normal((2, 3, 5)),
              np.array([[-100, -100, 4], [-100, -100, -100]]), np.float64)]
    targets = rng.integers(0, 4, size=(2, 6))
    np.put_along_axis(certain, targets[..., None], 60.0, axis=-1)
    cases.append(("near-certain predictions", certain, targets, np.float64))
    for name, logits, target, dtype in cases:
        lt, tt = _tensor(logits, dtype), torch.from_numpy(np.asarray(target, dtype=np.int64))
        what = f"cross_entropy on {name} [{np.dtype(dtype).name}]"
        got = _loss(attempt(lambda: cross_entropy(lt, tt), what, CE_IGNORE_HINT), dtype, what)
        assert_close(got, ref.cross_entropy(lt, tt).numpy(), what, CE_HINT, nan_hint=CE_STABLE_HINT)


# ------------------------------------------------------------------ weight_decay_groups

WD_PAIR_HINT = "return a tuple (decay, no_decay) of two lists of names"
WD_PARTITION_HINT = "put every name of named_shapes in exactly one of the two lists"
WD_NOTHING_HINT = "decay the weight matrices: every parameter with 2 or more dimensions (except wpe)"
WD_VECTORS_HINT = "never decay biases and LayerNorm gains/shifts: parameters with fewer than 2 dimensions"
WD_WPE_HINT = "the position-embedding table wpe is not decayed (the course's convention: it is only looked up)"
WD_WTE_HINT = "wte is a matrix (it is also the output layer, h @ wte.T): decay it"
WD_ORDER_HINT = "return (decay, no_decay) in this order"


def _name_list(value, what):
    if isinstance(value, np.ndarray) and value.size == 0:  # an empty list crosses as an empty array
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(n, str) for n in value):
        raise CheckFailure(f"{what} is {describe(value)}, expected a list of names (strings)", WD_PAIR_HINT)
    return list(value)


def _groups(value, what):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise CheckFailure(f"{what} returned {describe(value)}, expected (decay, no_decay)", WD_PAIR_HINT)
    return _name_list(value[0], f"{what}[0]"), _name_list(value[1], f"{what}[1]")


def _expected_groups(named_shapes):
    """The docstring's rule, written out (it is the whole answer, but a one-line rule)."""
    decay = [n for n, s in named_shapes.items() if len(s) >= 2 and n.split(".")[-1] != "wpe"]
    return decay, [n for n in named_shapes if n not in decay]


def _check_groups(value, named_shapes, what):
    decay, no_decay = _groups(value, what)
    names = list(named_shapes)
    if sorted(decay + no_decay) != sorted(names):
        missing = sorted(set(names) - set(decay + no_decay))
        extra = sorted(set(decay + no_decay) - set(names))
        twice = sorted(set(decay) & set(no_decay))
        raise CheckFailure(f"{what}: not a split of the names (missing {missing}, unknown {extra}, "
                           f"in both lists {twice})", WD_PARTITION_HINT)
    want_decay, want_no = _expected_groups(named_shapes)
    if set(decay) == set(want_decay):
        return
    if set(decay) == set(want_no) and set(no_decay) == set(want_decay):
        raise CheckFailure(f"{what}: the two lists are swapped", WD_ORDER_HINT)
    if not decay and want_decay:
        raise CheckFailure(f"{what}: nothing is decayed", WD_NOTHING_HINT)
    vectors = sorted(n for n in decay if len(named_shapes[n]) < 2)
    if vectors:
        raise CheckFailure(f"{what}: decays {vectors[:4]}{' ...' if len(vectors) > 4 else ''}", WD_VECTORS_HINT)
    wpe = [n for n in decay if n.split(".")[-1] == "wpe"]
    if wpe:
        raise CheckFailure(f"{what}: decays {wpe}", WD_WPE_HINT)
    skipped = sorted(set(want_decay) - set(decay))
    if any(n.split(".")[-1] == "wte" for n in skipped):
        raise CheckFailure(f"{what}: does not decay {[n for n in skipped if n.split('.')[-1] == 'wte']}",
                           WD_WTE_HINT)
    raise CheckFailure(f"{what}: does not decay {skipped[:4]}", WD_NOTHING_HINT)


def _gpt_shapes(v, d, p, n_layer):
    shapes = {"wte": (v, d), "wpe": (p, d)}
    for i in range(n_layer):
        shapes.update({f"blocks.{i}.ln1_g": (d,), f"blocks.{i}.ln1_b": (d,), f"blocks.{i}.w_q": (d, d),
                       f"blocks.{i}.w_k": (d, d), f"blocks.{i}.w_v": (d, d), f"blocks.{i}.w_o": (d, d),
                       f"blocks.{i}.ln2_g": (d,), f"blocks.{i}.ln2_b": (d,), f"blocks.{i}.w_fc": (d, 4 * d),
                       f"blocks.{i}.b_fc": (4 * d,), f"blocks.{i}.w_proj": (4 * d, d),
                       f"blocks.{i}.b_proj": (d,)})
    shapes.update({"lnf_g": (d,), "lnf_b": (d,)})
    return shapes


@test("weight_decay_groups_visible", "weight_decay_groups")
def weight_decay_groups_visible(weight_decay_groups):
    """The course's GPT: matrices and wte decayed; biases, LayerNorm and wpe not; nested names.

    Also a 0-dim scalar, a 3-D weight and a nested encoder.wpe."""
    shapes = _gpt_shapes(45, 16, 32, 2)
    what = "weight_decay_groups(the GPT's 28 parameters)"
    _check_groups(attempt(lambda: weight_decay_groups(shapes), what, WD_PAIR_HINT), shapes, what)
    other = {"encoder.wpe": (64, 8), "conv.w": (4, 3, 3), "temperature": (), "head.w": (8, 10), "head.b": (10,)}
    what = f"weight_decay_groups({other})"
    _check_groups(weight_decay_groups(other), other, what)


@test("weight_decay_groups_random", "weight_decay_groups", hidden=True)
def weight_decay_groups_random(weight_decay_groups, ref):
    """Random parameter lists: GPTs of several sizes and random names and shapes."""
    rng = rng_for("weight_decay_groups_random")
    cases = [_gpt_shapes(100, 32, 64, 4), _gpt_shapes(7, 8, 4, 1)]
    stems = ["w", "b", "gain", "bias", "weight", "kernel", "emb", "scale", "wte"]
    for _ in range(6):
        shapes = {}
        for i in range(int(rng.integers(3, 12))):
            name = f"layer{int(rng.integers(5))}.{stems[int(rng.integers(len(stems)))]}{i}"
            if rng.random() < 0.15:
                name = f"m{i}.wpe"
            shapes[name] = tuple(int(s) for s in rng.integers(1, 9, size=int(rng.integers(0, 4))))
        cases.append(shapes)
    for shapes in cases:
        what = f"weight_decay_groups({len(shapes)} parameters: {list(shapes)[:3]} ...)"
        _check_groups(weight_decay_groups(shapes), shapes, what)
        ensure(set(_groups(weight_decay_groups(shapes), what)[0]) == set(ref.weight_decay_groups(shapes)[0]),
               f"{what}: wrong split", WD_NOTHING_HINT)


@test("weight_decay_groups_edge", "weight_decay_groups", hidden=True)
def weight_decay_groups_edge(weight_decay_groups, ref):
    """No parameters, only vectors, only matrices, a (1, 1) matrix, 4-D weights."""
    cases = [{}, {"a": (3,), "b": (5,), "c": ()}, {"x.w": (2, 2), "y.w": (3, 1, 2)},
             {"tiny": (1, 1), "one": (1,)}, {"wpe": (3, 2), "deep.w": (2, 3, 4, 5), "wte": (9, 2)}]
    for shapes in cases:
        what = f"weight_decay_groups({shapes})"
        _check_groups(attempt(lambda: weight_decay_groups(shapes), what, WD_PAIR_HINT), shapes, what)


# ------------------------------------------------------------------ lr_at

LR_ZERO_HINT = "the warm-up is max_lr * (step + 1) / warmup: the very first step (step 0) must already move"
LR_PEAK_HINT = ("measure the decay's progress from the end of the warm-up, (step - warmup) / (total - warmup): "
                "the rate is max_lr at step == warmup")
LR_MIN_HINT = "the cosine goes from max_lr down to min_lr (not to 0): min_lr + (max_lr - min_lr) * (1 + cos) / 2"
LR_CLAMP_HINT = "from step == total on, return min_lr: the cosine must not rise again"
LR_COS_HINT = "the decay follows half a cosine, min_lr + (max_lr - min_lr) * (1 + cos(pi * progress)) / 2"
LR_HINT = "warm up linearly to max_lr, then follow half a cosine down to min_lr at step == total"

# lr_at(step, 1.0, 0.1, 4, 12) for steps 0..15
LR_TOY = [0.25, 0.5, 0.75, 1.0, 1.0, 0.9657457896300791, 0.8681980515339464, 0.7222075445642904, 0.55,
          0.3777924554357096, 0.23180194846605365, 0.13425421036992097, 0.1, 0.1, 0.1, 0.1]


def _lr(value, what):
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "fiu":
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckFailure(f"{what} returned {describe(value)}, expected a number", "return a float")
    return float(value)


def _diagnose_lr(got, expected, max_lr, min_lr, warmup, total, what):
    steps = range(len(expected))
    bad = [s for s in steps if not math.isclose(got[s], expected[s], rel_tol=1e-9, abs_tol=1e-12)]
    if not bad:
        return
    s = bad[0]
    msg = f"{what}: at step {s} got {got[s]:.6g}, expected {expected[s]:.6g}"
    if warmup and got[0] == 0:
        raise CheckFailure(msg, LR_ZERO_HINT)
    if s < warmup:
        raise CheckFailure(msg, "during the warm-up, lr = max_lr * (step + 1) / warmup")
    if s == warmup or (warmup < total and not math.isclose(got[warmup], max_lr, rel_tol=1e-9)):
        raise CheckFailure(msg, LR_PEAK_HINT)
    if s >= total:
        if total < len(got) and math.isclose(got[total], min_lr, rel_tol=1e-9):
            raise CheckFailure(msg, LR_CLAMP_HINT)
        raise CheckFailure(msg, LR_MIN_HINT if total < len(got) and abs(got[total]) < 1e-12 else LR_CLAMP_HINT)
    below = [t for t in range(warmup, min(total, len(got))) if got[t] < min_lr - 1e-9 * max(abs(min_lr), 1e-30)]
    if below or (total < len(got) and not math.isclose(got[total], min_lr, rel_tol=1e-9)
                 and abs(got[total]) < 1e-12):
        raise CheckFailure(msg + (f"; at step {below[0]} it is below min_lr" if below else ""), LR_MIN_HINT)
    raise CheckFailure(msg, LR_COS_HINT)


@test("lr_at_visible", "lr_at")
def lr_at_visible(lr_at):
    """Stored values of a warm-up and cosine schedule, constant after the end; warmup = 0 works.

    Warm-up 0.25, 0.5, 0.75, 1 over 4 steps, cosine down to min_lr at step 12, then min_lr."""
    what = "[lr_at(step, 1.0, 0.1, 4, 12) for step in 0..15]"
    got = [_lr(attempt(lambda: lr_at(s, 1.0, 0.1, 4, 12), what, LR_HINT), what) for s in range(16)]
    _diagnose_lr(got, LR_TOY, 1.0, 0.1, 4, 12, what)
    what = "[lr_at(step, 2.0, 0.0, 0, 4) for step in 0..5]"
    got = [_lr(attempt(lambda: lr_at(s, 2.0, 0.0, 0, 4), what, "with warmup = 0 there is no warm-up: "
                       "start the cosine at max_lr at step 0 (don't divide by warmup)"), what) for s in range(6)]
    expected = [2.0, 1.7071067811865475, 1.0, 0.29289321881345254, 0.0, 0.0]
    _diagnose_lr(got, expected, 2.0, 0.0, 0, 4, what)


@test("lr_at_random", "lr_at", hidden=True)
def lr_at_random(lr_at, ref):
    """Random schedules, every step from 0 to past the end."""
    rng = rng_for("lr_at_random")
    for _ in range(8):
        max_lr = float(10 ** rng.uniform(-5, -1))
        min_lr = max_lr * float(rng.uniform(0, 0.5))
        warmup = int(rng.integers(0, 30))
        total = warmup + int(rng.integers(1, 120))
        what = f"[lr_at(step, {max_lr:.3g}, {min_lr:.3g}, {warmup}, {total}) for all steps]"
        got = [_lr(lr_at(s, max_lr, min_lr, warmup, total), what) for s in range(total + 10)]
        expected = [ref.lr_at(s, max_lr, min_lr, warmup, total) for s in range(total + 10)]
        _diagnose_lr(got, expected, max_lr, min_lr, warmup, total, what)


@test("lr_at_edge", "lr_at", hidden=True)
def lr_at_edge(lr_at, ref):
    """Warm-up as long as the run, one decay step, min_lr == max_lr, min_lr = 0, a far-away step."""
    for max_lr, min_lr, warmup, total in [(1e-3, 1e-4, 10, 10), (1e-3, 1e-4, 5, 6), (3e-4, 3e-4, 3, 20),
                                          (1.0, 0.0, 2, 9), (6e-4, 6e-5, 30, 300)]:
        what = f"[lr_at(step, {max_lr:g}, {min_lr:g}, {warmup}, {total}) for steps 0..{total + 3}]"
        steps = list(range(total + 4))
        got = [_lr(attempt(lambda: lr_at(s, max_lr, min_lr, warmup, total), what, LR_HINT), what) for s in steps]
        _diagnose_lr(got, [ref.lr_at(s, max_lr, min_lr, warmup, total) for s in steps],
                     max_lr, min_lr, warmup, total, what)
    what = "lr_at(10**6, 1e-3, 1e-4, 10, 100)"
    ensure(math.isclose(_lr(lr_at(10 ** 6, 1e-3, 1e-4, 10, 100), what), 1e-4, rel_tol=1e-12),
           f"{what}: expected min_lr", LR_CLAMP_HINT)


# ------------------------------------------------------------------ adamw_step

ADAM_TRIPLE_HINT = "return (params, m, v): three dicts name -> tensor, with the names of params"
ADAM_FIRST_HINT = ("with m = v = 0, the first bias-corrected step has m_hat = g and v_hat = g * g, so each "
                   "weight moves by lr * g / (|g| + eps)")
ADAM_BIAS_HINT = "divide m by (1 - beta1 ** step) and v by (1 - beta2 ** step) (the bias correction)"
ADAM_STEP_HINT = "step counts from 1: the first update's bias correction is 1 - beta ** 1"
ADAM_L2_HINT = ("decoupled weight decay: shrink the weight itself, p * (1 - lr * weight_decay); don't add "
                "weight_decay * p to the gradient (that is L2 regularisation, which Adam rescales)")
ADAM_LRDECAY_HINT = "the decay is scaled by the learning rate: p * (1 - lr * weight_decay)"
ADAM_NODECAY_HINT = "the names in no_decay get no weight decay at all"
ADAM_DECAY_HINT = "decay every name that is not in no_decay: p * (1 - lr * weight_decay)"
ADAM_MV_HINT = "return the UPDATED running averages m and v (the next step needs them)"
ADAM_EPS_HINT = "eps is added after the square root: sqrt(v_hat) + eps"
ADAM_HINT = "follow the update of the docstring: m, v, their bias corrections, decoupled decay, then the step"

_P0 = {"w": [[0.5, -1.0, 2.0], [0.0, 1.5, -0.25]], "b": [0.1, -0.2, 0.3]}
_G1 = {"w": [[0.2, -0.4, 1.0], [0.05, 0.0, -2.0]], "b": [1.0, -0.5, 0.01]}
_G2 = {"w": [[-0.1, 0.3, 0.5], [0.02, 1.0, -1.0]], "b": [0.5, 0.5, -0.2]}
_KW = dict(betas=(0.8, 0.999), eps=1e-2, weight_decay=0.5, no_decay=("b",))
# adamw_step(_P0, _G1, 0, 0, 1, lr=0.1, **_KW), then (.., _G2, .., 2, lr=0.05, **_KW): stored results
_P1 = {"w": [[0.37976190476190474, -0.8524390243902439, 1.8009900990099008],
             [-0.08333333333333331, 1.4249999999999998, -0.13799751243781092]],
       "b": [0.000990099009900991, -0.1019607843137255, 0.25]}
_P2 = {"w": [[0.3603525429852272, -0.8295998182318168, 1.7108518769093612],
             [-0.11592024007069959, 1.350648648469627, -0.0891505332720948]],
       "b": [-0.044123370615390956, -0.10740740740740738, 0.2851725826944074]}
_M2 = {"w": [[0.012, -0.004, 0.26], [0.012, 0.2, -0.52]], "b": [0.26, 0.02, -0.0384]}
_V2 = {"w": [[4.996e-05, 0.00024984, 0.001249], [2.8975e-06, 0.001, 0.004996]],
       "b": [0.001249, 0.00049975, 4.00999e-05]}
# the second step's params when eps is added inside the square root
_P2_EPS_INSIDE_W00 = 0.36700868567825096


def _tensors(d, dtype):
    return {k: _tensor(a, dtype) for k, a in d.items()}


def _triple(value, shapes, dtype, what):
    """(params, m, v): three dicts with the names and shapes of `shapes`, arrays of `dtype`."""
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise CheckFailure(f"{what} returned {describe(value)}, expected (params, m, v)", ADAM_TRIPLE_HINT)
    out = []
    for label, d in zip(("params", "m", "v"), value):
        if not isinstance(d, dict) or set(d) != set(shapes):
            got = sorted(d) if isinstance(d, dict) else describe(d)
            raise CheckFailure(f"{what}: the returned {label} is {got}, expected a dict with the names "
                               f"{sorted(shapes)}", ADAM_TRIPLE_HINT)
        arrays = {}
        for name, shape in shapes.items():
            a = as_result_array(d[name], f"{what}: {label}[{name!r}]")
            assert_shape(a, shape, f"{what}: {label}[{name!r}]", "every tensor keeps its parameter's shape")
            ensure(a.dtype == np.dtype(dtype), f"{what}: {label}[{name!r}] has dtype {a.dtype}, expected "
                   f"{np.dtype(dtype)}", "keep the parameters' dtype")
            arrays[name] = a
        out.append(arrays)
    return out


_close = functools.partial(matches, rtol=1e-9, atol=1e-12)   # float64 rounding


@test("adamw_step_visible", "adamw_step")
def adamw_step_visible(adamw_step):
    """Adam's first step moves each weight by about lr, decoupled decay, two stored steps.

    With a zero gradient only the decay acts, and not on no_decay names; the stored steps
    check params, m and v in float64 and float32."""
    p = {"w": np.array([[0.5, -1.0, 2.0]]), "b": np.array([0.3, -0.7])}
    g = {"w": np.array([[0.2, -3.0, 1e-3]]), "b": np.array([1.0, -0.5])}
    zeros = {k: np.zeros_like(a) for k, a in p.items()}
    shapes = {k: a.shape for k, a in p.items()}
    lr, eps, (b1, b2) = 0.1, 1e-8, (0.8, 0.999)
    what = "adamw_step(p, g, m=0, v=0, step=1, lr=0.1, betas=(0.8, 0.999), eps=1e-8, weight_decay=0)"
    new, m, v = _triple(attempt(lambda: adamw_step(_tensors(p, np.float64), _tensors(g, np.float64),
                                                    _tensors(zeros, np.float64), _tensors(zeros, np.float64),
                                                    1, lr, (b1, b2), eps, 0.0, ()), what, ADAM_HINT),
                        shapes, np.float64, what)
    for k in p:
        want = p[k] - lr * g[k] / (np.abs(g[k]) + eps)
        if _close(new[k], want):
            continue
        if not np.all(np.isfinite(new[k])):
            raise CheckFailure(f"{what}: params[{k!r}] has inf/NaN", ADAM_STEP_HINT)
        if _close(new[k], p[k] - lr * (1 - b1) * g[k] / (np.sqrt(1 - b2) * np.abs(g[k]) + eps)):
            raise CheckFailure(f"{what}: params[{k!r}] moved as if m and v were not bias-corrected",
                               ADAM_BIAS_HINT)
        if _close(new[k], p[k] - lr * g[k] / np.sqrt(g[k] ** 2 + eps)):
            raise CheckFailure(f"{what}: params[{k!r}] moved as if eps were inside the square root",
                               ADAM_EPS_HINT)
        if _close(new[k], p[k] - lr * (1 - b1) * g[k] / (1 - b1 ** 2)
                  / (np.sqrt((1 - b2) * g[k] ** 2 / (1 - b2 ** 2)) + eps)):
            raise CheckFailure(f"{what}: params[{k!r}] moved as if this were step 2", ADAM_STEP_HINT)
        raise CheckFailure(f"{what}: params[{k!r}] is {new[k].tolist()}, expected {want.tolist()}",
                           ADAM_FIRST_HINT)
    ensure(_close(m["w"], (1 - b1) * g["w"]) and _close(v["w"], (1 - b2) * g["w"] ** 2),
           f"{what}: m or v is not (1 - beta1) * g, (1 - beta2) * g * g", ADAM_MV_HINT)

    what = ("adamw_step(p, g=0, m=0, v=0, step=1, lr=0.1, weight_decay=0.5, no_decay=('b',)): "
            "with no gradient only the decay acts")
    new, _, _ = _triple(adamw_step(_tensors(p, np.float64), _tensors(zeros, np.float64),
                                   _tensors(zeros, np.float64), _tensors(zeros, np.float64),
                                   1, lr, (0.9, 0.99), eps, 0.5, ("b",)), shapes, np.float64, what)
    if not _close(new["w"], p["w"] * (1 - lr * 0.5)):
        if _close(new["w"], p["w"] * (1 - 0.5)):
            raise CheckFailure(f"{what}: params['w'] became p * (1 - weight_decay)", ADAM_LRDECAY_HINT)
        if _close(new["w"], p["w"]):
            raise CheckFailure(f"{what}: params['w'] did not change", ADAM_DECAY_HINT)
        raise CheckFailure(f"{what}: params['w'] is {new['w'].tolist()}, expected "
                           f"{(p['w'] * (1 - lr * 0.5)).tolist()}", ADAM_L2_HINT)
    ensure(_close(new["b"], p["b"]), f"{what}: params['b'] changed, but 'b' is in no_decay", ADAM_NODECAY_HINT)

    for dtype in (np.float64, np.float32):
        tol = dict(rtol=1e-9, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-6)
        what = ("two adamw_step calls (lr 0.1 then 0.05, betas=(0.8, 0.999), eps=1e-2, weight_decay=0.5) "
                f"[{np.dtype(dtype).name}]")
        shapes = {k: np.shape(a) for k, a in _P0.items()}
        zeros = {k: np.zeros(s) for k, s in shapes.items()}
        p1, m1, v1 = _triple(adamw_step(_tensors(_P0, dtype), _tensors(_G1, dtype), _tensors(zeros, dtype),
                                        _tensors(zeros, dtype), 1, 0.1, **_KW), shapes, dtype, what)
        p2, m2, v2 = _triple(adamw_step(_tensors(p1, dtype), _tensors(_G2, dtype), _tensors(m1, dtype),
                                        _tensors(v1, dtype), 2, 0.05, **_KW), shapes, dtype, what)
        for k in shapes:
            if not (_close(m2[k], _M2[k], **tol) and _close(v2[k], _V2[k], **tol)):
                raise CheckFailure(f"{what}: m[{k!r}] or v[{k!r}] after the second step is "
                                   f"{m2[k].tolist()}, {v2[k].tolist()}, expected {_M2[k]}, {_V2[k]}", ADAM_MV_HINT)
        for k in shapes:
            if _close(p2[k], _P2[k], **tol):
                continue
            if k == "w" and math.isclose(float(p2["w"][0, 0]), _P2_EPS_INSIDE_W00, rel_tol=1e-5):
                raise CheckFailure(f"{what}: params['w'] is {p2['w'].tolist()}", ADAM_EPS_HINT)
            raise CheckFailure(f"{what}: params[{k!r}] after the second step is {p2[k].tolist()}, "
                               f"expected {_P2[k]}", ADAM_HINT)


def _random_adam_case(rng, dtype):
    shapes = {"wte": (11, 6), "blocks.0.w_q": (6, 6), "blocks.0.b_fc": (24,), "lnf_g": (6,), "scale": ()}
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    return shapes, {k: _tensor(a, dtype) for k, a in params.items()}


@test("adamw_step_random", "adamw_step", hidden=True)
def adamw_step_random(adamw_step, ref):
    """Five random steps in a row on five parameters, float64 and float32, against the reference."""
    rng = rng_for("adamw_step_random")
    for dtype in (np.float64, np.float32):
        shapes, p = _random_adam_case(rng, dtype)
        m = {k: torch.zeros_like(t) for k, t in p.items()}
        v = {k: torch.zeros_like(t) for k, t in p.items()}
        rp, rm, rv = dict(p), dict(m), dict(v)
        betas = (float(rng.uniform(0.8, 0.95)), float(rng.uniform(0.95, 0.9999)))
        wd, no_decay = float(rng.uniform(0.01, 0.3)), ("blocks.0.b_fc", "lnf_g", "scale")
        for step in range(1, 6):
            grads = {k: _tensor(rng.standard_normal(s) * 10 ** rng.uniform(-3, 0), dtype) for k, s in shapes.items()}
            lr = float(10 ** rng.uniform(-4, -1))
            what = (f"adamw_step(step={step}, lr={lr:.3g}, betas=({betas[0]:.3f}, {betas[1]:.4f}), "
                    f"weight_decay={wd:.3f}) [{np.dtype(dtype).name}]")
            got = _triple(attempt(lambda: adamw_step(p, grads, m, v, step, lr, betas, 1e-8, wd, no_decay),
                                  what, ADAM_HINT), shapes, dtype, what)
            rp, rm, rv = ref.adamw_step(rp, grads, rm, rv, step, lr, betas, 1e-8, wd, no_decay)
            for label, d, r in zip(("params", "m", "v"), got, (rp, rm, rv)):
                for k in shapes:
                    assert_close(d[k], r[k].numpy(), f"{what}: {label}[{k!r}]",
                                 ADAM_MV_HINT if label != "params" else ADAM_HINT)
            p, m, v = rp, rm, rv   # continue from the reference's state: one slip is not counted five times


@test("adamw_step_edge", "adamw_step", hidden=True)
def adamw_step_edge(adamw_step, ref):
    """A late step, zero gradients, betas (0, 0), every name in no_decay, no weight decay."""
    rng = rng_for("adamw_step_edge")
    shapes = {"a": (3, 4), "b": (4,)}
    p = {k: _tensor(rng.standard_normal(s), np.float64) for k, s in shapes.items()}
    g = {k: _tensor(rng.standard_normal(s), np.float64) for k, s in shapes.items()}
    m = {k: _tensor(rng.standard_normal(s) * 0.1, np.float64) for k, s in shapes.items()}
    v = {k: _tensor(rng.random(s) * 0.1, np.float64) for k, s in shapes.items()}
    def zero():  # a new dict each time: m and v must not be the same tensors
        return {k: torch.zeros_like(t) for k, t in p.items()}

    cases = [("step 10000", (p, g, m, v, 10000, 1e-3, (0.9, 0.99), 1e-8, 0.1, ("b",))),
             ("zero gradients", (p, zero(), zero(), zero(), 1, 1e-2, (0.9, 0.99), 1e-8, 0.1, ())),
             ("betas (0, 0)", (p, g, zero(), zero(), 3, 1e-2, (0.0, 0.0), 1e-8, 0.0, ())),
             ("every name in no_decay", (p, g, m, v, 7, 1e-2, (0.9, 0.999), 1e-6, 0.3, ("a", "b"))),
             ("weight_decay = 0", (p, g, m, v, 2, 1e-2, (0.9, 0.999), 1e-8, 0.0, ()))]
    for name, args in cases:
        what = f"adamw_step with {name}"
        got = _triple(attempt(lambda: adamw_step(*args), what, ADAM_HINT), shapes, np.float64, what)
        expected = ref.adamw_step(*args)
        for label, d, r in zip(("params", "m", "v"), got, expected):
            for k in shapes:
                assert_close(d[k], r[k].numpy(), f"{what}: {label}[{k!r}]", ADAM_HINT)

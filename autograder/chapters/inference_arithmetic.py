"""Chapter 11 (11-inference-arithmetic): FLOPs and bytes per token, the KV cache, arithmetic
intensity, the roofline, and a lower bound on generation time.

The visible tests compare with small worked examples whose values are derived by hand in the
comments (no answer key), and recognise the classic mistakes by the values they give. The
hidden tests compare with the reference on seeded random configs and on edge cases.
"""
import numpy as np

from ..framework import (Chapter, CheckFailure, as_result_array, assert_raises,
                         assert_shape, assert_values_close, attempt, ensure, rng_for)

chapter = Chapter("11-inference-arithmetic", reference="inference_arithmetic",
                  functions=["flops_per_token", "kv_cache_bytes", "arithmetic_intensity", "roofline_time",
                             "generation_time_lower_bound"],
                  sample_scores=(15, 9, 0, 9, 12))
test = chapter.test

CONFIG_HINT = ("config is a dict with string keys: config['n_layers'], config['d_model'], config['n_heads'], "
               "config['vocab_size']; n_kv_heads and d_ff may be missing: use config.get('n_kv_heads', "
               "n_heads) and config.get('d_ff', 4 * d_model)")
NUMBER_HINT = "return one number (an int or a float)"


def _number(value, what):
    """The result as a float; a failure if it is not one number."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, tuple, list, dict)):
        shown = "None" if value is None else f"a {type(value).__name__}"
        raise CheckFailure(f"{what} returned {shown}, expected a number",
                           "did you forget the `return` statement? " + NUMBER_HINT
                           if value is None else NUMBER_HINT)
    if isinstance(value, (int, float)):
        return float(value)
    arr = as_result_array(value, what)
    if arr.shape != ():
        raise CheckFailure(f"{what} returned an array of shape {arr.shape}, expected one number", NUMBER_HINT)
    return float(arr)


def _close(got, expected, rtol=1e-9):
    return abs(got - expected) <= rtol * abs(expected) + 1e-300


def _call(fn, args, what, hint=CONFIG_HINT):
    return _number(attempt(lambda: fn(*args), what, hint), what)


def _show(config):
    return "{" + ", ".join(f"{k}: {v}" for k, v in config.items()) + "}"


def _random_config(rng, gqa=True, optional=True):
    head_dim = int(rng.choice([8, 16, 32, 64, 128]))
    n_heads = int(rng.choice([1, 2, 4, 6, 8, 12, 16, 32]))
    config = {"n_layers": int(rng.integers(1, 49)), "d_model": n_heads * head_dim, "n_heads": n_heads,
              "vocab_size": int(rng.integers(2, 60000))}
    if gqa and (not optional or rng.random() < 0.8):
        config["n_kv_heads"] = int(rng.choice([k for k in range(1, n_heads + 1) if n_heads % k == 0]))
    if not optional or rng.random() < 0.7:
        config["d_ff"] = int(rng.integers(1, 9) * config["d_model"] // 2 + rng.integers(0, 64))
    return config


# The small model of the worked examples: 2 blocks, width 8, 2 query heads of width 4 sharing
# one key/value head (grouped-query attention), an MLP 24 wide, 12 tokens.
SMALL = {"n_layers": 2, "d_model": 8, "n_heads": 2, "n_kv_heads": 1, "d_ff": 24, "vocab_size": 12}
# GPT-style, with the optional keys missing: n_kv_heads = n_heads = 2, d_ff = 4 * 4 = 16.
DEFAULTS = {"n_layers": 1, "d_model": 4, "n_heads": 2, "vocab_size": 3}
# The 52B-parameter shape of the chapter: 64 blocks of width 8192 (64 heads of 128).
BIG = {"n_layers": 64, "d_model": 8192, "n_heads": 64, "vocab_size": 65536}


# ------------------------------------------------------------------ flops_per_token

# SMALL, by hand. head_dim = 8 / 2 = 4; kv_dim = 1 * 4 = 4.
#   weights per block: W_Q 8*8 = 64, W_K 8*4 = 32, W_V 8*4 = 32, W_O 8*8 = 64,
#                      MLP 8*24 + 24*8 = 384                                  -> 576
#   2 blocks: 1152; unembedding 8*12 = 96                                     -> 1248 weights
#   2 FLOPs per multiply-add                                                  -> 2496 FLOPs
#   attention at context t: 2 blocks * 2 heads * (2*4*t scores + 2*4*t values) = 64 t
#   seq_len 5: 2496 + 320 = 2816;  seq_len 1: 2560;  each extra token of context adds 64.
SMALL_FLOPS_5 = 2816
SMALL_SLOPE = 64
# DEFAULTS, by hand. head_dim 2, kv_dim = 2 * 2 = 4, d_ff = 16.
#   per block 4*4 + 4*4 + 4*4 + 4*4 + 4*16 + 16*4 = 192; unembedding 4*3 = 12  -> 204 weights
#   -> 408 FLOPs; attention at t = 3: 1 block * 2 heads * (2*2*3 + 2*2*3) = 48 -> 456
DEFAULTS_FLOPS_3 = 456

FLOPS_HINT = ("count 2 FLOPs per multiply-add for every matmul weight (W_Q, W_K, W_V, W_O, the MLP's two "
              "matrices in each of the n_layers blocks, and the unembedding), plus attention: "
              "4 * head_dim * seq_len per query head per block")
FACTOR_TWO_HINT = "a multiply-add is 2 FLOPs: count 2 FLOPs per multiply-add (2 * k * n for a (1,k) @ (k,n) product)"
LINEAR_HINT = ("per token, attention is linear in seq_len: the token's one query meets seq_len keys "
               "(the n x n matrix is the cost of all n tokens together)")
ATTENTION_HINT = ("add attention: in every head, the token's scores against seq_len keys and its weighted sum "
                  "of seq_len values, 2 * head_dim * seq_len FLOPs each")
VALUES_HINT = ("attention is two products: the scores q.k AND the weighted sum of the values, "
               "2 * head_dim * seq_len FLOPs each per head")
LAYERS_HINT = "every one of the n_layers blocks has its own weights and its own attention: multiply by n_layers"
KV_HEADS_HINT = ("W_K and W_V are d_model x (n_kv_heads * head_dim) with head_dim = d_model // n_heads: "
                 "grouped-query attention has only n_kv_heads key/value heads")
DFF_HINT = "the MLP's two matrices are d_model x d_ff and d_ff x d_model: use config['d_ff'] when it is there"
UNEMBED_HINT = "count the unembedding too: the logits are a (1, d_model) @ (d_model, vocab_size) product"


def _flops(fn, config, seq_len):
    return _call(fn, (config, seq_len), f"flops_per_token({_show(config)}, {seq_len})")


@test("flops_per_token_visible", "flops_per_token")
def flops_per_token_visible(flops_per_token):
    """Worked examples by hand (2816 and 456 FLOPs), growth with seq_len, ValueError for seq_len 0.

    A wrong count is then probed: is it linear in seq_len, and does it change with n_layers,
    n_kv_heads, d_ff and vocab_size?"""
    what = f"flops_per_token({_show(SMALL)}, 5)"
    got = _flops(flops_per_token, SMALL, 5)
    if not _close(got, SMALL_FLOPS_5):
        d1 = _flops(flops_per_token, SMALL, 2) - _flops(flops_per_token, SMALL, 1)
        d2 = _flops(flops_per_token, SMALL, 3) - _flops(flops_per_token, SMALL, 2)
        ensure(_close(d1, d2), f"flops_per_token grows by {d1:g} from seq_len 1 to 2 but by {d2:g} from "
               "2 to 3", LINEAR_HINT)
        ensure(not _close(got, SMALL_FLOPS_5 / 2), f"{what} gave {got:g}, half of the right count", FACTOR_TWO_HINT)
        ensure(d1 != 0, f"{what} gave {got:g}, and the count does not change with seq_len", ATTENTION_HINT)
        ensure(not (_close(d1, SMALL_SLOPE / 2) and _close(got, SMALL_FLOPS_5 - 5 * SMALL_SLOPE / 2)),
               f"{what} gave {got:g}: attention counts half of what it should", VALUES_HINT)
        for key, value, hint in [("n_layers", 3, LAYERS_HINT), ("n_kv_heads", 2, KV_HEADS_HINT),
                                 ("d_ff", 40, DFF_HINT), ("vocab_size", 20, UNEMBED_HINT)]:
            other = dict(SMALL, **{key: value})
            ensure(not _close(_flops(flops_per_token, other, 5), got),
                   f"{what} gave {got:g}, and changing {key} from {SMALL[key]} to {value} changes nothing", hint)
        raise CheckFailure(f"{what} gave {got:g}, expected {SMALL_FLOPS_5} (the test's comments derive it)",
                           FLOPS_HINT)
    for t in (1, 6, 40):
        got = _flops(flops_per_token, SMALL, t)
        expected = SMALL_FLOPS_5 + SMALL_SLOPE * (t - 5)
        ensure(_close(got, expected), f"flops_per_token({_show(SMALL)}, {t}) gave {got:g}, expected {expected}",
               LINEAR_HINT)
    what = f"flops_per_token({_show(DEFAULTS)}, 3)"
    got = _call(flops_per_token, (DEFAULTS, 3), what)
    ensure(_close(got, DEFAULTS_FLOPS_3), f"{what} gave {got:g}, expected {DEFAULTS_FLOPS_3}", CONFIG_HINT)
    assert_raises(lambda: flops_per_token(SMALL, 0), "ValueError", "flops_per_token(config, 0)",
                  "raise ValueError when seq_len < 1: a token's context includes at least the token itself")


@test("flops_per_token_random", "flops_per_token", hidden=True)
def flops_per_token_random(flops_per_token, ref):
    """Random configs (with and without n_kv_heads and d_ff) and context lengths."""
    rng = rng_for("flops_per_token_random")
    for _ in range(40):
        config = _random_config(rng)
        t = int(rng.integers(1, 8193))
        got = _flops(flops_per_token, config, t)
        expected = ref.flops_per_token(config, t)
        ensure(_close(got, expected), f"flops_per_token({_show(config)}, {t}) gave {got:g}, expected "
               f"{expected:g}", FLOPS_HINT)


@test("flops_per_token_edge", "flops_per_token", hidden=True)
def flops_per_token_edge(flops_per_token, ref):
    """Context 1, the 52B shape at 8192 tokens, multi-query attention, ValueError for seq_len < 1.

    Also a config without the optional keys, and a model of width 1."""
    mqa = {"n_layers": 6, "d_model": 96, "n_heads": 12, "n_kv_heads": 1, "d_ff": 200, "vocab_size": 7}
    for config, t in [(SMALL, 1), (BIG, 1), (BIG, 8192), (mqa, 1), (mqa, 1000), (DEFAULTS, 1),
                      ({"n_layers": 1, "d_model": 1, "n_heads": 1, "vocab_size": 1}, 1)]:
        got = _flops(flops_per_token, config, t)
        expected = ref.flops_per_token(config, t)
        ensure(_close(got, expected, 1e-12), f"flops_per_token({_show(config)}, {t}) gave {got:g}, expected "
               f"{expected:g}", FLOPS_HINT)
    for bad in (0, -3):
        assert_raises(lambda: flops_per_token(BIG, bad), "ValueError", f"flops_per_token(config, {bad})",
                      "raise ValueError when seq_len < 1")


# ------------------------------------------------------------------ kv_cache_bytes

# KV_CONFIG, by hand: head_dim = 8 / 4 = 2, one key/value head. Per cached position of one
# sequence: (key + value) 2 * 3 layers * 1 head * 2 numbers = 12 numbers = 24 bytes at 2 bytes;
# 5 positions * 4 sequences -> 480 bytes.
KV_CONFIG = {"n_layers": 3, "d_model": 8, "n_heads": 4, "n_kv_heads": 1, "vocab_size": 10}
KV_BYTES = 480
# DEFAULTS_KV: no n_kv_heads, so 3 key/value heads of 6 / 3 = 2: 2 * 2 layers * 3 * 2 = 24 numbers
# per position, at 4 bytes = 96 bytes; 7 positions, 1 sequence -> 672 bytes.
DEFAULTS_KV = {"n_layers": 2, "d_model": 6, "n_heads": 3, "vocab_size": 5}
DEFAULTS_KV_BYTES = 672

KV_HINT = ("2 (a key and a value) * n_layers * n_kv_heads * head_dim * seq_len * batch * bytes_per_value, "
           "head_dim = d_model // n_heads")
KV_RATIOS = [(0.5, "cache keys and values: 2 vectors per position, per layer"),
             (4.0, "count n_kv_heads * head_dim numbers per key (head_dim = d_model // n_heads), not n_heads "
                   "heads: with grouped-query attention the key/value heads are shared"),
             (8.0, "count bytes, not bits: bytes_per_value is already in bytes"),
             (1 / 8, "bytes_per_value is already in bytes: don't divide by 8"),
             (1 / 3, "every layer keeps its own keys and values: multiply by n_layers"),
             (1 / 4, "every sequence of the batch has its own cache: multiply by batch"),
             (1 / 5, "the cache holds every one of the seq_len positions: multiply by seq_len")]


def _kv(fn, config, seq_len, batch, bpv):
    return _call(fn, (config, seq_len, batch, bpv), f"kv_cache_bytes({_show(config)}, {seq_len}, {batch}, {bpv})")


@test("kv_cache_bytes_visible", "kv_cache_bytes")
def kv_cache_bytes_visible(kv_cache_bytes):
    """The worked examples (480 and 672 bytes, grouped-query and plain), 4-bit numbers, an empty cache."""
    what = f"kv_cache_bytes({_show(KV_CONFIG)}, 5, 4, 2)"
    got = _kv(kv_cache_bytes, KV_CONFIG, 5, 4, 2)
    if not _close(got, KV_BYTES):
        for ratio, hint in KV_RATIOS:
            ensure(not _close(got, KV_BYTES * ratio), f"{what} gave {got:g}, {ratio:g} times the right size", hint)
        raise CheckFailure(f"{what} gave {got:g}, expected {KV_BYTES} (the test's comments derive it)", KV_HINT)
    what = f"kv_cache_bytes({_show(DEFAULTS_KV)}, 7, 1, 4)"
    got = _kv(kv_cache_bytes, DEFAULTS_KV, 7, 1, 4)
    ensure(_close(got, DEFAULTS_KV_BYTES), f"{what} gave {got:g}, expected {DEFAULTS_KV_BYTES}", CONFIG_HINT)
    got = _kv(kv_cache_bytes, KV_CONFIG, 5, 4, 0.5)
    ensure(_close(got, KV_BYTES / 4), f"kv_cache_bytes(..., 5, 4, 0.5) gave {got:g}, expected {KV_BYTES / 4:g} "
           "(4-bit numbers: half a byte each)", "multiply by bytes_per_value, which may be a fraction")
    got = _kv(kv_cache_bytes, KV_CONFIG, 0, 4, 2)
    ensure(got == 0, f"kv_cache_bytes(..., seq_len=0, ...) gave {got:g}, expected 0", "an empty cache has 0 bytes")


@test("kv_cache_bytes_random", "kv_cache_bytes", hidden=True)
def kv_cache_bytes_random(kv_cache_bytes, ref):
    """Random configs, lengths, batches and number formats."""
    rng = rng_for("kv_cache_bytes_random")
    for _ in range(40):
        config = _random_config(rng)
        t, b = int(rng.integers(0, 32769)), int(rng.integers(1, 257))
        bpv = [0.5, 1, 2, 4][int(rng.integers(0, 4))]
        got = _kv(kv_cache_bytes, config, t, b, bpv)
        expected = ref.kv_cache_bytes(config, t, b, bpv)
        ensure(_close(got, expected), f"kv_cache_bytes({_show(config)}, {t}, {b}, {bpv}) gave {got:g}, "
               f"expected {expected:g}", KV_HINT)


@test("kv_cache_bytes_edge", "kv_cache_bytes", hidden=True)
def kv_cache_bytes_edge(kv_cache_bytes, ref):
    """The 52B shape (2 MiB per token in 16-bit), multi-query attention, batch 0, one layer."""
    got = _kv(kv_cache_bytes, BIG, 1, 1, 2)
    ensure(got == 2 * 2 ** 20, f"kv_cache_bytes(52B shape, 1, 1, 2) gave {got:g}, expected 2 MiB = 2097152 "
           "(2 * 64 layers * 8192 * 2 bytes)", KV_HINT)
    mqa = {"n_layers": 5, "d_model": 64, "n_heads": 8, "n_kv_heads": 1, "vocab_size": 9}
    for config, t, b, bpv in [(mqa, 100, 3, 2), (mqa, 1, 1, 0.5), (BIG, 2048, 0, 2), (BIG, 4096, 16, 1),
                              ({"n_layers": 1, "d_model": 2, "n_heads": 1, "vocab_size": 2}, 1, 1, 4)]:
        got = _kv(kv_cache_bytes, config, t, b, bpv)
        expected = ref.kv_cache_bytes(config, t, b, bpv)
        ensure(_close(got, expected), f"kv_cache_bytes({_show(config)}, {t}, {b}, {bpv}) gave {got:g}, "
               f"expected {expected:g}", KV_HINT)


# ------------------------------------------------------------------ arithmetic_intensity

INTENSITY_HINT = "arithmetic intensity = flops / n_bytes (FLOPs divided by bytes), elementwise for arrays"
ELEMENTWISE_HINT = "work elementwise: with arrays, return one intensity per pair (flops[i] / n_bytes[i])"


def _array_result(value, shape, what, hint):
    """An array of the given shape; one number instead of an array fails with `hint`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise CheckFailure(f"{what} returned one number, expected an array of shape {shape}", hint)
    out = as_result_array(value, what)
    assert_shape(out, shape, what, hint)
    return out


def _intensity_array(fn, flops, n_bytes, what):
    value = attempt(lambda: fn(flops, n_bytes), what, ELEMENTWISE_HINT)
    return _array_result(value, np.broadcast(flops, n_bytes).shape, what, ELEMENTWISE_HINT)


@test("arithmetic_intensity_visible", "arithmetic_intensity")
def arithmetic_intensity_visible(arithmetic_intensity):
    """7 FLOPs over 2 bytes is 3.5; arrays elementwise (float32 and float64), broadcasting."""
    what = "arithmetic_intensity(7, 2)"
    got = _call(arithmetic_intensity, (7, 2), what, INTENSITY_HINT)
    ensure(not _close(got, 2 / 7), f"{what} gave {got:g}: that is bytes per FLOP",
           "divide FLOPs by bytes (FLOPs divided by bytes): the intensity is FLOPs per byte")
    ensure(not _close(got, 3.0), f"{what} gave 3, expected 3.5",
           "use true division (/), not floor division (//): 7 / 2 = 3.5")
    ensure(_close(got, 3.5), f"{what} gave {got:g}, expected 3.5", INTENSITY_HINT)
    got = _call(arithmetic_intensity, (2e12, 1e10), "arithmetic_intensity(2e12, 1e10)", INTENSITY_HINT)
    ensure(_close(got, 200.0), f"arithmetic_intensity(2e12, 1e10) gave {got:g}, expected 200", INTENSITY_HINT)
    # Three kernels: 1e9 FLOPs / 2e9 bytes = 0.5, 4e12 / 1e9 = 4000, 6e6 / 3e6 = 2.
    for dtype in (np.float64, np.float32):
        flops = np.array([1e9, 4e12, 6e6], dtype=dtype)
        n_bytes = np.array([2e9, 1e9, 3e6], dtype=dtype)
        what = f"arithmetic_intensity(flops (3,), n_bytes (3,)) [{np.dtype(dtype)}]"
        out = _intensity_array(arithmetic_intensity, flops, n_bytes, what)
        assert_values_close(out, np.array([0.5, 4000.0, 2.0], dtype=dtype), what, INTENSITY_HINT)
    what = "arithmetic_intensity(flops (2, 3), 4.0)"
    flops = np.array([[4.0, 8.0, 2.0], [1.0, 0.0, 40.0]])
    out = _intensity_array(arithmetic_intensity, flops, 4.0, what)
    assert_values_close(out, np.array([[1.0, 2.0, 0.5], [0.25, 0.0, 10.0]]), what, ELEMENTWISE_HINT)


@test("arithmetic_intensity_random", "arithmetic_intensity", hidden=True)
def arithmetic_intensity_random(arithmetic_intensity, ref):
    """Random arrays of FLOPs and bytes, float64 and float32, and random scalars."""
    rng = rng_for("arithmetic_intensity_random")
    for dtype in (np.float64, np.float32):
        for shape in [(5,), (3, 4), (2, 3, 7)]:
            flops = (10 ** rng.uniform(3, 15, size=shape)).astype(dtype)
            n_bytes = (10 ** rng.uniform(3, 12, size=shape)).astype(dtype)
            what = f"arithmetic_intensity(flops {shape}, n_bytes {shape}) [{np.dtype(dtype)}]"
            out = _intensity_array(arithmetic_intensity, flops, n_bytes, what)
            assert_values_close(out, ref.arithmetic_intensity(flops, n_bytes), what, INTENSITY_HINT)
    for _ in range(10):
        flops, n_bytes = float(10 ** rng.uniform(3, 15)), float(10 ** rng.uniform(3, 12))
        what = f"arithmetic_intensity({flops:g}, {n_bytes:g})"
        got = _call(arithmetic_intensity, (flops, n_bytes), what, INTENSITY_HINT)
        ensure(_close(got, flops / n_bytes), f"{what} gave {got:g}, expected {flops / n_bytes:g}", INTENSITY_HINT)


@test("arithmetic_intensity_edge", "arithmetic_intensity", hidden=True)
def arithmetic_intensity_edge(arithmetic_intensity, ref):
    """Integers (true division), zero FLOPs, a scalar over an array, huge counts."""
    for flops, n_bytes, expected in [(1, 4, 0.25), (0, 10, 0.0), (10 ** 15, 3, 10 ** 15 / 3), (9, 9, 1.0)]:
        what = f"arithmetic_intensity({flops}, {n_bytes})"
        got = _call(arithmetic_intensity, (flops, n_bytes), what, INTENSITY_HINT)
        ensure(_close(got, expected), f"{what} gave {got:g}, expected {expected:g}", INTENSITY_HINT)
    n_bytes = np.array([1.0, 2.0, 8.0, 1e9])
    what = "arithmetic_intensity(8.0, n_bytes (4,))"
    out = _intensity_array(arithmetic_intensity, 8.0, n_bytes, what)
    assert_values_close(out, ref.arithmetic_intensity(8.0, n_bytes), what, ELEMENTWISE_HINT)
    flops = np.array([3, 5, 7])
    what = "arithmetic_intensity(int flops (3,), int n_bytes (3,))"
    out = _intensity_array(arithmetic_intensity, flops, np.array([2, 2, 2]), what)
    assert_values_close(out, np.array([1.5, 2.5, 3.5]), what, "use true division (/), not //")


# ------------------------------------------------------------------ roofline_time

ROOF_HINT = ("time >= max(flops / peak_flops, n_bytes / bandwidth), in seconds: the larger of the compute time "
             "and the memory time")
MAXIMUM_HINT = "work elementwise on arrays: np.maximum(a, b), not Python's max(a, b)"


def _roof_case(fn, flops, n_bytes, peak, bw, expected):
    what = f"roofline_time({flops:g}, {n_bytes:g}, {peak:g}, {bw:g})"
    got = _call(fn, (flops, n_bytes, peak, bw), what, ROOF_HINT)
    compute, memory = flops / peak, n_bytes / bw
    if _close(got, expected):
        return
    ensure(not _close(got, min(compute, memory)), f"{what} gave {got:g} s, the smaller of the compute time "
           f"{compute:g} s and the memory time {memory:g} s",
           "take the larger of the two (np.maximum): the work has to do both, so the slower one bounds it")
    ensure(not _close(got, compute + memory), f"{what} gave {got:g} s, the sum of the compute time and the "
           "memory time", "computing and moving data overlap: the roofline bound is the larger of the two "
           "times (np.maximum), not their sum")
    ensure(not _close(got, min(peak, flops / n_bytes * bw)), f"{what} gave {got:g}: that is the attainable "
           "FLOP/s, not a time", "return seconds: the time is flops / peak_flops or n_bytes / bandwidth, "
           "whichever is larger")
    raise CheckFailure(f"{what} gave {got:g}, expected {expected:g} s", ROOF_HINT)


@test("roofline_time_visible", "roofline_time")
def roofline_time_visible(roofline_time):
    """A compute-bound and a memory-bound case by hand, then arrays (float64 and float32)."""
    # 1e12 FLOPs at 1e14 FLOP/s take 0.01 s; 1e9 bytes at 1e12 B/s take 0.001 s -> 0.01 s.
    _roof_case(roofline_time, 1e12, 1e9, 1e14, 1e12, 0.01)
    # 1e9 FLOPs take 1e-5 s; 2e10 bytes take 0.02 s -> 0.02 s (memory-bound).
    _roof_case(roofline_time, 1e9, 2e10, 1e14, 1e12, 0.02)
    # Both together as arrays: [0.01, 0.02]; and a third, balanced, case: 5e12 FLOPs, 5e10 bytes -> 0.05.
    for dtype in (np.float64, np.float32):
        flops = np.array([1e12, 1e9, 5e12], dtype=dtype)
        n_bytes = np.array([1e9, 2e10, 5e10], dtype=dtype)
        what = f"roofline_time(flops (3,), n_bytes (3,), 1e14, 1e12) [{np.dtype(dtype)}]"
        out = _array_result(attempt(lambda: roofline_time(flops, n_bytes, 1e14, 1e12), what, MAXIMUM_HINT),
                            (3,), what, MAXIMUM_HINT)
        assert_values_close(out, np.array([0.01, 0.02, 0.05], dtype=dtype), what, ROOF_HINT)


@test("roofline_time_random", "roofline_time", hidden=True)
def roofline_time_random(roofline_time, ref):
    """Random arrays on random machines, float64 and float32."""
    rng = rng_for("roofline_time_random")
    for dtype in (np.float64, np.float32):
        for shape in [(6,), (4, 5)]:
            flops = (10 ** rng.uniform(6, 16, size=shape)).astype(dtype)
            n_bytes = (10 ** rng.uniform(4, 13, size=shape)).astype(dtype)
            peak, bw = float(10 ** rng.uniform(10, 15)), float(10 ** rng.uniform(9, 13))
            what = f"roofline_time(flops {shape}, n_bytes {shape}, {peak:.3g}, {bw:.3g}) [{np.dtype(dtype)}]"
            out = _array_result(attempt(lambda: roofline_time(flops, n_bytes, peak, bw), what, MAXIMUM_HINT),
                                shape, what, MAXIMUM_HINT)
            assert_values_close(out, ref.roofline_time(flops, n_bytes, peak, bw), what, ROOF_HINT)
    for _ in range(10):
        args = [float(10 ** rng.uniform(a, b)) for a, b in [(6, 16), (4, 13), (10, 15), (9, 13)]]
        _roof_case(roofline_time, *args, float(ref.roofline_time(*args)))


@test("roofline_time_edge", "roofline_time", hidden=True)
def roofline_time_edge(roofline_time, ref):
    """No FLOPs, no bytes, exactly balanced work, a scalar against an array."""
    for args in [(0.0, 1e9, 1e12, 1e11), (1e9, 0.0, 1e12, 1e11), (2e12, 2e11, 1e12, 1e11), (3, 5, 1, 1)]:
        _roof_case(roofline_time, *args, float(ref.roofline_time(*args)))
    n_bytes = np.array([0.0, 1e6, 1e9, 1e12])
    what = "roofline_time(1e12, n_bytes (4,), 1e13, 1e10)"
    out = _array_result(attempt(lambda: roofline_time(1e12, n_bytes, 1e13, 1e10), what, MAXIMUM_HINT),
                        (4,), what, MAXIMUM_HINT)
    assert_values_close(out, ref.roofline_time(1e12, n_bytes, 1e13, 1e10), what, ROOF_HINT)


# ------------------------------------------------------------------ generation_time_lower_bound

# SMALL (above) has 1248 matmul weights = 2496 bytes at 2 bytes each, 2496 + 64 t FLOPs per
# token at context t, and 2 * 2 layers * 1 head * 4 numbers * 2 bytes = 32 cache bytes per
# position. The toy machine: 2000 FLOP/s and 1000 bytes/s.
#   prefill, 4-token prompt, batch 1: FLOPs sum_{t=1..4} (2496 + 64 t) = 9984 + 640 = 10624
#     -> 5.312 s; bytes 2496 + 4 * 32 = 2624 -> 2.624 s.                          bound 5.312 s
#   decode step at context t: FLOPs 2496 + 64 t -> 1.248 + 0.032 t s;
#     bytes 2496 + 32 t -> 2.496 + 0.032 t s, the larger.
#   4 new tokens = prefill + 3 steps (t = 5, 6, 7): 2.656 + 2.688 + 2.720 = 8.064 -> 13.376 s.
#   batch 3: prefill 3 * 10624 FLOPs -> 15.936 s (bytes 2496 + 384: 2.88 s);
#     step at t: FLOPs 3 (2496 + 64 t) -> 3.744 + 0.096 t s, bytes 2496 + 96 t -> 2.496 + 0.096 t s:
#     now compute-bound: 4.224 + 4.32 + 4.416 = 12.96 -> 28.896 s.
GEN_ARGS = {"prompt_len": 4, "bytes_per_value": 2, "peak_flops": 2000.0, "bandwidth": 1000.0}
GEN_CASES = [  # (n_new, batch, expected, {what a known mistake gives: its hint})
    (1, 1, 5.312, {7.968: "n_new - 1 decode steps: the prefill's last logits already give the first new token",
                   5.504: "causal prefill: prompt token t has context length t, not prompt_len "
                          "(sum flops_per_token(config, t) for t = 1 .. prompt_len)"}),
    (4, 1, 13.376, {16.128: "n_new - 1 decode steps: the prefill's last logits already give the first new token",
                    13.28: "the context grows by one token per step: step j has context prompt_len + j, and "
                           "its FLOPs and cache bytes grow with it",
                    9.632: "every decode step reads all the weights again (each step is a whole forward pass)",
                    12.8: "a decode step reads the KV cache of its whole context: add "
                          "kv_cache_bytes(config, prompt_len + j, batch, bytes_per_value) to the weight bytes",
                    10.688: "bound each phase separately (the prefill, then each decode step) and add the "
                            "bounds: the phases run one after the other"}),
    (4, 3, 28.896, {40.128: "the weights are read once per pass, shared by the whole batch: don't multiply "
                            "the weight bytes by batch"}),
]
GEN_HINT = ("prefill: roofline_time(batch * sum_t flops_per_token(config, t), weight bytes + prompt cache bytes); "
            "then n_new - 1 decode steps at context prompt_len + j: roofline_time(batch * flops_per_token, "
            "weight bytes + kv_cache_bytes of the context); add the bounds")


GEN_RAISED_HINT = ("if you call flops_per_token, kv_cache_bytes or roofline_time, make them pass their own tests "
                   "first; read the config with config.get('n_kv_heads', n_heads) and config.get('d_ff', 4 * d_model)")


def _gen_what(config, prompt_len, n_new, batch, bpv, peak, bw):
    return (f"generation_time_lower_bound({_show(config)}, prompt_len={prompt_len}, n_new={n_new}, "
            f"batch={batch}, bytes_per_value={bpv}, peak_flops={peak:g}, bandwidth={bw:g})")


def _gen(fn, config, prompt_len, n_new, batch, bpv, peak, bw):
    what = _gen_what(config, prompt_len, n_new, batch, bpv, peak, bw)
    return _call(fn, (config, prompt_len, n_new, batch, bpv, peak, bw), what, GEN_RAISED_HINT), what


@test("generation_time_lower_bound_visible", "generation_time_lower_bound")
def generation_time_lower_bound_visible(generation_time_lower_bound):
    """Worked examples on a toy machine (5.312 s, 13.376 s, 28.896 s), ValueError for no tokens.

    Each example recognises the known mistakes by the value they give."""
    a = GEN_ARGS
    for n_new, batch, expected, mistakes in GEN_CASES:
        got, what = _gen(generation_time_lower_bound, SMALL, a["prompt_len"], n_new, batch, a["bytes_per_value"],
                         a["peak_flops"], a["bandwidth"])
        if _close(got, expected):
            continue
        for value, hint in mistakes.items():
            ensure(not _close(got, value), f"{what} gave {got:.6g} s, expected {expected} s", hint)
        raise CheckFailure(f"{what} gave {got:.6g} s, expected {expected} s (the test's comments derive it)",
                           GEN_HINT)
    for prompt_len, n_new in ((0, 3), (4, 0)):
        assert_raises(lambda: generation_time_lower_bound(SMALL, prompt_len, n_new, 1, 2, 2000.0, 1000.0),
                      "ValueError", f"generation_time_lower_bound with prompt_len={prompt_len}, n_new={n_new}",
                      "raise ValueError when prompt_len < 1 or n_new < 1")


def _gen_compare(fn, ref, config, prompt_len, n_new, batch, bpv, peak, bw):
    got, what = _gen(fn, config, prompt_len, n_new, batch, bpv, peak, bw)
    expected = ref.generation_time_lower_bound(config, prompt_len, n_new, batch, bpv, peak, bw)
    ensure(_close(got, expected), f"{what} gave {got:.6g} s, expected {expected:.6g} s", GEN_HINT)


@test("generation_time_lower_bound_random", "generation_time_lower_bound", hidden=True)
def generation_time_lower_bound_random(generation_time_lower_bound, ref):
    """Random configs, prompts, lengths, batches and machines (memory- and compute-bound)."""
    rng = rng_for("generation_time_lower_bound_random")
    for _ in range(12):
        config = _random_config(rng)
        args = (int(rng.integers(1, 300)), int(rng.integers(1, 120)), int(rng.integers(1, 300)),
                [0.5, 1, 2, 4][int(rng.integers(0, 4))], float(10 ** rng.uniform(11, 15)),
                float(10 ** rng.uniform(10, 13)))
        _gen_compare(generation_time_lower_bound, ref, config, *args)


@test("generation_time_lower_bound_edge", "generation_time_lower_bound", hidden=True)
def generation_time_lower_bound_edge(generation_time_lower_bound, ref):
    """One-token prompt, one new token, the 52B shape on an H100 (batch 1 and 64), GQA, bad lengths.

    Also a config without the optional keys and 4-bit numbers."""
    h100 = (989e12, 3.35e12)
    gqa = dict(BIG, n_kv_heads=8)
    for config, prompt_len, n_new, batch, bpv, (peak, bw) in [
            (SMALL, 1, 1, 1, 2, (2000.0, 1000.0)), (SMALL, 1, 30, 2, 4, (5000.0, 800.0)),
            (BIG, 1000, 50, 1, 2, h100), (BIG, 1000, 50, 64, 2, h100), (gqa, 2000, 20, 16, 2, h100),
            (DEFAULTS, 3, 7, 5, 0.5, (1e3, 1e3))]:
        _gen_compare(generation_time_lower_bound, ref, config, prompt_len, n_new, batch, bpv, peak, bw)
    for prompt_len, n_new in ((0, 1), (1, 0), (-2, 5)):
        assert_raises(lambda: generation_time_lower_bound(SMALL, prompt_len, n_new, 1, 2, 2000.0, 1000.0),
                      "ValueError", f"generation_time_lower_bound with prompt_len={prompt_len}, n_new={n_new}",
                      "raise ValueError when prompt_len < 1 or n_new < 1")

"""Chapter 2 (02-toy-attention): scaled dot-product attention on a toy example."""
import numpy as np

from ..framework import (Chapter, CheckFailure, assert_finite, assert_shape, assert_values_close, as_result_array,
                         attempt, ensure, rng_for)

chapter = Chapter("02-toy-attention", reference="toy_attention",
                  functions=["attention_scores", "attention_weights",
                             "scaled_dot_product_attention", "attention_entropy"],
                  provided=["softmax"],
                  sample_scores=(12, 4, 0, 0, 9),
                  sample_mistakes={"attention_weights": "mask_with_zero", "attention_entropy": "bits"},
                  sample_loop=("call", "attention_entropy"))
test = chapter.test

SCALE_HINT = "divide the scores by sqrt(d_k), the square root of the key dimension"
TRANSPOSE_HINT = ("transpose only the last two axes of k (np.swapaxes(k, -1, -2)); "
                  "k.T reverses every axis, batch axes included")
MASK_BEFORE_HINT = ("apply the mask to the scores before the softmax: set masked scores to -inf "
                    "so they get exactly zero weight and the rows still sum to one")
MASK_ZERO_HINT = "masked scores must become -inf, not 0: exp(0) = 1 still gives them weight"
MASK_SENSE_HINT = "True in the mask means 'may attend'; False entries get zero weight"
KEYS_AXIS_HINT = "normalise over the keys (the last axis): each query's weights sum to one"


def _scores_diagnosis(out, expected, d_k, what):
    """When values differ, say which classic slip produces exactly this output."""
    if out.shape == expected.shape and np.all(np.isfinite(out)):
        if np.allclose(out, expected * np.sqrt(d_k), rtol=1e-5, atol=1e-8):
            raise CheckFailure(f"{what}: scores are sqrt(d_k) = {np.sqrt(d_k):g} times too large", SCALE_HINT)
        if np.allclose(out, expected / np.sqrt(d_k), rtol=1e-5, atol=1e-8):
            raise CheckFailure(f"{what}: scores are sqrt(d_k) = {np.sqrt(d_k):g} times too small",
                               "divide by sqrt(d_k), not by d_k")


@test("attention_scores_visible", "attention_scores")
def attention_scores_visible(attention_scores):
    """A hand-computed 1x2 case, batch dims, and the sqrt(d_k) scale."""
    q = np.array([[2.0, 0.0, 0.0, 0.0]])
    k = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0]])
    out = as_result_array(attention_scores(q, k), "attention_scores(q (1x4), k (2x4))")
    assert_shape(out, (1, 2), "attention_scores(q (1x4), k (2x4))", "scores have shape (n_q, n_k)")
    _scores_diagnosis(out, np.array([[1.0, 0.0]]), 4, "attention_scores(q, k) with d_k = 4")
    assert_values_close(out, [[1.0, 0.0]], "attention_scores(q, k) with d_k = 4", SCALE_HINT)
    qb = np.ones((2, 3, 5, 4))
    kb = np.ones((2, 3, 6, 4))
    out = as_result_array(attempt(lambda: attention_scores(qb, kb), "attention_scores with batch dims (2, 3)",
                                  TRANSPOSE_HINT), "attention_scores with batch dims (2, 3)")
    assert_shape(out, (2, 3, 5, 6), "attention_scores(q (2,3,5,4), k (2,3,6,4))", TRANSPOSE_HINT)
    assert_values_close(out, np.full((2, 3, 5, 6), 2.0), "attention_scores of all-ones q, k with d_k = 4",
                        SCALE_HINT)


@test("attention_scores_random", "attention_scores", hidden=True)
def attention_scores_random(attention_scores, ref):
    """Random q and k with batch dims, float64 and float32."""
    rng = rng_for("attention_scores_random")
    for dtype in (np.float64, np.float32):
        for qs, ks in [((3, 8), (5, 8)), ((2, 4, 16), (2, 7, 16)), ((2, 3, 4, 8), (2, 3, 6, 8))]:
            q, k = rng.standard_normal(qs).astype(dtype), rng.standard_normal(ks).astype(dtype)
            what = f"attention_scores(q {qs}, k {ks}) [{np.dtype(dtype)}]"
            out = as_result_array(attention_scores(q, k), what)
            expected = ref.attention_scores(q, k)
            assert_shape(out, expected.shape, what, TRANSPOSE_HINT)
            _scores_diagnosis(out, expected, qs[-1], what)
            if out.shape[-1] != qs[-1] and np.allclose(out, expected * np.sqrt(qs[-1]) / np.sqrt(ks[-2]),
                                                        rtol=1e-4):
                raise CheckFailure(f"{what}: scaled by the number of keys",
                                   "d_k is the size of the last axis (features), not the number of keys")
            assert_values_close(out, expected, what, SCALE_HINT)


@test("attention_scores_edge", "attention_scores", hidden=True)
def attention_scores_edge(attention_scores, ref):
    """One query and one key, broadcasting a shared k over a batch, large values."""
    rng = rng_for("attention_scores_edge")
    q, k = rng.standard_normal((1, 3)), rng.standard_normal((1, 3))
    assert_values_close(attention_scores(q, k), ref.attention_scores(q, k), "attention_scores(1 query, 1 key)")
    q, k = rng.standard_normal((4, 2, 8)) * 1e3, rng.standard_normal((5, 8)) * 1e3
    assert_values_close(attention_scores(q, k), ref.attention_scores(q, k),
                        "attention_scores(q (4,2,8), shared k (5,8))", TRANSPOSE_HINT)


def _check_weights(w, shape, what):
    w = as_result_array(w, what)
    assert_shape(w, shape, what, "weights have shape (..., n_q, n_k)")
    assert_finite(w, what, "subtract the row maximum before exp; masked entries should be -inf "
                  "only where at least one key is allowed")
    ensure((w >= 0).all(), f"{what}: negative weights", "weights are a softmax, never negative")
    rows = w.sum(axis=-1)
    if not np.allclose(rows, 1.0, atol=1e-5):
        cols = w.sum(axis=-2)
        if w.shape[-1] > 1 and np.allclose(cols, 1.0, atol=1e-5):
            raise CheckFailure(f"{what}: columns sum to one but rows don't", KEYS_AXIS_HINT)
        raise CheckFailure(f"{what}: rows sum to {np.round(rows.ravel()[:3], 4).tolist()}..., not 1",
                           MASK_BEFORE_HINT)
    return w


@test("attention_weights_visible", "attention_weights")
def attention_weights_visible(attention_weights):
    """Rows sum to one, masked keys get exactly zero, identical keys share weight equally."""
    q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    k = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [3.0, 3.0]])
    w = _check_weights(attention_weights(q, k), (3, 4), "attention_weights(q (3x2), k (4x2))")
    mask = np.array([[True, False, False, False], [True, True, False, False], [True, True, True, False]])
    wm = _check_weights(attention_weights(q, k, mask), (3, 4), "attention_weights with a mask")
    if np.allclose(wm[~mask], 0) is False and np.allclose(wm[mask], 0, atol=1e-12):
        raise CheckFailure("attention_weights with a mask: allowed keys got zero weight", MASK_SENSE_HINT)
    masked = wm[~mask]
    ensure(np.all(masked == 0.0), f"attention_weights with a mask: masked keys got weight "
           f"{float(masked.max()):.3g}", MASK_ZERO_HINT)
    ensure(np.allclose(wm[0], [1, 0, 0, 0]), "attention_weights: a query allowed one key "
           "must give it weight 1", MASK_ZERO_HINT)
    same = _check_weights(attention_weights(np.ones((1, 2)), np.ones((3, 2))), (1, 3),
                          "attention_weights with three identical keys")
    assert_values_close(same, np.full((1, 3), 1 / 3), "attention_weights with three identical keys")
    big = _check_weights(attention_weights(np.array([[100.0, 100.0]]), np.array([[100.0, 100.0], [-100.0, 0.0]])),
                         (1, 2), "attention_weights with large scores")
    assert_values_close(big, [[1.0, 0.0]], "attention_weights with large scores", SCALE_HINT)
    assert_values_close(w[0, :2], np.exp([1 / np.sqrt(2), 0]) / (np.exp([1 / np.sqrt(2), 0, -1 / np.sqrt(2),
                        3 / np.sqrt(2)]).sum()), "attention_weights(q, k) row 0 (first two keys)", SCALE_HINT)


def _weights_case(attention_weights, ref, q, k, mask, what):
    w = _check_weights(attention_weights(q, k, mask), ref.attention_weights(q, k, mask).shape, what)
    expected = ref.attention_weights(q, k, mask)
    if mask is not None:
        m = np.broadcast_to(mask, expected.shape)
        ensure(np.all(w[~m] == 0.0), f"{what}: masked keys got non-zero weight", MASK_ZERO_HINT)
    assert_values_close(w, expected, what, SCALE_HINT)


@test("attention_weights_random", "attention_weights", hidden=True)
def attention_weights_random(attention_weights, ref):
    """Random q, k and masks (causal and random), batch dims, float64 and float32."""
    rng = rng_for("attention_weights_random")
    for dtype in (np.float64, np.float32):
        q = rng.standard_normal((2, 5, 8)).astype(dtype)
        k = rng.standard_normal((2, 5, 8)).astype(dtype)
        causal = np.tril(np.ones((5, 5), dtype=bool))
        _weights_case(attention_weights, ref, q, k, None, f"attention_weights [{np.dtype(dtype)}]")
        _weights_case(attention_weights, ref, q, k, causal, f"attention_weights causal [{np.dtype(dtype)}]")
        mask = rng.random((2, 5, 5)) < 0.6
        mask[..., 0] = True
        _weights_case(attention_weights, ref, q, k, mask, f"attention_weights random mask [{np.dtype(dtype)}]")


@test("attention_weights_edge", "attention_weights", hidden=True)
def attention_weights_edge(attention_weights, ref):
    """One key, huge scores with a mask, a mask broadcast over the batch."""
    rng = rng_for("attention_weights_edge")
    _weights_case(attention_weights, ref, rng.standard_normal((3, 4)), rng.standard_normal((1, 4)),
                  None, "attention_weights with one key")
    q, k = rng.standard_normal((2, 4, 4)) * 1e3, rng.standard_normal((2, 4, 4)) * 1e3
    _weights_case(attention_weights, ref, q, k, np.tril(np.ones((4, 4), bool)),
                  "attention_weights, huge scores, causal mask broadcast over the batch")


# ------------------------------------------------------------------ scaled_dot_product_attention

ORDER_HINT = "return the pair (output, weights), in that order"


def _pair(result, what):
    if not isinstance(result, tuple) or len(result) != 2:
        raise CheckFailure(f"{what}: expected a tuple (output, weights), got "
                           f"{type(result).__name__}", ORDER_HINT)
    return (as_result_array(result[0], what + " output"), as_result_array(result[1], what + " weights"))


@test("scaled_dot_product_attention_visible", "scaled_dot_product_attention")
def sdpa_visible(scaled_dot_product_attention):
    """Returns (output, weights); output = weights @ v; one key copies its value."""
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    k = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    v = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    out, w = _pair(scaled_dot_product_attention(q, k, v), "scaled_dot_product_attention(q, k, v)")
    if out.shape == w.shape and not np.allclose(w.sum(-1), 1) and np.allclose(out.sum(-1), 1):
        raise CheckFailure("output and weights look swapped", ORDER_HINT)
    assert_shape(out, (2, 3), "output of scaled_dot_product_attention",
                 "output has shape (n_q, d_v): it averages the values v (not the keys)")
    assert_shape(w, (2, 3), "weights of scaled_dot_product_attention", ORDER_HINT)
    assert_values_close(out, w @ v, "output should equal weights @ v",
                        "the output is the weighted average of the values v (not the keys)")
    one, _ = _pair(scaled_dot_product_attention(q, k[:1], np.array([[5.0, -2.0, 7.0]])),
                   "scaled_dot_product_attention with one key")
    assert_values_close(one, np.array([[5.0, -2.0, 7.0]] * 2), "with one key, every output is that key's value")
    kv4 = np.arange(8.0).reshape(2, 4)
    out4, _ = _pair(scaled_dot_product_attention(np.ones((1, 2)), np.ones((2, 2)), kv4),
                    "scaled_dot_product_attention(d_v = 4 != d_k = 2)")
    assert_values_close(out4, kv4.mean(axis=0, keepdims=True), "equal scores average the values",
                        "the output is the weighted average of the values v (not the keys)")
    mask = np.array([[True, False, False], [True, True, True]])
    outm, wm = _pair(scaled_dot_product_attention(q, k, v, mask), "scaled_dot_product_attention with a mask")
    ensure(np.all(wm[~mask] == 0), "scaled_dot_product_attention ignored the mask",
           "pass the mask on to attention_weights")


@test("scaled_dot_product_attention_random", "scaled_dot_product_attention", hidden=True)
def sdpa_random(scaled_dot_product_attention, ref):
    """Random q, k, v (d_v != d_k) with batch dims and masks, float64 and float32."""
    rng = rng_for("sdpa_random")
    for dtype in (np.float64, np.float32):
        q = rng.standard_normal((2, 3, 6, 8)).astype(dtype)
        k = rng.standard_normal((2, 3, 7, 8)).astype(dtype)
        v = rng.standard_normal((2, 3, 7, 5)).astype(dtype)
        for mask in (None, rng.random((6, 7)) < 0.7):
            if mask is not None:
                mask[:, 0] = True
            what = f"scaled_dot_product_attention [{np.dtype(dtype)}, mask={mask is not None}]"
            out, w = _pair(scaled_dot_product_attention(q, k, v, mask), what)
            e_out, e_w = ref.scaled_dot_product_attention(q, k, v, mask)
            assert_values_close(w, e_w, what + " weights", SCALE_HINT)
            assert_values_close(out, e_out, what + " output", "output = weights @ v")


@test("scaled_dot_product_attention_edge", "scaled_dot_product_attention", hidden=True)
def sdpa_edge(scaled_dot_product_attention, ref):
    """One token; a causal mask; huge values."""
    rng = rng_for("sdpa_edge")
    x = rng.standard_normal((1, 4))
    out, w = _pair(scaled_dot_product_attention(x, x, x), "attention over one token")
    e_out, e_w = ref.scaled_dot_product_attention(x, x, x)
    assert_values_close(out, e_out, "attention over one token: output")
    q = rng.standard_normal((5, 4)) * 100
    causal = np.tril(np.ones((5, 5), bool))
    out, w = _pair(scaled_dot_product_attention(q, q, q, causal), "causal attention, large values")
    e_out, e_w = ref.scaled_dot_product_attention(q, q, q, causal)
    assert_values_close(w, e_w, "causal attention, large values: weights", MASK_ZERO_HINT)
    assert_values_close(out, e_out, "causal attention, large values: output")


# ------------------------------------------------------------------ attention_entropy

ZERO_LOG_HINT = "0 log 0 counts as 0: skip the zero weights (np.where) instead of taking log(0)"


@test("attention_entropy_visible", "attention_entropy")
def attention_entropy_visible(attention_entropy):
    """Uniform rows give log n, one-hot rows give 0 (no NaN), the axis is removed."""
    w = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    h = as_result_array(attention_entropy(w), "attention_entropy(w (3x4))")
    assert_shape(h, (3,), "attention_entropy(w (3x4))", "one entropy per row: reduce over `axis`")
    assert_finite(h, "attention_entropy with zero weights", ZERO_LOG_HINT)
    if np.allclose(h, -np.array([np.log(4), 0, np.log(2)])):
        raise CheckFailure("attention_entropy is negative", "entropy is -sum(p log p): mind the minus sign")
    if np.allclose(h, [2.0, 0.0, 1.0]):
        raise CheckFailure("attention_entropy is in bits", "use the natural log (nats), not log2")
    assert_values_close(h, [np.log(4), 0.0, np.log(2)], "attention_entropy of uniform/one-hot/half rows",
                        "entropy is -sum over the row of p * log(p), natural log")
    h0 = as_result_array(attention_entropy(w.T, axis=0), "attention_entropy(w.T, axis=0)")
    assert_shape(h0, (3,), "attention_entropy(w.T, axis=0)", "reduce over the `axis` argument")


@test("attention_entropy_random", "attention_entropy", hidden=True)
def attention_entropy_random(attention_entropy, ref):
    """Random distributions with exact zeros, batch dims, float64 and float32."""
    rng = rng_for("attention_entropy_random")
    for dtype in (np.float64, np.float32):
        w = rng.dirichlet(np.ones(6), size=(3, 4)) * (rng.random((3, 4, 6)) < 0.7)
        w[..., 0] += 1e-3
        w = (w / w.sum(-1, keepdims=True)).astype(dtype)
        h = as_result_array(attention_entropy(w), f"attention_entropy [{np.dtype(dtype)}]")
        assert_finite(h, f"attention_entropy [{np.dtype(dtype)}]", ZERO_LOG_HINT)
        assert_values_close(h, ref.attention_entropy(w), f"attention_entropy [{np.dtype(dtype)}]",
                            "entropy is -sum over the row of p * log(p), natural log")


@test("attention_entropy_edge", "attention_entropy", hidden=True)
def attention_entropy_edge(attention_entropy, ref):
    """A single weight, a causal pattern along another axis, tiny weights."""
    w = np.array([[1.0]])
    assert_values_close(attention_entropy(w), ref.attention_entropy(w), "attention_entropy of a single weight")
    causal = np.tril(np.ones((4, 4)))
    causal = causal / causal.sum(-1, keepdims=True)
    assert_values_close(attention_entropy(causal.T, axis=0), ref.attention_entropy(causal.T, axis=0),
                        "attention_entropy of a causal pattern along axis 0", ZERO_LOG_HINT)
    tiny = np.array([[1 - 1e-300, 1e-300]])
    assert_values_close(attention_entropy(tiny), ref.attention_entropy(tiny), "attention_entropy with a 1e-300 weight",
                        ZERO_LOG_HINT)

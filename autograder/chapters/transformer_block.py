"""Chapter 4 (04-transformer-block): LayerNorm, GELU, the MLP, the pre-norm and the parallel block.

The visible tests need no answer key. They use properties (a LayerNorm row has mean 0 and
standard deviation 1; a block with all weights zero returns its input; a causal block's
earlier outputs ignore later tokens) and small cases worked out here by hand: with
w_q = w_k = 0 every attention score is 0, so causal attention is a plain running average
of the values, and the whole block can be written in a few lines of NumPy below. The same
few lines also compute what each classic mistake would return, so a failure can name it.
"""
import math

import numpy as np

from ..framework import (Chapter, CheckFailure, as_result_array, assert_finite, assert_shape, assert_values_close,
                         attempt, ensure, matches, name_the_slip, rng_for)

chapter = Chapter("04-transformer-block", reference="transformer_block",
                  functions=["layer_norm", "gelu", "mlp", "transformer_block", "parallel_block"],
                  provided=["softmax", "causal_mask", "split_heads", "merge_heads", "self_attention"],
                  sample_scores=(15, 6, 0, 0, 12))
test = chapter.test


# ------------------------------------------------------------------ hand formulas for the visible tests

def _ln(x, g=1.0, b=0.0, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + eps) * g + b


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _gelu_erf(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _running_mean(v, causal=True):
    """Attention with all scores equal: a causal running average (or the full average)."""
    t = v.shape[-2]
    if causal:
        return np.cumsum(v, axis=-2) / np.arange(1, t + 1)[:, None]
    return np.broadcast_to(v.mean(-2, keepdims=True), v.shape)


# ------------------------------------------------------------------ layer_norm

CENTER_HINT = "subtract each row's mean first (centering): LayerNorm output has mean 0 over the last axis"
SCALE_HINT = "divide by each row's standard deviation sqrt(var + eps) (scaling): the output rows have std 1"
EPS_HINT = "eps goes inside the square root: sqrt(var + eps), not sqrt(var) + eps"
EPS_USE_HINT = "use the eps argument, inside the square root: sqrt(var + eps)"
DDOF_HINT = ("use the biased variance, dividing by D (np.var's default, ddof=0), not the unbiased "
             "one dividing by D - 1")
AXIS_HINT = "normalise over the last axis (axis=-1, keepdims=True): each token's features, not each feature over tokens"
AFFINE_HINT = "multiply the normalised rows by gamma, then add beta (both have one entry per feature)"

_LN_X = np.array([[1.0, 2.0, 3.0, 4.0], [-2.0, 0.0, 0.0, 2.0], [10.0, 10.0, 10.0, 13.0]])


def _ln_mistakes(x, g, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    d = x.shape[-1]
    m0 = x.mean(0, keepdims=True)
    v0 = ((x - m0) ** 2).mean(0, keepdims=True)
    return {
        "LayerNorm without centering": (x / np.sqrt(v + eps) * g + b, CENTER_HINT),
        "LayerNorm without centering (x / rms(x))": (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g + b,
                                                     CENTER_HINT),
        "LayerNorm without scaling (x - mean)": ((x - m) * g + b, SCALE_HINT),
        "eps outside the square root": ((x - m) / (np.sqrt(v) + eps) * g + b, EPS_HINT),
        "LayerNorm with the unbiased variance (ddof=1)": ((x - m) / np.sqrt(v * d / (d - 1) + eps) * g + b,
                                                          DDOF_HINT),
        "normalising over axis 0 instead of the last axis": ((x - m0) / np.sqrt(v0 + eps) * g + b, AXIS_HINT),
        "LayerNorm with gamma and beta swapped": ((x - m) / np.sqrt(v + eps) * b + g, AFFINE_HINT),
    }


@test("layer_norm_visible", "layer_norm")
def layer_norm_visible(layer_norm):
    """Rows get mean 0 and std 1; eps inside the sqrt; gamma and beta; batch dims."""
    d = 4
    ones, zeros = np.ones(d), np.zeros(d)
    what = "layer_norm(x (3x4), gamma=1, beta=0)"
    out = as_result_array(layer_norm(_LN_X, ones, zeros), what)
    assert_shape(out, _LN_X.shape, what, "LayerNorm keeps the shape of x")
    assert_finite(out, what, SCALE_HINT)
    name_the_slip(out, _ln_mistakes(_LN_X, ones, zeros, 1e-5), what)
    means = out.mean(-1)
    ensure(np.allclose(means, 0, atol=1e-9), f"{what}: row means are {np.round(means, 4).tolist()}, not 0",
           CENTER_HINT)
    stds = out.std(-1)
    ensure(np.allclose(stds, 1, rtol=1e-4), f"{what}: row standard deviations are {np.round(stds, 4).tolist()}, "
           "not 1", SCALE_HINT)
    assert_values_close(out, _ln(_LN_X), what, SCALE_HINT)

    x = np.array([[-1.0, 1.0, -1.0, 1.0], [0.0, 0.0, 0.0, 4.0]])
    what = "layer_norm(x, gamma=1, beta=0, eps=1.0)"
    out = as_result_array(layer_norm(x, ones, zeros, eps=1.0), what)
    assert_shape(out, x.shape, what, "LayerNorm keeps the shape of x")
    mistakes = _ln_mistakes(x, ones, zeros, 1.0)
    mistakes["ignoring eps"] = (_ln(x, eps=0.0), EPS_USE_HINT)
    mistakes["the default eps = 1e-5 instead of the argument"] = (_ln(x, eps=1e-5), EPS_USE_HINT)
    name_the_slip(out, mistakes, what)
    # By hand: row 0 has var 1, so it is divided by sqrt(1 + 1); row 1 has mean 1, var 3, sqrt(3 + 1) = 2.
    assert_values_close(out, [[-1 / math.sqrt(2), 1 / math.sqrt(2), -1 / math.sqrt(2), 1 / math.sqrt(2)],
                              [-0.5, -0.5, -0.5, 1.5]], what, EPS_HINT)

    gamma, beta = np.array([1.0, 2.0, 0.5, -1.0]), np.array([0.0, 1.0, -1.0, 0.5])
    what = "layer_norm(x (3x4), gamma=[1, 2, 0.5, -1], beta=[0, 1, -1, 0.5])"
    out = as_result_array(layer_norm(_LN_X, gamma, beta), what)
    assert_shape(out, _LN_X.shape, what, "LayerNorm keeps the shape of x")
    name_the_slip(out, _ln_mistakes(_LN_X, gamma, beta, 1e-5), what)
    assert_values_close(out, _ln(_LN_X, gamma, beta), what, AFFINE_HINT)

    xb = np.stack([_LN_X, _LN_X[::-1] * 3.0 - 1.0])
    what = "layer_norm(x (2x3x4), gamma=1, beta=0)"
    out = as_result_array(attempt(lambda: layer_norm(xb, ones, zeros), what, AXIS_HINT), what)
    assert_shape(out, xb.shape, what, "LayerNorm keeps the shape of x, batch dims included")
    ensure(np.allclose(out.mean(-1), 0, atol=1e-9), f"{what}: rows of a batch are not centred", AXIS_HINT)
    assert_values_close(out, _ln(xb), what, AXIS_HINT)


def _random_ln_args(rng, shape, dtype):
    d = shape[-1]
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 5) + rng.uniform(-3, 3)).astype(dtype)
    return x, (1 + 0.3 * rng.standard_normal(d)).astype(dtype), (0.3 * rng.standard_normal(d)).astype(dtype)


@test("layer_norm_random", "layer_norm", hidden=True)
def layer_norm_random(layer_norm, ref):
    """Random rows with random gamma and beta, batch dims, float64 and float32."""
    rng = rng_for("layer_norm_random")
    for dtype in (np.float64, np.float32):
        for shape in [(5, 8), (2, 3, 16), (7,), (4, 1, 6, 32)]:
            x, g, b = _random_ln_args(rng, shape, dtype)
            what = f"layer_norm(x {shape}) [{np.dtype(dtype)}]"
            out = as_result_array(layer_norm(x, g, b), what)
            assert_values_close(out, ref.layer_norm(x, g, b), what, SCALE_HINT)


@test("layer_norm_edge", "layer_norm", hidden=True)
def layer_norm_edge(layer_norm, ref):
    """Constant rows (output = beta), one feature, a custom eps, tiny and huge scales."""
    rng = rng_for("layer_norm_edge")
    d = 6
    g, b = 1 + rng.standard_normal(d), rng.standard_normal(d)
    const = np.full((3, d), 2.5)
    out = as_result_array(layer_norm(const, g, b), "layer_norm of constant rows")
    assert_finite(out, "layer_norm of constant rows", EPS_USE_HINT)
    assert_values_close(out, ref.layer_norm(const, g, b), "layer_norm of constant rows (the output is beta)",
                        EPS_USE_HINT)
    one = rng.standard_normal((4, 1))
    assert_values_close(layer_norm(one, np.array([2.0]), np.array([0.5])),
                        ref.layer_norm(one, np.array([2.0]), np.array([0.5])), "layer_norm with one feature",
                        EPS_USE_HINT)
    x = rng.standard_normal((3, d))
    assert_values_close(layer_norm(x, g, b, eps=0.1), ref.layer_norm(x, g, b, eps=0.1), "layer_norm(..., eps=0.1)",
                        EPS_HINT)
    for scale in (1e-3, 1e6):
        xs = x * scale
        assert_values_close(layer_norm(xs, g, b), ref.layer_norm(xs, g, b), f"layer_norm of rows of size {scale:g}",
                            EPS_HINT)


# ------------------------------------------------------------------ gelu

RELU_HINT = ("GELU is smooth, it is not ReLU: negative inputs give small negative outputs "
             "(gelu(-1) = -0.1588), and gelu(1) = 0.8412, not 1")
HALF_HINT = "multiply by 0.5: gelu(x) = 0.5 x (1 + tanh(...)) approaches x (not 2x) for large x"
ERF_HINT = ("use the tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), not the exact "
            "erf form: they differ by up to 5e-4")
SIGMOID_HINT = ("use the tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), not the "
                "cruder x * sigmoid(1.702 x)")
GELU_HINT = "gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), elementwise"

_GELU_X = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
# 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) at the points above, to 16 significant digits.
_GELU_Y = np.array([-0.0036373920817729943, -0.1588080093917233, -0.15428599017485606, 0.0,
                    0.34571400982514394, 0.8411919906082768, 2.996362607918227])


def _gelu_mistakes(x):
    return {"ReLU": (np.maximum(x, 0), RELU_HINT),
            "GELU without the 0.5": (2 * _gelu(x), HALF_HINT),
            "the exact (erf) GELU": (_gelu_erf(x), ERF_HINT),
            "the sigmoid approximation x * sigmoid(1.702 x)": (x / (1 + np.exp(-1.702 * x)), SIGMOID_HINT)}


@test("gelu_visible", "gelu")
def gelu_visible(gelu):
    """Stored values of the tanh GELU, gelu(0) = 0, its limits for large |x|, any shape."""
    what = "gelu([-3, -1, -0.5, 0, 0.5, 1, 3])"
    out = as_result_array(gelu(_GELU_X.copy()), what)
    assert_shape(out, _GELU_X.shape, what, "GELU is elementwise: keep the shape of x")
    assert_finite(out, what, GELU_HINT)
    name_the_slip(out, _gelu_mistakes(_GELU_X), what)
    ensure(out[3] == 0, f"gelu(0) = {out[3]:.6g}, expected 0", GELU_HINT)
    assert_values_close(out, _GELU_Y, what, GELU_HINT)
    big = np.array([20.0, -20.0])
    out = as_result_array(gelu(big), "gelu([20, -20])")
    if matches(out, [40.0, 0.0]):
        raise CheckFailure("gelu(20) = 40, expected 20", HALF_HINT)
    assert_values_close(out, [20.0, 0.0], "gelu([20, -20]): large x passes, large -x gives 0", GELU_HINT, atol=1e-9)
    x2 = _GELU_X[:6].reshape(2, 3)
    out = as_result_array(gelu(x2), "gelu(x (2x3))")
    assert_shape(out, (2, 3), "gelu(x (2x3))", "GELU is elementwise: keep the shape of x")
    assert_values_close(out, _GELU_Y[:6].reshape(2, 3), "gelu(x (2x3))", GELU_HINT)


@test("gelu_random", "gelu", hidden=True)
def gelu_random(gelu, ref):
    """Random inputs of several shapes, float64 and float32."""
    rng = rng_for("gelu_random")
    for dtype in (np.float64, np.float32):
        for shape in [(50,), (4, 8), (2, 3, 5)]:
            x = (rng.standard_normal(shape) * 3).astype(dtype)
            assert_values_close(gelu(x), ref.gelu(x), f"gelu(x {shape}) [{np.dtype(dtype)}]", ERF_HINT)


@test("gelu_edge", "gelu", hidden=True)
def gelu_edge(gelu, ref):
    """Large and tiny magnitudes, zeros, float32 extremes."""
    for dtype in (np.float64, np.float32):
        x = np.array([-1e4, -50.0, -6.0, -1e-8, 0.0, 1e-8, 6.0, 50.0, 1e4], dtype=dtype)
        out = as_result_array(gelu(x), f"gelu of large and tiny values [{np.dtype(dtype)}]")
        assert_finite(out, f"gelu of large and tiny values [{np.dtype(dtype)}]",
                      "for large |x| tanh saturates at +-1: gelu(x) is x or 0, never inf or NaN")
        assert_values_close(out, ref.gelu(x), f"gelu of large and tiny values [{np.dtype(dtype)}]", GELU_HINT)


# ------------------------------------------------------------------ mlp

B_FC_HINT = "add the bias b_fc to x @ w_fc before the GELU"
B_PROJ_HINT = "add the bias b_proj after the output projection"
GELU_PLACE_HINT = ("apply GELU to the hidden layer x @ w_fc + b_fc, between the two matmuls; the "
                   "projection's output gets no GELU")
MATMUL_HINT = "apply the weights as x @ w_fc (w_fc has shape (D, H)) and h @ w_proj (shape (H, D))"
OWN_GELU_HINT = "your mlp matches one built on a wrong GELU: fix gelu (its own test says how) first"

_MLP_X = np.array([[1.0, -2.0, 0.5], [0.0, 1.5, -1.0]])
_MLP_W_FC = np.array([[0.5, -1.0, 0.0, 1.0, 0.25],
                      [0.25, 0.5, -0.5, 0.0, 1.0],
                      [-1.0, 0.0, 1.0, 0.5, -0.5]])
_MLP_B_FC = np.array([0.5, -0.25, 1.0, 0.0, -1.0])
_MLP_W_PROJ = np.array([[1.0, 0.0, -0.5], [0.5, -1.0, 0.0], [0.0, 0.5, 1.0], [-1.0, 1.0, 0.5], [0.25, 0.0, -1.0]])
_MLP_B_PROJ = np.array([-1.5, 0.5, 2.0])


def _mlp(x, w_fc, b_fc, w_proj, b_proj, act=_gelu):
    return act(x @ w_fc + b_fc) @ w_proj + b_proj


def _mlp_mistakes(x, w_fc, b_fc, w_proj, b_proj):
    args = (x, w_fc, b_fc, w_proj, b_proj)
    return {"an MLP without b_fc": (_mlp(x, w_fc, 0, w_proj, b_proj), B_FC_HINT),
            "an MLP without b_proj": (_mlp(x, w_fc, b_fc, w_proj, 0), B_PROJ_HINT),
            "an MLP with GELU after the projection": (_gelu((x @ w_fc + b_fc) @ w_proj + b_proj), GELU_PLACE_HINT),
            "an MLP with GELU on both layers": (_gelu(_mlp(*args)), GELU_PLACE_HINT),
            "an MLP without any GELU": (_mlp(*args, act=lambda h: h), GELU_PLACE_HINT),
            "an MLP built on ReLU": (_mlp(*args, act=lambda h: np.maximum(h, 0)), OWN_GELU_HINT),
            "an MLP built on the erf GELU": (_mlp(*args, act=_gelu_erf), OWN_GELU_HINT)}


@test("mlp_visible", "mlp")
def mlp_visible(mlp):
    """A hand-sized MLP (D=3, H=5), where each bias goes, where the GELU goes, batch dims."""
    args = (_MLP_X, _MLP_W_FC, _MLP_B_FC, _MLP_W_PROJ, _MLP_B_PROJ)
    what = "mlp(x (2x3), w_fc (3x5), b_fc, w_proj (5x3), b_proj)"
    out = as_result_array(attempt(lambda: mlp(*args), what, MATMUL_HINT), what)
    assert_shape(out, (2, 3), what, MATMUL_HINT)
    assert_finite(out, what, GELU_HINT)
    name_the_slip(out, _mlp_mistakes(*args), what)
    assert_values_close(out, _mlp(*args), what, GELU_HINT)

    zero_fc, zero_proj = np.zeros((3, 5)), np.zeros((5, 3))
    what = "mlp with only b_proj = [-1.5, 0.5, 2] non-zero"
    out = as_result_array(mlp(_MLP_X, zero_fc, np.zeros(5), zero_proj, _MLP_B_PROJ), what)
    if matches(out, np.zeros((2, 3))):
        raise CheckFailure(f"{what}: the output is 0, expected b_proj in every row", B_PROJ_HINT)
    if matches(out, np.broadcast_to(_gelu(_MLP_B_PROJ), (2, 3))):
        raise CheckFailure(f"{what}: the output is gelu(b_proj), expected b_proj", GELU_PLACE_HINT)
    assert_values_close(out, np.broadcast_to(_MLP_B_PROJ, (2, 3)), what, B_PROJ_HINT)

    what = "mlp with w_fc = 0, b_fc = [0.5, -0.25, 1, 0, -1]"
    out = as_result_array(mlp(_MLP_X, zero_fc, _MLP_B_FC, _MLP_W_PROJ, np.zeros(3)), what)
    if matches(out, np.zeros((2, 3))):
        raise CheckFailure(f"{what}: the output is 0, so b_fc never reached the GELU", B_FC_HINT)
    assert_values_close(out, np.broadcast_to(_gelu(_MLP_B_FC) @ _MLP_W_PROJ, (2, 3)), what, B_FC_HINT)

    xb = np.stack([_MLP_X, -_MLP_X])
    what = "mlp(x (2x2x3), ...)"
    out = as_result_array(attempt(lambda: mlp(xb, *args[1:]), what, MATMUL_HINT), what)
    assert_shape(out, (2, 2, 3), what, "the MLP acts on each token on its own: keep the batch dims")
    assert_values_close(out, _mlp(xb, *args[1:]), what, GELU_HINT)


def _random_mlp_args(rng, lead, d, h, dtype):
    return tuple(a.astype(dtype) for a in (rng.standard_normal((*lead, d)), rng.standard_normal((d, h)) / math.sqrt(d),
                                           0.1 * rng.standard_normal(h), rng.standard_normal((h, d)) / math.sqrt(h),
                                           0.1 * rng.standard_normal(d)))


@test("mlp_random", "mlp", hidden=True)
def mlp_random(mlp, ref):
    """Random MLPs with H = 4D, batch dims, float64 and float32."""
    rng = rng_for("mlp_random")
    for dtype, tol in ((np.float64, {}), (np.float32, {"rtol": 1e-4, "atol": 1e-5})):
        for lead, d in [((5,), 8), ((2, 4), 16)]:
            args = _random_mlp_args(rng, lead, d, 4 * d, dtype)
            what = f"mlp(x {(*lead, d)}, H = {4 * d}) [{np.dtype(dtype)}]"
            out = as_result_array(mlp(*args), what)
            name_the_slip(out.astype(np.float64), {} if dtype == np.float32 else _mlp_mistakes(*args), what)
            assert_values_close(out, ref.mlp(*args), what, GELU_HINT, **tol)


@test("mlp_edge", "mlp", hidden=True)
def mlp_edge(mlp, ref):
    """A hidden width other than 4D, one token, a single vector x of shape (D,)."""
    rng = rng_for("mlp_edge")
    for lead, d, h in [((1,), 6, 3), ((), 5, 20), ((3,), 1, 4)]:
        args = _random_mlp_args(rng, lead, d, h, np.float64)
        what = f"mlp(x {(*lead, d)}, H = {h})"
        out = as_result_array(attempt(lambda: mlp(*args), what, MATMUL_HINT), what)
        assert_values_close(out, ref.mlp(*args), what, MATMUL_HINT)


# ------------------------------------------------------------------ the blocks

POSTNORM_HINT = ("this is the post-norm block (LayerNorm after the residual add, as in the 2017 Transformer); "
                 "write the pre-norm one: x = x + attn(ln1(x)), and the sum itself is never normalised")
STREAM_HINT = ("normalise only the branch input, h = ln1(x), and add the branch output to the un-normalised x; "
               "overwriting x with ln1(x) normalises the residual stream itself")
RESIDUAL_HINT = ("add each sublayer's output back to its input (the residual connection): "
                 "x = x + attn(ln1(x)), then x = x + mlp(ln2(x))")
LN2_HINT = "the MLP has its own LayerNorm: feed it ln2 (ln2_g, ln2_b) of the stream; ln1 is for attention only"
SEQ_HINT = ("in the pre-norm block the MLP reads ln2 of the stream after the attention residual, "
            "x + attn(ln1(x)), not of the block's input")
CAUSAL_HINT = "call self_attention with causal=True: a token must never see later tokens"
PAR_SEQ_HINT = ("in the parallel block both branches read the same h = ln1(x) of the block's input, side by side: "
                "the MLP must not see the attention's output")
PAR_LN2_HINT = "the parallel block has a single LayerNorm: feed ln1(x) to both branches; ln2 is unused"
PAR_RESIDUAL_HINT = "add both branch outputs to the block's input: x + attn(h) + mlp(h)"
KEYS_HINT = ("read the weights from the params dict: ln1_g, ln1_b, w_q, w_k, w_v, w_o, ln2_g, ln2_b, "
             "w_fc, b_fc, w_proj, b_proj")

_BLOCK_X = np.array([[1.0, -0.5, 2.0, 0.5], [0.0, 1.5, -1.0, 3.0], [2.5, 0.5, 0.0, -2.0]])


def _hand_params(d=4):
    """Weights chosen by hand, with w_q = w_k = 0 so attention averages the values."""
    h = 4 * d
    grid = np.arange(d * h, dtype=float)
    return {
        "ln1_g": np.array([1.0, 2.0, 0.5, 1.0]), "ln1_b": np.array([0.1, 0.0, -0.2, 0.3]),
        "w_q": np.zeros((d, d)), "w_k": np.zeros((d, d)),
        "w_v": np.array([[1.0, 0.5, 0.0, -0.5], [0.0, 1.0, 0.5, 0.0], [-0.5, 0.0, 1.0, 0.5], [0.5, -0.5, 0.0, 1.0]]),
        "w_o": np.array([[0.5, 0.0, 0.0, 1.0], [0.0, -1.0, 0.5, 0.0], [1.0, 0.0, 0.5, 0.0], [0.0, 0.5, 0.0, -0.5]]),
        "ln2_g": np.array([0.5, 1.0, 1.5, 1.0]), "ln2_b": np.array([0.0, 0.5, 0.0, -0.5]),
        "w_fc": ((grid.reshape(d, h) % 7) - 3) / 4, "b_fc": ((np.arange(h) % 5) - 2) / 4,
        "w_proj": ((grid.reshape(h, d) % 5) - 2) / 8, "b_proj": np.array([0.25, -0.5, 0.0, 1.0]),
    }


def _zero_params(d=4):
    p = {k: np.zeros((d, d)) for k in ("w_q", "w_k", "w_v", "w_o")}
    p.update(ln1_g=np.ones(d), ln1_b=np.zeros(d), ln2_g=np.ones(d), ln2_b=np.zeros(d),
             w_fc=np.zeros((d, 4 * d)), b_fc=np.zeros(4 * d), w_proj=np.zeros((4 * d, d)), b_proj=np.zeros(d))
    return p


def _hand_pieces(p, causal=True):
    """ln1, ln2, attention (valid only for w_q = w_k = 0) and the MLP of the hand model."""
    def ln1(v):
        return _ln(v, p["ln1_g"], p["ln1_b"])

    def ln2(v):
        return _ln(v, p["ln2_g"], p["ln2_b"])

    def attn(h):
        return _running_mean(h @ p["w_v"], causal) @ p["w_o"]

    def mlp(h):
        return _mlp(h, p["w_fc"], p["b_fc"], p["w_proj"], p["b_proj"])
    return ln1, ln2, attn, mlp


def _hand_block(x, p, causal=True):
    ln1, ln2, attn, mlp = _hand_pieces(p, causal)
    x1 = x + attn(ln1(x))
    return x1 + mlp(ln2(x1))


def _hand_parallel(x, p, causal=True):
    ln1, _, attn, mlp = _hand_pieces(p, causal)
    return x + attn(ln1(x)) + mlp(ln1(x))


def _block_mistakes(x, p):
    ln1, ln2, attn, mlp = _hand_pieces(p)
    x1 = x + attn(ln1(x))
    post1 = ln1(x + attn(x))
    s1 = ln1(x)
    s1 = s1 + attn(s1)
    s2 = ln2(s1)
    no_res = attn(ln1(x))
    return {
        "the post-norm block": (ln2(post1 + mlp(post1)), POSTNORM_HINT),
        "a block that normalises the residual stream": (s2 + mlp(s2), STREAM_HINT),
        "a block without the attention residual": (no_res + mlp(ln2(no_res)), RESIDUAL_HINT),
        "a block without the MLP residual": (mlp(ln2(x1)), RESIDUAL_HINT),
        "a block without residuals": (mlp(ln2(no_res)), RESIDUAL_HINT),
        "a block that uses ln1 for the MLP": (x1 + mlp(ln1(x1)), LN2_HINT),
        "a block whose MLP reads ln2 of the block's input": (x1 + mlp(ln2(x)), SEQ_HINT),
        "the parallel block": (_hand_parallel(x, p), SEQ_HINT),
        "a block with non-causal attention": (_hand_block(x, p, causal=False), CAUSAL_HINT),
    }


def _parallel_mistakes(x, p):
    ln1, ln2, attn, mlp = _hand_pieces(p)
    x1 = x + attn(ln1(x))
    h = ln1(x)
    return {
        "the sequential block with ln1 for both sublayers": (x1 + mlp(ln1(x1)), PAR_SEQ_HINT),
        "the sequential (pre-norm) block": (x1 + mlp(ln2(x1)), PAR_SEQ_HINT),
        "a parallel block whose MLP reads ln2(x)": (x1 + mlp(ln2(x)), PAR_LN2_HINT),
        "a parallel block without the residual": (attn(h) + mlp(h), PAR_RESIDUAL_HINT),
        "a parallel block that normalises the residual stream": (h + attn(h) + mlp(h), STREAM_HINT),
        "a parallel block with non-causal attention": (_hand_parallel(x, p, causal=False), CAUSAL_HINT),
    }


def _block_call(fn, x, p, n_heads, what):
    out = attempt(lambda: fn(x, p, n_heads), what, KEYS_HINT)
    out = as_result_array(out, what)
    assert_shape(out, x.shape, what, "a block maps (..., T, D) to (..., T, D)")
    assert_finite(out, what, CAUSAL_HINT)
    return out


def _causality(fn, name):
    """Changing a later token must leave every earlier output unchanged (random weights)."""
    rng = rng_for(f"{name}_causality")
    d, t = 8, 5
    p = {"ln1_g": 1 + 0.2 * rng.standard_normal(d), "ln1_b": 0.2 * rng.standard_normal(d),
         "ln2_g": 1 + 0.2 * rng.standard_normal(d), "ln2_b": 0.2 * rng.standard_normal(d),
         "w_fc": rng.standard_normal((d, 4 * d)) / math.sqrt(d), "b_fc": 0.1 * rng.standard_normal(4 * d),
         "w_proj": rng.standard_normal((4 * d, d)) / math.sqrt(4 * d), "b_proj": 0.1 * rng.standard_normal(d)}
    for k in ("w_q", "w_k", "w_v", "w_o"):
        p[k] = rng.standard_normal((d, d)) / math.sqrt(d)
    x = rng.standard_normal((t, d))
    what = f"{name}(x (5x8), random weights, n_heads=2)"
    out = _block_call(fn, x, p, 2, what)
    for pos in (t - 1, 2):
        x2 = x.copy()
        x2[pos] += rng.standard_normal(d)
        out2 = _block_call(fn, x2, p, 2, what)
        ensure(np.allclose(out2[:pos], out[:pos], rtol=1e-10, atol=1e-12),
               f"{name}: changing token {pos} changed the outputs at earlier positions", CAUSAL_HINT)
        ensure(not np.allclose(out2[pos + 1:], out[pos + 1:]) if pos + 1 < t else True,
               f"{name}: changing token {pos} did not change any later output: is attention used?",
               "add the attention branch self_attention(ln1(x), ...) to the residual stream")


@test("transformer_block_visible", "transformer_block")
def transformer_block_visible(transformer_block):
    """A hand-checkable block (w_q = w_k = 0: attention is a running average), zero weights, causality."""
    x, p = _BLOCK_X, _hand_params()
    what = "transformer_block(x (3x4), hand-set weights with w_q = w_k = 0, n_heads=2)"
    out = _block_call(transformer_block, x, p, 2, what)
    name_the_slip(out, _block_mistakes(x, p), what)
    assert_values_close(out, _hand_block(x, p), what, RESIDUAL_HINT)

    what = "transformer_block with every weight zero (gammas 1, betas 0)"
    out = _block_call(transformer_block, x, _zero_params(), 2, what)
    if matches(out, np.zeros_like(x)):
        raise CheckFailure(f"{what}: returned zeros, expected x unchanged", RESIDUAL_HINT)
    if matches(out, _ln(x), rtol=1e-4, atol=1e-5):
        raise CheckFailure(f"{what}: returned LayerNorm(x), expected x unchanged", STREAM_HINT)
    assert_values_close(out, x, what + ": both branches give 0, so the block must return x", RESIDUAL_HINT)

    xb = np.stack([x, x[::-1] * 2.0])
    what = "transformer_block(x (2x3x4), hand-set weights, n_heads=2)"
    out = _block_call(transformer_block, xb, p, 2, what)
    assert_values_close(out, _hand_block(xb, p), what, "each sequence of the batch goes through the block on its own")
    _causality(transformer_block, "transformer_block")


@test("parallel_block_visible", "parallel_block")
def parallel_block_visible(parallel_block):
    """The hand-checkable case of the parallel block, zero weights, causality."""
    x, p = _BLOCK_X, _hand_params()
    what = "parallel_block(x (3x4), hand-set weights with w_q = w_k = 0, n_heads=2)"
    out = _block_call(parallel_block, x, p, 2, what)
    name_the_slip(out, _parallel_mistakes(x, p), what)
    assert_values_close(out, _hand_parallel(x, p), what, PAR_SEQ_HINT)

    what = "parallel_block with every weight zero (gammas 1, betas 0)"
    out = _block_call(parallel_block, x, _zero_params(), 2, what)
    if matches(out, np.zeros_like(x)):
        raise CheckFailure(f"{what}: returned zeros, expected x unchanged", PAR_RESIDUAL_HINT)
    assert_values_close(out, x, what + ": both branches give 0, so the block must return x", PAR_RESIDUAL_HINT)

    xb = np.stack([x, x[::-1] * 2.0])
    what = "parallel_block(x (2x3x4), hand-set weights, n_heads=2)"
    out = _block_call(parallel_block, xb, p, 2, what)
    assert_values_close(out, _hand_parallel(xb, p), what,
                        "each sequence of the batch goes through the block on its own")
    _causality(parallel_block, "parallel_block")


def _random_params(rng, d, dtype):
    p = {"ln1_g": 1 + 0.3 * rng.standard_normal(d), "ln1_b": 0.3 * rng.standard_normal(d),
         "ln2_g": 1 + 0.3 * rng.standard_normal(d), "ln2_b": 0.3 * rng.standard_normal(d),
         "w_fc": rng.standard_normal((d, 4 * d)) / math.sqrt(d), "b_fc": 0.1 * rng.standard_normal(4 * d),
         "w_proj": rng.standard_normal((4 * d, d)) / math.sqrt(4 * d), "b_proj": 0.1 * rng.standard_normal(d)}
    for k in ("w_q", "w_k", "w_v", "w_o"):
        p[k] = rng.standard_normal((d, d)) / math.sqrt(d)
    return {k: v.astype(dtype) for k, v in p.items()}


_F32 = {"rtol": 1e-4, "atol": 1e-5}


def _compare_blocks(fn, ref_fn, name, cases, hint):
    for x, p, n_heads in cases:
        dtype = x.dtype
        what = f"{name}(x {x.shape}, n_heads={n_heads}) [{dtype}]"
        out = _block_call(fn, x, p, n_heads, what)
        assert_values_close(out, ref_fn(x, p, n_heads), what, hint, **(_F32 if dtype == np.float32 else {}))


def _random_cases(grade_id):
    """Random weights and inputs: batch dims, 2 and 4 heads, float64 and float32."""
    rng = rng_for(grade_id)
    cases = []
    for dtype in (np.float64, np.float32):
        for shape, heads in [((6, 8), 2), ((2, 5, 8), 4), ((3, 7, 16), 2)]:
            cases.append((rng.standard_normal(shape).astype(dtype), _random_params(rng, shape[-1], dtype), heads))
    return cases


def _edge_cases(grade_id):
    """One token, one head, one feature per head, a large residual stream."""
    rng = rng_for(grade_id)
    return [(rng.standard_normal((1, 8)), _random_params(rng, 8, np.float64), 2),
            (rng.standard_normal((4, 8)), _random_params(rng, 8, np.float64), 1),
            (rng.standard_normal((2, 4, 8)), _random_params(rng, 8, np.float64), 8),
            (100 * rng.standard_normal((5, 8)), _random_params(rng, 8, np.float64), 2)]


@test("transformer_block_random", "transformer_block", hidden=True)
def transformer_block_random(transformer_block, ref):
    """Random weights and inputs, batch dims, 2 and 4 heads, float64 and float32."""
    _compare_blocks(transformer_block, ref.transformer_block, "transformer_block",
                    _random_cases("transformer_block_random"), SEQ_HINT)


@test("transformer_block_edge", "transformer_block", hidden=True)
def transformer_block_edge(transformer_block, ref):
    """One token, one head, one feature per head, a large residual stream."""
    _compare_blocks(transformer_block, ref.transformer_block, "transformer_block",
                    _edge_cases("transformer_block_edge"), STREAM_HINT)


@test("parallel_block_random", "parallel_block", hidden=True)
def parallel_block_random(parallel_block, ref):
    """Random weights and inputs, batch dims, 2 and 4 heads, float64 and float32."""
    _compare_blocks(parallel_block, ref.parallel_block, "parallel_block",
                    _random_cases("parallel_block_random"), PAR_SEQ_HINT)


@test("parallel_block_edge", "parallel_block", hidden=True)
def parallel_block_edge(parallel_block, ref):
    """One token, one head, one feature per head, a large residual stream."""
    _compare_blocks(parallel_block, ref.parallel_block, "parallel_block",
                    _edge_cases("parallel_block_edge"), PAR_LN2_HINT)

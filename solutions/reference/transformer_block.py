"""Chapter 4 reference: LayerNorm, GELU, the MLP and the (pre-norm and parallel) block.

A block's parameters are a dict with keys
    ln1_g, ln1_b (D,)       w_q, w_k, w_v, w_o (D, D)
    ln2_g, ln2_b (D,)       w_fc (D, 4D), b_fc (4D,), w_proj (4D, D), b_proj (D,)
"""
import math

import numpy as np

from solutions.reference.self_attention import causal_mask, merge_heads, self_attention, softmax, split_heads


def layer_norm(x, gamma, beta, eps=1e-5):
    """LayerNorm over the last axis: (x - mean) / sqrt(var + eps) * gamma + beta.

    x: (..., D); gamma, beta: (D,). Each row (each token's D features) is handled on
    its own: subtract the row's mean (centering), divide by the row's standard
    deviation sqrt(var + eps) (scaling), then multiply by gamma and add beta.
    The variance is the biased one (divide by D, np.var's default), and eps goes
    inside the sqrt. Returns an array of x's shape.
    """
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def gelu(x):
    """GELU, tanh approximation (as in GPT-2), elementwise:
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

    Not the exact form 0.5 x (1 + erf(x / sqrt(2))): the two differ by up to ~5e-4.
    Returns an array of x's shape.
    """
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def mlp(x, w_fc, b_fc, w_proj, b_proj):
    """The position-wise MLP: gelu(x @ w_fc + b_fc) @ w_proj + b_proj.

    x: (..., D); w_fc: (D, H); b_fc: (H,); w_proj: (H, D); b_proj: (D,), usually H = 4D.
    GELU acts on the wide hidden layer, not on the output. Returns (..., D).
    """
    return gelu(x @ w_fc + b_fc) @ w_proj + b_proj


def transformer_block(x, params, n_heads):
    """A pre-norm block: x + attn(ln1(x)), then + mlp(ln2(.)). Causal attention.

    x: (..., T, D); params: the dict described in this module's docstring.
    The residual stream x is never normalised itself: each sublayer reads a
    LayerNorm of it (ln1 for attention, ln2 for the MLP) and adds its output back:
        x = x + self_attention(ln1(x), w_q, w_k, w_v, w_o, n_heads, causal=True)
        x = x + mlp(ln2(x), w_fc, b_fc, w_proj, b_proj)
    Returns (..., T, D).
    """
    p = params
    h = layer_norm(x, p["ln1_g"], p["ln1_b"])
    x = x + self_attention(h, p["w_q"], p["w_k"], p["w_v"], p["w_o"], n_heads, causal=True)
    h = layer_norm(x, p["ln2_g"], p["ln2_b"])
    return x + mlp(h, p["w_fc"], p["b_fc"], p["w_proj"], p["b_proj"])


def parallel_block(x, params, n_heads):
    """The parallel (GPT-J / PaLM) block: one LayerNorm (ln1) feeds both branches,
    x + attn(ln1(x)) + mlp(ln1(x)). ln2 is unused.

    x: (..., T, D); params: the same dict as transformer_block's. Both branches read
    the same normalised input h = ln1(x) of the block's input (the MLP does not see
    the attention's output), and both outputs are added to x. Returns (..., T, D).
    """
    p = params
    h = layer_norm(x, p["ln1_g"], p["ln1_b"])
    attn = self_attention(h, p["w_q"], p["w_k"], p["w_v"], p["w_o"], n_heads, causal=True)
    return x + attn + mlp(h, p["w_fc"], p["b_fc"], p["w_proj"], p["b_proj"])

"""Chapter 5's GPT as plain NumPy formulas: the checks' own copy of the model.

The checks of chapters 5 (GPT in NumPy), 15 (KV cache), 16 (GPU GPT) and 19 (programming
by hand) run the course's model to know the right answer, without the answer key: visible
tests must work where solutions/ is absent. They all import it from here, so they check
against one model; tests/test_catalogue.py (the reference passes every check) and
tests/test_programming_by_hand.py (the checks' machine is the reference's) prove it is the
reference's model.

Not a chapter: it defines no `chapter`, so the registry passes over it.
"""
import math

import numpy as np


def random_gpt(rng, v, d, block_size, n_layers, dtype=np.float64, spread=0.2, wpe_scale=0.7):
    """A small random GPT in chapter 5's layout; weights large enough that every slip shows.
    LayerNorm gains are 1 + N(0, spread^2), LayerNorm and MLP biases N(0, spread^2)."""
    def n(*shape, s=1.0):
        return (rng.standard_normal(shape) * s).astype(dtype)
    blocks = [{"ln1_g": 1 + n(d, s=spread), "ln1_b": n(d, s=spread), "w_q": n(d, d, s=d ** -0.5),
               "w_k": n(d, d, s=d ** -0.5), "w_v": n(d, d, s=d ** -0.5), "w_o": n(d, d, s=d ** -0.5),
               "ln2_g": 1 + n(d, s=spread), "ln2_b": n(d, s=spread), "w_fc": n(d, 4 * d, s=d ** -0.5),
               "b_fc": n(4 * d, s=spread), "w_proj": n(4 * d, d, s=(4 * d) ** -0.5), "b_proj": n(d, s=spread)}
              for _ in range(n_layers)]
    return {"wte": n(v, d), "wpe": n(block_size, d, s=wpe_scale), "lnf_g": 1 + n(d, s=spread),
            "lnf_b": n(d, s=spread), "blocks": blocks}


def layer_norm(x, g, b, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    var = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(var + eps) * g + b


def softmax(s):
    """Over the last axis, stable. A row masked everywhere gives NaN, quietly: checks reproduce
    slips that do that."""
    with np.errstate(all="ignore"):
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


def split_heads(x, n_heads):
    """(..., T, D) -> (..., H, T, D/H)."""
    *lead, t, d = x.shape
    return np.swapaxes(x.reshape(*lead, t, n_heads, d // n_heads), -2, -3)


def merge_heads(x):
    """(..., H, T, D/H) -> (..., T, D)."""
    *lead, h, t, dh = x.shape
    return np.swapaxes(x, -2, -3).reshape(*lead, t, h * dh)


def causal_attention(h, w_q, w_k, w_v, w_o, n_heads):
    """Chapter 3's causal multi-head self-attention of h (..., T, D), scaled by 1/sqrt(d_head)."""
    t = h.shape[-2]
    q, k, v = split_heads(h @ w_q, n_heads), split_heads(h @ w_k, n_heads), split_heads(h @ w_v, n_heads)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    s = np.where(np.tril(np.ones((t, t), dtype=bool)), s, -np.inf)
    return merge_heads(softmax(s) @ v) @ w_o


def add_mlp(x, block):
    """The second half of a pre-norm block: x + mlp(ln2(x)), with the tanh GELU."""
    f = layer_norm(x, block["ln2_g"], block["ln2_b"]) @ block["w_fc"] + block["b_fc"]
    f = 0.5 * f * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (f + 0.044715 * f ** 3)))
    return x + f @ block["w_proj"] + block["b_proj"]


def recompute(ids, params, n_heads, kv_source=None):
    """The forward pass over the whole sequence, from scratch: (logits (..., T, V), k, v
    (L, ..., H, T, d_head)), the keys and values each block's attention used: what a KV cache
    must hold.

    kv_source(x, y, block), if given, is what the returned k and v are projected from instead
    of ln1(x) (x: the block's input, y: its output): to reproduce a slip and name it."""
    ids = np.asarray(ids)
    x = params["wte"][ids] + params["wpe"][:ids.shape[-1]]
    ks, vs = [], []
    for p in params["blocks"]:
        a = layer_norm(x, p["ln1_g"], p["ln1_b"])
        y = add_mlp(x + causal_attention(a, p["w_q"], p["w_k"], p["w_v"], p["w_o"], n_heads), p)
        src = a if kv_source is None else kv_source(x, y, p)
        ks.append(split_heads(src @ p["w_k"], n_heads))
        vs.append(split_heads(src @ p["w_v"], n_heads))
        x = y
    logits = layer_norm(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T
    return logits, np.stack(ks), np.stack(vs)

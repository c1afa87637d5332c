"""Chapter 3 reference: self-attention that learns (projections, heads, causal mask, positions)."""
import math

import numpy as np

from solutions.reference.toy_attention import softmax


def causal_mask(n):
    """Boolean (n, n) mask for causal self-attention.

    Entry [i, j] is True when query position i may attend to key position j,
    that is when j <= i (a token sees itself and the past, never the future).
    Example: causal_mask(3) is [[True, False, False],
                                [True, True,  False],
                                [True, True,  True ]].
    """
    return np.tril(np.ones((n, n), dtype=bool))


def split_heads(x, n_heads):
    """Split the last axis into heads: (..., T, D) -> (..., n_heads, T, D // n_heads).

    Head h gets the contiguous slice of features [h * D/H, (h + 1) * D/H) of
    every position, so out[..., h, t, :] == x[..., t, h * D/H:(h + 1) * D/H].
    Any leading batch axes are kept. Raises ValueError if D is not divisible
    by n_heads.
    """
    *lead, t, d = x.shape
    if d % n_heads:
        raise ValueError(f"model width {d} is not divisible by {n_heads} heads")
    return np.swapaxes(x.reshape(*lead, t, n_heads, d // n_heads), -2, -3)


def merge_heads(x):
    """Inverse of split_heads: (..., n_heads, T, d_head) -> (..., T, n_heads * d_head).

    Row t of the result holds head 0's features of position t, then head 1's,
    and so on: merge_heads(split_heads(x, h)) == x.
    """
    *lead, h, t, dh = x.shape
    return np.swapaxes(x, -2, -3).reshape(*lead, t, h * dh)


def self_attention(x, w_q, w_k, w_v, w_o, n_heads, causal=True):
    """Multi-head self-attention with output projection.

    x: (..., T, D); w_q, w_k, w_v, w_o: (D, D), applied as x @ w.
    Project x to queries, keys and values, split each into n_heads heads,
    let each head attend with scale 1/sqrt(d_head), d_head = D / n_heads;
    with causal=True a position never attends to later positions (mask the
    scores before the softmax). Merge the heads and apply w_o.
    Returns (..., T, D). Use split_heads, merge_heads, causal_mask and softmax.
    """
    q = split_heads(x @ w_q, n_heads)
    k = split_heads(x @ w_k, n_heads)
    v = split_heads(x @ w_v, n_heads)
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        scores = np.where(causal_mask(x.shape[-2]), scores, -np.inf)
    return merge_heads(softmax(scores, axis=-1) @ v) @ w_o


def sinusoidal_positions(n, d):
    """Sinusoidal position encodings, shape (n, d), d even.

    Row p (position p = 0, 1, ..., n - 1), columns 2i and 2i + 1 hold
    sin and cos of p / 10000**(2i / d), for i = 0, 1, ..., d/2 - 1.
    Returns a float64 array (compute in float64). Raises ValueError if d is odd.
    """
    if d % 2:
        raise ValueError("d must be even")
    pos = np.arange(n)[:, None]
    freq = 10000.0 ** (-np.arange(0, d, 2) / d)
    out = np.zeros((n, d))
    out[:, 0::2] = np.sin(pos * freq)
    out[:, 1::2] = np.cos(pos * freq)
    return out

"""Chapter 10 reference: the modern pieces of a Llama-style block.

RoPE (rotary position embeddings), RMSNorm, the SwiGLU MLP and grouped-query attention.
Shapes follow the earlier chapters: features on the last axis, time on the one before,
heads before time, any leading batch axes kept.

Convention for RoPE, used everywhere in this course: the head's features are rotated in
**interleaved pairs** (2i, 2i + 1), i = 0, ..., head_dim/2 - 1, as in the RoPE paper (Su et
al., 2021). (GPT-NeoX and many Hugging Face models pair feature i with i + head_dim/2
instead, "rotate half"; the two are the same idea with the features permuted, and a
checkpoint only works with the convention it was trained with.)
"""
import math

import numpy as np

from solutions.reference.toy_attention import softmax  # noqa: F401  (given to students)
from solutions.reference.self_attention import causal_mask  # noqa: F401  (given to students)


def rope_angles(n_positions, head_dim, base=10000.0):
    """The rotation angles of RoPE, shape (n_positions, head_dim // 2).

    Pair i of the head's features (features 2i and 2i + 1, interleaved pairs) turns at the
    frequency theta_i = base ** (-2i / head_dim), i = 0, 1, ..., head_dim/2 - 1, so the
    first pair turns fastest (theta_0 = 1 radian per position) and the last slowest.
    At position p (p = 0, 1, ..., n_positions - 1) pair i is rotated by the angle
        angles[p, i] = p * theta_i.
    Returns a float64 array (compute in float64). Raises ValueError if head_dim is odd.
    """
    if head_dim % 2:
        raise ValueError(f"head_dim must be even, got {head_dim}")
    theta = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    return np.arange(n_positions, dtype=np.float64)[:, None] * theta


def apply_rope(x, angles):
    """Rotate each interleaved pair of features (2i, 2i + 1) of x by its angle.

    x: (..., T, head_dim), queries or keys of one or more heads; angles: (T, head_dim // 2),
    angles[t, i] is the angle of pair i at position t (as rope_angles returns it).
    Each pair (a, b) = (x[..., t, 2i], x[..., t, 2i + 1]) is rotated counter-clockwise by
    phi = angles[t, i]:
        out[..., t, 2i]     = a cos(phi) - b sin(phi)
        out[..., t, 2i + 1] = a sin(phi) + b cos(phi)
    Returns a new array of x's shape and dtype; x is not modified.
    """
    cos = np.cos(angles).astype(x.dtype)
    sin = np.sin(angles).astype(x.dtype)
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out


def rms_norm(x, gain, eps=1e-6):
    """RMSNorm over the last axis: x / sqrt(mean(x**2) + eps) * gain.

    x: (..., D); gain: (D,). Each row (one token's D features) is divided by its root mean
    square, sqrt(mean of the squared features + eps), with eps inside the square root,
    then multiplied by gain. No mean is subtracted (that is LayerNorm) and there is no bias.
    Returns an array of x's shape.
    """
    ms = np.mean(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(ms + eps) * gain


def swiglu(x, w_gate, w_up, w_down):
    """The SwiGLU MLP: (silu(x @ w_gate) * (x @ w_up)) @ w_down.

    x: (..., D); w_gate, w_up: (D, H); w_down: (H, D). silu(z) = z * sigmoid(z)
    = z / (1 + exp(-z)), elementwise. The gate branch x @ w_gate goes through silu; the
    up branch x @ w_up stays linear; their elementwise product (H wide) is projected back
    to D by w_down. No biases. Returns (..., D).
    """
    gate = x @ w_gate
    up = x @ w_up
    # sigmoid(z) = (1 + tanh(z / 2)) / 2 is the same function as 1 / (1 + exp(-z)), but never
    # overflows (exp(-z) does for z < -709 in float64, z < -88 in float32).
    silu = gate * 0.5 * (1.0 + np.tanh(0.5 * gate))
    return (silu * up) @ w_down


def grouped_query_attention(q, k, v, causal=True):
    """Grouped-query attention: several query heads share one key/value head.

    q: (..., n_heads, T, d); k, v: (..., n_kv_heads, T, d), n_heads a multiple of n_kv_heads.
    With g = n_heads // n_kv_heads, the g *consecutive* query heads h = j*g, ..., j*g + g - 1
    all use key/value head j (query head h uses key/value head h // g). Each query head
    attends as in chapter 3: scores = q_h @ k_j^T / sqrt(d), with causal=True position t
    sees only positions <= t (mask the scores with -inf before the softmax), then the
    softmax over the keys and the weighted sum of v_j.
    n_kv_heads == n_heads is ordinary multi-head attention; n_kv_heads == 1 is multi-query
    attention. Returns (..., n_heads, T, d). Raises ValueError if n_heads is not a multiple
    of n_kv_heads.
    """
    n_heads, n_kv = q.shape[-3], k.shape[-3]
    if n_heads % n_kv:
        raise ValueError(f"{n_heads} query heads cannot be grouped over {n_kv} key/value heads")
    g = n_heads // n_kv
    k = np.repeat(k, g, axis=-3)   # (..., n_heads, T, d): KV head j serves query heads j*g ... j*g+g-1
    v = np.repeat(v, g, axis=-3)
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        scores = np.where(causal_mask(q.shape[-2]), scores, -np.inf)
    return softmax(scores, axis=-1) @ v

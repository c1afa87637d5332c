"""Chapter 2 reference: scaled dot-product attention on a toy example."""
import math

import numpy as np


def softmax(x, axis=-1):
    """Numerically stable softmax along `axis` (given: you wrote it in chapter 1)."""
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def attention_scores(q, k):
    """Scaled attention scores q k^T / sqrt(d_k).

    q: array (..., n_q, d_k); k: array (..., n_k, d_k); leading dims broadcast.
    Returns an array (..., n_q, n_k).
    """
    d_k = q.shape[-1]
    return q @ np.swapaxes(k, -1, -2) / math.sqrt(d_k)


def attention_weights(q, k, mask=None):
    """Attention weights: the softmax of the scaled scores over the keys.

    q: (..., n_q, d_k); k: (..., n_k, d_k).
    mask: optional boolean array broadcastable to (..., n_q, n_k); True means
    "may attend", False means "must get exactly zero weight". Every query must be
    allowed at least one key.
    Returns an array (..., n_q, n_k) whose rows sum to one.
    """
    scores = attention_scores(q, k)
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    return softmax(scores, axis=-1)


def scaled_dot_product_attention(q, k, v, mask=None):
    """Scaled dot-product attention.

    q: (..., n_q, d_k); k: (..., n_k, d_k); v: (..., n_k, d_v); mask as in
    `attention_weights`.
    Returns (output, weights): output (..., n_q, d_v), weights (..., n_q, n_k).
    """
    weights = attention_weights(q, k, mask)
    return weights @ v, weights


def attention_entropy(weights, axis=-1):
    """Entropy in nats of each attention distribution along `axis`.

    weights: non-negative array whose slices along `axis` sum to one; zeros are
    allowed and contribute nothing (0 log 0 = 0).
    Returns an array with `axis` removed: 0 for a one-hot row, log(n) for a
    uniform row of length n.
    """
    w = np.asarray(weights)
    safe = np.where(w > 0, w, 1)
    return -np.sum(np.where(w > 0, w * np.log(safe), 0), axis=axis)

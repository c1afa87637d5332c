"""Chapter 13 reference: FlashAttention I, the online softmax and tiled attention in NumPy."""
import math

import numpy as np


def naive_attention(q, k, v, causal=False):
    """Attention the direct way, forming the whole (n_q, n_k) weight matrix (given).

    q: (..., n_q, d); k: (..., n_k, d); v: (..., n_k, d_v). With causal=True
    query i attends to keys j <= i only. Returns the output (..., n_q, d_v).
    """
    logits = np.matmul(q, np.swapaxes(k, -2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        n_q, n_k = logits.shape[-2:]
        logits = np.where(np.tri(n_q, n_k, dtype=bool), logits, -np.inf)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return np.matmul(weights, v)


def attention_logsumexp(q, k, causal=False):
    """The log-sum-exp of each query's scaled scores, computed directly.

    q: (..., n_q, d); k: (..., n_k, d). The scores are s = q k^T / sqrt(d); with
    causal=True query i only sees keys j <= i (the others count as -inf).
    Returns (..., n_q): log(sum_j exp(s_ij)) for each query i, computed stably
    as m_i + log(sum_j exp(s_ij - m_i)) with m_i the row maximum, so that huge
    scores do not overflow.
    """
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        n = s.shape[-1]
        s = np.where(np.tril(np.ones((s.shape[-2], n), dtype=bool)), s, -np.inf)
    m = s.max(axis=-1)
    return m + np.log(np.exp(s - m[..., None]).sum(axis=-1))


def online_softmax_update(m, l, acc, scores, values):
    """One step of the online softmax: fold a new block of keys into the running state.

    m: (..., n_q) running maximum of the scores seen so far (-inf at the start);
    l: (..., n_q) running sum of exp(score - m) over the keys seen so far (0 at the start);
    acc: (..., n_q, d_v) running unnormalised output, sum of exp(score - m) * value (0 at the start);
    scores: (..., n_q, b) the scores of the new block of b keys (-inf for a masked key);
    values: (..., b, d_v) the values of those keys.
    The new maximum is m_new = max(m, max of the block's scores); the old l and acc
    are rescaled by exp(m - m_new) before the block's exp(scores - m_new) are added.
    A row that has seen only -inf so far keeps m = -inf, l = 0, acc = 0 and must
    not produce NaN: subtract a safe maximum (0 where m_new is -inf).
    Returns the new (m, l, acc).
    """
    m_new = np.maximum(m, scores.max(axis=-1))
    m_safe = np.where(np.isneginf(m_new), 0.0, m_new).astype(m_new.dtype)
    alpha = np.exp(m - m_safe)
    p = np.exp(scores - m_safe[..., None])
    l_new = alpha * l + p.sum(axis=-1)
    acc_new = alpha[..., None] * acc + p @ values
    return m_new, l_new, acc_new


def online_softmax(x, block_size):
    """Softmax of each row of x (..., n), computed block by block.

    First pass: go over the columns in blocks of block_size (the last block may
    be shorter) and keep only the running maximum m and the running sum
    l = sum exp(x - m) of each row, rescaling l by exp(m_old - m_new) whenever the
    maximum grows. Second pass: out = exp(x - m) / l with the final m and l.
    Entries equal to -inf get probability 0 (a block may be entirely -inf).
    Returns an array shaped like x that equals the ordinary softmax over the last axis.
    """
    n = x.shape[-1]
    m = np.full(x.shape[:-1], -np.inf, dtype=x.dtype)
    l = np.zeros(x.shape[:-1], dtype=x.dtype)
    for start in range(0, n, block_size):
        block = x[..., start:start + block_size]
        m_new = np.maximum(m, block.max(axis=-1))
        m_safe = np.where(np.isneginf(m_new), 0.0, m_new).astype(x.dtype)
        l = l * np.exp(m - m_safe) + np.exp(block - m_safe[..., None]).sum(axis=-1)
        m = m_new
    return np.exp(x - m[..., None]) / l[..., None]


def tiled_attention(q, k, v, block_size=64, causal=False):
    """Attention over blocks of keys with the online softmax: O(n) extra memory.

    q: (..., n_q, d); k: (..., n_k, d); v: (..., n_k, d_v); scale 1/sqrt(d).
    Start from m = -inf, l = 0, acc = 0 and, for each block of block_size keys
    (the last block may be shorter), compute that block's scores (..., n_q, b),
    mask them with -inf where key j > query i if causal=True (then n_q == n_k),
    and fold them in with online_softmax_update. Never form the (n_q, n_k)
    matrix. Divide by l once, after the last block.
    Returns (output, logsumexp): output (..., n_q, d_v) equal to softmax(s) v,
    and logsumexp (..., n_q) = m + log(l), the log of each query's softmax
    denominator (FlashAttention keeps it for the backward pass).
    """
    n_q, d = q.shape[-2:]
    n_k = k.shape[-2]
    lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    dtype = np.result_type(q, k, v)
    m = np.full(lead + (n_q,), -np.inf, dtype=dtype)
    l = np.zeros(lead + (n_q,), dtype=dtype)
    acc = np.zeros(lead + (n_q, v.shape[-1]), dtype=dtype)
    scale = 1.0 / math.sqrt(d)
    rows = np.arange(n_q)[:, None]
    for start in range(0, n_k, block_size):
        stop = min(start + block_size, n_k)
        scores = (q @ np.swapaxes(k[..., start:stop, :], -1, -2)) * scale
        if causal:
            scores = np.where(rows >= np.arange(start, stop)[None, :], scores, -np.inf)
        m, l, acc = online_softmax_update(m, l, acc, scores, v[..., start:stop, :])
    return acc / l[..., None], m + np.log(l)

"""Chapter 1 reference: tokens, vectors and similarity."""
import numpy as np


def embed(token_ids, table):
    """Look up the embedding vector of every token id.

    token_ids: integer array of any shape (...,), each id in [0, vocab_size).
    table: array of shape (vocab_size, d), one row per token.
    Returns an array of shape (..., d) with the table's dtype.
    Raises IndexError if an id is negative or >= vocab_size.
    """
    ids = np.asarray(token_ids)
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise IndexError(f"token ids must lie in [0, {table.shape[0]})")
    return table[ids]


def similarity_matrix(a, b):
    """Dot product of every row of `a` with every row of `b`.

    a: array (n, d); b: array (m, d).
    Returns an array (n, m) whose entry [i, j] is a[i] . b[j].
    """
    return a @ b.T


def cosine_similarity(a, b, eps=1e-12):
    """Cosine of the angle between every row of `a` and every row of `b`.

    a: array (n, d); b: array (m, d).
    Returns an array (n, m) with entries in [-1, 1]. A zero row gives 0, not NaN
    (norms are clamped below by `eps`).
    """
    a_norm = np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), eps)
    b_norm = np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), eps)
    return (a / a_norm) @ (b / b_norm).T


def softmax(x, temperature=1.0, axis=-1):
    """Numerically stable softmax of `x / temperature` along `axis`.

    x: array of any shape, float32 or float64 (the result keeps its dtype).
    temperature: a positive number; below 1 sharpens, above 1 flattens.
    axis: the axis that sums to one.
    Must not overflow for large logits (e.g. 1000.0).
    """
    z = np.asarray(x) / np.asarray(temperature, dtype=np.asarray(x).dtype)
    z = z - np.max(z, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)

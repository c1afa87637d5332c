"""Chapter 7 reference: backpropagation by hand.

Every layer of a transformer is a function y = f(x, params). Its *backward* function
receives dy, the gradient of a scalar loss L with respect to the layer's output
(same shape as y), and returns the gradients of L with respect to the layer's inputs
and parameters (each with the shape of what it is the gradient of).

Conventions (as in chapters 2 to 4): the last axis holds features, any leading axes
are batch axes (sequences, positions), weights are applied as x @ w. A parameter is
shared by every position, so its gradient is a *sum* over all the leading axes.
The forward functions are given; `layer_norm`, `gelu`, `softmax` and `causal_mask` are
the ones of chapters 2 to 4.
"""
import math

import numpy as np

from solutions.reference.toy_attention import softmax
from solutions.reference.self_attention import causal_mask
from solutions.reference.transformer_block import layer_norm, gelu


# ------------------------------------------------------------------ given: forwards and a checker

def linear(x, w, b):
    """A linear layer: y = x @ w + b. x: (..., D_in); w: (D_in, D_out); b: (D_out,)."""
    return x @ w + b


def cross_entropy(logits, targets):
    """Mean cross-entropy of integer targets under softmax(logits).

    logits: (..., V); targets: integer array (...) of class ids in [0, V).
    Returns a float: the average, over every position, of -log softmax(logits)[target].
    """
    z = logits - logits.max(axis=-1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-np.take_along_axis(log_probs, targets[..., None], axis=-1).mean())


def attention_head(x, w_q, w_k, w_v):
    """One causal attention head: x (..., T, D) -> (..., T, d_v).

    q = x @ w_q, k = x @ w_k, v = x @ w_v with w_q, w_k: (D, d_k) and w_v: (D, d_v);
    scores q k^T / sqrt(d_k), masked so that position i sees only positions j <= i,
    a softmax over the keys, then the weighted sum of the values.
    """
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(w_q.shape[-1])
    scores = np.where(causal_mask(x.shape[-2]), scores, -np.inf)
    return softmax(scores, axis=-1) @ v


def numerical_gradient(f, x, eps=1e-6):
    """Central finite differences: the gradient of the scalar function f at x.

    Entry i is (f(x + eps e_i) - f(x - eps e_i)) / (2 eps), computed in float64,
    one entry at a time (2 calls of f per entry: use it on small arrays only).
    Returns a float64 array of x's shape.
    """
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


# ------------------------------------------------------------------ graded: the backward functions

def linear_backward(dy, x, w):
    """Backward of the linear layer y = x @ w + b.

    dy: (..., D_out), the gradient of the loss with respect to y; x: (..., D_in), the
    layer's input; w: (D_in, D_out). Any number of leading (batch) axes, also none.
    Returns the tuple (dx, dw, db):
      dx (..., D_in) = dy @ w^T, one row per input row;
      dw (D_in, D_out) = x^T @ dy, summed over every leading axis (w is shared by all rows);
      db (D_out,) = dy summed over every leading axis.
    """
    d_in, d_out = w.shape
    dx = dy @ w.T
    # Flatten the leading axes: one row per position, so that a single matrix product
    # sums the contributions of all positions.
    x_rows = x.reshape(-1, d_in)
    dy_rows = dy.reshape(-1, d_out)
    return dx, x_rows.T @ dy_rows, dy_rows.sum(axis=0)


def softmax_backward(dp, p):
    """Backward of p = softmax(z) over the last axis.

    dp: (..., V), the gradient of the loss with respect to p; p: (..., V), the softmax's
    output (saved by the forward pass). Returns dz (..., V), the gradient with respect to
    the logits z. Through the full Jacobian, dp/dz_j = p_i (delta_ij - p_j):
        dz = p * (dp - sum(dp * p))      (the sum over the last axis, one per row).
    Entries with p = 0 (masked logits) get gradient 0.
    """
    row_dot = np.sum(dp * p, axis=-1, keepdims=True)
    return p * (dp - row_dot)


def cross_entropy_backward(logits, targets):
    """Gradient of the mean cross-entropy (`cross_entropy`) with respect to the logits.

    logits: (..., V); targets: integer array (...) of class ids. The loss averages over
    all N = targets.size positions, so the gradient is
        dlogits = (softmax(logits) - onehot(targets)) / N
    (softmax and log fused: the gradient never goes through a log). Compute the softmax
    stably (subtract the row maximum; the given `softmax` does). Returns (..., V).
    """
    probs = softmax(logits, axis=-1)
    onehot = np.arange(logits.shape[-1]) == targets[..., None]
    return (probs - onehot) / targets.size


def gelu_backward(dy, x):
    """Backward of the tanh-approximation GELU of chapter 4, elementwise.

    gelu(x) = 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3).
    dy, x: arrays of the same shape. Returns dx = dy * gelu'(x), where by the product
    rule and the chain rule
        gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) du/dx,
        du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    """
    c = math.sqrt(2.0 / math.pi)
    th = np.tanh(c * (x + 0.044715 * x ** 3))
    du = c * (1.0 + 3 * 0.044715 * x ** 2)
    return dy * (0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du)


def layer_norm_backward(dy, x, gamma, eps=1e-5):
    """Backward of y = layer_norm(x, gamma, beta, eps) over the last axis.

    dy, x: (..., D); gamma: (D,). Write xhat = (x - mean) / sqrt(var + eps) for the
    normalised rows (biased variance, eps inside the sqrt, as in chapter 4).
    Returns the tuple (dx, dgamma, dbeta):
      dx (..., D): every entry of a row moves that row's mean and variance, so
          with g = dy * gamma:  dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)
          (means over the last axis);
      dgamma (D,) = dy * xhat and dbeta (D,) = dy, each summed over every leading axis.
    """
    d = x.shape[-1]
    centred = x - x.mean(axis=-1, keepdims=True)
    inv_std = 1.0 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + eps)
    xhat = centred * inv_std
    g = dy * gamma  # the gradient with respect to xhat
    dx = inv_std * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    dgamma = (dy * xhat).reshape(-1, d).sum(axis=0)
    dbeta = dy.reshape(-1, d).sum(axis=0)
    return dx, dgamma, dbeta


def attention_head_backward(dout, x, w_q, w_k, w_v):
    """Backward of one causal attention head (`attention_head`, given).

    dout: (..., T, d_v), the gradient with respect to the head's output; x: (..., T, D);
    w_q, w_k: (D, d_k); w_v: (D, d_v). Recompute the forward pass (q, k, v, the scaled
    and masked scores, the probabilities p), then go back through it step by step:
    out = p @ v, p = softmax(scores) (use your softmax_backward), the causal mask (masked
    scores get no gradient), the 1/sqrt(d_k) scale, scores = q @ k^T, and the three
    projections of x.
    Returns the tuple (dx, dw_q, dw_k, dw_v): dx (..., T, D); dw_q, dw_k (D, d_k) and
    dw_v (D, d_v), each summed over every leading axis.
    """
    scale = 1.0 / math.sqrt(w_q.shape[-1])
    q = x @ w_q
    k = x @ w_k
    v = x @ w_v
    s = np.where(causal_mask(x.shape[-2]), (q @ np.swapaxes(k, -1, -2)) * scale, -np.inf)
    p = softmax(s, axis=-1)
    # out = p @ v
    dp = dout @ np.swapaxes(v, -1, -2)
    dv = np.swapaxes(p, -1, -2) @ dout
    # Through the softmax, then the scale; masked entries have p = 0, hence gradient 0.
    ds = softmax_backward(dp, p) * scale
    # s = q @ k^T: query i meets key j in s[i, j]
    dq = ds @ k
    dk = np.swapaxes(ds, -1, -2) @ q
    # x feeds all three projections: its gradient is the sum of the three paths.
    dx = dq @ w_q.T + dk @ w_k.T + dv @ w_v.T
    d = x.shape[-1]
    x_rows = x.reshape(-1, d).T
    dw_q = x_rows @ dq.reshape(-1, dq.shape[-1])
    dw_k = x_rows @ dk.reshape(-1, dk.shape[-1])
    dw_v = x_rows @ dv.reshape(-1, dv.shape[-1])
    return dx, dw_q, dw_k, dw_v

"""Wrong and alternative implementations for chapter 7 (07-backprop)."""
from . import Wrong

# A recomputed forward pass for the attention sources, under private names so that a source
# pasted into a notebook (the sample submissions) does not replace the student's own functions.
_HEAD = '''
import math
import numpy as np
def _bp_softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
def _bp_head_forward(x, w_q, w_k, w_v, causal=True):
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(w_q.shape[-1])
    if causal:
        t = x.shape[-2]
        s = np.where(np.tril(np.ones((t, t), dtype=bool)), s, -np.inf)
    return q, k, v, _bp_softmax(s)
def _bp_rows(a, b):
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])
'''


def _head(body: str) -> str:
    """attention_head_backward with the given body (after the recomputed forward)."""
    return _HEAD + '''
def attention_head_backward(dout, x, w_q, w_k, w_v):
''' + body


_CORRECT_HEAD_TAIL = '''
    dp = dout @ np.swapaxes(v, -1, -2)
    dv = np.swapaxes(p, -1, -2) @ dout
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) / math.sqrt(w_q.shape[-1])
    dq = ds @ k
    dk = np.swapaxes(ds, -1, -2) @ q
    dx = dq @ w_q.T + dk @ w_k.T + dv @ w_v.T
    return dx, _bp_rows(x, dq), _bp_rows(x, dk), _bp_rows(x, dv)
'''

_SOFTMAX = '''
import numpy as np
def _bp_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
'''

_GELU_START = '''
import math
import numpy as np
def gelu_backward(dy, x):
    c = math.sqrt(2 / math.pi)
    t = np.tanh(c * (x + 0.044715 * x ** 3))
'''

_LN_START = '''
import numpy as np
def layer_norm_backward(dy, x, gamma, eps=1e-5):
    d = x.shape[-1]
    xc = x - x.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt((xc ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat = xc * rstd
    g = dy * gamma
'''
_LN_PARAMS = '''
    dgamma = (dy * xhat).reshape(-1, d).sum(axis=0)
    dbeta = dy.reshape(-1, d).sum(axis=0)
'''

WRONG = [
    # ---------------------------------------------------------------- linear_backward
    Wrong("linear_backward", "dw_forgot_transpose", "not dy.T @ x", '''
import numpy as np
def linear_backward(dy, x, w):
    x2 = x.reshape(-1, x.shape[-1])
    dy2 = dy.reshape(-1, dy.shape[-1])
    return dy @ w.T, dy2.T @ x2, dy2.sum(axis=0)
''', "A forgotten transpose: dw = dy.T @ x, which has the shape (D_out, D_in), instead of x.T @ dy."),
    Wrong("linear_backward", "db_not_summed", "sum dy over every leading (batch) axis", '''
import numpy as np
def linear_backward(dy, x, w):
    x2 = x.reshape(-1, x.shape[-1])
    dy2 = dy.reshape(-1, dy.shape[-1])
    return dy @ w.T, x2.T @ dy2, dy
''', "The bias gradient not summed over the batch: db = dy, one gradient per row, although one bias serves all rows."),
    Wrong("linear_backward", "db_wrong_axis", "not over the feature axis", '''
import numpy as np
def linear_backward(dy, x, w):
    x2 = x.reshape(-1, x.shape[-1])
    dy2 = dy.reshape(-1, dy.shape[-1])
    return dy @ w.T, x2.T @ dy2, dy2.sum(axis=-1)
''', "The bias gradient summed over the wrong axis (the features, axis=-1) instead of the rows."),
    Wrong("linear_backward", "dx_no_transpose", "dx = dy @ w.T", '''
import numpy as np
def linear_backward(dy, x, w):
    x2 = x.reshape(-1, x.shape[-1])
    dy2 = dy.reshape(-1, dy.shape[-1])
    return dy @ w, x2.T @ dy2, dy2.sum(axis=0)
''', "dx = dy @ w instead of dy @ w.T (the shapes only fit when w is square, and even then the values are wrong)."),
    Wrong("linear_backward", "only_2d", "flatten them first", '''
import numpy as np
def linear_backward(dy, x, w):
    return dy @ w.T, x.T @ dy, dy.sum(axis=0)
''', "Writing x.T @ dy and dy.sum(axis=0) for 2-D inputs only: with leading axes (B, T, D), x.T reverses all "
         "axes and the sum covers only the first one."),
    Wrong("linear_backward", "mean_over_batch", "don't average", '''
import numpy as np
def linear_backward(dy, x, w):
    x2 = x.reshape(-1, x.shape[-1])
    dy2 = dy.reshape(-1, dy.shape[-1])
    n = x2.shape[0]
    return dy @ w.T, x2.T @ dy2 / n, dy2.mean(axis=0)
''', "Averaging the parameter gradients over the batch: the averaging belongs to the loss, and is already in dy."),

    # ---------------------------------------------------------------- softmax_backward
    Wrong("softmax_backward", "diagonal_only", "the softmax Jacobian is not diagonal", '''
import numpy as np
def softmax_backward(dp, p):
    return dp * p * (1 - p)
''', "The softmax Jacobian's diagonal only, dz = dp * p (1 - p): every logit moves every probability."),
    Wrong("softmax_backward", "sum_axis0", "over the last axis", '''
import numpy as np
def softmax_backward(dp, p):
    return p * (dp - np.sum(dp * p, axis=0, keepdims=True))
''', "The sum dp . p taken over the wrong axis (axis=0, across rows) instead of within each row."),
    Wrong("softmax_backward", "no_keepdims", "keepdims=True", '''
import numpy as np
def softmax_backward(dp, p):
    return p * (dp - np.sum(dp * p, axis=-1))
''', "Summing without keepdims=True: the row sums broadcast along the wrong axis (or not at all)."),
    Wrong("softmax_backward", "missing_p", "multiply by p", '''
import numpy as np
def softmax_backward(dp, p):
    return dp - np.sum(dp * p, axis=-1, keepdims=True)
''', "Dropping the outer factor p: dz = dp - sum(dp * p) instead of p * (dp - sum(dp * p))."),

    # ---------------------------------------------------------------- cross_entropy_backward
    Wrong("cross_entropy_backward", "not_divided_by_n", "divide by N = targets.size", _SOFTMAX + '''
def cross_entropy_backward(logits, targets):
    p = _bp_softmax(logits)
    return p - (np.arange(logits.shape[-1]) == targets[..., None])
''', "Cross-entropy not divided by the batch: p - onehot is the gradient of the summed loss, not of the mean."),
    Wrong("cross_entropy_backward", "divided_by_first_axis", "divide by N = targets.size", _SOFTMAX + '''
def cross_entropy_backward(logits, targets):
    p = _bp_softmax(logits)
    return (p - (np.arange(logits.shape[-1]) == targets[..., None])) / len(targets)
''', "Dividing by len(targets), the first axis only: with a (B, T) batch the loss averages over B * T positions."),
    Wrong("cross_entropy_backward", "unstable_softmax", "subtract each row's maximum", '''
import numpy as np
def cross_entropy_backward(logits, targets):
    e = np.exp(logits)
    p = e / e.sum(axis=-1, keepdims=True)
    return (p - (np.arange(logits.shape[-1]) == targets[..., None])) / targets.size
''', "An unstable softmax, exp(logits) without subtracting the row maximum: NaN for large logits."),
    Wrong("cross_entropy_backward", "sign_flipped", "the sign: p - onehot", _SOFTMAX + '''
def cross_entropy_backward(logits, targets):
    p = _bp_softmax(logits)
    return ((np.arange(logits.shape[-1]) == targets[..., None]) - p) / targets.size
''', "The sign flipped, onehot - p: a descent step would then climb the loss."),
    Wrong("cross_entropy_backward", "logits_minus_onehot", "not from the logits", '''
import numpy as np
def cross_entropy_backward(logits, targets):
    return (logits - (np.arange(logits.shape[-1]) == targets[..., None])) / targets.size
''', "Subtracting the one-hot from the logits instead of from the probabilities softmax(logits)."),
    Wrong("cross_entropy_backward", "fancy_index_every_row", "p[:, targets] hits every row", _SOFTMAX + '''
def cross_entropy_backward(logits, targets):
    v = logits.shape[-1]
    p = _bp_softmax(logits.reshape(-1, v))
    t = targets.reshape(-1)
    p[:, t] -= 1
    return (p / t.size).reshape(logits.shape)
''', "p[:, targets] -= 1, which subtracts 1 at the targets of all rows in every row, instead of "
         "p[np.arange(N), targets]."),

    # ---------------------------------------------------------------- gelu_backward
    Wrong("gelu_backward", "no_tanh_chain", "the tanh chain term", _GELU_START + '''
    return dy * 0.5 * (1 + t)
''', "The GELU derivative without the tanh-chain term: 0.5 (1 + tanh u) alone forgets that u depends on x."),
    Wrong("gelu_backward", "inner_derivative_missing", "differentiate the cubic", _GELU_START + '''
    return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t ** 2) * c)
''', "du/dx taken as sqrt(2/pi), forgetting the derivative of the cubic 0.044715 x^3 inside the tanh."),
    Wrong("gelu_backward", "one_minus_tanh", "not 1 - tanh(u)", _GELU_START + '''
    du = c * (1 + 3 * 0.044715 * x ** 2)
    return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t) * du)
''', "The derivative of tanh written as 1 - tanh(u) instead of 1 - tanh(u)^2."),
    Wrong("gelu_backward", "forgot_dy", "multiply by dy", _GELU_START + '''
    du = c * (1 + 3 * 0.044715 * x ** 2)
    return 0.5 * (1 + t) + 0.5 * x * (1 - t ** 2) * du
''', "Returning gelu'(x) without multiplying by the upstream gradient dy."),
    Wrong("gelu_backward", "erf_derivative", "not the exact erf GELU", '''
import math
import numpy as np
def gelu_backward(dy, x):
    cdf = 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    pdf = np.exp(-0.5 * x ** 2) / math.sqrt(2 * math.pi)
    return dy * (cdf + x * pdf)
''', "The derivative of the exact (erf) GELU, while the forward is the tanh approximation."),

    # ---------------------------------------------------------------- layer_norm_backward
    Wrong("layer_norm_backward", "ignores_mean", "the row's mean depends on every x_j", _LN_START + '''
    dx = rstd * (g - xhat * (g * xhat).mean(axis=-1, keepdims=True))
''' + _LN_PARAMS + '''
    return dx, dgamma, dbeta
''', "A LayerNorm backward that ignores the mean's dependence on x (the term - mean(g) is missing)."),
    Wrong("layer_norm_backward", "ignores_variance", "the row's variance depends on every x_j", _LN_START + '''
    dx = rstd * (g - g.mean(axis=-1, keepdims=True))
''' + _LN_PARAMS + '''
    return dx, dgamma, dbeta
''', "A LayerNorm backward that ignores the variance's dependence on x (the term - xhat * mean(g * xhat) is missing)."),
    Wrong("layer_norm_backward", "ignores_both", "dx is not just dy * gamma / sqrt(var + eps)", _LN_START + '''
    dx = g * rstd
''' + _LN_PARAMS + '''
    return dx, dgamma, dbeta
''', "dx = dy * gamma / std: treating both the mean and the standard deviation as constants."),
    Wrong("layer_norm_backward", "forgot_gamma", "multiply by gamma", _LN_START + '''
    dx = rstd * (dy - dy.mean(axis=-1, keepdims=True) - xhat * (dy * xhat).mean(axis=-1, keepdims=True))
''' + _LN_PARAMS + '''
    return dx, dgamma, dbeta
''', "Going back through the normalisation with dy instead of dy * gamma."),
    Wrong("layer_norm_backward", "dgamma_unnormalised", "gamma multiplies the normalised x", _LN_START + '''
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    dgamma = (dy * x).reshape(-1, d).sum(axis=0)
    dbeta = dy.reshape(-1, d).sum(axis=0)
    return dx, dgamma, dbeta
''', "dgamma = sum(dy * x) with the raw input instead of the normalised xhat."),
    Wrong("layer_norm_backward", "params_swapped", "dgamma and dbeta are swapped", _LN_START + '''
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
''' + _LN_PARAMS + '''
    return dx, dbeta, dgamma
''', "Returning (dx, dbeta, dgamma): the parameter gradients in the wrong order."),
    Wrong("layer_norm_backward", "params_first_axis_only", "sum over every leading (batch) axis", _LN_START + '''
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)
''', "Parameter gradients summed over the first axis only: with leading axes (B, T, D) that leaves (T, D)."),
    Wrong("layer_norm_backward", "ignores_eps", "eps inside the square root", '''
import numpy as np
def layer_norm_backward(dy, x, gamma, eps=1e-5):
    d = x.shape[-1]
    xc = x - x.mean(axis=-1, keepdims=True)
    rstd = 1 / xc.std(axis=-1, keepdims=True)
    xhat = xc * rstd
    g = dy * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, (dy * xhat).reshape(-1, d).sum(axis=0), dy.reshape(-1, d).sum(axis=0)
''', "Recomputing the forward without eps (1 / x.std()): wrong for rows with a small variance, inf for constant ones."),

    # ---------------------------------------------------------------- attention_head_backward
    Wrong("attention_head_backward", "no_mask_backward", "apply the causal mask in the backward too", _head('''
    q, k, v, p = _bp_head_forward(x, w_q, w_k, w_v, causal=False)
''' + _CORRECT_HEAD_TAIL), "The causal mask not applied in the backward: the recomputed probabilities let every "
                           "position see the future."),
    Wrong("attention_head_backward", "scale_forgotten_backward", "the 1/sqrt(d) scale", _head('''
    q, k, v, p = _bp_head_forward(x, w_q, w_k, w_v)
    dp = dout @ np.swapaxes(v, -1, -2)
    dv = np.swapaxes(p, -1, -2) @ dout
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    dq = ds @ k
    dk = np.swapaxes(ds, -1, -2) @ q
    dx = dq @ w_q.T + dk @ w_k.T + dv @ w_v.T
    return dx, _bp_rows(x, dq), _bp_rows(x, dk), _bp_rows(x, dv)
'''), "The 1/sqrt(d_k) scale forgotten in the backward (applied in the forward only)."),
    Wrong("attention_head_backward", "softmax_diagonal", "the full Jacobian", _head('''
    q, k, v, p = _bp_head_forward(x, w_q, w_k, w_v)
    dp = dout @ np.swapaxes(v, -1, -2)
    dv = np.swapaxes(p, -1, -2) @ dout
    ds = dp * p * (1 - p) / math.sqrt(w_q.shape[-1])
    dq = ds @ k
    dk = np.swapaxes(ds, -1, -2) @ q
    dx = dq @ w_q.T + dk @ w_k.T + dv @ w_v.T
    return dx, _bp_rows(x, dq), _bp_rows(x, dk), _bp_rows(x, dv)
'''), "Only the diagonal p (1 - p) of the softmax Jacobian inside attention."),
    Wrong("attention_head_backward", "dk_no_transpose", "transpose ds", _head('''
    q, k, v, p = _bp_head_forward(x, w_q, w_k, w_v)
    dp = dout @ np.swapaxes(v, -1, -2)
    dv = np.swapaxes(p, -1, -2) @ dout
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) / math.sqrt(w_q.shape[-1])
    dq = ds @ k
    dk = ds @ q
    dx = dq @ w_q.T + dk @ w_k.T + dv @ w_v.T
    return dx, _bp_rows(x, dq), _bp_rows(x, dk), _bp_rows(x, dv)
'''), "dk = ds @ q instead of ds^T @ q (the scores matrix is indexed [query, key])."),
    Wrong("attention_head_backward", "dv_no_transpose", "dv = p^T @ dout", _head('''
    q, k, v, p = _bp_head_forward(x, w_q, w_k, w_v)
    dp = dout @ np.swapaxes(v, -1, -2)
    dv = p @ dout
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) / math.sqrt(w_q.shape[-1])
    dq = ds @ k
    dk = np.swapaxes(ds, -1, -2) @ q
    dx = dq @ w_q.T + dk @ w_k.T + dv @ w_v.T
    return dx, _bp_rows(x, dq), _bp_rows(x, dk), _bp_rows(x, dv)
'''), "dv = p @ dout instead of p^T @ dout."),
    Wrong("attention_head_backward", "dx_value_path_only", "the sum of the three paths", _head('''
    q, k, v, p = _bp_head_forward(x, w_q, w_k, w_v)
    dp = dout @ np.swapaxes(v, -1, -2)
    dv = np.swapaxes(p, -1, -2) @ dout
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) / math.sqrt(w_q.shape[-1])
    dq = ds @ k
    dk = np.swapaxes(ds, -1, -2) @ q
    dx = dv @ w_v.T
    return dx, _bp_rows(x, dq), _bp_rows(x, dk), _bp_rows(x, dv)
'''), "dx through the values only: x also reaches the output through the queries and the keys."),
    Wrong("attention_head_backward", "weights_not_summed", "over every leading (batch) axis", _head('''
    q, k, v, p = _bp_head_forward(x, w_q, w_k, w_v)
    dp = dout @ np.swapaxes(v, -1, -2)
    dv = np.swapaxes(p, -1, -2) @ dout
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) / math.sqrt(w_q.shape[-1])
    dq = ds @ k
    dk = np.swapaxes(ds, -1, -2) @ q
    dx = dq @ w_q.T + dk @ w_k.T + dv @ w_v.T
    xt = np.swapaxes(x, -1, -2)
    return dx, xt @ dq, xt @ dk, xt @ dv
'''), "Weight gradients x^T @ dq per sequence, not summed over the batch: one gradient per sequence."),
]

CORRECT = [
    # Every function written another way: einsum, the explicit softmax Jacobian, put_along_axis,
    # sums instead of means, a per-head loop.
    '''
import math
import numpy as np

def linear_backward(dy, x, w):
    lead = tuple(range(x.ndim - 1))
    dx = np.einsum("...o,io->...i", dy, w)
    dw = np.tensordot(x, dy, axes=(lead, lead))
    db = dy.sum(axis=lead)
    return dx, dw, db

def softmax_backward(dp, p):
    jac = p[..., :, None] * (np.eye(p.shape[-1]) - p[..., None, :])   # d p_i / d z_j
    return np.einsum("...i,...ij->...j", dp, jac)

def cross_entropy_backward(logits, targets):
    z = logits - logits.max(axis=-1, keepdims=True)
    g = np.exp(z)
    g /= g.sum(axis=-1, keepdims=True)
    idx = targets[..., None]
    np.put_along_axis(g, idx, np.take_along_axis(g, idx, axis=-1) - 1, axis=-1)
    return g / max(targets.size, 1)

def gelu_backward(dy, x):
    a, b = math.sqrt(2 / math.pi), 0.044715
    t = np.tanh(a * x * (1 + b * x * x))
    return dy * 0.5 * (1 + t + x * (1 - t) * (1 + t) * a * (1 + 3 * b * x * x))

def layer_norm_backward(dy, x, gamma, eps=1e-5):
    d = x.shape[-1]
    mu = np.sum(x, axis=-1, keepdims=True) / d
    var = np.sum((x - mu) ** 2, axis=-1, keepdims=True) / d
    s = np.sqrt(var + eps)
    xhat = (x - mu) / s
    g = dy * gamma
    dx = (d * g - g.sum(axis=-1, keepdims=True) - xhat * (g * xhat).sum(axis=-1, keepdims=True)) / (d * s)
    lead = tuple(range(x.ndim - 1))
    return dx, (dy * xhat).sum(axis=lead), dy.sum(axis=lead)

def attention_head_backward(dout, x, w_q, w_k, w_v):
    d_k = w_q.shape[1]
    q = np.einsum("...td,de->...te", x, w_q)
    k = np.einsum("...td,de->...te", x, w_k)
    v = np.einsum("...td,de->...te", x, w_v)
    t = x.shape[-2]
    s = np.einsum("...ie,...je->...ij", q, k) / math.sqrt(d_k)
    s = s + np.triu(np.full((t, t), -np.inf), 1)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    dv = np.einsum("...ij,...ie->...je", p, dout)
    dp = np.einsum("...ie,...je->...ij", dout, v)
    ds = p * (dp - np.einsum("...ij,...ij->...i", dp, p)[..., None]) / math.sqrt(d_k)
    dq = np.einsum("...ij,...je->...ie", ds, k)
    dk = np.einsum("...ij,...ie->...je", ds, q)
    dx = dq @ w_q.T + dk @ w_k.T + dv @ w_v.T
    lead = tuple(range(x.ndim - 1))
    grads = [np.tensordot(x, g, axes=(lead, lead)) for g in (dq, dk, dv)]
    return (dx, *grads)
''',
    # The textbook "staged" derivations: float64 inside, LayerNorm through dvar and dmu, a loop
    # over rows for the cross-entropy, GELU with 1 / cosh^2, attention with the mask applied to ds.
    '''
import math
import numpy as np

def linear_backward(dy, x, w):
    d_in, d_out = w.shape
    rows_x = np.asarray(x, dtype=np.float64).reshape(-1, d_in)
    rows_dy = np.asarray(dy, dtype=np.float64).reshape(-1, d_out)
    dx = (rows_dy @ w.T.astype(np.float64)).reshape(np.shape(x))
    return dx, np.einsum("ni,nj->ij", rows_x, rows_dy), rows_dy.sum(axis=0)

def softmax_backward(dp, p):
    dot = (dp * p).sum(axis=-1)[..., None]
    return p * dp - p * dot

def cross_entropy_backward(logits, targets):
    v = logits.shape[-1]
    flat = logits.reshape(-1, v).astype(np.float64)
    t = np.asarray(targets).reshape(-1)
    out = np.empty_like(flat)
    for r in range(flat.shape[0]):
        e = np.exp(flat[r] - flat[r].max())
        out[r] = e / e.sum()
        out[r, t[r]] -= 1.0
    return (out / len(t)).reshape(logits.shape)

def gelu_backward(dy, x):
    c = math.sqrt(2.0 / math.pi)
    u = c * (x + 0.044715 * x ** 3)
    with np.errstate(over="ignore"):
        sech2 = 1.0 / np.cosh(u) ** 2
    return dy * (0.5 * (1 + np.tanh(u)) + 0.5 * x * sech2 * c * (1 + 0.134145 * x ** 2))

def layer_norm_backward(dy, x, gamma, eps=1e-5):
    d = x.shape[-1]
    mu = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    inv = (var + eps) ** -0.5
    dxhat = dy * gamma
    dvar = np.sum(dxhat * (x - mu), axis=-1, keepdims=True) * -0.5 * inv ** 3
    dmu = -np.sum(dxhat * inv, axis=-1, keepdims=True) + dvar * np.mean(-2.0 * (x - mu), axis=-1, keepdims=True)
    dx = dxhat * inv + dvar * 2.0 * (x - mu) / d + dmu / d
    xhat = (x - mu) * inv
    return dx, (dy * xhat).reshape(-1, d).sum(axis=0), dy.reshape(-1, d).sum(axis=0)

def attention_head_backward(dout, x, w_q, w_k, w_v):
    t = x.shape[-2]
    mask = np.tril(np.ones((t, t), dtype=bool))
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    s = np.where(mask, q @ np.swapaxes(k, -1, -2) / np.sqrt(w_q.shape[-1]), -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p = p / p.sum(axis=-1, keepdims=True)
    dp = dout @ np.swapaxes(v, -1, -2)
    ds = np.where(mask, softmax_backward(dp, p), 0.0) / np.sqrt(w_q.shape[-1])
    dq, dk, dv = ds @ k, np.swapaxes(ds, -1, -2) @ q, np.swapaxes(p, -1, -2) @ dout
    d = x.shape[-1]
    xr = x.reshape(-1, d)
    grads = [xr.T @ g.reshape(-1, g.shape[-1]) for g in (dq, dk, dv)]
    return (dq @ w_q.T + dk @ w_k.T + dv @ w_v.T, *grads)
''',
]

"""Wrong and alternative implementations for chapter 2 (02-toy-attention)."""
from . import Wrong

_SOFTMAX = '''
import numpy as np
def softmax(x, axis=-1):
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)
'''

WRONG = [
    Wrong("attention_scores", "no_scale", "divide the scores by sqrt(d_k)", '''
import numpy as np
def attention_scores(q, k):
    return q @ np.swapaxes(k, -1, -2)
''', "Forgetting the 1/sqrt(d_k) scale: the softmax saturates as d_k grows."),
    Wrong("attention_scores", "divide_by_d", "not by d_k", '''
import numpy as np
def attention_scores(q, k):
    return q @ np.swapaxes(k, -1, -2) / q.shape[-1]
''', "Dividing by d_k instead of its square root."),
    Wrong("attention_scores", "dot_T", "k.T reverses every axis", '''
import numpy as np
def attention_scores(q, k):
    return q @ k.T / np.sqrt(q.shape[-1])
''', "Using k.T on batched arrays: .T reverses the batch axes too."),
    Wrong("attention_scores", "scale_by_keys", "not the number of keys", '''
import numpy as np
def attention_scores(q, k):
    return q @ np.swapaxes(k, -1, -2) / np.sqrt(k.shape[-2])
''', "Scaling by the number of keys instead of the key dimension."),

    Wrong("attention_weights", "mask_after_softmax", "apply the mask to the scores before the softmax",
          _SOFTMAX + '''
def attention_weights(q, k, mask=None):
    w = softmax(q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]))
    return w if mask is None else w * mask
''', "Applying the mask after the softmax: the rows no longer sum to one."),
    Wrong("attention_weights", "mask_with_zero", "not 0", _SOFTMAX + '''
def attention_weights(q, k, mask=None):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        s = np.where(mask, s, 0.0)
    return softmax(s)
''', "Masking with 0 instead of -inf: masked keys still get weight exp(0)."),
    Wrong("attention_weights", "mask_inverted", "True in the mask means", _SOFTMAX + '''
def attention_weights(q, k, mask=None):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        s = np.where(mask, -np.inf, s)
    return softmax(s)
''', "Reading the mask backwards (True = blocked)."),
    Wrong("attention_weights", "softmax_over_queries", "normalise over the keys", _SOFTMAX + '''
def attention_weights(q, k, mask=None):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    return softmax(s, axis=-2)
''', "Taking the softmax over the queries (axis -2) instead of the keys."),

    Wrong("scaled_dot_product_attention", "swapped_return", "(output, weights), in that order",
          _SOFTMAX + '''
def scaled_dot_product_attention(q, k, v, mask=None):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    w = softmax(s)
    return w, w @ v
''', "Returning (weights, output) instead of (output, weights)."),
    Wrong("scaled_dot_product_attention", "averages_keys", "values v (not the keys)", _SOFTMAX + '''
def scaled_dot_product_attention(q, k, v, mask=None):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    w = softmax(s)
    return w @ k, w
''', "Averaging the keys instead of the values."),
    Wrong("scaled_dot_product_attention", "ignores_mask", "pass the mask on", _SOFTMAX + '''
def scaled_dot_product_attention(q, k, v, mask=None):
    w = softmax(q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]))
    return w @ v, w
''', "Accepting a mask and never using it."),

    Wrong("attention_entropy", "nan_on_zero", "0 log 0 counts as 0", '''
import numpy as np
def attention_entropy(weights, axis=-1):
    return -np.sum(weights * np.log(weights), axis=axis)
''', "Taking log(0): rows with zero weights (every masked row) give NaN."),
    Wrong("attention_entropy", "bits", "natural log", '''
import numpy as np
def attention_entropy(weights, axis=-1):
    w = np.asarray(weights)
    return -np.sum(np.where(w > 0, w * np.log2(np.where(w > 0, w, 1)), 0), axis=axis)
''', "Using log2: the answer is in bits, not nats."),
    Wrong("attention_entropy", "no_minus", "minus sign", '''
import numpy as np
def attention_entropy(weights, axis=-1):
    w = np.asarray(weights)
    return np.sum(np.where(w > 0, w * np.log(np.where(w > 0, w, 1)), 0), axis=axis)
''', "Dropping the minus sign: entropy comes out negative."),
    Wrong("attention_entropy", "keepdims", "one entropy per row", '''
import numpy as np
def attention_entropy(weights, axis=-1):
    w = np.asarray(weights)
    return -np.sum(np.where(w > 0, w * np.log(np.where(w > 0, w, 1)), 0), axis=axis, keepdims=True)
''', "Keeping the reduced axis (keepdims=True)."),
]

CORRECT = [
    '''
import numpy as np
def attention_scores(q, k):
    return np.einsum("...qd,...kd->...qk", q, k) * (1.0 / np.sqrt(q.shape[-1]))
''',
    _SOFTMAX + '''
def attention_weights(q, k, mask=None):
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) / np.sqrt(k.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, np.finfo(scores.dtype).min)
        return np.where(mask, softmax(scores), 0.0).astype(scores.dtype)
    return softmax(scores)
''',
    _SOFTMAX + '''
def scaled_dot_product_attention(q, k, v, mask=None):
    d = q.shape[-1]
    logits = np.einsum("...qd,...kd->...qk", q, k) / np.sqrt(d)
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    weights = softmax(logits, axis=-1)
    return np.einsum("...qk,...kd->...qd", weights, v), weights
''',
    '''
import numpy as np
def attention_entropy(weights, axis=-1):
    w = np.moveaxis(np.asarray(weights), axis, -1)
    out = np.zeros(w.shape[:-1], dtype=w.dtype)
    for idx in np.ndindex(*w.shape[:-1]):
        row = w[idx]
        nz = row[row > 0]
        out[idx] = -(nz * np.log(nz)).sum()
    return out
''',
]

"""Wrong and alternative implementations for chapter 3 (03-self-attention)."""
from . import Wrong

_SOFTMAX = '''
import math
import numpy as np
def softmax(x, axis=-1):
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)
'''

# Correct helpers that the wrong self_attention variants below build on.
_HELPERS = _SOFTMAX + '''
def _split(x, h):
    *lead, t, d = x.shape
    return np.swapaxes(x.reshape(*lead, t, h, d // h), -2, -3)
def _merge(x):
    *lead, h, t, dh = x.shape
    return np.swapaxes(x, -2, -3).reshape(*lead, t, h * dh)
def _mask(n, k=0):
    return np.tril(np.ones((n, n), dtype=bool), k)
'''


def _sa(body):
    """A self_attention whose body differs from a correct one in one place."""
    return _HELPERS + '''
def self_attention(x, w_q, w_k, w_v, w_o, n_heads, causal=True):
''' + body


WRONG = [
    # ---------------------------------------------------------------- causal_mask
    Wrong("causal_mask", "strict_lower", "the diagonal must be True", '''
import numpy as np
def causal_mask(n):
    return np.tril(np.ones((n, n), dtype=bool), k=-1)
''', "An off-by-one diagonal, `np.tril(..., k=-1)`: no token may see itself, and the first token "
         "sees nothing at all (a row of -inf, so NaN)."),
    Wrong("causal_mask", "sees_next", "never see a later key", '''
import numpy as np
def causal_mask(n):
    return np.tril(np.ones((n, n), dtype=bool), k=1)
''', "The other off-by-one, `np.tril(..., k=1)`: every token peeks at the next one, the very token "
         "it is trained to predict."),
    Wrong("causal_mask", "upper_triangle", "np.tril, not np.triu", '''
import numpy as np
def causal_mask(n):
    return np.triu(np.ones((n, n), dtype=bool))
''', "The upper triangle (`np.triu`): each token sees the future and not the past."),
    Wrong("causal_mask", "true_means_blocked", "True means 'may attend'", '''
import numpy as np
def causal_mask(n):
    i = np.arange(n)
    return i[None, :] > i[:, None]
''', "Marking the *forbidden* entries True: the opposite of the convention that masks use."),
    Wrong("causal_mask", "float_mask", "return a boolean mask", '''
import numpy as np
def causal_mask(n):
    return np.tril(np.ones((n, n)))
''', "A float mask of 0s and 1s: `~mask` and `mask[...]` indexing then do something else entirely."),

    # ---------------------------------------------------------------- split_heads
    Wrong("split_heads", "reshape_only", "mixes positions into heads", '''
import numpy as np
def split_heads(x, n_heads):
    *lead, t, d = x.shape
    if d % n_heads:
        raise ValueError("D must be divisible by n_heads")
    return x.reshape(*lead, n_heads, t, d // n_heads)
''', "Reshaping straight to `(..., n_heads, T, d_head)`: the shape is right, but each head now holds "
         "pieces of several positions."),
    Wrong("split_heads", "strided_heads", "contiguous features", '''
import numpy as np
def split_heads(x, n_heads):
    *lead, t, d = x.shape
    if d % n_heads:
        raise ValueError("D must be divisible by n_heads")
    return np.moveaxis(x.reshape(*lead, t, d // n_heads, n_heads), -1, -3)
''', "Splitting the features as `(d_head, n_heads)`: head h gets every n_heads-th feature instead of "
         "a contiguous block (it is a valid split, but not the one merge_heads undoes)."),
    Wrong("split_heads", "no_swap", "the head axis goes before the time axis", '''
import numpy as np
def split_heads(x, n_heads):
    *lead, t, d = x.shape
    if d % n_heads:
        raise ValueError("D must be divisible by n_heads")
    return x.reshape(*lead, t, n_heads, d // n_heads)
''', "Forgetting to swap: `(..., T, n_heads, d_head)`, so the attention matmul runs over heads "
         "instead of positions."),
    Wrong("split_heads", "fixed_transpose", "keep the leading batch axes", '''
import numpy as np
def split_heads(x, n_heads):
    t, d = x.shape
    if d % n_heads:
        raise ValueError("D must be divisible by n_heads")
    return x.reshape(t, n_heads, d // n_heads).transpose(1, 0, 2)
''', "A fixed `transpose(1, 0, 2)` that only works without batch dimensions."),

    # ---------------------------------------------------------------- merge_heads
    Wrong("merge_heads", "reshape_only", "swap the head and time axes back", '''
import numpy as np
def merge_heads(x):
    *lead, h, t, dh = x.shape
    return x.reshape(*lead, t, h * dh)
''', "Merging without swapping back: the shape is right, but each row mixes positions."),
    Wrong("merge_heads", "interleaved", "contiguous columns", '''
import numpy as np
def merge_heads(x):
    *lead, h, t, dh = x.shape
    return np.moveaxis(x, -3, -1).reshape(*lead, t, h * dh)
''', "Moving the head axis last before reshaping: the heads' features come out interleaved."),
    Wrong("merge_heads", "concat_time", "not the time axis", '''
import numpy as np
def merge_heads(x):
    return np.concatenate([x[..., h, :, :] for h in range(x.shape[-3])], axis=-2)
''', "Concatenating the heads along the time axis: `(..., n_heads * T, d_head)`."),
    Wrong("merge_heads", "fixed_transpose", "keep the leading batch axes", '''
import numpy as np
def merge_heads(x):
    h, t, dh = x.shape
    return x.transpose(1, 0, 2).reshape(t, h * dh)
''', "A fixed `transpose(1, 0, 2)` that only works without batch dimensions."),

    # ---------------------------------------------------------------- self_attention
    Wrong("self_attention", "mask_after_softmax", "apply the causal mask to the scores before the softmax",
          _sa('''
    q, k, v = _split(x @ w_q, n_heads), _split(x @ w_k, n_heads), _split(x @ w_v, n_heads)
    w = softmax(q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1]))
    if causal:
        w = w * _mask(x.shape[-2])
    return _merge(w @ v) @ w_o
'''), "Masking the weights after the softmax: rows no longer sum to one, and the denominator still "
          "contains the future."),
    Wrong("self_attention", "sees_next", "off by one", _sa('''
    q, k, v = _split(x @ w_q, n_heads), _split(x @ w_k, n_heads), _split(x @ w_v, n_heads)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(_mask(x.shape[-2], k=1), s, -np.inf)
    return _merge(softmax(s) @ v) @ w_o
'''), "A causal mask with `k=1`: each token sees the token it should predict."),
    Wrong("self_attention", "strict_mask", "the diagonal must be True", _sa('''
    q, k, v = _split(x @ w_q, n_heads), _split(x @ w_k, n_heads), _split(x @ w_v, n_heads)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(_mask(x.shape[-2], k=-1), s, -np.inf)
    return _merge(softmax(s) @ v) @ w_o
'''), "A causal mask with `k=-1`: the first token has nothing to attend to, and its output is NaN."),
    Wrong("self_attention", "ignores_causal", "with causal=True, mask the scores", _sa('''
    q, k, v = _split(x @ w_q, n_heads), _split(x @ w_k, n_heads), _split(x @ w_v, n_heads)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    return _merge(softmax(s) @ v) @ w_o
'''), "Accepting `causal=True` and never masking: every token reads the future."),
    Wrong("self_attention", "split_wrong_axis", "mixes positions into heads", _SOFTMAX + '''
def self_attention(x, w_q, w_k, w_v, w_o, n_heads, causal=True):
    *lead, t, d = x.shape
    def split(a):
        return a.reshape(*lead, n_heads, t, d // n_heads)
    q, k, v = split(x @ w_q), split(x @ w_k), split(x @ w_v)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(d // n_heads)
    if causal:
        s = np.where(np.tril(np.ones((t, t), dtype=bool)), s, -np.inf)
    return (softmax(s) @ v).reshape(*lead, t, d) @ w_o
''', "Splitting heads by a bare reshape to `(..., n_heads, T, d_head)`: the \"positions\" each head "
          "attends over are slices of a few neighbouring positions, so distant tokens never meet."),
    Wrong("self_attention", "merge_no_swap", "swap the head and time axes back", _sa('''
    q, k, v = _split(x @ w_q, n_heads), _split(x @ w_k, n_heads), _split(x @ w_v, n_heads)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(_mask(x.shape[-2]), s, -np.inf)
    o = softmax(s) @ v
    return o.reshape(*x.shape) @ w_o
'''), "Merging heads by a bare reshape: the output rows mix positions."),
    Wrong("self_attention", "no_output_projection", "output projection w_o", _sa('''
    q, k, v = _split(x @ w_q, n_heads), _split(x @ w_k, n_heads), _split(x @ w_v, n_heads)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(_mask(x.shape[-2]), s, -np.inf)
    return _merge(softmax(s) @ v)
'''), "Forgetting the output projection `w_o`: the heads' outputs are never mixed with each other."),
    Wrong("self_attention", "scale_by_D", "not 1/sqrt(D)", _sa('''
    q, k, v = _split(x @ w_q, n_heads), _split(x @ w_k, n_heads), _split(x @ w_v, n_heads)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(x.shape[-1])
    if causal:
        s = np.where(_mask(x.shape[-2]), s, -np.inf)
    return _merge(softmax(s) @ v) @ w_o
'''), "Scaling by $\\sqrt{D}$, the model width, instead of $\\sqrt{d_\\text{head}}$: every head's "
          "softmax is too flat."),
    Wrong("self_attention", "transposed_weights", "not x @ w.T", _sa('''
    q, k, v = _split(x @ w_q.T, n_heads), _split(x @ w_k.T, n_heads), _split(x @ w_v.T, n_heads)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(_mask(x.shape[-2]), s, -np.inf)
    return _merge(softmax(s) @ v) @ w_o.T
'''), "Applying the projections as `x @ w.T` (the PyTorch `nn.Linear` convention) when the weights "
          "are stored as `(D_in, D_out)`."),
    Wrong("self_attention", "softmax_over_queries", "over the keys (the last axis", _sa('''
    q, k, v = _split(x @ w_q, n_heads), _split(x @ w_k, n_heads), _split(x @ w_v, n_heads)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(_mask(x.shape[-2]), s, -np.inf)
    return _merge(softmax(s, axis=-2) @ v) @ w_o
'''), "The softmax over the wrong axis, `axis=-2`: each key's weights over the queries sum to one "
          "instead of each query's weights over the keys."),

    # ---------------------------------------------------------------- sinusoidal_positions
    Wrong("sinusoidal_positions", "sin_cos_swapped", "column 2i holds the sine", '''
import numpy as np
def sinusoidal_positions(n, d):
    if d % 2:
        raise ValueError("d must be even")
    pos = np.arange(n)[:, None]
    angle = pos / 10000.0 ** (np.arange(0, d, 2) / d)
    out = np.zeros((n, d))
    out[:, 0::2] = np.cos(angle)
    out[:, 1::2] = np.sin(angle)
    return out
''', "Swapping sine and cosine: even columns must hold the sine."),
    Wrong("sinusoidal_positions", "exponent_i_over_d", "the exponent is 2i/d", '''
import numpy as np
def sinusoidal_positions(n, d):
    if d % 2:
        raise ValueError("d must be even")
    pos = np.arange(n)[:, None]
    angle = pos / 10000.0 ** (np.arange(d // 2) / d)
    out = np.zeros((n, d))
    out[:, 0::2] = np.sin(angle)
    out[:, 1::2] = np.cos(angle)
    return out
''', "Frequencies `1 / 10000**(i/d)` instead of `1 / 10000**(2i/d)`: the slowest wavelength is "
         "about 100 positions instead of 10000."),
    Wrong("sinusoidal_positions", "halves", "not all sines in the first half", '''
import numpy as np
def sinusoidal_positions(n, d):
    if d % 2:
        raise ValueError("d must be even")
    angle = np.arange(n)[:, None] / 10000.0 ** (np.arange(0, d, 2) / d)
    return np.concatenate([np.sin(angle), np.cos(angle)], axis=-1)
''', "All sines first, then all cosines: a valid encoding, but not the interleaved layout asked for."),
    Wrong("sinusoidal_positions", "multiply_not_divide", "divide the position", '''
import numpy as np
def sinusoidal_positions(n, d):
    if d % 2:
        raise ValueError("d must be even")
    angle = np.arange(n)[:, None] * 10000.0 ** (np.arange(0, d, 2) / d)
    out = np.empty((n, d))
    out[:, 0::2] = np.sin(angle)
    out[:, 1::2] = np.cos(angle)
    return out
''', "Multiplying by `10000**(2i/d)` instead of dividing: the high dimensions oscillate wildly and "
         "carry no usable position information."),
    Wrong("sinusoidal_positions", "double_index", "the even column index over d", '''
import numpy as np
def sinusoidal_positions(n, d):
    if d % 2:
        raise ValueError("d must be even")
    i = np.arange(0, d, 2)
    angle = np.arange(n)[:, None] / 10000.0 ** (2 * i / d)
    out = np.zeros((n, d))
    out[:, 0::2] = np.sin(angle)
    out[:, 1::2] = np.cos(angle)
    return out
''', "Doubling the index twice (`2 * i` where i already runs over even numbers): frequencies fall "
         "twice as fast as they should."),
    Wrong("sinusoidal_positions", "float32", "compute in float64", '''
import numpy as np
def sinusoidal_positions(n, d):
    if d % 2:
        raise ValueError("d must be even")
    pos = np.arange(n, dtype=np.float32)[:, None]
    angle = pos / np.float32(10000.0) ** (np.arange(0, d, 2, dtype=np.float32) / np.float32(d))
    out = np.zeros((n, d), dtype=np.float32)
    out[:, 0::2] = np.sin(angle)
    out[:, 1::2] = np.cos(angle)
    return out
''', "Computing in float32 (the usual model dtype): the formula is right, but the angles "
         "p / 10000**(2i/d) lose digits at large p, and the function must return float64."),
]

CORRECT = [
    '''
import numpy as np
def causal_mask(n):
    i = np.arange(n)
    return i[:, None] >= i[None, :]
''',
    '''
import numpy as np
def causal_mask(n):
    m = np.zeros((n, n), dtype=bool)
    for i in range(n):
        m[i, : i + 1] = True
    return m
''',
    '''
import numpy as np
def split_heads(x, n_heads):
    d = x.shape[-1]
    if d % n_heads != 0:
        raise ValueError("width not divisible by the number of heads")
    dh = d // n_heads
    return np.stack([x[..., h * dh:(h + 1) * dh] for h in range(n_heads)], axis=-3)
''',
    '''
import numpy as np
def merge_heads(x):
    return np.concatenate([x[..., h, :, :] for h in range(x.shape[-3])], axis=-1)
''',
    _SOFTMAX + '''
def self_attention(x, w_q, w_k, w_v, w_o, n_heads, causal=True):
    t, d = x.shape[-2:]
    dh = d // n_heads
    q = np.einsum("...td,de->...te", x, w_q).reshape(*x.shape[:-1], n_heads, dh)
    k = np.einsum("...td,de->...te", x, w_k).reshape(*x.shape[:-1], n_heads, dh)
    v = np.einsum("...td,de->...te", x, w_v).reshape(*x.shape[:-1], n_heads, dh)
    s = np.einsum("...qhd,...khd->...hqk", q, k) / np.sqrt(dh)
    if causal:
        allowed = np.arange(t)[:, None] >= np.arange(t)[None, :]
        s = np.where(allowed, s, -np.inf)
    w = softmax(s, axis=-1)
    o = np.einsum("...hqk,...khd->...qhd", w, v).reshape(*x.shape[:-1], d)
    return o @ w_o
''',
    _SOFTMAX + '''
def self_attention(x, w_q, w_k, w_v, w_o, n_heads, causal=True):
    # One head at a time, then concatenate: the loop version of the split/merge.
    t, d = x.shape[-2:]
    dh = d // n_heads
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    outs = []
    for h in range(n_heads):
        cols = slice(h * dh, (h + 1) * dh)
        s = q[..., cols] @ np.swapaxes(k[..., cols], -1, -2) / math.sqrt(dh)
        if causal:
            s = s + np.triu(np.full((t, t), -np.inf), 1)
        outs.append(softmax(s) @ v[..., cols])
    return np.concatenate(outs, axis=-1) @ w_o
''',
    '''
import numpy as np
def sinusoidal_positions(n, d):
    if d % 2 == 1:
        raise ValueError("d must be even")
    i = np.arange(d // 2)
    angle = np.outer(np.arange(n), np.exp(-np.log(10000.0) * 2 * i / d))
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1).reshape(n, d)
''',
]

"""Wrong and alternative implementations for chapter 10 (10-modern-pieces).

Every source defines its graded function and, where it needs one, a helper with a private
`_mp_` name, so that pasting it into a notebook (the sample submissions) replaces nothing
else the student wrote.
"""
from . import Wrong

# ------------------------------------------------------------------ shared fragments

_ROPE_HEAD = '''
import numpy as np
def apply_rope(x, angles):
    cos = np.cos(angles).astype(x.dtype)
    sin = np.sin(angles).astype(x.dtype)
'''

_GQA_HEAD = '''
import math
import numpy as np
def _mp_softmax(z, axis=-1):
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)
def grouped_query_attention(q, k, v, causal=True):
    g = q.shape[-3] // k.shape[-3]
    t = q.shape[-2]
'''

_SWIGLU_HEAD = '''
import numpy as np
def swiglu(x, w_gate, w_up, w_down):
    gate = x @ w_gate
    up = x @ w_up
'''

WRONG = [
    # ---------------------------------------------------------------- rope_angles
    Wrong("rope_angles", "exponent_i_over_d", "-2i / head_dim", '''
import numpy as np
def rope_angles(n_positions, head_dim, base=10000.0):
    if head_dim % 2:
        raise ValueError("head_dim must be even")
    theta = base ** (-np.arange(head_dim // 2) / head_dim)
    return np.arange(n_positions)[:, None] * theta
''', "Frequencies base**(-i/d) with i counting pairs: the exponent must be -2i/d, else the "
         "slowest pair turns far too fast."),
    Wrong("rope_angles", "positions_from_one", "positions start at 0", '''
import numpy as np
def rope_angles(n_positions, head_dim, base=10000.0):
    if head_dim % 2:
        raise ValueError("head_dim must be even")
    theta = base ** (-np.arange(0, head_dim, 2) / head_dim)
    return np.arange(1, n_positions + 1)[:, None] * theta
''', "Counting positions from 1: the first token is already rotated (harmless for the relative "
         "property, but no longer the convention every checkpoint uses)."),
    Wrong("rope_angles", "frequencies_increase", "frequencies decrease", '''
import numpy as np
def rope_angles(n_positions, head_dim, base=10000.0):
    if head_dim % 2:
        raise ValueError("head_dim must be even")
    theta = base ** (np.arange(0, head_dim, 2) / head_dim)
    return np.arange(n_positions)[:, None] * theta
''', "A lost minus sign in the exponent: frequencies that grow with i, so no pair turns slowly "
         "and nothing can encode long distances."),
    Wrong("rope_angles", "full_width", "one angle per pair", '''
import numpy as np
def rope_angles(n_positions, head_dim, base=10000.0):
    if head_dim % 2:
        raise ValueError("head_dim must be even")
    theta = base ** (-np.arange(0, head_dim, 2) / head_dim)
    a = np.arange(n_positions)[:, None] * theta
    return np.concatenate([a, a], axis=-1)
''', "Returning one angle per feature, (T, head_dim), copied from the 'rotate half' layout, "
         "instead of one per pair, (T, head_dim / 2)."),

    # ---------------------------------------------------------------- apply_rope
    Wrong("apply_rope", "halves_convention", "interleaved pairs (2i, 2i + 1)", _ROPE_HEAD + '''
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
''', "Rotating the halves (i, i + d/2), the 'rotate half' layout of GPT-NeoX and Hugging Face, "
         "when this course's convention is interleaved pairs (2i, 2i + 1)."),
    Wrong("apply_rope", "rotation_sign_flipped", "counter-clockwise", _ROPE_HEAD + '''
    out = np.empty_like(x)
    a, b = x[..., 0::2], x[..., 1::2]
    out[..., 0::2] = a * cos + b * sin
    out[..., 1::2] = -a * sin + b * cos
    return out
''', "Rotating by -theta (the sine terms' signs swapped): scores still depend only on the offset, "
         "but with the opposite sign, so the weights of a trained model no longer fit."),
    Wrong("apply_rope", "no_pair_mixing", "mixes the two features of a pair", _ROPE_HEAD + '''
    c = np.repeat(cos, 2, axis=-1)
    s = np.repeat(sin, 2, axis=-1)
    return x * c + x * s
''', "x * cos + x * sin, forgetting that the sine term takes the pair's *other* feature "
         "(-b and a): that scales each feature instead of rotating the pair."),
    Wrong("apply_rope", "tiled_angles", "angle of pair i", _ROPE_HEAD + '''
    c = np.tile(cos, 2)
    s = np.tile(sin, 2)
    rot = np.empty_like(x)
    rot[..., 0::2] = -x[..., 1::2]
    rot[..., 1::2] = x[..., 0::2]
    return x * c + rot * s
''', "Mixing the two conventions: interleaved pairs, but the angles laid out for halves "
         "(np.tile instead of np.repeat), so the two features of a pair turn by different angles."),

    # ---------------------------------------------------------------- rms_norm
    Wrong("rms_norm", "eps_outside_sqrt", "inside the square root", '''
import numpy as np
def rms_norm(x, gain, eps=1e-6):
    return x / (np.sqrt(np.mean(x ** 2, axis=-1, keepdims=True)) + eps) * gain
''', "eps added after the square root, sqrt(mean(x^2)) + eps: a different function for rows "
         "of small features (and a different one from every checkpoint's)."),
    Wrong("rms_norm", "layer_norm_centered", "does not subtract the mean", '''
import numpy as np
def rms_norm(x, gain, eps=1e-6):
    xc = x - x.mean(axis=-1, keepdims=True)
    return xc / np.sqrt(np.mean(xc ** 2, axis=-1, keepdims=True) + eps) * gain
''', "Subtracting the mean first: that is LayerNorm (without its bias), not RMSNorm."),
    Wrong("rms_norm", "sum_not_mean", "mean of the squares", '''
import numpy as np
def rms_norm(x, gain, eps=1e-6):
    return x / np.sqrt(np.sum(x ** 2, axis=-1, keepdims=True) + eps) * gain
''', "Dividing by the norm sqrt(sum x^2) instead of the root mean square: the output is "
         "sqrt(D) times too small."),
    Wrong("rms_norm", "wrong_axis", "last axis", '''
import numpy as np
def rms_norm(x, gain, eps=1e-6):
    return x / np.sqrt(np.mean(x ** 2, axis=0, keepdims=True) + eps) * gain
''', "Averaging over the first axis (across tokens) instead of the last (across one token's "
         "features)."),
    Wrong("rms_norm", "eps_ignored", "eps inside the sqrt keeps", '''
import numpy as np
def rms_norm(x, gain, eps=1e-6):
    return x / np.sqrt(np.mean(x ** 2, axis=-1, keepdims=True)) * gain
''', "Leaving eps out: an all-zero row gives 0/0 = NaN."),

    # ---------------------------------------------------------------- swiglu
    Wrong("swiglu", "silu_on_up", "silu acts on the gate branch", _SWIGLU_HEAD + '''
    return (gate * (up / (1.0 + np.exp(-up)))) @ w_down
''', "silu on the up branch instead of the gate branch: the two weight matrices swap roles, so "
         "a checkpoint's w_gate and w_up no longer fit."),
    Wrong("swiglu", "sigmoid_gate", "silu(z) = z * sigmoid(z)", _SWIGLU_HEAD + '''
    return (1.0 / (1.0 + np.exp(-gate)) * up) @ w_down
''', "A sigmoid gate, sigmoid(x W) * (x V): that is the original GLU, not SwiGLU, whose gate is "
         "silu(z) = z * sigmoid(z)."),
    Wrong("swiglu", "silu_after_product", "before multiplying", _SWIGLU_HEAD + '''
    h = gate * up
    return (h / (1.0 + np.exp(-h))) @ w_down
''', "silu applied to the product of the two branches instead of to the gate branch alone."),
    Wrong("swiglu", "no_up_branch", "elementwise by the up branch", _SWIGLU_HEAD + '''
    return (gate / (1.0 + np.exp(-gate))) @ w_down
''', "Dropping the up branch: silu(x W_gate) W_down is a plain SiLU MLP, not a gated one."),

    # ---------------------------------------------------------------- grouped_query_attention
    Wrong("grouped_query_attention", "kv_heads_tiled", "consecutive query heads", _GQA_HEAD + '''
    reps = (1,) * (k.ndim - 3) + (g, 1, 1)
    k, v = np.tile(k, reps), np.tile(v, reps)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones((t, t), dtype=bool)), s, -np.inf)
    return _mp_softmax(s) @ v
''', "Expanding the key/value heads with np.tile (order 0, 1, 0, 1) instead of np.repeat "
         "(0, 0, 1, 1): query head h reads key/value head h % n_kv_heads instead of h // g."),
    Wrong("grouped_query_attention", "no_scale", "divide the scores by sqrt(d)", _GQA_HEAD + '''
    k, v = np.repeat(k, g, axis=-3), np.repeat(v, g, axis=-3)
    s = q @ np.swapaxes(k, -1, -2)
    if causal:
        s = np.where(np.tril(np.ones((t, t), dtype=bool)), s, -np.inf)
    return _mp_softmax(s) @ v
''', "Forgetting the 1/sqrt(d) scale of the scores."),
    Wrong("grouped_query_attention", "mask_sees_next", "never a later one", _GQA_HEAD + '''
    k, v = np.repeat(k, g, axis=-3), np.repeat(v, g, axis=-3)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones((t, t), dtype=bool), k=1), s, -np.inf)
    return _mp_softmax(s) @ v
''', "A causal mask off by one, np.tril(..., k=1): every position also sees the next one."),
    Wrong("grouped_query_attention", "mask_hides_self", "itself included", _GQA_HEAD + '''
    k, v = np.repeat(k, g, axis=-3), np.repeat(v, g, axis=-3)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones((t, t), dtype=bool), k=-1), s, -np.inf)
    return _mp_softmax(s) @ v
''', "A causal mask off by one the other way, np.tril(..., k=-1): a position cannot see itself, "
         "and the first position sees nothing at all (a row of -inf, NaN after the softmax)."),
    Wrong("grouped_query_attention", "mask_after_softmax", "before the softmax", _GQA_HEAD + '''
    k, v = np.repeat(k, g, axis=-3), np.repeat(v, g, axis=-3)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    p = _mp_softmax(s)
    if causal:
        p = np.where(np.tril(np.ones((t, t), dtype=bool)), p, 0.0)
    return p @ v
''', "Masking after the softmax (zeroing the future's weights): the remaining weights no longer "
         "add up to 1."),
]

CORRECT = [
    '''
import numpy as np
def rope_angles(n_positions, head_dim, base=10000.0):
    if head_dim % 2 != 0:
        raise ValueError("odd head_dim")
    i = np.arange(head_dim // 2)
    inv_freq = 1.0 / (float(base) ** (2.0 * i / head_dim))
    return np.outer(np.arange(n_positions, dtype=np.float64), inv_freq)
''',
    '''
import numpy as np
def apply_rope(x, angles):
    # the complex-number view: pair (a, b) is a + ib, multiplied by e^{i phi}
    z = x[..., 0::2] + 1j * x[..., 1::2]
    z = z * np.exp(1j * angles)
    out = np.stack([z.real, z.imag], axis=-1).reshape(x.shape)
    return out.astype(x.dtype)
''',
    '''
import numpy as np
def rms_norm(x, gain, eps=1e-6):
    inv = 1.0 / np.sqrt(np.square(x).mean(-1, keepdims=True) + eps)
    return gain * (x * inv)
''',
    '''
import numpy as np
def swiglu(x, w_gate, w_up, w_down):
    a = x @ w_gate
    sig = np.exp(-np.logaddexp(0.0, -a))    # sigmoid(a) = exp(-log(1 + exp(-a))), without overflow
    return ((a * sig) * (x @ w_up)) @ w_down
''',
    '''
import math
import numpy as np
def grouped_query_attention(q, k, v, causal=True):
    *lead, h, t, d = q.shape
    hk = k.shape[-3]
    if h % hk:
        raise ValueError("n_heads must be a multiple of n_kv_heads")
    g = h // hk
    # view the query heads as (n_kv_heads, g): no copies of k and v
    qg = q.reshape(*lead, hk, g, t, d)
    s = qg @ np.swapaxes(k, -1, -2)[..., None, :, :] / math.sqrt(d)
    if causal:
        s = s + np.triu(np.full((t, t), -np.inf), 1)
    s = s - s.max(axis=-1, keepdims=True)
    w = np.exp(s)
    w = w / w.sum(axis=-1, keepdims=True)
    return (w @ v[..., None, :, :]).reshape(q.shape)
''',
]

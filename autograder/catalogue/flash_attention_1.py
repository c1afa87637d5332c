"""Wrong and alternative implementations for chapter 13 (13-flash-attention-1)."""
from . import Wrong

_IMPORTS = '''
import math
import numpy as np
'''

# A correct update that the wrong tiled_attention variants below build on.
_UPDATE = _IMPORTS + '''
def _update(m, l, acc, s, v):
    m_new = np.maximum(m, s.max(axis=-1))
    safe = np.where(np.isneginf(m_new), 0.0, m_new)
    alpha = np.exp(m - safe)
    p = np.exp(s - safe[..., None])
    return m_new, alpha * l + p.sum(-1), alpha[..., None] * acc + p @ v
'''


def _lse(body):
    return _IMPORTS + '''
def attention_logsumexp(q, k, causal=False):
''' + body


def _upd(body):
    return _IMPORTS + '''
def online_softmax_update(m, l, acc, scores, values):
''' + body


def _osm(body):
    return _IMPORTS + '''
def online_softmax(x, block_size):
    n = x.shape[-1]
    m = np.full(x.shape[:-1], -np.inf)
    l = np.zeros(x.shape[:-1])
''' + body


def _tiled(loop, finish="    return acc / l[..., None], m + np.log(l)\n", scale="/ math.sqrt(q.shape[-1])",
           mask="np.where(i >= j, s, -np.inf)", blocks="range(0, n_k, block_size)"):
    return _UPDATE + f'''
def tiled_attention(q, k, v, block_size=64, causal=False):
    n_q, n_k = q.shape[-2], k.shape[-2]
    m = np.full(q.shape[:-1], -np.inf)
    l = np.zeros(q.shape[:-1])
    acc = np.zeros(q.shape[:-1] + (v.shape[-1],))
    for start in {blocks}:
        stop = min(start + block_size, n_k)
        s = q @ np.swapaxes(k[..., start:stop, :], -1, -2) {scale}
        if causal:
            i, j = np.arange(n_q)[:, None], np.arange(start, stop)[None, :]
            s = {mask}
''' + loop + finish


_LOOP = "        m, l, acc = _update(m, l, acc, s, v[..., start:stop, :])\n"

WRONG = [
    # ---------------------------------------------------------------- attention_logsumexp
    Wrong("attention_logsumexp", "no_scale", "scale the scores by 1/sqrt(d)", _lse('''
    s = q @ np.swapaxes(k, -1, -2)
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], dtype=bool)), s, -np.inf)
    m = s.max(-1)
    return m + np.log(np.exp(s - m[..., None]).sum(-1))
'''), "Forgetting the 1/sqrt(d) scale: the logsumexp no longer matches the softmax the attention used."),
    Wrong("attention_logsumexp", "unstable", "subtract the row maximum", _lse('''
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], dtype=bool)), s, -np.inf)
    return np.log(np.exp(s).sum(-1))
'''), "`np.log(np.exp(s).sum(-1))` without the maximum: scores of a few hundred overflow to inf."),
    Wrong("attention_logsumexp", "max_not_added_back", "add the maximum m back", _lse('''
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], dtype=bool)), s, -np.inf)
    m = s.max(-1, keepdims=True)
    return np.log(np.exp(s - m).sum(-1))
'''), "Subtracting the maximum and never adding it back: that is log(l), not m + log(l)."),
    Wrong("attention_logsumexp", "causal_sees_next", "the causal diagonal is off by", _lse('''
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], dtype=bool), 1), s, -np.inf)
    m = s.max(-1)
    return m + np.log(np.exp(s - m[..., None]).sum(-1))
'''), "A causal mask with `k=1`: each query also counts the next key."),
    Wrong("attention_logsumexp", "mask_with_zero", "mask with -inf, not 0", _lse('''
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = s * np.tril(np.ones(s.shape[-2:]))
    m = s.max(-1)
    return m + np.log(np.exp(s - m[..., None]).sum(-1))
'''), "Masking by multiplying with the 0/1 mask: masked keys get score 0, which still counts exp(0)."),

    # ---------------------------------------------------------------- online_softmax_update
    Wrong("online_softmax_update", "sum_not_rescaled", "rescale the running sum", _upd('''
    m_new = np.maximum(m, scores.max(-1))
    safe = np.where(np.isneginf(m_new), 0.0, m_new)
    alpha = np.exp(m - safe)
    p = np.exp(scores - safe[..., None])
    return m_new, l + p.sum(-1), alpha[..., None] * acc + p @ values
'''), "Forgetting to rescale the running sum l: old terms stay measured against the old maximum."),
    Wrong("online_softmax_update", "acc_not_rescaled", "rescale the accumulator too", _upd('''
    m_new = np.maximum(m, scores.max(-1))
    safe = np.where(np.isneginf(m_new), 0.0, m_new)
    alpha = np.exp(m - safe)
    p = np.exp(scores - safe[..., None])
    return m_new, alpha * l + p.sum(-1), acc + p @ values
'''), "Rescaling l but not the accumulator: the output overweights the keys seen before the maximum grew."),
    Wrong("online_softmax_update", "sign_flipped", "exp(m_old - m_new)", _upd('''
    m_new = np.maximum(m, scores.max(-1))
    safe = np.where(np.isneginf(m_new), 0.0, m_new)
    alpha = np.exp(safe - m)
    p = np.exp(scores - safe[..., None])
    return m_new, alpha * l + p.sum(-1), alpha[..., None] * acc + p @ values
'''), "Rescaling by exp(m_new - m_old): the inverse of the right factor (and inf * 0 = NaN at the start)."),
    Wrong("online_softmax_update", "nan_when_masked", "subtract a safe maximum", _upd('''
    m_new = np.maximum(m, scores.max(-1))
    alpha = np.exp(m - m_new)
    p = np.exp(scores - m_new[..., None])
    return m_new, alpha * l + p.sum(-1), alpha[..., None] * acc + p @ values
'''), "No safe maximum: a row that has seen only -inf computes -inf - (-inf) = NaN, which then poisons "
          "every later block."),
    Wrong("online_softmax_update", "block_max_only", "the larger of the old m and the block's max", _upd('''
    m_new = scores.max(-1)
    safe = np.where(np.isneginf(m_new), 0.0, m_new)
    alpha = np.exp(np.where(np.isneginf(m), -np.inf, m - safe))
    p = np.exp(scores - safe[..., None])
    return m_new, alpha * l + p.sum(-1), alpha[..., None] * acc + p @ values
'''), "Taking the block's maximum as the new m: the rescaling can then grow the old terms, and "
          "exp overflows once an early score dwarfs the later ones."),

    # ---------------------------------------------------------------- online_softmax
    Wrong("online_softmax", "sum_not_rescaled", "rescale the running sum", _osm('''
    for start in range(0, n, block_size):
        block = x[..., start:start + block_size]
        m_new = np.maximum(m, block.max(-1))
        l = l + np.exp(block - m_new[..., None]).sum(-1)
        m = m_new
    return np.exp(x - m[..., None]) / l[..., None]
'''), "Adding each block's sum without rescaling the old l: rows no longer sum to one."),
    Wrong("online_softmax", "normalised_in_loop", "normalise once, at the end", _osm('''
    out = np.zeros(x.shape)
    for start in range(0, n, block_size):
        block = x[..., start:start + block_size]
        m_new = np.maximum(m, block.max(-1))
        l = l * np.exp(m - m_new) + np.exp(block - m_new[..., None]).sum(-1)
        m = m_new
        out[..., start:start + block_size] = np.exp(block - m[..., None]) / l[..., None]
    return out
'''), "Writing the probabilities inside the first pass: early blocks are normalised with a partial "
          "maximum and sum."),
    Wrong("online_softmax", "ragged_block_dropped", "the last block may be shorter", _osm('''
    for start in range(0, n - block_size + 1, block_size):
        block = x[..., start:start + block_size]
        m_new = np.maximum(m, block.max(-1))
        l = l * np.exp(m - m_new) + np.exp(block - m_new[..., None]).sum(-1)
        m = m_new
    return np.exp(x - m[..., None]) / l[..., None]
'''), "`range(0, n - block_size + 1, block_size)`: when block_size does not divide n the last, "
          "shorter block is never visited."),
    Wrong("online_softmax", "sign_flipped", "exp(m_old - m_new)", _osm('''
    for start in range(0, n, block_size):
        block = x[..., start:start + block_size]
        m_new = np.maximum(m, block.max(-1))
        l = l * np.exp(m_new - m) + np.exp(block - m_new[..., None]).sum(-1)
        m = m_new
    return np.exp(x - m[..., None]) / l[..., None]
'''), "Rescaling by exp(m_new - m_old): at the start this is exp(inf) * 0 = NaN."),
    Wrong("online_softmax", "nan_when_masked", "subtract a safe maximum", _osm('''
    for start in range(0, n, block_size):
        block = x[..., start:start + block_size]
        m_new = np.maximum(m, block.max(-1))
        l = l * np.exp(m - m_new) + np.exp(block - m_new[..., None]).sum(-1)
        m = m_new
    return np.exp(x - m[..., None]) / l[..., None]
'''), "No safe maximum: a leading block of -inf gives -inf - (-inf) = NaN."),

    # ---------------------------------------------------------------- tiled_attention
    Wrong("tiled_attention", "causal_sees_next", "the causal diagonal is off by",
          _tiled(_LOOP, mask="np.where(i + 1 >= j, s, -np.inf)"),
          "An off-by-one causal diagonal (`j <= i + 1`): each query sees the next key."),
    Wrong("tiled_attention", "causal_strict", "the causal diagonal is off by",
          _tiled(_LOOP, mask="np.where(i > j, s, -np.inf)"),
          "The other off-by-one (`j < i`): query 0 sees no key at all and its output is 0/0 = NaN."),
    Wrong("tiled_attention", "causal_strict_guarded", "query i attends to keys 0..i inclusive",
          _tiled(_LOOP, mask="np.where(i > j, s, -np.inf)",
                 finish="    l = np.maximum(l, 1e-30)\n    return acc / l[..., None], m + np.log(l)\n"),
          "The `j < i` off-by-one hidden behind a guarded division: query 0 silently outputs 0 "
          "instead of NaN, and every query misses its own key."),
    Wrong("tiled_attention", "causal_block_local_index", "query i attends to keys 0..i inclusive",
          _tiled(_LOOP, mask="np.where(i >= j - start, s, -np.inf)"),
          "Comparing the query index with the key's index inside its block (`j - start`) instead of "
          "its global index: later blocks let queries see future keys."),
    Wrong("tiled_attention", "mask_with_zero", "mask with -inf, not 0",
          _tiled(_LOOP, mask="np.where(i >= j, s, 0.0)"),
          "Masking with 0 instead of -inf: future keys still get weight exp(0 - m)."),
    Wrong("tiled_attention", "no_scale", "scale the scores by 1/sqrt(d)", _tiled(_LOOP, scale=""),
          "Forgetting the 1/sqrt(d) scale of the scores."),
    Wrong("tiled_attention", "lse_without_m", "add the maximum m back",
          _tiled(_LOOP, finish="    return acc / l[..., None], np.log(l)\n"),
          "Returning log(l) as the logsumexp: l is measured from the running maximum m, so the "
          "logsumexp is m + log(l)."),
    Wrong("tiled_attention", "no_logsumexp", "return (output, logsumexp)",
          _tiled(_LOOP, finish="    return acc / l[..., None]\n"),
          "Returning only the output: FlashAttention's backward pass needs the logsumexp of every query."),
    Wrong("tiled_attention", "ragged_block_dropped", "the last block may be shorter",
          _tiled(_LOOP, blocks="range(0, n_k - block_size + 1, block_size)"),
          "`range(0, n - block_size + 1, block_size)`: the ragged last block is skipped."),
    Wrong("tiled_attention", "normalised_in_loop", "divide acc by l once, after the loop",
          _tiled(_LOOP + "        acc = acc / l[..., None]\n", finish="    return acc, m + np.log(l)\n"),
          "Dividing by l inside the loop: the next block then adds unnormalised terms to a normalised "
          "average."),
]

CORRECT = [
    _IMPORTS + '''
def attention_logsumexp(q, k, causal=False):
    s = np.einsum("...id,...jd->...ij", q, k) / np.sqrt(q.shape[-1])
    if causal:
        n = s.shape[-1]
        s = s + np.triu(np.full((n, n), -np.inf), 1)
    return np.logaddexp.reduce(s, axis=-1)
''',
    _IMPORTS + '''
def online_softmax_update(m, l, acc, scores, values):
    # Normalised-as-you-go variant rewritten in the unnormalised form asked for.
    block_max = np.max(scores, axis=-1)
    m_new = np.where(block_max > m, block_max, m)
    ref = np.where(m_new == -np.inf, 0.0, m_new)
    w = np.exp(scores - ref[..., None])
    scale = np.exp(m - ref)
    l_new = scale * l + w.sum(axis=-1)
    acc_new = scale[..., None] * acc + np.einsum("...qb,...bd->...qd", w, values)
    return m_new, l_new, acc_new
''',
    _IMPORTS + '''
def online_softmax(x, block_size):
    n = x.shape[-1]
    starts = list(range(0, n, block_size))
    m = np.full(x.shape[:-1], -np.inf, dtype=x.dtype)
    for s in starts:
        m = np.maximum(m, x[..., s:s + block_size].max(axis=-1))
    # a two-pass variant: maxima first, then sums (still block by block)
    safe = np.where(np.isinf(m), 0, m)
    l = sum(np.exp(x[..., s:s + block_size] - safe[..., None]).sum(axis=-1) for s in starts)
    return np.exp(x - safe[..., None]) / l[..., None]
''',
    _UPDATE + '''
def tiled_attention(q, k, v, block_size=64, causal=False):
    q = q / np.sqrt(q.shape[-1])
    n_q, n_k = q.shape[-2], k.shape[-2]
    m = np.full(q.shape[:-1], -np.inf, dtype=q.dtype)
    l = np.zeros_like(m)
    acc = np.zeros(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
    n_blocks = -(-n_k // block_size)
    for b in range(n_blocks):
        ks = k[..., b * block_size:(b + 1) * block_size, :]
        vs = v[..., b * block_size:(b + 1) * block_size, :]
        s = np.einsum("...id,...jd->...ij", q, ks)
        if causal:
            cols = b * block_size + np.arange(ks.shape[-2])
            s = np.where(cols[None, :] <= np.arange(n_q)[:, None], s, -np.inf)
        m, l, acc = _update(m, l, acc, s, vs)
    return acc / l[..., None], m + np.log(l)
''',
]

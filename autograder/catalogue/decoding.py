"""Wrong and alternative implementations for chapter 6 (06-decoding)."""
import re

from . import Wrong

_SOFTMAX = '''
import numpy as np
def softmax(x, axis=-1):
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)
'''

# A compact GPT forward pass with the conventions of chapter 5, so that every source
# below runs on its own (in the student's notebook these functions are given).
_GPT = _SOFTMAX + '''
import math
def _ln(x, g, b, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * g + b
def _heads(x, h):
    *lead, t, d = x.shape
    return np.swapaxes(x.reshape(*lead, t, h, d // h), -2, -3)
def _block(x, p, h):
    a = _ln(x, p["ln1_g"], p["ln1_b"])
    q, k, v = _heads(a @ p["w_q"], h), _heads(a @ p["w_k"], h), _heads(a @ p["w_v"], h)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    t = x.shape[-2]
    s = np.where(np.tril(np.ones((t, t), dtype=bool)), s, -np.inf)
    o = softmax(s) @ v
    o = np.swapaxes(o, -2, -3)
    x = x + o.reshape(*o.shape[:-2], -1) @ p["w_o"]
    a = _ln(x, p["ln2_g"], p["ln2_b"])
    f = a @ p["w_fc"] + p["b_fc"]
    f = 0.5 * f * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (f + 0.044715 * f ** 3)))
    return x + f @ p["w_proj"] + p["b_proj"]
def gpt_forward(ids, params, n_heads):
    ids = np.asarray(ids)
    t = ids.shape[-1]
    if t > params["wpe"].shape[0]:
        raise ValueError("sequence longer than the context window")
    x = params["wte"][ids] + params["wpe"][np.arange(t)]
    for p in params["blocks"]:
        x = _block(x, p, n_heads)
    return _ln(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T
'''

_PARTS = _GPT + '''
def greedy(logits):
    return np.argmax(logits, axis=-1)
def sample(logits, rng, temperature=1.0):
    if temperature < 0:
        raise ValueError("negative temperature")
    if temperature == 0:
        return np.argmax(logits, axis=-1)
    p = softmax(np.asarray(logits, dtype=np.float64) / temperature)
    c = np.cumsum(p, axis=-1)
    u = rng.random(p.shape[:-1] + (1,)) * c[..., -1:]
    return np.sum(c <= u, axis=-1)
def top_k_filter(logits, k):
    if k < 1:
        raise ValueError("k must be >= 1")
    order = np.argsort(-logits, axis=-1, kind="stable")
    keep = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(keep, order[..., :k], True, axis=-1)
    return np.where(keep, logits, -np.inf)
def top_p_filter(logits, p):
    if not 0 < p <= 1:
        raise ValueError("p must be in (0, 1]")
    if p == 1:
        return logits.copy()
    probs = softmax(logits.astype(np.float64))
    order = np.argsort(-probs, axis=-1, kind="stable")
    srt = np.take_along_axis(probs, order, axis=-1)
    keep = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(keep, order, np.cumsum(srt, axis=-1) - srt < p, axis=-1)
    return np.where(keep, logits, -np.inf)
'''


def _private(source: str) -> str:
    """Rename the helpers to private names, so that a generate() source pasted into a
    notebook (the sample submissions) does not replace the student's own greedy, sample, ..."""
    return re.sub(r"\b(softmax|gpt_forward|greedy|sample|top_k_filter|top_p_filter|_ln|_heads|_block)\(",
                  r"_gen_\1(", source)


def _generate(body: str) -> str:
    """A generate() whose per-step body is `body` (the sources differ only there)."""
    return _private(_PARTS + '''
def generate(prompt_ids, n_new, params, n_heads, rng, temperature=1.0, top_k=None, top_p=None):
    if temperature < 0:
        raise ValueError("negative temperature")
    ids = np.asarray(prompt_ids)
    block = params["wpe"].shape[0]
    for _ in range(n_new):
''' + "\n".join(line for line in body.split("\n") if line.strip()) + "\n")


_STEP = '''
        if temperature == 0:
            nxt = greedy(logits)
        else:
            z = logits / temperature
            if top_k is not None:
                z = top_k_filter(z, top_k)
            if top_p is not None:
                z = top_p_filter(z, top_p)
            nxt = sample(z, rng)
'''

WRONG = [
    Wrong("greedy", "argmax_axis0", "last axis", '''
import numpy as np
def greedy(logits):
    return np.argmax(logits, axis=0)
''', "Taking the argmax over the first axis (the batch) instead of the vocabulary."),
    Wrong("greedy", "argmax_flat", "last axis", '''
import numpy as np
def greedy(logits):
    return np.argmax(logits)
''', "Calling np.argmax without an axis: it returns one index into the flattened array."),
    Wrong("greedy", "max_value", "not its logit", '''
import numpy as np
def greedy(logits):
    return np.max(logits, axis=-1)
''', "Returning the largest logit instead of its index."),
    Wrong("greedy", "argmin", "not the argmin", '''
import numpy as np
def greedy(logits):
    return np.argmin(logits, axis=-1)
''', "Taking the smallest logit (argmin)."),
    Wrong("greedy", "keepdims", "keep the leading axes", '''
import numpy as np
def greedy(logits):
    return np.argmax(logits, axis=-1)[..., None]
''', "Keeping the vocabulary axis (shape (..., 1) instead of (...))."),

    Wrong("sample", "temperature_after_softmax", "before the softmax", _SOFTMAX + '''
def sample(logits, rng, temperature=1.0):
    if temperature == 0:
        return np.argmax(logits, axis=-1)
    p = softmax(logits) / temperature
    p = p / p.sum(axis=-1, keepdims=True)
    c = np.cumsum(p, axis=-1)
    u = rng.random(p.shape[:-1] + (1,)) * c[..., -1:]
    return np.sum(c <= u, axis=-1)
''', "Dividing the probabilities by the temperature after the softmax: renormalised, it has no effect."),
    Wrong("sample", "temperature_multiplied", "don't multiply", _SOFTMAX + '''
def sample(logits, rng, temperature=1.0):
    if temperature == 0:
        return np.argmax(logits, axis=-1)
    p = softmax(logits * temperature)
    c = np.cumsum(p, axis=-1)
    u = rng.random(p.shape[:-1] + (1,)) * c[..., -1:]
    return np.sum(c <= u, axis=-1)
''', "Multiplying the logits by the temperature: high temperatures then sharpen instead of flatten."),
    Wrong("sample", "always_argmax", "only temperature 0 means argmax", '''
import numpy as np
def sample(logits, rng, temperature=1.0):
    return np.argmax(logits, axis=-1)
''', "Always taking the argmax: that is greedy decoding, not sampling."),
    Wrong("sample", "global_random", "never np.random", _SOFTMAX + '''
def sample(logits, rng, temperature=1.0):
    if temperature == 0:
        return np.argmax(logits, axis=-1)
    p = softmax(logits / temperature)
    c = np.cumsum(p, axis=-1)
    u = np.random.random(p.shape[:-1] + (1,)) * c[..., -1:]
    return np.sum(c <= u, axis=-1)
''', "Drawing from the global np.random instead of the rng argument: results cannot be reproduced."),
    Wrong("sample", "no_greedy_at_zero", "temperature 0 means greedy", _SOFTMAX + '''
def sample(logits, rng, temperature=1.0):
    p = softmax(logits / max(temperature, 1e-2))
    c = np.cumsum(p, axis=-1)
    u = rng.random(p.shape[:-1] + (1,)) * c[..., -1:]
    return np.sum(c <= u, axis=-1)
''', "Treating temperature 0 as a small temperature (still random) instead of greedy."),

    Wrong("top_k_filter", "keeps_k_plus_1", "keep exactly k", '''
import numpy as np
def top_k_filter(logits, k):
    kth = np.sort(logits, axis=-1)[..., -k - 1:-k] if k < logits.shape[-1] else -np.inf
    return np.where(logits >= kth, logits, -np.inf)
''', "An off-by-one threshold that keeps k + 1 tokens."),
    Wrong("top_k_filter", "keeps_k_minus_1", "keep exactly k", '''
import numpy as np
def top_k_filter(logits, k):
    kth = np.sort(logits, axis=-1)[..., -k:][..., :1]
    return np.where(logits > kth, logits, -np.inf)
''', "Comparing with > against the k-th largest logit, which keeps k - 1 tokens."),
    Wrong("top_k_filter", "wrong_axis", "along the last axis", '''
import numpy as np
def top_k_filter(logits, k):
    order = np.argsort(-logits, axis=0, kind="stable")
    keep = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(keep, order[:k], True, axis=0)
    return np.where(keep, logits, -np.inf)
''', "Filtering along the first axis (across the batch) instead of the vocabulary."),
    Wrong("top_k_filter", "zero_not_inf", "not 0", '''
import numpy as np
def top_k_filter(logits, k):
    order = np.argsort(-logits, axis=-1, kind="stable")
    keep = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(keep, order[..., :k], True, axis=-1)
    return np.where(keep, logits, 0.0)
''', "Setting the filtered logits to 0 instead of -inf: exp(0) = 1 keeps them in play."),
    Wrong("top_k_filter", "ties_all_kept", "on ties keep the smallest indices", '''
import numpy as np
def top_k_filter(logits, k):
    if k >= logits.shape[-1]:
        return logits.copy()
    kth = np.sort(logits, axis=-1)[..., -k][..., None]
    return np.where(logits >= kth, logits, -np.inf)
''', "Thresholding at the k-th largest value: with ties more than k tokens survive."),

    Wrong("top_p_filter", "drops_crossing_token", "the token that crosses p is kept", _SOFTMAX + '''
def top_p_filter(logits, p):
    probs = softmax(logits)
    order = np.argsort(-probs, axis=-1, kind="stable")
    srt = np.take_along_axis(probs, order, axis=-1)
    keep = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(keep, order, np.cumsum(srt, axis=-1) < p, axis=-1)
    keep[..., :] |= (probs == probs.max(axis=-1, keepdims=True))
    return np.where(keep, logits, -np.inf)
''', "Keeping only tokens whose cumulative probability is below p: the token that crosses p is lost."),
    Wrong("top_p_filter", "unsorted", "sort the probabilities largest first", _SOFTMAX + '''
def top_p_filter(logits, p):
    probs = softmax(logits)
    before = np.cumsum(probs, axis=-1) - probs
    return np.where(before < p, logits, -np.inf)
''', "Taking the cumulative sum in vocabulary order instead of from the most probable token down."),
    Wrong("top_p_filter", "zero_not_inf", "not 0", _SOFTMAX + '''
def top_p_filter(logits, p):
    probs = softmax(logits)
    order = np.argsort(-probs, axis=-1, kind="stable")
    srt = np.take_along_axis(probs, order, axis=-1)
    keep = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(keep, order, np.cumsum(srt, axis=-1) - srt < p, axis=-1)
    return np.where(keep, logits, 0.0)
''', "Setting the filtered logits to 0 instead of -inf."),
    Wrong("top_p_filter", "none_left", "at least", _SOFTMAX + '''
def top_p_filter(logits, p):
    probs = softmax(logits)
    order = np.argsort(-probs, axis=-1, kind="stable")
    srt = np.take_along_axis(probs, order, axis=-1)
    keep = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(keep, order, np.cumsum(srt, axis=-1) < p, axis=-1)
    return np.where(keep, logits, -np.inf)
''', "Keeping tokens while the cumulative sum including them is below p: with a small p no token is left."),
    Wrong("top_p_filter", "cumsum_at_most_p", "the token that crosses p is kept", _SOFTMAX + '''
def top_p_filter(logits, p):
    probs = softmax(logits)
    order = np.argsort(probs, axis=-1)[..., ::-1]
    cum = np.cumsum(np.take_along_axis(probs, order, axis=-1), axis=-1)
    keep = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(keep, order, cum <= p, axis=-1)
    return np.where(keep, logits, -np.inf)
''', "Keeping tokens while the cumulative sum including them is at most p: the token that crosses p "
         "is lost, and with a small p so is every token."),

    Wrong("generate", "forgets_to_append", "append each new id", _generate('''
        logits = gpt_forward(np.asarray(prompt_ids)[..., -block:], params, n_heads)[..., -1, :]
''' + _STEP + '''
        ids = np.concatenate([ids, np.asarray(nxt)[..., None]], axis=-1)
    return ids
'''), "Feeding the prompt at every step, without the ids generated so far."),
    Wrong("generate", "last_token_only", "not only the last token", _generate('''
        logits = gpt_forward(ids[..., -1:], params, n_heads)[..., -1, :]
''' + _STEP + '''
        ids = np.concatenate([ids, np.asarray(nxt)[..., None]], axis=-1)
    return ids
'''), "Feeding only the last token: the model forgets the context."),
    Wrong("generate", "no_crop", "crop the input to the last block_size", _generate('''
        logits = gpt_forward(ids, params, n_heads)[..., -1, :]
''' + _STEP + '''
        ids = np.concatenate([ids, np.asarray(nxt)[..., None]], axis=-1)
    return ids
'''), "Feeding sequences longer than the context window (block_size): there are no positions for them."),
    Wrong("generate", "first_position", "last position", _generate('''
        logits = gpt_forward(ids[..., -block:], params, n_heads)[..., 0, :]
''' + _STEP + '''
        ids = np.concatenate([ids, np.asarray(nxt)[..., None]], axis=-1)
    return ids
'''), "Reading the logits of the first position instead of the last."),
    Wrong("generate", "only_new_ids", "the prompt followed by", _generate('''
        logits = gpt_forward(ids[..., -block:], params, n_heads)[..., -1, :]
''' + _STEP + '''
        ids = np.concatenate([ids, np.asarray(nxt)[..., None]], axis=-1)
    return ids[..., np.asarray(prompt_ids).shape[-1]:]
'''), "Returning only the new ids without the prompt."),
    Wrong("generate", "ignores_filters", "apply top_k_filter", _generate('''
        logits = gpt_forward(ids[..., -block:], params, n_heads)[..., -1, :]
        nxt = greedy(logits) if temperature == 0 else sample(logits, rng, temperature)
        ids = np.concatenate([ids, np.asarray(nxt)[..., None]], axis=-1)
    return ids
'''), "Accepting top_k and top_p and never applying them."),
    # generate is right, but the top_k_filter it calls (the student's own) keeps k - 1 tokens.
    Wrong("generate", "uses_wrong_top_k_filter", "check top_k_filter first", _generate('''
        logits = gpt_forward(ids[..., -block:], params, n_heads)[..., -1, :]
''' + _STEP + '''
        ids = np.concatenate([ids, np.asarray(nxt)[..., None]], axis=-1)
    return ids
''') + '''
def _gen_top_k_filter(logits, k):
    kth = np.sort(logits, axis=-1)[..., -k:][..., :1]
    return np.where(logits > kth, logits, -np.inf)
''', "A correct generate calling a top_k_filter that keeps k - 1 tokens: fix the filter first."),
]

CORRECT = [
    '''
import numpy as np
def greedy(logits):
    x = np.asarray(logits)
    flat = x.reshape(-1, x.shape[-1])
    return np.array([int(np.flatnonzero(r == r.max())[0]) for r in flat], dtype=np.int64).reshape(x.shape[:-1])
''',
    # rng.choice row by row instead of inverse-CDF sampling: different draws, same distribution.
    _SOFTMAX + '''
def sample(logits, rng, temperature=1.0):
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    x = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return np.argmax(x, axis=-1)
    p = softmax(x / temperature)
    flat = p.reshape(-1, p.shape[-1])
    out = np.array([rng.choice(p.shape[-1], p=row / row.sum()) for row in flat], dtype=np.int64)
    return out.reshape(p.shape[:-1])
''',
    # Gumbel-max: argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T).
    '''
import numpy as np
def sample(logits, rng, temperature=1.0):
    if temperature < 0:
        raise ValueError("negative temperature")
    x = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return np.argmax(x, axis=-1)
    return np.argmax(x / temperature + rng.gumbel(size=x.shape), axis=-1)
''',
    '''
import numpy as np
def top_k_filter(logits, k):
    if k < 1:
        raise ValueError("k must be positive")
    x = np.asarray(logits)
    out = np.full_like(x, -np.inf)
    flat_in, flat_out = x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1])
    for r in range(flat_in.shape[0]):
        idx = sorted(range(x.shape[-1]), key=lambda i: (-flat_in[r, i], i))[:k]
        flat_out[r, idx] = flat_in[r, idx]
    return flat_out.reshape(x.shape)
''',
    _SOFTMAX + '''
def top_p_filter(logits, p):
    if p <= 0 or p > 1:
        raise ValueError("p must be in (0, 1]")
    x = np.asarray(logits)
    if p == 1:
        return x.copy()
    probs = softmax(x.astype(np.float64))
    out = np.full_like(x, -np.inf)
    for idx in np.ndindex(*x.shape[:-1]):
        total = 0.0
        for i in sorted(range(x.shape[-1]), key=lambda j: (-probs[idx][j], j)):
            out[idx + (i,)] = x[idx + (i,)]
            total += probs[idx][i]
            if total >= p:
                break
    return out
''',
    # Cropping with a Python slice of a list of columns, rng.choice row by row for the draw.
    _private(_PARTS + '''
def generate(prompt_ids, n_new, params, n_heads, rng, temperature=1.0, top_k=None, top_p=None):
    if temperature < 0:
        raise ValueError("negative temperature")
    prompts = np.asarray(prompt_ids)
    columns = [prompts[..., i] for i in range(prompts.shape[-1])]
    block = len(params["wpe"])
    for _ in range(n_new):
        window = np.stack(columns[-block:], axis=-1)
        logits = gpt_forward(window, params, n_heads)[..., -1, :]
        if temperature == 0:
            columns.append(np.argmax(logits, axis=-1))
            continue
        z = logits / temperature
        if top_k is not None:
            z = top_k_filter(z, top_k)
        if top_p is not None:
            z = top_p_filter(z, top_p)
        probs = softmax(z).reshape(-1, z.shape[-1])
        drawn = [rng.choice(probs.shape[-1], p=row / row.sum()) for row in probs]
        columns.append(np.array(drawn, dtype=np.int64).reshape(z.shape[:-1]))
    return np.stack(columns, axis=-1)
'''),
]

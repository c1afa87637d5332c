"""Wrong and alternative implementations for chapter 15 (15-kv-cache)."""
from . import Wrong

# Compact pieces of chapter 5's model, so that every source below runs on its own (in the
# student's notebook these functions are given). Private names: a source pasted into a
# notebook (the sample submissions) must not replace the student's own functions.
_BASE = '''
import math
import numpy as np
def _kv_softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
def _kv_ln(x, g, b, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    var = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(var + eps) * g + b
def _kv_heads(x, h):
    *lead, t, d = x.shape
    return np.swapaxes(x.reshape(*lead, t, h, d // h), -2, -3)
def _kv_merge(x):
    *lead, h, t, dh = x.shape
    return np.swapaxes(x, -2, -3).reshape(*lead, t, h * dh)
def _kv_mlp(x, p):
    f = _kv_ln(x, p["ln2_g"], p["ln2_b"]) @ p["w_fc"] + p["b_fc"]
    f = 0.5 * f * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (f + 0.044715 * f ** 3)))
    return x + f @ p["w_proj"] + p["b_proj"]
def _kv_block(x, p, h):
    a = _kv_ln(x, p["ln1_g"], p["ln1_b"])
    q, k, v = _kv_heads(a @ p["w_q"], h), _kv_heads(a @ p["w_k"], h), _kv_heads(a @ p["w_v"], h)
    t = x.shape[-2]
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    s = np.where(np.tril(np.ones((t, t), dtype=bool)), s, -np.inf)
    return _kv_mlp(x + _kv_merge(_kv_softmax(s) @ v) @ p["w_o"], p)
'''


def _prefill(keys: str, after: bool = False, length: str = "ids.shape[-1]") -> str:
    """A prefill whose cached keys/values are `keys` (an expression in a = ln1(x), x, p)."""
    body = ("        x = _kv_block(x, p, n_heads)\n        a = _kv_ln(x, p['ln1_g'], p['ln1_b'])\n"
            if after else "        a = _kv_ln(x, p['ln1_g'], p['ln1_b'])\n")
    tail = "" if after else "        x = _kv_block(x, p, n_heads)\n"
    return _BASE + f'''
def prefill(ids, params, n_heads):
    ids = np.asarray(ids)
    t = ids.shape[-1]
    if t > params["wpe"].shape[0]:
        raise ValueError("prompt longer than the context window")
    x = params["wte"][ids] + params["wpe"][:t]
    ks, vs = [], []
    for p in params["blocks"]:
{body}        k, v = {keys}
        ks.append(k)
        vs.append(v)
{tail}    logits = _kv_ln(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T
    return logits, {{"k": np.stack(ks), "v": np.stack(vs), "length": {length}}}
'''


_SPLIT = '_kv_heads(a @ p["w_k"], n_heads), _kv_heads(a @ p["w_v"], n_heads)'

_ATTEND = '''        s = (k @ q[..., None])[..., 0] / math.sqrt(q.shape[-1])
        o = (_kv_softmax(s)[..., None, :] @ v)[..., 0, :]
'''


def _decode(position: str = "t", attend: str = _ATTEND, kv: str = "k, v", length: str = "t + 1",
            first: str = "t = int(cache['length'])") -> str:
    """A decode_step; the slips differ in the position, the attention, the order of (k, v)
    and the returned length."""
    return _BASE + f'''
def decode_step(token, cache, params, n_heads):
    token = np.asarray(token)
    {first}
    if t >= params["wpe"].shape[0]:
        raise ValueError("the cache is full")
    x = params["wte"][token] + params["wpe"][{position}]
    ks, vs = [], []
    for layer, p in enumerate(params["blocks"]):
        a = _kv_ln(x, p["ln1_g"], p["ln1_b"])[..., None, :]
        q = _kv_heads(a @ p["w_q"], n_heads)[..., 0, :]
        kn, vn = _kv_heads(a @ p["w_k"], n_heads), _kv_heads(a @ p["w_v"], n_heads)
        {kv} = np.concatenate([cache["k"][layer], kn], axis=-2), np.concatenate([cache["v"][layer], vn], axis=-2)
{attend}        x = _kv_mlp(x + _kv_merge(o[..., None, :])[..., 0, :] @ p["w_o"], p)
        ks.append(k)
        vs.append(v)
    logits = _kv_ln(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T
    return logits, {{"k": np.stack(ks), "v": np.stack(vs), "length": {length}}}
'''


# generate_cached sources: their own prefill/decode step and chapter 6's decoding rules, all
# under private names (_gc_...), so that pasting one into a notebook replaces only generate_cached.
_GEN_PARTS = _BASE + '''
def _gc_prefill(ids, params, n_heads):
    t = ids.shape[-1]
    if t > params["wpe"].shape[0]:
        raise ValueError("prompt longer than the context window")
    x = params["wte"][ids] + params["wpe"][:t]
    ks, vs = [], []
    for p in params["blocks"]:
        a = _kv_ln(x, p["ln1_g"], p["ln1_b"])
        ks.append(_kv_heads(a @ p["w_k"], n_heads))
        vs.append(_kv_heads(a @ p["w_v"], n_heads))
        x = _kv_block(x, p, n_heads)
    logits = _kv_ln(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T
    return logits, {"k": np.stack(ks), "v": np.stack(vs), "length": t}
def _gc_decode(token, cache, params, n_heads):
    t = int(cache["length"])
    if t >= params["wpe"].shape[0]:
        raise ValueError("the cache is full")
    x = params["wte"][np.asarray(token)] + params["wpe"][t]
    ks, vs = [], []
    for layer, p in enumerate(params["blocks"]):
        a = _kv_ln(x, p["ln1_g"], p["ln1_b"])[..., None, :]
        q = _kv_heads(a @ p["w_q"], n_heads)[..., 0, :]
        k = np.concatenate([cache["k"][layer], _kv_heads(a @ p["w_k"], n_heads)], axis=-2)
        v = np.concatenate([cache["v"][layer], _kv_heads(a @ p["w_v"], n_heads)], axis=-2)
        s = (k @ q[..., None])[..., 0] / math.sqrt(q.shape[-1])
        o = (_kv_softmax(s)[..., None, :] @ v)[..., 0, :]
        x = _kv_mlp(x + _kv_merge(o[..., None, :])[..., 0, :] @ p["w_o"], p)
        ks.append(k)
        vs.append(v)
    logits = _kv_ln(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T
    return logits, {"k": np.stack(ks), "v": np.stack(vs), "length": t + 1}
def _gc_choose(logits, rng, temperature, top_k, top_p):
    if temperature == 0:
        return np.argmax(logits, axis=-1)
    z = logits / temperature
    if top_k is not None and top_k < z.shape[-1]:
        order = np.argsort(-z, axis=-1, kind="stable")
        keep = np.zeros(z.shape, dtype=bool)
        np.put_along_axis(keep, order[..., :top_k], True, axis=-1)
        z = np.where(keep, z, -np.inf)
    if top_p is not None and top_p < 1:
        probs = _kv_softmax(z.astype(np.float64))
        order = np.argsort(-probs, axis=-1, kind="stable")
        srt = np.take_along_axis(probs, order, axis=-1)
        keep = np.zeros(z.shape, dtype=bool)
        np.put_along_axis(keep, order, np.cumsum(srt, axis=-1) - srt < top_p, axis=-1)
        z = np.where(keep, z, -np.inf)
    probs = _kv_softmax(np.asarray(z, dtype=np.float64))
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random(probs.shape[:-1] + (1,)) * cdf[..., -1:]
    return np.sum(cdf <= u, axis=-1)
'''


def _generate(start: str, step: str, header: str = "") -> str:
    """A generate_cached: `start` builds (logits, cache) from the prompt, `step` advances them
    after the new id `nxt` was appended to `ids`."""
    return _GEN_PARTS + header + f'''
def generate_cached(prompt_ids, n_new, params, n_heads, rng, temperature=1.0, top_k=None, top_p=None):
    """Chapter 6's generate, with a KV cache."""
    if temperature < 0:
        raise ValueError("negative temperature")
    ids = np.asarray(prompt_ids)
    if n_new == 0:
        return ids.copy()
    block = params["wpe"].shape[0]
{start}
    for i in range(n_new):
        nxt = _gc_choose(logits, rng, temperature, top_k, top_p)
        ids = np.concatenate([ids, np.asarray(nxt, dtype=ids.dtype)[..., None]], axis=-1)
        if i == n_new - 1:
            break
{step}
    return ids
'''


_START = '''    logits, cache = _gc_prefill(ids[..., -block:], params, n_heads)
    logits = logits[..., -1, :]'''
_STEP = '''        if cache["length"] < block:
            logits, cache = _gc_decode(nxt, cache, params, n_heads)
        else:
            logits, cache = _gc_prefill(ids[..., -block:], params, n_heads)
            logits = logits[..., -1, :]'''

WRONG = [
    # -------------------------------------------------------------- append_kv
    Wrong("append_kv", "prepend", "the old positions come first", '''
import numpy as np
def append_kv(cache_k, cache_v, k_new, v_new):
    return np.concatenate([k_new, cache_k], axis=-2), np.concatenate([v_new, cache_v], axis=-2)
''', "Putting the new positions before the cached ones: the cache is no longer in position order."),
    Wrong("append_kv", "default_axis", "the time axis", '''
import numpy as np
def append_kv(cache_k, cache_v, k_new, v_new):
    return np.concatenate([cache_k, k_new]), np.concatenate([cache_v, v_new])
''', "np.concatenate without axis=-2: it joins along the first axis (heads or batch), not along time."),
    Wrong("append_kv", "new_only", "keep the cached positions", '''
import numpy as np
def append_kv(cache_k, cache_v, k_new, v_new):
    return k_new.copy(), v_new.copy()
''', "Replacing the cache by the new positions instead of appending them."),
    Wrong("append_kv", "swapped_return", "keys with keys", '''
import numpy as np
def append_kv(cache_k, cache_v, k_new, v_new):
    k = np.concatenate([cache_k, k_new], axis=-2)
    v = np.concatenate([cache_v, v_new], axis=-2)
    return v, k
''', "Returning (v, k): every later step then compares queries with values."),
    Wrong("append_kv", "copy_paste_value", "keys with keys", '''
import numpy as np
def append_kv(cache_k, cache_v, k_new, v_new):
    return np.concatenate([cache_k, k_new], axis=-2), np.concatenate([cache_v, k_new], axis=-2)
''', "A copy-paste slip that appends the new key to the values."),

    # -------------------------------------------------------------- attend_one
    Wrong("attend_one", "whole_cache", "only the first `length` slots are valid", '''
import math
import numpy as np
def attend_one(q, k_cache, v_cache, length):
    if not 1 <= length <= k_cache.shape[-2]:
        raise ValueError("bad length")
    s = (k_cache @ q[..., None])[..., 0] / math.sqrt(q.shape[-1])
    w = np.exp(s - s.max(-1, keepdims=True))
    w = w / w.sum(-1, keepdims=True)
    return (w[..., None, :] @ v_cache)[..., 0, :]
''', "Attending over every slot of a static cache: the unwritten tail (zeros or an old sequence's "
         "leftovers) gets weight too."),
    Wrong("attend_one", "mask_zero", "not 0", '''
import math
import numpy as np
def attend_one(q, k_cache, v_cache, length):
    if not 1 <= length <= k_cache.shape[-2]:
        raise ValueError("bad length")
    s = (k_cache @ q[..., None])[..., 0] / math.sqrt(q.shape[-1])
    s = np.where(np.arange(k_cache.shape[-2]) < length, s, 0.0)
    w = np.exp(s - s.max(-1, keepdims=True))
    w = w / w.sum(-1, keepdims=True)
    return (w[..., None, :] @ v_cache)[..., 0, :]
''', "Masking the unwritten slots with a score of 0 instead of -inf: exp(0) = 1 still gives them weight."),
    Wrong("attend_one", "excludes_itself", "attends to itself", '''
import math
import numpy as np
def attend_one(q, k_cache, v_cache, length):
    if not 1 <= length <= k_cache.shape[-2]:
        raise ValueError("bad length")
    k, v = k_cache[..., :length - 1, :], v_cache[..., :length - 1, :]
    if k.shape[-2] == 0:
        return np.zeros(q.shape[:-1] + v_cache.shape[-1:], dtype=v_cache.dtype)
    s = (k @ q[..., None])[..., 0] / math.sqrt(q.shape[-1])
    w = np.exp(s - s.max(-1, keepdims=True))
    w = w / w.sum(-1, keepdims=True)
    return (w[..., None, :] @ v)[..., 0, :]
''', "Reading slots [:length - 1]: the new token does not attend to its own key and value."),
    Wrong("attend_one", "no_scale", "1/sqrt(d)", '''
import numpy as np
def attend_one(q, k_cache, v_cache, length):
    if not 1 <= length <= k_cache.shape[-2]:
        raise ValueError("bad length")
    k, v = k_cache[..., :length, :], v_cache[..., :length, :]
    s = np.einsum("...d,...sd->...s", q, k)
    w = np.exp(s - s.max(-1, keepdims=True))
    w = w / w.sum(-1, keepdims=True)
    return np.einsum("...s,...sd->...d", w, v)
''', "Forgetting the 1/sqrt(d) scale of the scores."),
    Wrong("attend_one", "roles_swapped", "compare the query with the KEYS", '''
import math
import numpy as np
def attend_one(q, k_cache, v_cache, length):
    if not 1 <= length <= k_cache.shape[-2]:
        raise ValueError("bad length")
    k, v = k_cache[..., :length, :], v_cache[..., :length, :]
    s = (v @ q[..., None])[..., 0] / math.sqrt(q.shape[-1])
    w = np.exp(s - s.max(-1, keepdims=True))
    w = w / w.sum(-1, keepdims=True)
    return (w[..., None, :] @ k)[..., 0, :]
''', "Scoring the query against the values and averaging the keys (keys and values swapped)."),

    # -------------------------------------------------------------- prefill
    Wrong("prefill", "kv_swapped", "they are swapped", _prefill(
        '_kv_heads(a @ p["w_v"], n_heads), _kv_heads(a @ p["w_k"], n_heads)'),
        "Storing the values under \"k\" and the keys under \"v\"."),
    Wrong("prefill", "keys_without_ln", "computed from ln1(x)", _prefill(
        '_kv_heads(x @ p["w_k"], n_heads), _kv_heads(x @ p["w_v"], n_heads)'),
        "Computing the cached keys and values from the raw residual stream x instead of ln1(x)."),
    Wrong("prefill", "keys_after_block", "from the block's INPUT", _prefill(_SPLIT, after=True),
          "Computing a block's keys and values after running the block, from its output."),
    Wrong("prefill", "length_is_len", "not len(ids)", _prefill(_SPLIT, length="len(ids)"),
          "Setting \"length\" to len(ids), which is the batch size when ids is a batch (B, T)."),
    Wrong("prefill", "heads_not_split", "the heads are not split", _prefill(
        'a @ p["w_k"], a @ p["w_v"]'),
        "Caching the keys and values as (..., T, D), without splitting them into heads."),

    # -------------------------------------------------------------- decode_step
    Wrong("decode_step", "position_zero", "wpe[T]", _decode(position="0"),
          "Giving every new token the position embedding of position 0 (wpe[0]), as if it started a sequence."),
    Wrong("decode_step", "position_plus_one", "wpe[T]", _decode(first="t = int(cache['length']) + 1",
                                                                length="t").replace(
        'if t >= params["wpe"].shape[0]', 'if t > params["wpe"].shape[0]'),
          "Counting the new token before looking up its position: wpe[T + 1] instead of wpe[T]."),
    Wrong("decode_step", "attend_before_append", "BEFORE attending", _decode(attend='''\
        s = (cache["k"][layer] @ q[..., None])[..., 0] / math.sqrt(q.shape[-1])
        o = (_kv_softmax(s)[..., None, :] @ cache["v"][layer])[..., 0, :]
'''), "Attending over the old cache and appending afterwards: the new token does not attend to itself."),
    Wrong("decode_step", "kv_swapped", "keys and values are swapped", _decode(kv="v, k"),
          "Unpacking (v, k) instead of (k, v): queries are compared with values, and the cache is stored swapped."),
    Wrong("decode_step", "no_scale", "1/sqrt(d_head)", _decode(attend='''\
        s = (k @ q[..., None])[..., 0]
        o = (_kv_softmax(s)[..., None, :] @ v)[..., 0, :]
'''), "Forgetting the 1/sqrt(d_head) scale in the one-query attention."),
    Wrong("decode_step", "length_not_updated", "return the grown cache", _decode(length="t"),
          "Returning the grown keys and values with the old \"length\": the next step reuses the same position."),

    # -------------------------------------------------------------- generate_cached
    Wrong("generate_cached", "stale_cache", "fresh cache in every call", _generate('''\
    if "cache" not in _gc_kept:
        _gc_kept["logits"], _gc_kept["cache"] = _gc_prefill(ids[..., -block:], params, n_heads)
    logits, cache = _gc_kept["logits"][..., -1, :], _gc_kept["cache"]''', _STEP, header="_gc_kept = {}\n"),
          "Keeping the prefilled cache in a global (or a default argument) and reusing it for the next prompt."),
    Wrong("generate_cached", "no_window", "cannot slide past block_size", _generate(_START, '''\
        logits, cache = _gc_decode(nxt, cache, params, n_heads)'''),
          "Decoding past block_size: the cache is full and there is no position embedding for the next token."),
    Wrong("generate_cached", "sliding_cache", "cannot slide past block_size", _generate(_START, '''\
        if cache["length"] == block:
            cache = {"k": cache["k"][..., 1:, :], "v": cache["v"][..., 1:, :], "length": block - 1}
        logits, cache = _gc_decode(nxt, cache, params, n_heads)'''),
          "Sliding the cache by dropping its oldest entry: the kept keys were computed at other positions and "
          "with a context that has left the window, so the logits no longer match generate's."),
    Wrong("generate_cached", "last_prompt_token_twice", "don't feed the prompt's last token", _generate('''\
    logits, cache = _gc_prefill(ids[..., -(block - 1):], params, n_heads)
    logits, cache = _gc_decode(ids[..., -1], cache, params, n_heads)''', _STEP),
          "Prefilling the whole prompt and then feeding its last token again: the model sees it twice."),
    Wrong("generate_cached", "first_position_logits", "from the last logits", _generate('''\
    logits, cache = _gc_prefill(ids[..., -block:], params, n_heads)
    logits = logits[..., 0, :]''', _STEP),
          "Taking prefill's logits at position 0 instead of the last position for the first new token."),
]

CORRECT = [
    # A preallocated append, an einsum attention over a masked static cache, a prefill that writes the
    # block out, and a decode step built on them.
    _BASE + '''
def append_kv(cache_k, cache_v, k_new, v_new):
    t_old, t_new = cache_k.shape[-2], k_new.shape[-2]
    k = np.empty(cache_k.shape[:-2] + (t_old + t_new, cache_k.shape[-1]), dtype=np.result_type(cache_k, k_new))
    v = np.empty(cache_v.shape[:-2] + (t_old + t_new, cache_v.shape[-1]), dtype=np.result_type(cache_v, v_new))
    k[..., :t_old, :], k[..., t_old:, :] = cache_k, k_new
    v[..., :t_old, :], v[..., t_old:, :] = cache_v, v_new
    return k, v

def attend_one(q, k_cache, v_cache, length):
    slots = k_cache.shape[-2]
    if length < 1 or length > slots:
        raise ValueError(f"length {length} outside 1..{slots}")
    s = np.einsum("...d,...sd->...s", q, k_cache) / np.sqrt(q.shape[-1]).astype(q.dtype)
    s = np.where(np.arange(slots) < length, s, -np.inf)
    w = np.exp(s - s.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    return np.einsum("...s,...sd->...d", w, v_cache)

def prefill(ids, params, n_heads):
    ids = np.asarray(ids)
    t = ids.shape[-1]
    if t > len(params["wpe"]):
        raise ValueError("too many tokens")
    x = params["wte"][ids] + params["wpe"][:t]
    keys, values = [], []
    for p in params["blocks"]:
        a = _kv_ln(x, p["ln1_g"], p["ln1_b"])
        q, k, v = (_kv_heads(a @ p[w], n_heads) for w in ("w_q", "w_k", "w_v"))
        keys.append(k)
        values.append(v)
        s = np.einsum("...qd,...kd->...qk", q, k) / math.sqrt(q.shape[-1])
        s = np.where(np.arange(t)[:, None] >= np.arange(t)[None, :], s, -np.inf)
        x = x + _kv_merge(_kv_softmax(s) @ v) @ p["w_o"]
        x = _kv_mlp(x, p)
    return _kv_ln(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T, \\
        {"k": np.stack(keys), "v": np.stack(values), "length": t}

def decode_step(token, cache, params, n_heads):
    pos = int(cache["length"])
    if pos == len(params["wpe"]):
        raise ValueError("no position left")
    x = params["wte"][np.asarray(token)][..., None, :] + params["wpe"][pos:pos + 1]
    keys, values = [], []
    for layer, p in enumerate(params["blocks"]):
        a = _kv_ln(x, p["ln1_g"], p["ln1_b"])
        q = _kv_heads(a @ p["w_q"], n_heads)[..., 0, :]
        k, v = append_kv(cache["k"][layer], cache["v"][layer], _kv_heads(a @ p["w_k"], n_heads),
                         _kv_heads(a @ p["w_v"], n_heads))
        keys.append(k)
        values.append(v)
        x = x + _kv_merge(attend_one(q, k, v, pos + 1)[..., None, :]) @ p["w_o"]
        x = _kv_mlp(x, p)
    logits = (_kv_ln(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T)[..., 0, :]
    return logits, {"k": np.stack(keys), "v": np.stack(values), "length": pos + 1}
''',
    # generate_cached that prefills all but the last prompt token and decodes that one, re-prefilling
    # when the window is full; its own helpers under private names.
    _GEN_PARTS + '''
def generate_cached(prompt_ids, n_new, params, n_heads, rng, temperature=1.0, top_k=None, top_p=None):
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    ids = np.asarray(prompt_ids)
    block = len(params["wpe"])
    cache = None
    for _ in range(n_new):
        window = ids[..., -block:]
        if cache is None or cache["length"] >= block:
            if window.shape[-1] > 1:
                _, cache = _gc_prefill(window[..., :-1], params, n_heads)
            else:
                d_head = params["wte"].shape[1] // n_heads
                empty = np.zeros((len(params["blocks"]),) + window.shape[:-1] + (n_heads, 0, d_head),
                                 dtype=params["wte"].dtype)
                cache = {"k": empty, "v": empty.copy(), "length": 0}
        logits, cache = _gc_decode(window[..., -1], cache, params, n_heads)
        nxt = _gc_choose(logits, rng, temperature, top_k, top_p)
        ids = np.concatenate([ids, np.asarray(nxt, dtype=ids.dtype)[..., None]], axis=-1)
    return ids
''',
]

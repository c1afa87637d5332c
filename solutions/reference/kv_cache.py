"""Chapter 15 reference: the KV cache, incremental decoding for chapter 5's GPT.

The model is chapter 5's (`gpt_forward`, its parameter dict and its blocks, imported here,
not copied). A model with L blocks, H heads of width d_head = D / H, run on token ids of
shape (..., T) (any leading batch axes), has this cache:

    {"k": array (L, ..., H, T, d_head),   keys of every block, head and position
     "v": array (L, ..., H, T, d_head),   values, same layout
     "length": T}                          a Python int: how many positions are cached

k[l, ..., h, t, :] is the key of position t in head h of block l: row t of
split_heads(ln1_l(x_l) @ w_k, H), where x_l is the input of block l (the residual stream)
and ln1_l its first LayerNorm; the same for the values with w_v. Only plain arrays, ints
and dicts with string keys: the cache crosses the grader's wire unchanged.

The graded functions grow this cache by concatenation (a new array per step, fine in
NumPy). The PyTorch section at the end (not graded, used by the chapter's page) keeps
the same numbers in one preallocated tensor written in place, as a GPU wants it.
"""
import math

import numpy as np

from solutions.reference.toy_attention import softmax  # noqa: F401  (given to students)
from solutions.reference.self_attention import (causal_mask, merge_heads,  # noqa: F401
                                                self_attention, split_heads)
from solutions.reference.transformer_block import gelu, layer_norm, mlp, transformer_block  # noqa: F401
from solutions.reference.gpt_numpy import embed_tokens, final_logits, gpt_forward  # noqa: F401
from solutions.reference.decoding import generate, greedy, sample, top_k_filter, top_p_filter  # noqa: F401


def append_kv(cache_k, cache_v, k_new, v_new):
    """Append the keys and values of new positions to a cache, along the time axis.

    cache_k, cache_v: (..., T, d_head), the keys and values of T positions (T may be 0);
    k_new, v_new: (..., t, d_head), those of t new positions, with the same leading axes
    (for example (H, t, d_head) for one sequence, (B, H, t, d_head) for a batch).
    Returns (k, v), each of shape (..., T + t, d_head): the old positions first, then the
    new ones, keys with keys and values with values. The inputs are not modified.
    """
    return (np.concatenate([cache_k, k_new], axis=-2),
            np.concatenate([cache_v, v_new], axis=-2))


def attend_one(q, k_cache, v_cache, length):
    """Attention of ONE new query over the first `length` slots of a cache.

    q: (..., d), one query vector per head (the leading axes are batch and head axes);
    k_cache: (..., S, d) and v_cache: (..., S, d_v), with S >= length slots of which only
    the first `length` are valid. A static cache allocates S slots up front, and what lies
    beyond `length` is unwritten (zeros, or leftovers of an earlier sequence): it must not
    take part at all, not even with weight exp(0).
    The new token's own key and value are already in the cache (at slot length - 1): a
    token attends to itself and to the past.
    Returns (..., d_v): the softmax over the valid slots of the scores k . q / sqrt(d),
    used as weights on the valid values. Raises ValueError unless 1 <= length <= S.
    """
    if not 1 <= length <= k_cache.shape[-2]:
        raise ValueError(f"length must be between 1 and the {k_cache.shape[-2]} slots, got {length}")
    k = k_cache[..., :length, :]
    v = v_cache[..., :length, :]
    scores = (k @ q[..., :, None])[..., 0] / math.sqrt(q.shape[-1])  # (..., length)
    weights = softmax(scores, axis=-1)
    return (weights[..., None, :] @ v)[..., 0, :]


def prefill(ids, params, n_heads):
    """Run the whole prompt through the model once and keep every block's keys and values.

    ids: integer array (..., T) with 1 <= T <= block_size = params["wpe"].shape[0]
    (more raises ValueError, as embed_tokens does).
    Returns (logits, cache):
      logits: (..., T, V), the same as gpt_forward(ids, params, n_heads);
      cache:  {"k": (L, ..., H, T, d_head), "v": same shape, "length": T (an int)},
              where, for block l with input x_l, k[l] = split_heads(ln1_l(x_l) @ w_k, H)
              and v[l] = split_heads(ln1_l(x_l) @ w_v, H): the keys and values that the
              block's attention uses (ln1_l = layer_norm with the block's ln1_g, ln1_b).
    transformer_block does not hand out its keys and values: compute them beside it from
    the block's input, or write the block out yourself.
    """
    ids = np.asarray(ids)
    x = embed_tokens(ids, params["wte"], params["wpe"])
    ks, vs = [], []
    for p in params["blocks"]:
        normed = layer_norm(x, p["ln1_g"], p["ln1_b"])  # what the block's attention reads
        ks.append(split_heads(normed @ p["w_k"], n_heads))
        vs.append(split_heads(normed @ p["w_v"], n_heads))
        x = transformer_block(x, p, n_heads)
    logits = final_logits(x, params["lnf_g"], params["lnf_b"], params["wte"])
    return logits, {"k": np.stack(ks), "v": np.stack(vs), "length": int(ids.shape[-1])}


def decode_step(token, cache, params, n_heads):
    """One step of incremental decoding: the logits after one new token, and the grown cache.

    token: the id of the new token, an int (one sequence) or an integer array (...)
    matching the cache's batch axes (one new token per sequence).
    cache: as returned by prefill or decode_step, holding the T = cache["length"]
    positions before the new token; it is not modified.
    The new token sits at position T, so its input is wte[token] + wpe[T]. In every block:
    ln1, then the new token's query, key and value (split into heads); append the key
    and value to the block's cache (append_kv); attend with the query over all T + 1
    positions (attend_one); merge the heads, apply w_o and add to the residual stream;
    then the MLP part exactly as in transformer_block. Finally final_logits.
    Returns (logits, new_cache): logits (..., V) for the token after the new one, equal
    to gpt_forward(all T + 1 ids)[..., -1, :]; new_cache holds T + 1 positions.
    Raises ValueError if T == block_size (the cache is full: there is no position T).
    """
    token = np.asarray(token)
    t = int(cache["length"])
    if t >= params["wpe"].shape[0]:
        raise ValueError(f"the cache is full: {t} positions, the model knows only {params['wpe'].shape[0]}")
    x = params["wte"][token] + params["wpe"][t]  # (..., D)
    ks, vs = [], []
    for layer, block in enumerate(params["blocks"]):
        h = layer_norm(x, block["ln1_g"], block["ln1_b"])[..., None, :]  # (..., 1, D): one position
        q = split_heads(h @ block["w_q"], n_heads)[..., 0, :]            # (..., H, d_head)
        k, v = append_kv(cache["k"][layer], cache["v"][layer],
                         split_heads(h @ block["w_k"], n_heads), split_heads(h @ block["w_v"], n_heads))
        out = attend_one(q, k, v, t + 1)                                  # (..., H, d_head)
        x = x + merge_heads(out[..., None, :])[..., 0, :] @ block["w_o"]
        x = x + mlp(layer_norm(x, block["ln2_g"], block["ln2_b"]),
                    block["w_fc"], block["b_fc"], block["w_proj"], block["b_proj"])
        ks.append(k)
        vs.append(v)
    logits = final_logits(x, params["lnf_g"], params["lnf_b"], params["wte"])
    return logits, {"k": np.stack(ks), "v": np.stack(vs), "length": t + 1}


def next_id(logits, rng, temperature=1.0, top_k=None, top_p=None):
    """Step 3 of chapter 6's generate as a function (given): the next id from the logits of
    the last position, (..., V) -> (...).

    Temperature 0: greedy. Otherwise divide the logits by the temperature, then
    top_k_filter (if top_k is not None), then top_p_filter (if top_p is not None), then one
    draw with sample(..., rng): the same operations in the same order as generate, so the
    same rng state gives the same ids. A negative temperature raises ValueError.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return greedy(logits)
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return sample(logits, rng)


def generate_cached(prompt_ids, n_new, params, n_heads, rng, temperature=1.0, top_k=None, top_p=None):
    """Chapter 6's generate, with a KV cache: the same arguments, the same tokens.

    prompt_ids: integer array (T,) or (B, T). Prefill the prompt (its last block_size
    ids) once; then, for each of the n_new steps, choose the next id from the logits of
    the last position with next_id(logits, rng, temperature, top_k, top_p) (given: it
    does exactly what generate does), append it, and run decode_step on it alone.
    No model call is needed after the last new id.
    The context window: a cache cannot slide. Once it holds block_size positions there
    is no position left for a new token, and dropping the oldest entry would keep keys
    computed at positions and with a context that no longer exist. So when the cache is
    full, rebuild it: prefill the last block_size ids (what generate feeds the model).
    Every cache is built inside the call: nothing is kept between calls.
    Returns an integer array (..., T + n_new) equal to
    generate(prompt_ids, n_new, params, n_heads, rng, temperature, top_k, top_p), with
    the same draws from rng. A negative temperature raises ValueError (next_id does).
    """
    seq = np.asarray(prompt_ids)
    window = params["wpe"].shape[0]
    if n_new == 0:
        return seq.copy()
    all_logits, cache = prefill(seq[..., -window:], params, n_heads)
    last = all_logits[..., -1, :]
    for step in range(n_new):
        new = np.asarray(next_id(last, rng, temperature, top_k, top_p), dtype=seq.dtype)
        seq = np.concatenate([seq, new[..., None]], axis=-1)
        if step == n_new - 1:
            break  # the last id needs no logits after it
        if cache["length"] < window:
            last, cache = decode_step(new, cache, params, n_heads)
        else:  # the window is full: a cache cannot slide, so rebuild it for the last `window` ids
            all_logits, cache = prefill(seq[..., -window:], params, n_heads)
            last = all_logits[..., -1, :]
    return seq


# ------------------------------------------------------------------ not graded: sizes

def cache_bytes_per_token(n_layers, d_model, bytes_per_number, n_heads=None, n_kv_heads=None):
    """Bytes of cache per token: 2 (a key and a value) x layers x width x bytes.

    With grouped-query attention only n_kv_heads of the n_heads heads have their own keys
    and values, so the width that is cached is d_model * n_kv_heads / n_heads.
    """
    width = d_model if n_kv_heads is None else d_model * n_kv_heads // n_heads
    return 2 * n_layers * width * bytes_per_number


# ------------------------------------------------------------------ not graded: PyTorch, a static cache
#
# The same model in PyTorch, with the cache as ONE preallocated tensor
#     kv: (L, 2, B, H_kv, max_len, d_head)     kv[l, 0] keys, kv[l, 1] values of block l
# written in place (index_copy_), never reallocated, and a decode step whose tensors all
# have fixed shapes (the position is a tensor; attention runs over all max_len slots with
# a mask), so that it can be captured once as a CUDA graph and replayed. H_kv <= H heads
# of keys and values: grouped-query attention, where each group of H / H_kv query heads
# shares one key/value head (H_kv = H is chapter 5's model).

def torch_params(params, dtype=None, device="cpu"):
    """Chapter 5's NumPy parameter dict as torch tensors (same layout)."""
    import torch

    dtype = dtype or torch.float64

    def t(a):
        return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)
    out = {k: t(params[k]) for k in ("wte", "wpe", "lnf_g", "lnf_b")}
    out["blocks"] = [{k: t(v) for k, v in block.items()} for block in params["blocks"]]
    return out


def gqa_params(rng, vocab, d_model, n_layers, n_heads, n_kv_heads, block_size):
    """A random model in chapter 5's layout whose w_k, w_v are (D, D * H_kv / H): a
    grouped-query model (NumPy arrays; torch_params converts it)."""
    d, dkv = d_model, d_model * n_kv_heads // n_heads

    def n(*shape, s=1.0):
        return rng.standard_normal(shape) * s
    blocks = [{"ln1_g": 1 + n(d, s=0.1), "ln1_b": n(d, s=0.1), "w_q": n(d, d, s=d ** -0.5),
               "w_k": n(d, dkv, s=d ** -0.5), "w_v": n(d, dkv, s=d ** -0.5), "w_o": n(d, d, s=d ** -0.5),
               "ln2_g": 1 + n(d, s=0.1), "ln2_b": n(d, s=0.1), "w_fc": n(d, 4 * d, s=d ** -0.5),
               "b_fc": n(4 * d, s=0.1), "w_proj": n(4 * d, d, s=(4 * d) ** -0.5), "b_proj": n(d, s=0.1)}
              for _ in range(n_layers)]
    return {"wte": n(vocab, d), "wpe": n(block_size, d, s=0.5), "lnf_g": 1 + n(d, s=0.1),
            "lnf_b": n(d, s=0.1), "blocks": blocks}


def _torch_heads(x, n):
    """(B, T, n * d_head) -> (B, n, T, d_head)."""
    b, t, w = x.shape
    return x.view(b, t, n, w // n).transpose(1, 2)


def _torch_mlp_part(x, p):
    import torch.nn.functional as F

    h = F.layer_norm(x, x.shape[-1:], p["ln2_g"], p["ln2_b"], eps=1e-5)
    return x + F.gelu(h @ p["w_fc"] + p["b_fc"], approximate="tanh") @ p["w_proj"] + p["b_proj"]


def _grouped_attention(q, k, v, allowed):
    """q: (B, H, Tq, dh); k, v: (B, H_kv, S, dh); allowed: bool, broadcastable to
    (Tq, S). Each group of H / H_kv query heads reads one key/value head, without copying
    the keys and values H / H_kv times."""
    import torch

    b, h, tq, dh = q.shape
    h_kv = k.shape[1]
    q = q.reshape(b, h_kv, h // h_kv, tq, dh)
    scores = q @ k[:, :, None].transpose(-1, -2) / math.sqrt(dh)        # (B, H_kv, g, Tq, S)
    scores = scores.masked_fill(~allowed, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v[:, :, None]                 # (B, H_kv, g, Tq, dh)
    return out.reshape(b, h, tq, dh)


def torch_forward(ids, tp, n_heads, n_kv_heads=None):
    """Full recomputation in PyTorch (the reference the cached versions must equal).
    ids: (B, T) long tensor. Returns logits (B, T, V)."""
    import torch
    import torch.nn.functional as F

    n_kv_heads = n_kv_heads or n_heads
    t = ids.shape[-1]
    x = tp["wte"][ids] + tp["wpe"][:t]
    causal = torch.ones(t, t, dtype=torch.bool, device=ids.device).tril()
    for p in tp["blocks"]:
        h = F.layer_norm(x, x.shape[-1:], p["ln1_g"], p["ln1_b"], eps=1e-5)
        q = _torch_heads(h @ p["w_q"], n_heads)
        k, v = _torch_heads(h @ p["w_k"], n_kv_heads), _torch_heads(h @ p["w_v"], n_kv_heads)
        o = _grouped_attention(q, k, v, causal)
        x = _torch_mlp_part(x + o.transpose(1, 2).reshape(x.shape) @ p["w_o"], p)
    return F.layer_norm(x, x.shape[-1:], tp["lnf_g"], tp["lnf_b"], eps=1e-5) @ tp["wte"].T


def static_cache(n_layers, batch, n_kv_heads, max_len, d_head, dtype=None, device="cpu"):
    """The preallocated cache: zeros (L, 2, B, H_kv, max_len, d_head), allocated once."""
    import torch

    return torch.zeros(n_layers, 2, batch, n_kv_heads, max_len, d_head, dtype=dtype or torch.float64,
                       device=device)


def torch_prefill(ids, tp, kv, n_heads):
    """Run the prompt ids (B, T) and write its keys and values into slots 0..T-1 of the
    static cache kv (in place). Returns logits (B, T, V)."""
    import torch
    import torch.nn.functional as F

    n_kv_heads = kv.shape[3]
    t = ids.shape[-1]
    x = tp["wte"][ids] + tp["wpe"][:t]
    causal = torch.ones(t, t, dtype=torch.bool, device=ids.device).tril()
    for layer, p in enumerate(tp["blocks"]):
        h = F.layer_norm(x, x.shape[-1:], p["ln1_g"], p["ln1_b"], eps=1e-5)
        q = _torch_heads(h @ p["w_q"], n_heads)
        k, v = _torch_heads(h @ p["w_k"], n_kv_heads), _torch_heads(h @ p["w_v"], n_kv_heads)
        kv[layer, 0, :, :, :t] = k
        kv[layer, 1, :, :, :t] = v
        o = _grouped_attention(q, k, v, causal)
        x = _torch_mlp_part(x + o.transpose(1, 2).reshape(x.shape) @ p["w_o"], p)
    return F.layer_norm(x, x.shape[-1:], tp["lnf_g"], tp["lnf_b"], eps=1e-5) @ tp["wte"].T


def torch_decode_step(token, pos, tp, kv, n_heads):
    """One decode step against the static cache, with fixed shapes throughout.

    token: (B,) long tensor, the new ids; pos: a 1-element long tensor on the same device,
    the new token's position (the number of slots already written). Writes the new keys
    and values into slot pos of kv in place and attends over all max_len slots, masked to
    the slots <= pos. No tensor's shape depends on pos, so the step can be captured as a
    CUDA graph and replayed with new values in `token` and `pos`. Returns logits (B, V).
    """
    import torch
    import torch.nn.functional as F

    n_kv_heads, max_len = kv.shape[3], kv.shape[4]
    x = (tp["wte"][token] + tp["wpe"][pos])[:, None, :]                   # (B, 1, D)
    allowed = torch.arange(max_len, device=kv.device) <= pos              # (max_len,)
    for layer, p in enumerate(tp["blocks"]):
        h = F.layer_norm(x, x.shape[-1:], p["ln1_g"], p["ln1_b"], eps=1e-5)
        q = _torch_heads(h @ p["w_q"], n_heads)                           # (B, H, 1, dh)
        kv[layer, 0].index_copy_(2, pos, _torch_heads(h @ p["w_k"], n_kv_heads))
        kv[layer, 1].index_copy_(2, pos, _torch_heads(h @ p["w_v"], n_kv_heads))
        o = _grouped_attention(q, kv[layer, 0], kv[layer, 1], allowed)
        x = _torch_mlp_part(x + o.transpose(1, 2).reshape(x.shape) @ p["w_o"], p)
    return (F.layer_norm(x, x.shape[-1:], tp["lnf_g"], tp["lnf_b"], eps=1e-5) @ tp["wte"].T)[:, 0]

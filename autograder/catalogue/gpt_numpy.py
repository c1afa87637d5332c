"""Wrong and alternative implementations for chapter 5 (05-gpt-numpy).

Each source is self-contained: the building blocks the students are given (softmax,
layer_norm, transformer_block, ...) are repeated here in `_BLOCKS`, written afresh.
"""
from . import Wrong

_SOFTMAX = '''
import numpy as np
def softmax(x, axis=-1):
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)
'''

_LN = '''
import numpy as np
def layer_norm(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta
'''

_BLOCKS = _SOFTMAX + _LN + '''
import math
def self_attention(x, w_q, w_k, w_v, w_o, n_heads, causal=True):
    *lead, t, d = x.shape
    def split(y):
        return np.swapaxes(y.reshape(*lead, t, n_heads, d // n_heads), -2, -3)
    q, k, v = split(x @ w_q), split(x @ w_k), split(x @ w_v)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(d // n_heads)
    s = np.where(np.tril(np.ones((t, t), dtype=bool)), s, -np.inf)
    out = softmax(s, axis=-1) @ v
    return np.swapaxes(out, -2, -3).reshape(*lead, t, d) @ w_o
def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
def transformer_block(x, p, n_heads):
    x = x + self_attention(layer_norm(x, p["ln1_g"], p["ln1_b"]), p["w_q"], p["w_k"], p["w_v"], p["w_o"], n_heads)
    h = layer_norm(x, p["ln2_g"], p["ln2_b"])
    return x + gelu(h @ p["w_fc"] + p["b_fc"]) @ p["w_proj"] + p["b_proj"]
'''

WRONG = [
    Wrong("embed_tokens", "no_positions", "add the position embeddings wpe[:T]", '''
import numpy as np
def embed_tokens(ids, wte, wpe):
    return wte[ids]
''', "Forgetting the position embeddings: attention alone cannot tell the order of the tokens."),
    Wrong("embed_tokens", "positions_twice", "add the position embeddings once", '''
import numpy as np
def embed_tokens(ids, wte, wpe):
    T = ids.shape[-1]
    x = wte[ids] + wpe[:T]
    x += wpe[:T]
    return x
''', "Adding the position embeddings twice (once here and once again in the caller)."),
    Wrong("embed_tokens", "wpe_last_rows", "position t uses row t of wpe", '''
import numpy as np
def embed_tokens(ids, wte, wpe):
    T = ids.shape[-1]
    if T > len(wpe):
        raise ValueError("too long")
    return wte[ids] + wpe[-T:]
''', "Taking the last T rows of wpe (wpe[-T:]) instead of the first T."),
    Wrong("embed_tokens", "wpe_by_vocab", "T = ids.shape[-1]", '''
import numpy as np
def embed_tokens(ids, wte, wpe):
    return wte[ids] + wpe[:len(wte)]
''', "Slicing wpe by the vocabulary size (wpe[:len(vocab)]) instead of the sequence length."),
    Wrong("embed_tokens", "wpe_by_ids", "not the token ids", '''
import numpy as np
def embed_tokens(ids, wte, wpe):
    return wte[ids] + wpe[ids]
''', "Looking up the position table with the token ids (wpe[ids]) instead of the positions 0..T-1."),
    Wrong("embed_tokens", "length_from_first_axis", "the last axis of ids", '''
import numpy as np
def embed_tokens(ids, wte, wpe):
    T = len(ids)
    return wte[ids] + wpe[:T]
''', "Taking T = len(ids), which is the batch size when ids is a batch of sequences."),

    Wrong("final_logits", "no_final_ln", "apply the final LayerNorm", '''
import numpy as np
def final_logits(x, lnf_g, lnf_b, wte):
    return x @ wte.T
''', "Forgetting the final LayerNorm before the unembedding."),
    Wrong("final_logits", "no_transpose", "transposed token embedding", _LN + '''
def final_logits(x, lnf_g, lnf_b, wte):
    return layer_norm(x, lnf_g, lnf_b) @ wte
''', "Unembedding with wte instead of wte.T."),
    Wrong("final_logits", "returns_probs", "return the raw logits", _SOFTMAX + _LN + '''
def final_logits(x, lnf_g, lnf_b, wte):
    return softmax(layer_norm(x, lnf_g, lnf_b) @ wte.T)
''', "Applying a softmax inside the model: it returns probabilities instead of logits."),
    Wrong("final_logits", "ln_params_swapped", "scale by lnf_g, then shift by lnf_b", _LN + '''
def final_logits(x, lnf_g, lnf_b, wte):
    return layer_norm(x, lnf_b, lnf_g) @ wte.T
''', "Passing the LayerNorm's gain and bias in the wrong order."),

    Wrong("gpt_forward", "blocks_reversed", "apply the blocks in order", _BLOCKS + '''
def gpt_forward(ids, params, n_heads):
    x = params["wte"][ids] + params["wpe"][:ids.shape[-1]]
    for block in reversed(params["blocks"]):
        x = transformer_block(x, block, n_heads)
    return layer_norm(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T
''', "Running the blocks from the last to the first."),
    Wrong("gpt_forward", "first_block_repeated", "each layer has its own parameters", _BLOCKS + '''
def gpt_forward(ids, params, n_heads):
    x = params["wte"][ids] + params["wpe"][:ids.shape[-1]]
    for i in range(len(params["blocks"])):
        x = transformer_block(x, params["blocks"][0], n_heads)
    return layer_norm(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T
''', "Applying the same (first) block at every layer."),
    Wrong("gpt_forward", "not_chained", "feed each block's output into the next block", _BLOCKS + '''
def gpt_forward(ids, params, n_heads):
    x = params["wte"][ids] + params["wpe"][:ids.shape[-1]]
    for block in params["blocks"]:
        h = transformer_block(x, block, n_heads)
    if not params["blocks"]:
        h = x
    return layer_norm(h, params["lnf_g"], params["lnf_b"]) @ params["wte"].T
''', "Feeding every block the embeddings instead of the previous block's output."),
    Wrong("gpt_forward", "residual_twice", "already adds its residual", _BLOCKS + '''
def gpt_forward(ids, params, n_heads):
    x = params["wte"][ids] + params["wpe"][:ids.shape[-1]]
    for block in params["blocks"]:
        x = x + transformer_block(x, block, n_heads)
    return layer_norm(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T
''', "Adding the residual again around a block that already adds it."),
    Wrong("gpt_forward", "unembed_with_wpe", "not with wpe", _BLOCKS + '''
def gpt_forward(ids, params, n_heads):
    x = params["wte"][ids] + params["wpe"][:ids.shape[-1]]
    for block in params["blocks"]:
        x = transformer_block(x, block, n_heads)
    return layer_norm(x, params["lnf_g"], params["lnf_b"]) @ params["wpe"].T
''', "Unembedding with the position table wpe instead of the token embedding wte."),
    Wrong("gpt_forward", "no_final_ln", "apply the final LayerNorm", _BLOCKS + '''
def gpt_forward(ids, params, n_heads):
    x = params["wte"][ids] + params["wpe"][:ids.shape[-1]]
    for block in params["blocks"]:
        x = transformer_block(x, block, n_heads)
    return x @ params["wte"].T
''', "Skipping the final LayerNorm."),
    Wrong("gpt_forward", "no_positions", "add the position embeddings", _BLOCKS + '''
def gpt_forward(ids, params, n_heads):
    x = params["wte"][ids]
    for block in params["blocks"]:
        x = transformer_block(x, block, n_heads)
    return layer_norm(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T
''', "Leaving out the position embeddings in the forward pass."),

    Wrong("next_token_probs", "first_position", "LAST position", _SOFTMAX + '''
def next_token_probs(logits, temperature=1.0):
    if temperature <= 0:
        raise ValueError("temperature")
    return softmax(logits[..., 0, :] / temperature)
''', "Taking the distribution of the first position instead of the last."),
    Wrong("next_token_probs", "temperature_after_softmax", "before the softmax", _SOFTMAX + '''
def next_token_probs(logits, temperature=1.0):
    if temperature <= 0:
        raise ValueError("temperature")
    return softmax(logits[..., -1, :]) / temperature
''', "Dividing the probabilities by the temperature after the softmax."),
    Wrong("next_token_probs", "multiply_temperature", "divide the logits by the temperature", _SOFTMAX + '''
def next_token_probs(logits, temperature=1.0):
    if temperature <= 0:
        raise ValueError("temperature")
    return softmax(logits[..., -1, :] * temperature)
''', "Multiplying the logits by the temperature: higher temperatures then sharpen instead of flatten."),
    Wrong("next_token_probs", "all_positions", "only the distribution at the last position", _SOFTMAX + '''
def next_token_probs(logits, temperature=1.0):
    if temperature <= 0:
        raise ValueError("temperature")
    return softmax(logits / temperature)
''', "Returning a distribution for every position instead of the last one."),
    Wrong("next_token_probs", "batch_index", "index the position axis", _SOFTMAX + '''
def next_token_probs(logits, temperature=1.0):
    if temperature <= 0:
        raise ValueError("temperature")
    return softmax(logits[-1] / temperature)
''', "Writing logits[-1]: on a batch it picks the last sequence, not the last position."),
    Wrong("next_token_probs", "no_check", "raise ValueError when temperature <= 0", _SOFTMAX + '''
def next_token_probs(logits, temperature=1.0):
    return softmax(logits[..., -1, :] / temperature)
''', "Accepting a temperature of 0 (a division by zero) instead of raising ValueError."),
]

CORRECT = [
    '''
import numpy as np
def embed_tokens(ids, wte, wpe):
    T = np.shape(ids)[-1]
    if T > wpe.shape[0]:
        raise ValueError("sequence longer than the position table")
    return np.take(wte, ids, axis=0) + wpe[np.arange(T)]
''',
    '''
import numpy as np
def final_logits(x, lnf_g, lnf_b, wte):
    centred = x - x.mean(-1, keepdims=True)
    h = centred / np.sqrt(np.mean(centred * centred, -1, keepdims=True) + 1e-5)
    return np.einsum("...td,vd->...tv", h * lnf_g + lnf_b, wte)
''',
    _BLOCKS + '''
import functools
def gpt_forward(ids, params, n_heads):
    T = ids.shape[-1]
    x = np.take(params["wte"], ids, axis=0) + params["wpe"][:T]
    x = functools.reduce(lambda h, blk: transformer_block(h, blk, n_heads), params["blocks"], x)
    return np.einsum("...td,vd->...tv", layer_norm(x, params["lnf_g"], params["lnf_b"]), params["wte"])
''',
    '''
import numpy as np
def next_token_probs(logits, temperature=1.0):
    if not temperature > 0:
        raise ValueError("temperature must be > 0")
    z = np.take(logits, -1, axis=-2) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)
''',
]

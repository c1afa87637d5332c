"""Chapter 6 reference: decoding (greedy, temperature, top-k, top-p) and the generation loop.

Every function works on logits of shape (..., V): the last axis is the vocabulary,
and any leading axes (a batch of sequences, for instance) are kept.
"""
import numpy as np

from solutions.reference.toy_attention import softmax
from solutions.reference.self_attention import causal_mask, split_heads, merge_heads, self_attention
from solutions.reference.transformer_block import layer_norm, gelu, mlp, transformer_block
from solutions.reference.gpt_numpy import embed_tokens, final_logits, gpt_forward


def greedy(logits):
    """Greedy decoding: the id of the largest logit in each row.

    logits: array (..., V). Returns an integer array (...,): the last axis is
    reduced, leading axes are kept. On ties the smallest index wins (as np.argmax does).
    """
    return np.argmax(logits, axis=-1)


def sample(logits, rng, temperature=1.0):
    """Draw one token id per row from softmax(logits / temperature).

    logits: array (..., V), possibly containing -inf (such tokens are never drawn);
    rng: a np.random.Generator, the only source of randomness (never np.random.*),
    so that equal generators give equal draws. temperature: a number >= 0; the
    logits are divided by it *before* the softmax; temperature 0 means greedy
    (no randomness). A negative temperature raises ValueError.
    Returns an integer array (...,).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return greedy(logits)
    probs = softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)
    # Inverse-CDF sampling: one uniform number per row, then find where it falls
    # in the cumulative distribution. Zero-probability tokens own an empty interval.
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random(probs.shape[:-1] + (1,)) * cdf[..., -1:]
    return np.sum(cdf <= u, axis=-1)


def top_k_filter(logits, k):
    """Keep the k largest logits of each row; set all others to -inf.

    logits: array (..., V); k: an integer >= 1 (k >= V keeps everything).
    Exactly k entries per row are kept: on ties at the boundary, the smallest
    indices win. Raises ValueError if k < 1. Returns a new array, same shape and dtype.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    logits = np.asarray(logits)
    if k >= logits.shape[-1]:
        return logits.copy()
    # A stable sort of the negated logits puts the largest first and keeps equal
    # logits in index order, so the earliest of tied tokens come first.
    order = np.argsort(-logits, axis=-1, kind="stable")
    keep = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(keep, order[..., :k], True, axis=-1)
    return np.where(keep, logits, -np.inf).astype(logits.dtype)


def top_p_filter(logits, p):
    """Nucleus filtering: keep the smallest set of most probable tokens whose
    probabilities (softmax of the logits) add up to at least p; set the rest to -inf.

    Sort the tokens by probability, largest first, and keep each token while the
    total of the tokens *before* it is still below p: the token that crosses p is
    kept, so at least one token always survives. Equal probabilities are taken in
    index order. p must be in (0, 1] (p = 1 keeps everything), otherwise ValueError.
    logits: array (..., V). Returns a new array, same shape and dtype.
    """
    if not 0 < p <= 1:
        raise ValueError(f"p must be in (0, 1], got {p}")
    logits = np.asarray(logits)
    if p == 1:
        return logits.copy()
    probs = softmax(logits.astype(np.float64), axis=-1)
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    before = np.cumsum(sorted_probs, axis=-1) - sorted_probs  # mass of the better tokens
    keep = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(keep, order, before < p, axis=-1)
    return np.where(keep, logits, -np.inf).astype(logits.dtype)


def generate(prompt_ids, n_new, params, n_heads, rng, temperature=1.0, top_k=None, top_p=None):
    """Autoregressive generation with the GPT of chapter 5 (`gpt_forward`, given).

    prompt_ids: integer array (T,) or (B, T) (a batch of prompts of equal length).
    At each of the n_new steps:
      1. run gpt_forward on the sequence so far, cropped to its last
         block_size = params["wpe"].shape[0] tokens (the context window);
      2. take the logits of the last position;
      3. temperature 0: pick greedy(logits). Otherwise divide the logits by the
         temperature, then apply top_k_filter (if top_k is not None), then
         top_p_filter (if top_p is not None), and draw with sample(..., rng);
      4. append the new id to the sequence.
    Returns an integer array (..., T + n_new): the prompt followed by the new ids.
    A negative temperature raises ValueError.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    ids = np.asarray(prompt_ids)
    block_size = len(params["wpe"])  # the context window
    for _ in range(n_new):
        logits = gpt_forward(ids[..., -block_size:], params, n_heads)[..., -1, :]
        if temperature == 0:
            nxt = greedy(logits)
        else:
            logits = logits / temperature
            if top_k is not None:
                logits = top_k_filter(logits, top_k)
            if top_p is not None:
                logits = top_p_filter(logits, top_p)
            nxt = sample(logits, rng)
        ids = np.concatenate([ids, np.asarray(nxt, dtype=ids.dtype)[..., None]], axis=-1)
    return ids

"""Chapter 5 reference: a whole GPT forward pass in NumPy.

The model's parameters are a dict
    wte (V, D)      token embedding; also the unembedding (tied weights)
    wpe (P, D)      learned position embedding, one row per position 0..P-1
    lnf_g, lnf_b (D,)   the final LayerNorm
    blocks          a list of block parameter dicts (see transformer_block), first block first

The building blocks of chapters 2-4 (softmax, self_attention, layer_norm, transformer_block,
...) are imported here so that the exercise can hand them to students as given cells.
"""
import json
from pathlib import Path

import numpy as np

from solutions.reference.toy_attention import softmax  # noqa: F401  (given to students)
from solutions.reference.self_attention import (causal_mask, merge_heads,  # noqa: F401
                                                self_attention, split_heads)
from solutions.reference.transformer_block import gelu, layer_norm, mlp, transformer_block  # noqa: F401

CHECKPOINT = Path(__file__).resolve().parents[2] / "models" / "tiny-gpt.npz"  # written by `make checkpoint`

BLOCK_KEYS = ("ln1_g", "ln1_b", "w_q", "w_k", "w_v", "w_o",
              "ln2_g", "ln2_b", "w_fc", "b_fc", "w_proj", "b_proj")


def embed_tokens(ids, wte, wpe):
    """The input of the first block: token embedding plus position embedding.

    ids: integer array (..., T) of token ids; wte: (V, D); wpe: (P, D), row t is the
    embedding of position t. Position t of every sequence gets wte[ids[..., t]] + wpe[t].
    Returns (..., T, D). Raises ValueError if T > P (the model has no embedding for
    positions from P on).
    """
    t = ids.shape[-1]
    if t > wpe.shape[0]:
        raise ValueError(f"{t} tokens, but the model knows only {wpe.shape[0]} positions")
    return wte[ids] + wpe[:t]


def final_logits(x, lnf_g, lnf_b, wte):
    """From the residual stream to logits: the final LayerNorm, then the unembedding.

    x: (..., T, D) after the last block; lnf_g, lnf_b: (D,); wte: (V, D), the token
    embedding, reused as the unembedding (tied weights). The logit of token v at a position
    is the dot product of the normalised vector with wte[v]. Returns raw logits (..., T, V).
    """
    return layer_norm(x, lnf_g, lnf_b) @ wte.T


def gpt_forward(ids, params, n_heads):
    """The whole GPT: ids (..., T) -> logits (..., T, V).

    Embed the tokens and positions, run the blocks of params["blocks"] one after the
    other (each block's output is the next block's input; transformer_block already adds
    its residual connections), then the final LayerNorm and the tied unembedding.
    The logits at position t score the token that comes after ids[..., t].
    (Calling your embed_tokens and final_logits is the natural way to write it.)
    """
    wte = params["wte"]
    x = wte[ids] + params["wpe"][:ids.shape[-1]]
    for block in params["blocks"]:
        x = transformer_block(x, block, n_heads)
    return layer_norm(x, params["lnf_g"], params["lnf_b"]) @ wte.T


def next_token_probs(logits, temperature=1.0):
    """The distribution of the next token: softmax of the LAST position's logits / temperature.

    logits: (..., T, V). Returns (..., V), non-negative, summing to one over V.
    Temperature above 1 flattens the distribution, below 1 sharpens it.
    Raises ValueError if temperature <= 0.
    """
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    return softmax(logits[..., -1, :] / temperature, axis=-1)


# ------------------------------------------------------------------ not graded: the checkpoint

def load_checkpoint(path=CHECKPOINT):
    """Read a checkpoint written by models/tiny_gpt.py: (params, config).

    `path` is the .npz file; its config (vocabulary, n_head, ...) is the .json beside it.
    Arrays come back as float64 unless the caller casts them.
    """
    path = Path(path)
    config = json.loads(path.with_suffix(".json").read_text())
    with np.load(path) as arrays:
        flat = {name: arrays[name].astype(np.float64) for name in arrays.files}
    params = {name: flat[name] for name in ("wte", "wpe", "lnf_g", "lnf_b")}
    params["blocks"] = [{key: flat[f"blocks.{i}.{key}"] for key in BLOCK_KEYS}
                        for i in range(config["n_layer"])]
    return params, config


def encode(text, vocab):
    """Character-level tokenizer: the id of each character is its index in `vocab`."""
    index = {c: i for i, c in enumerate(vocab)}
    return np.array([index[c] for c in text], dtype=np.int64)


def decode(ids, vocab):
    return "".join(vocab[int(i)] for i in ids)


def continue_text(prompt, params, config, n_chars, temperature=0.0, rng=None):
    """Extend `prompt` one character at a time (greedy when temperature == 0).

    The model sees at most block_size characters, so the context is the last ones.
    """
    ids = list(encode(prompt, config["vocab"]))
    for _ in range(n_chars):
        logits = gpt_forward(np.array(ids[-config["block_size"]:]), params, config["n_head"])
        if temperature == 0:
            ids.append(int(np.argmax(logits[-1])))
        else:
            probs = next_token_probs(logits, temperature)
            ids.append(int(rng.choice(len(probs), p=probs)))
    return decode(ids, config["vocab"])

"""Chapter 19 reference: programming a transformer by hand.

A *program* is a dict of hand-set weights for one transformer block of chapter 4, in
named coordinates:

    semes       list of D names, one per residual-stream dimension ("tok_a", "pos_3", "prev_a")
    wte (V, D)  token embedding, row v for token vocab[v]
    wpe (P, D)  position embedding, row t for position t (P = n_positions)
    w_q, w_k, w_v, w_o (D, D)   the attention weights, applied as x @ w (chapter 3)
    n_heads     optional, default 1

`program_params` turns it into the parameter dict of chapter 5's `gpt_forward` (the same
machine: LayerNorm, causal multi-head attention with 1/sqrt(d_head), residual, MLP), with
the MLP switched off and the first LayerNorm set to the identity on every embedded vector.
`run_program` runs the block and returns the residual stream, where the answer is read from
named semes.

Every sequence starts with the BOS token "^" (id 0) at position 0.
"""
import math

import numpy as np

from solutions.reference.toy_attention import softmax  # noqa: F401  (given to students)
from solutions.reference.self_attention import (causal_mask, merge_heads,  # noqa: F401
                                                self_attention, split_heads)
from solutions.reference.transformer_block import gelu, layer_norm, mlp, transformer_block  # noqa: F401
from solutions.reference.gpt_numpy import embed_tokens, gpt_forward  # noqa: F401


# ------------------------------------------------------------------ given: the workbench

def seme_embeddings(semes, vocab, n_positions):
    """One-hot embeddings in named coordinates (given).

    semes: the list of D seme names; vocab: the list of V tokens; n_positions: P.
    Returns (wte, wpe): row v of wte (V, D) has a single 1, in the seme named
    "tok_" + vocab[v]; row t of wpe (P, D) has a single 1, in the seme "pos_<t>".
    So every embedded vector wte[v] + wpe[t] has exactly two ones and D - 2 zeros.
    """
    where = {name: i for i, name in enumerate(semes)}
    wte = np.zeros((len(vocab), len(semes)))
    wpe = np.zeros((n_positions, len(semes)))
    for row, token in enumerate(vocab):
        wte[row, where["tok_" + token]] = 1.0
    for position in range(n_positions):
        wpe[position, where[f"pos_{position}"]] = 1.0
    return wte, wpe


def program_params(weights):
    """The chapter-5 GPT parameter dict of a one-block program (given).

    weights: a program dict (semes, wte, wpe, w_q, w_k, w_v, w_o, optionally n_heads).
    LayerNorm 1 gets gamma = sqrt(var + eps) and beta = mean of the embedded vectors
    wte[v] + wpe[t], so that layer_norm(x) == x for every one of them: this needs all of
    them to share one mean and one variance (give every token and every position the same
    number of ones), else ValueError. The MLP's weights are zero (it adds nothing), and the
    final LayerNorm is plain (gamma 1, beta 0).
    """
    wte = np.asarray(weights["wte"], dtype=np.float64)
    wpe = np.asarray(weights["wpe"], dtype=np.float64)
    d = wte.shape[1]
    embedded = (wte[:, None, :] + wpe[None, :, :]).reshape(-1, d)
    means, variances = embedded.mean(-1), embedded.var(-1)
    if np.ptp(means) > 1e-9 or np.ptp(variances) > 1e-9:
        raise ValueError("the embedded vectors wte[v] + wpe[t] do not all share one mean and one variance, "
                         "so no LayerNorm is the identity on all of them")
    zero = np.zeros(d)
    block = {"ln1_g": np.full(d, math.sqrt(variances[0] + 1e-5)), "ln1_b": np.full(d, means[0]),
             "w_q": np.asarray(weights["w_q"], dtype=np.float64), "w_k": np.asarray(weights["w_k"], dtype=np.float64),
             "w_v": np.asarray(weights["w_v"], dtype=np.float64), "w_o": np.asarray(weights["w_o"], dtype=np.float64),
             "ln2_g": np.ones(d), "ln2_b": zero.copy(),
             "w_fc": np.zeros((d, 4 * d)), "b_fc": np.zeros(4 * d),
             "w_proj": np.zeros((4 * d, d)), "b_proj": zero.copy()}
    return {"wte": wte, "wpe": wpe, "lnf_g": np.ones(d), "lnf_b": zero.copy(), "blocks": [block]}


def run_program(weights, ids):
    """The residual stream after the program's block (given): (..., T, D).

    ids: integer array (..., T) of token ids, BOS first. This is gpt_forward without its
    last line: embed_tokens, then transformer_block with program_params(weights).
    """
    params = program_params(weights)
    x = embed_tokens(np.asarray(ids), params["wte"], params["wpe"])
    return transformer_block(x, params["blocks"][0], int(weights.get("n_heads", 1)))


def read_semes(weights, text, vocab, names):
    """Run the program on a string and read the named semes (given).

    text: the tokens as one string, BOS first (e.g. "^abca"); vocab: the list of tokens;
    names: the semes to read. Returns an array (T, len(names)): row t is what position t
    holds in those semes after the block.
    """
    ids = np.array([vocab.index(ch) for ch in text])
    stream = run_program(weights, ids)
    return stream[:, [list(weights["semes"]).index(n) for n in names]]


# ------------------------------------------------------------------ graded: write the weights

def previous_token_weights(letters="abc", n_positions=5):
    """A program that copies the previous token.

    Vocabulary: ["^"] + list(letters) (token id 0 is the BOS "^"). Inputs: "^" followed by
    0 to n_positions - 1 letters. After the block, position t must hold in the semes
    "prev_<c>" (one per letter c) the one-hot of the token at position t - 1: prev_c = 1 if
    that token is c, else 0. At positions 0 and 1 (nothing, or the BOS, before them) every
    prev_<c> must be 0. Solved means: within 1e-3 of these values on every input.

    Return a dict {"semes", "wte", "wpe", "w_q", "w_k", "w_v", "w_o", "n_heads"}: semes a
    list of D names (say "tok_^", "tok_a", ..., "pos_0", ..., "prev_a", ...), wte (V, D),
    wpe (n_positions, D), the four attention matrices (D, D), n_heads = 1.
    Mind that self_attention divides the scores by sqrt(d_head) = sqrt(D / n_heads).
    """
    vocab = ["^"] + list(letters)
    semes = ([f"tok_{v}" for v in vocab] + [f"pos_{t}" for t in range(n_positions)]
             + [f"prev_{c}" for c in letters])
    col = {name: i for i, name in enumerate(semes)}
    d = len(semes)
    wte, wpe = seme_embeddings(semes, vocab, n_positions)
    gap = 20.0 * math.sqrt(d)        # a score gap of 20 after self_attention's 1 / sqrt(d_head)
    w_q, w_k, w_v, w_o = (np.zeros((d, d)) for _ in range(4))
    for t in range(n_positions):
        w_k[col[f"pos_{t}"], col[f"pos_{t}"]] = 1.0            # position t answers to "pos_t"
        if t >= 1:
            w_q[col[f"pos_{t}"], col[f"pos_{t - 1}"]] = gap    # position t asks for "pos_{t-1}"
    for c in letters:                                          # the value is the letter (BOS: nothing)
        w_v[col[f"tok_{c}"], col[f"tok_{c}"]] = 1.0
        w_o[col[f"tok_{c}"], col[f"prev_{c}"]] = 1.0           # written into prev_<c>
    return {"semes": semes, "wte": wte, "wpe": wpe, "w_q": w_q, "w_k": w_k, "w_v": w_v, "w_o": w_o,
            "n_heads": 1}


def repeated_token_weights(letters="abc", n_positions=5):
    """A program that detects a repeated token: has this letter appeared before?

    Vocabulary: ["^"] + list(letters). Inputs: "^" followed by 0 to n_positions - 1 letters.
    After the block, position t must hold in the seme "seen" 1 if the letter at position t
    also occurs at some earlier position 1 <= s < t, else 0 (and 0 at the BOS, position 0).
    Solved means: within 1e-3 of these values on every input.

    Return {"semes", "wte", "wpe", "w_q", "w_k", "w_v", "w_o", "n_heads"} as in
    previous_token_weights, with a seme named "seen". A head that finds no earlier match
    still attends somewhere: let the BOS be the default (score it between a non-match and a
    match) and give it the value 0. A letter always matches itself: keep the query's own
    position out.
    """
    vocab = ["^"] + list(letters)
    semes = [f"tok_{v}" for v in vocab] + [f"pos_{t}" for t in range(n_positions)] + ["seen"]
    col = {name: i for i, name in enumerate(semes)}
    d = len(semes)
    wte, wpe = seme_embeddings(semes, vocab, n_positions)
    match = 40.0 * math.sqrt(d)      # same letter: score 40; BOS: 20; anything else: 0
    w_q, w_k, w_v, w_o = (np.zeros((d, d)) for _ in range(4))
    for c in letters:
        w_q[col[f"tok_{c}"], col[f"tok_{c}"]] = match          # a letter looks for its own kind
        w_k[col[f"tok_{c}"], col[f"tok_{c}"]] = 1.0
        w_v[col[f"tok_{c}"], col["seen"]] = 1.0                # every letter's value: "seen" = 1
    w_k[col["tok_^"], col["tok_^"]] = 1.0
    for t in range(n_positions):
        w_q[col[f"pos_{t}"], col["tok_^"]] = match / 2         # every query likes the BOS a little
        w_q[col[f"pos_{t}"], col[f"pos_{t}"]] = -match         # ... and its own position not at all
        w_k[col[f"pos_{t}"], col[f"pos_{t}"]] = 1.0
    w_o[col["seen"], col["seen"]] = 1.0
    return {"semes": semes, "wte": wte, "wpe": wpe, "w_q": w_q, "w_k": w_k, "w_v": w_v, "w_o": w_o,
            "n_heads": 1}


def sort_weights(letters="abcd", n_positions=9):
    """A program that sorts a list of distinct letters, one output token at a time.

    Vocabulary: ["^"] + list(letters) + ["|"]; the letters are given in sorted order.
    Inputs: "^", a list x of n distinct letters, the separator "|", then the first n - 1
    letters of sorted(x) (the output written so far), for every n with 2n + 1 <= n_positions
    and n <= len(letters). Example: "^dbc|bc" (n = 3). At the "|" and at each output letter,
    the seme "next_<c>" must hold the one-hot of the letter that comes next in sorted(x):
    at "|" the smallest letter of x, at an output letter the smallest letter of x that is
    greater than it ("^dbc|bc": b at "|", c at "b", d at "c"). Other positions are not checked.
    Solved means: within 1e-3 of these values at every checked position of every input.

    Return {"semes", "wte", "wpe", "w_q", "w_k", "w_v", "w_o", "n_heads"} as in
    previous_token_weights, with semes "next_<c>" for every letter c.
    """
    vocab = ["^"] + list(letters) + ["|"]
    semes = ([f"tok_{v}" for v in vocab] + [f"pos_{t}" for t in range(n_positions)]
             + [f"next_{c}" for c in letters])
    col = {name: i for i, name in enumerate(semes)}
    d = len(semes)
    wte, wpe = seme_embeddings(semes, vocab, n_positions)
    step = 20.0 * math.sqrt(d)       # consecutive candidates differ by a score of 20
    n = len(letters)
    w_q, w_k, w_v, w_o = (np.zeros((d, d)) for _ in range(4))
    # The query token asks, for every letter w, a score: (n - rank of w) steps if w is
    # greater than the query (smaller letters score higher), a large negative one if not.
    # "|" is smaller than every letter. BOS and "|" keys score 0: below every candidate.
    for r, w in enumerate(letters):
        w_k[col[f"tok_{w}"], col[f"tok_{w}"]] = 1.0
        w_v[col[f"tok_{w}"], col[f"tok_{w}"]] = 1.0
        w_o[col[f"tok_{w}"], col[f"next_{w}"]] = 1.0
        w_q[col["tok_|"], col[f"tok_{w}"]] = (n - r) * step
        for r_query, v in enumerate(letters):
            w_q[col[f"tok_{v}"], col[f"tok_{w}"]] = (n - r) * step if r > r_query else -n * step
    return {"semes": semes, "wte": wte, "wpe": wpe, "w_q": w_q, "w_k": w_k, "w_v": w_v, "w_o": w_o,
            "n_heads": 1}


def relu_neuron_weights(w_tok, w_pos, b, scale=100.0):
    """An attention head that computes a ReLU neuron: the MLP written as attention.

    The neuron reads the one-hot embedding of a token and its position:
    z = w_tok[id] + w_pos[t] + b, output relu(z) = max(0, z). w_tok: (V,), one weight per
    token of the vocabulary ["^"] + the first V - 1 letters of the alphabet; w_pos: (P,), one
    per position (P = n_positions); b: a number.
    Build a head that at every position t >= 1 attends only to itself (score scale * z_t)
    and to the BOS at position 0 (score 0, value 0), with every other position masked out by
    a much lower score. Its weight on itself is then sigmoid(scale * z_t), and with the
    value z_t it writes z_t * sigmoid(scale * z_t) into the seme "relu": that is
    relu(z_t) up to an error that shrinks as the scale grows.
    Solved means: "relu" within 1e-3 of z * sigmoid(scale * z) at every position t >= 1 of
    every input ("^" and 0 to P - 1 letters) for scale = 1, and within 1e-3 of relu(z) with
    the default scale. The checks use weights that are multiples of 1/8, so z is 0 or
    |z| >= 1/8. The BOS position is not checked.

    Return {"semes", "wte", "wpe", "w_q", "w_k", "w_v", "w_o", "n_heads"} as in
    previous_token_weights, with a seme named "relu".
    """
    w_tok = np.asarray(w_tok, dtype=np.float64)
    w_pos = np.asarray(w_pos, dtype=np.float64)
    vocab = ["^"] + [chr(ord("a") + i) for i in range(len(w_tok) - 1)]
    n_positions = len(w_pos)
    semes = [f"tok_{v}" for v in vocab] + [f"pos_{t}" for t in range(n_positions)] + ["relu"]
    col = {name: i for i, name in enumerate(semes)}
    d = len(semes)
    root = math.sqrt(d)              # undo self_attention's 1 / sqrt(d_head)
    wte, wpe = seme_embeddings(semes, vocab, n_positions)
    z_max = np.abs(w_tok).max() + np.abs(w_pos).max() + abs(b)
    mask = 4.0 * scale * z_max + 100.0   # far above any scale * z: masks everything else out
    w_q, w_k, w_v, w_o = (np.zeros((d, d)) for _ in range(4))
    # The key feature "relu" holds z of the key's position (0 at the BOS); every query asks
    # for it with the weight `scale`. The query's own position and the BOS get `mask` extra.
    for v, token in enumerate(vocab):
        w_k[col[f"tok_{token}"], col["relu"]] = w_tok[v]
    w_k[col["tok_^"], col["relu"]] = -(w_pos[0] + b)       # z of the BOS becomes 0
    w_k[col["tok_^"], col["tok_^"]] = 1.0
    for t in range(n_positions):
        w_k[col[f"pos_{t}"], col["relu"]] = w_pos[t] + b
        w_k[col[f"pos_{t}"], col[f"pos_{t}"]] = 1.0
        w_q[col[f"pos_{t}"], col["relu"]] = scale * root
        w_q[col[f"pos_{t}"], col["tok_^"]] = mask * root
        w_q[col[f"pos_{t}"], col[f"pos_{t}"]] = mask * root
    w_v[:, col["relu"]] = w_k[:, col["relu"]]              # the value is z too (0 at the BOS)
    w_o[col["relu"], col["relu"]] = 1.0
    return {"semes": semes, "wte": wte, "wpe": wpe, "w_q": w_q, "w_k": w_k, "w_v": w_v, "w_o": w_o,
            "n_heads": 1}

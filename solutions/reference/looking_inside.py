"""Chapter 18 reference: looking inside a trained transformer.

Five graded functions, each a small, exact measurement on activations that a forward pass
stored: how spread out a head's attention is (`head_entropy`), how much a head behaves like
an induction head (`prefix_matching_score`), what the residual stream "would say" if the
model stopped early (`logit_lens`), one head's output moved from one run into another
(`patch_head`), and how much easier a repeated sequence is the second time
(`induction_loss_gap`).

Below them, not graded: a forward pass that keeps what the measurements need (`run_with_cache`),
built from the pieces of chapters 3-5 (imported, not copied), so that one model, chapter 5's,
and the small models of this chapter (`models/induction_heads.py`, `models/it_coreference.py`)
can be opened up.
"""
import json
import math
from pathlib import Path

import numpy as np

from solutions.reference.toy_attention import softmax
from solutions.reference.self_attention import causal_mask, split_heads
from solutions.reference.transformer_block import layer_norm, mlp
from solutions.reference.gpt_numpy import embed_tokens, final_logits


def head_entropy(weights):
    """The mean entropy, in nats, of a head's attention distributions.

    weights: (..., T_q, T_k), each row (the last axis) a distribution over keys that sums
    to one; positions a causal mask hid have weight exactly 0 and contribute nothing
    (0 log 0 = 0, never NaN). The entropy of one row is -sum_k w_k ln w_k (natural log:
    nats, not bits); return the mean of the T_q row entropies, so the last two axes are
    reduced and any leading axes (layers, heads) are kept: the result has shape (...),
    in the dtype of `weights`. 0 means every query looks at one key only; ln(T_k) is the
    most spread out a row can be.
    """
    w = np.asarray(weights)
    logw = np.log(np.where(w > 0, w, 1))   # log 1 = 0 where w = 0: those terms vanish
    return -(w * logw).sum(axis=-1).mean(axis=-1)


def prefix_matching_score(weights, tokens):
    """How much a head attends to the token AFTER an earlier occurrence of the current token.

    weights: (..., T, T) attention weights (query i in row i, key j in column j), leading
    axes (layers, heads) allowed; tokens: integer array (T,), T even, whose second half
    repeats the first (positions T/2 .. T-1 are "the repeated half").
    For a query i, the targets are the keys j with 1 <= j <= i whose PREVIOUS token
    tokens[j - 1] equals tokens[i]: the positions just after each earlier occurrence of
    the current token. The query's score is the total weight it gives its targets (0 if it
    has none). Return the mean score over the queries of the repeated half, i = T/2 .. T-1:
    shape (...), the last two axes reduced, in the dtype of `weights`.
    An induction head scores close to 1, a head that ignores the content close to 0.
    """
    w = np.asarray(weights)
    tokens = np.asarray(tokens)
    t = tokens.shape[-1]
    # target[i, j]: key j comes right after an earlier occurrence of token i's value
    same = tokens[:, None] == tokens[None, :]            # same[i, k]: tokens[i] == tokens[k]
    target = np.zeros((t, t), dtype=bool)
    target[:, 1:] = same[:, :-1]                          # key j = k + 1
    target &= np.tril(np.ones((t, t), dtype=bool))        # j <= i
    scores = (w * target).sum(axis=-1)                    # (..., T): one score per query
    return scores[..., t // 2:].mean(axis=-1)


def logit_lens(residual, lnf_g, lnf_b, wte):
    """Read the residual stream as if the model ended here: the final LayerNorm, then the
    unembedding.

    residual: (..., T, D), the stream at some depth (for instance after each block, stacked
    on a leading axis); lnf_g, lnf_b: (D,), the model's FINAL LayerNorm; wte: (V, D), the
    token embedding, which is also the unembedding (tied weights).
    Normalise each position's vector with the final LayerNorm (over the last axis, biased
    variance, eps = 1e-5 inside the square root, then gain and bias: `layer_norm` is given),
    then take its dot product with every row of wte. Return the raw logits (..., T, V),
    not probabilities. Applied to the stream after the last block, this IS the model's output.
    """
    return layer_norm(residual, lnf_g, lnf_b) @ wte.T


def patch_head(head_outputs_clean, head_outputs_corrupt, layer, head, position):
    """Activation patching of one head at one position, on stored activations.

    head_outputs_clean, head_outputs_corrupt: (L, H, T, D) arrays, what each head of each
    layer added to the residual stream at each position, in a "clean" run and in a
    "corrupted" run of the model on two inputs of the same length.
    Return a NEW array, equal to the corrupted run's outputs except the single entry
    [layer, head, position] (a vector of D numbers), which comes from the clean run.
    Everything else (other heads, other layers, other positions) stays corrupted; the inputs
    are not modified. Negative indices count from the end, as in NumPy.
    """
    patched = np.array(head_outputs_corrupt, copy=True)
    patched[layer, head, position] = head_outputs_clean[layer, head, position]
    return patched


def induction_loss_gap(losses, half):
    """How much lower the loss is on the repeated half of a sequence than on the first half.

    The sequence has 2 * half tokens, its second half a copy of the first; losses: array
    (..., 2 * half - 1) in the usual language-model layout: losses[..., t] is the loss of
    predicting token t + 1 from tokens 0..t (nothing predicts token 0).
    The first half's predicted tokens are 1 .. half-1, so their losses are
    losses[..., :half - 1]; the repeated half's tokens are half .. 2*half - 1, losses
    losses[..., half - 1:]. Return mean(first half) - mean(repeated half) along the last axis:
    shape (...), in the dtype of `losses`. Positive when the model uses the repeat.
    Raises ValueError if half < 2 or the last axis is not 2 * half - 1 long.
    """
    losses = np.asarray(losses)
    if half < 2 or losses.shape[-1] != 2 * half - 1:
        raise ValueError(f"expected losses (..., {2 * half - 1}) for half = {half}, got {losses.shape}")
    return losses[..., :half - 1].mean(axis=-1) - losses[..., half - 1:].mean(axis=-1)


# ------------------------------------------------------------------ not graded: opening a model

def run_with_cache(ids, params, n_heads, patch=None):
    """The GPT forward pass of chapter 5, keeping what this chapter looks at.

    ids: (..., T) token ids; params: chapter 5's parameter dict, whose blocks may lack the
    MLP (w_fc, ...) for an attention-only model, and which may hold an untied unembedding
    w_u (D, V) to use instead of wte.T. The math is transformer_block's, with the
    attention written head by head: head h of a layer adds
        softmax(q_h k_h^T / sqrt(d_head) + causal mask) v_h  @  w_o[h * d_head:(h + 1) * d_head]
    to the residual stream, and the heads' sum is exactly self_attention's output.
    patch: None, or (layer, head_outputs (..., H, T, D)) to use instead of what that layer's
    heads compute (activation patching: the rest of the forward pass runs on as usual).

    Returns (logits (..., T, V), cache) with
        cache["resid"]     (L + 1, ..., T, D): the stream before block 0, after block 0, ...;
        cache["weights"]   (L, ..., H, T, T): every head's attention weights;
        cache["head_out"]  (L, ..., H, T, D): every head's contribution to the stream.
    """
    ids = np.asarray(ids)
    x = embed_tokens(ids, params["wte"], params["wpe"])
    t = ids.shape[-1]
    mask = causal_mask(t)
    resid, weights, head_out = [x], [], []
    for layer, p in enumerate(params["blocks"]):
        h = layer_norm(x, p["ln1_g"], p["ln1_b"])
        q, k, v = (split_heads(h @ p[name], n_heads) for name in ("w_q", "w_k", "w_v"))
        d_head = q.shape[-1]
        scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(d_head)
        w = softmax(np.where(mask, scores, -np.inf), axis=-1)               # (..., H, T, T)
        w_o = p["w_o"].reshape(n_heads, d_head, -1)                          # (H, d_head, D)
        out = (w @ v) @ w_o                                                  # (..., H, T, D)
        if patch is not None and patch[0] == layer:
            out = np.asarray(patch[1], dtype=out.dtype)
        weights.append(w)
        head_out.append(out)
        x = x + out.sum(axis=-3)
        if "w_fc" in p:
            x = x + mlp(layer_norm(x, p["ln2_g"], p["ln2_b"]), p["w_fc"], p["b_fc"], p["w_proj"], p["b_proj"])
        resid.append(x)
    if "w_u" in params:   # an untied unembedding (D, V), as models/induction_heads.py trains
        logits = layer_norm(x, params["lnf_g"], params["lnf_b"]) @ params["w_u"]
    else:
        logits = final_logits(x, params["lnf_g"], params["lnf_b"], params["wte"])
    return logits, {"resid": np.stack(resid), "weights": np.stack(weights), "head_out": np.stack(head_out)}


def token_losses(logits, ids):
    """Next-token cross-entropy at each position: (..., T, V) logits, (..., T) ids ->
    (..., T - 1), entry t the loss of predicting ids[..., t + 1] (the layout of induction_loss_gap)."""
    z = logits[..., :-1, :]
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -np.take_along_axis(logp, ids[..., 1:, None], axis=-1)[..., 0]


def repeated_sequences(rng, n, half, vocab_size):
    """n sequences of 2 * half random tokens whose second half repeats the first."""
    first = rng.integers(0, vocab_size, size=(n, half))
    return np.concatenate([first, first], axis=-1)


def load_model(npz):
    """A checkpoint of this chapter (or chapter 5's): (params, meta).

    The .npz holds float32 arrays under flat names (wte, wpe, lnf_g, lnf_b, blocks.{i}.{key});
    the .json beside it, the model's shape and how it was trained. A block without w_fc is
    attention-only; a w_u (D, V) is an untied unembedding. Arrays come back as float64.
    """
    npz = Path(npz)
    meta = json.loads(npz.with_suffix(".json").read_text())
    with np.load(npz) as arrays:
        flat = {name: arrays[name].astype(np.float64) for name in arrays.files}
    params = {name: flat[name] for name in ("wte", "wpe", "lnf_g", "lnf_b", "w_u") if name in flat}
    params["blocks"] = []
    for i in range(meta["n_layer"]):
        prefix = f"blocks.{i}."
        params["blocks"].append({k[len(prefix):]: a for k, a in flat.items() if k.startswith(prefix)})
    return params, meta

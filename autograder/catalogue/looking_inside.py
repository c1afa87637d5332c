"""Wrong and alternative implementations for chapter 18 (18-looking-inside)."""
from . import Wrong

_LN = '''
import numpy as np
def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta
'''

WRONG = [
    # ---------------------------------------------------------------- head_entropy
    Wrong("head_entropy", "nan_on_zero", "0 log 0 counts as 0", '''
import numpy as np
def head_entropy(weights):
    return -(weights * np.log(weights)).sum(axis=-1).mean(axis=-1)
''', "Taking log(0) on the masked keys: 0 * log 0 is NaN in floating point, so every causal head's entropy is NaN."),
    Wrong("head_entropy", "bits", "natural log", '''
import numpy as np
def head_entropy(weights):
    w = np.asarray(weights)
    logw = np.log2(np.where(w > 0, w, 1))
    return -(w * logw).sum(axis=-1).mean(axis=-1)
''', "Using log2: the entropy comes out in bits, 1/ln 2 = 1.44 times the value in nats."),
    Wrong("head_entropy", "no_minus", "minus sign", '''
import numpy as np
def head_entropy(weights):
    w = np.asarray(weights)
    return (w * np.log(np.where(w > 0, w, 1))).sum(axis=-1).mean(axis=-1)
''', "Dropping the minus sign: the entropy comes out negative."),
    Wrong("head_entropy", "per_query", "average the row entropies", '''
import numpy as np
def head_entropy(weights):
    w = np.asarray(weights)
    return -(w * np.log(np.where(w > 0, w, 1))).sum(axis=-1)
''', "Returning one entropy per query instead of the head's mean over its queries."),
    Wrong("head_entropy", "columns", "one query's distribution", '''
import numpy as np
def head_entropy(weights):
    w = np.asarray(weights)
    return -(w * np.log(np.where(w > 0, w, 1))).sum(axis=-2).mean(axis=-1)
''', "Summing over the queries (axis -2) instead of the keys: the columns of an attention matrix are not distributions."),

    # ---------------------------------------------------------------- prefix_matching_score
    Wrong("prefix_matching_score", "occurrence_itself", "AFTER the earlier occurrence", '''
import numpy as np
def prefix_matching_score(weights, tokens):
    tokens = np.asarray(tokens)
    t = len(tokens)
    target = (tokens[:, None] == tokens[None, :]) & np.tril(np.ones((t, t), dtype=bool), -1)
    return (weights * target).sum(axis=-1)[..., t // 2:].mean(axis=-1)
''', "Off by one: measuring attention to the earlier occurrence of the token itself (a duplicate-token head), "
         "not to the token that came after it (an induction head)."),
    Wrong("prefix_matching_score", "every_query", "queries of the repeated half", '''
import numpy as np
def prefix_matching_score(weights, tokens):
    tokens = np.asarray(tokens)
    t = len(tokens)
    target = np.zeros((t, t), dtype=bool)
    target[:, 1:] = tokens[:, None] == tokens[None, :-1]
    target &= np.tril(np.ones((t, t), dtype=bool))
    return (weights * target).sum(axis=-1).mean(axis=-1)
''', "Averaging over every query, the first half too, where there is (mostly) nothing to match yet."),
    Wrong("prefix_matching_score", "copy_only", "EVERY earlier occurrence", '''
import numpy as np
def prefix_matching_score(weights, tokens):
    t = len(tokens)
    half = t // 2
    rows = np.arange(half, t)
    return weights[..., rows, rows - half + 1].mean(axis=-1)
''', "Looking only at the copy at i - T/2 + 1: a token that occurs twice in the first half has two earlier occurrences."),
    Wrong("prefix_matching_score", "mean_of_targets", "not their mean", '''
import numpy as np
def prefix_matching_score(weights, tokens):
    tokens = np.asarray(tokens)
    t = len(tokens)
    target = np.zeros((t, t), dtype=bool)
    target[:, 1:] = tokens[:, None] == tokens[None, :-1]
    target &= np.tril(np.ones((t, t), dtype=bool))
    per_query = (weights * target).sum(axis=-1) / np.maximum(target.sum(axis=-1), 1)
    return per_query[..., t // 2:].mean(axis=-1)
''', "Averaging the weights on a query's targets instead of adding them up."),

    # ---------------------------------------------------------------- logit_lens
    Wrong("logit_lens", "no_layer_norm", "apply the final LayerNorm", '''
import numpy as np
def logit_lens(residual, lnf_g, lnf_b, wte):
    return residual @ wte.T
''', "Unembedding the raw residual stream without the final LayerNorm: the model never reads it that way, "
         "and the early layers' streams have other scales and offsets."),
    Wrong("logit_lens", "no_gain_bias", "includes its gain and bias", _LN + '''
def logit_lens(residual, lnf_g, lnf_b, wte):
    return layer_norm(residual, 1.0, 0.0) @ wte.T
''', "Standardising the stream but leaving out the final LayerNorm's gain and bias."),
    Wrong("logit_lens", "positions_axis", "over the features (the last axis)", '''
import numpy as np
def logit_lens(residual, lnf_g, lnf_b, wte):
    mean = residual.mean(axis=-2, keepdims=True)
    var = ((residual - mean) ** 2).mean(axis=-2, keepdims=True)
    return ((residual - mean) / np.sqrt(var + 1e-5) * lnf_g + lnf_b) @ wte.T
''', "Normalising over the positions (axis -2) instead of each position's features."),
    Wrong("logit_lens", "probabilities", "not probabilities", _LN + '''
def logit_lens(residual, lnf_g, lnf_b, wte):
    z = layer_norm(residual, lnf_g, lnf_b) @ wte.T
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
''', "Returning probabilities (a softmax) where the logits were asked for."),

    # ---------------------------------------------------------------- patch_head
    Wrong("patch_head", "every_position", "patch only the given position", '''
import numpy as np
def patch_head(head_outputs_clean, head_outputs_corrupt, layer, head, position):
    out = head_outputs_corrupt.copy()
    out[layer, head] = head_outputs_clean[layer, head]
    return out
''', "Patching the head at every position: the experiment then asks a different question (does this head "
         "matter anywhere?) and usually moves far more information than the one position carries."),
    Wrong("patch_head", "whole_layer", "patch only the given head", '''
import numpy as np
def patch_head(head_outputs_clean, head_outputs_corrupt, layer, head, position):
    out = head_outputs_corrupt.copy()
    out[layer, :, position] = head_outputs_clean[layer, :, position]
    return out
''', "Patching every head of the layer at that position instead of the one head."),
    Wrong("patch_head", "roles_swapped", "start from the CORRUPTED run", '''
import numpy as np
def patch_head(head_outputs_clean, head_outputs_corrupt, layer, head, position):
    out = head_outputs_clean.copy()
    out[layer, head, position] = head_outputs_corrupt[layer, head, position]
    return out
''', "Swapping the roles: starting from the clean run and bringing in the corrupted entry (that is the "
         "opposite experiment, ablating one head in the clean run)."),
    Wrong("patch_head", "feature_axis", "position indexes the third axis", '''
import numpy as np
def patch_head(head_outputs_clean, head_outputs_corrupt, layer, head, position):
    out = head_outputs_corrupt.copy()
    out[layer, head, :, position] = head_outputs_clean[layer, head, :, position]
    return out
''', "Indexing the feature axis with the position: one feature at every position is patched, not one position."),

    # ---------------------------------------------------------------- induction_loss_gap
    Wrong("induction_loss_gap", "split_at_half", "split at half - 1", '''
import numpy as np
def induction_loss_gap(losses, half):
    losses = np.asarray(losses)
    if half < 2 or losses.shape[-1] != 2 * half - 1:
        raise ValueError("bad shape")
    return losses[..., :half].mean(axis=-1) - losses[..., half:].mean(axis=-1)
''', "Off by one: splitting the losses at half, which counts the first repeated token (that no mechanism "
         "can predict) in the first half."),
    Wrong("induction_loss_gap", "swapped", "first half minus repeated half", '''
import numpy as np
def induction_loss_gap(losses, half):
    losses = np.asarray(losses)
    if half < 2 or losses.shape[-1] != 2 * half - 1:
        raise ValueError("bad shape")
    return losses[..., half - 1:].mean(axis=-1) - losses[..., :half - 1].mean(axis=-1)
''', "Subtracting the halves the wrong way round: a model that uses the repeat gets a negative gap."),
    Wrong("induction_loss_gap", "ratio", "not a ratio", '''
import numpy as np
def induction_loss_gap(losses, half):
    losses = np.asarray(losses)
    if half < 2 or losses.shape[-1] != 2 * half - 1:
        raise ValueError("bad shape")
    return losses[..., :half - 1].mean(axis=-1) / losses[..., half - 1:].mean(axis=-1)
''', "Dividing the means instead of subtracting them."),
    Wrong("induction_loss_gap", "flattened", "keep the leading axes", '''
import numpy as np
def induction_loss_gap(losses, half):
    losses = np.asarray(losses)
    if half < 2 or losses.shape[-1] != 2 * half - 1:
        raise ValueError("bad shape")
    return losses[..., :half - 1].mean() - losses[..., half - 1:].mean()
''', "Averaging over the whole array: one number for a batch (or a whole training run) instead of one per row."),
    Wrong("induction_loss_gap", "no_check", "raise ValueError", '''
import numpy as np
def induction_loss_gap(losses, half):
    losses = np.asarray(losses)
    return losses[..., :half - 1].mean(axis=-1) - losses[..., half - 1:].mean(axis=-1)
''', "Not checking the length: losses of the wrong layout (one per token instead of one per prediction) "
         "give a quietly wrong gap."),
]

CORRECT = [
    '''
import numpy as np
def head_entropy(weights):
    w = np.asarray(weights)
    terms = np.zeros_like(w)
    pos = w > 0
    terms[pos] = w[pos] * np.log(w[pos])
    return -terms.sum(axis=-1).mean(axis=-1)

def prefix_matching_score(weights, tokens):
    w = np.asarray(weights)
    tokens = [int(v) for v in tokens]
    t = len(tokens)
    half = t // 2
    total = np.zeros(w.shape[:-2], dtype=w.dtype)
    for i in range(half, t):
        for j in range(1, i + 1):
            if tokens[j - 1] == tokens[i]:
                total = total + w[..., i, j]
    return (total / (t - half)).astype(w.dtype)

def logit_lens(residual, lnf_g, lnf_b, wte):
    centred = residual - residual.mean(axis=-1, keepdims=True)
    std = np.sqrt((centred ** 2).mean(axis=-1, keepdims=True) + 1e-5)
    return np.einsum("...d,vd->...v", centred / std * lnf_g + lnf_b, wte)

def patch_head(head_outputs_clean, head_outputs_corrupt, layer, head, position):
    mask = np.zeros(head_outputs_corrupt.shape[:3], dtype=bool)
    mask[layer, head, position] = True
    return np.where(mask[..., None], head_outputs_clean, head_outputs_corrupt)

def induction_loss_gap(losses, half):
    losses = np.asarray(losses)
    if half < 2 or losses.shape[-1] != 2 * half - 1:
        raise ValueError("losses must have 2 * half - 1 entries on the last axis")
    first, repeated = np.split(losses, [half - 1], axis=-1)
    return np.mean(first, axis=-1) - np.mean(repeated, axis=-1)
''',
]

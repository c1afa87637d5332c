"""Chapter 5 (05-gpt-numpy): the whole GPT forward pass in NumPy.

Hidden tests use small random models (seeded), never the course checkpoint: the
grader's sandbox has no models/ folder, and small models make every slip visible.
"""
import functools

import numpy as np

from ..framework import (Chapter, CheckFailure, assert_close, assert_raises, assert_shape,
                         as_result_array, attempt, ensure, matches, name_the_slip, rng_for)
from ._gpt_formulas import layer_norm, softmax

chapter = Chapter("05-gpt-numpy", reference="gpt_numpy",
                  functions=["embed_tokens", "final_logits", "gpt_forward", "next_token_probs"],
                  provided=["softmax", "causal_mask", "split_heads", "merge_heads", "self_attention",
                            "layer_norm", "gelu", "mlp", "transformer_block"],
                  sample_scores=(12, 6, 0, 3, 9))
test = chapter.test

BLOCK_KEYS = ("ln1_g", "ln1_b", "w_q", "w_k", "w_v", "w_o",
              "ln2_g", "ln2_b", "w_fc", "b_fc", "w_proj", "b_proj")

# ------------------------------------------------------------------ hints

EMBED_HINT = "position t of every sequence gets wte[ids[..., t]] + wpe[t]"
POS_MISSING_HINT = ("add the position embeddings wpe[:T]: without them the model cannot tell "
                    "'the cat sat' from 'sat the cat'")
POS_TWICE_HINT = "add the position embeddings once: the output is wte[ids] + wpe[:T]"
POS_SLICE_HINT = ("position t uses row t of wpe: add wpe[:T], the first T rows, "
                  "where T = ids.shape[-1] (the last axis of ids)")
POS_IDS_HINT = "positions are 0, 1, ..., T-1, not the token ids: use wpe[:T], not wpe[ids]"
TOO_LONG_HINT = "raise ValueError when T is larger than the number of positions, wpe.shape[0]"

NO_LN_HINT = ("apply the final LayerNorm (layer_norm with lnf_g, lnf_b) to x before the "
              "unembedding")
TRANSPOSE_HINT = ("the unembedding multiplies by the transposed token embedding: "
                  "layer_norm(...) @ wte.T gives one logit per vocabulary entry")
LN_PARAMS_HINT = "layer_norm(x, lnf_g, lnf_b): scale by lnf_g, then shift by lnf_b"
RAW_HINT = "return the raw logits (no softmax): turning them into probabilities comes later"

ORDER_HINT = "apply the blocks in order, params['blocks'][0] first"
REPEAT_HINT = "each layer has its own parameters: block i uses params['blocks'][i]"
CHAIN_HINT = "feed each block's output into the next block: x = transformer_block(x, block, n_heads)"
RESIDUAL_HINT = ("transformer_block already adds its residual connections: write "
                 "x = transformer_block(x, ...), not x = x + transformer_block(x, ...)")
TIED_HINT = ("unembed with the token embedding wte (the weights are tied), not with wpe: "
             "logits = layer_norm(x, lnf_g, lnf_b) @ wte.T")
FORWARD_HINT = ("embed (wte[ids] + wpe[:T]), run every block in order, final LayerNorm, "
                "then @ wte.T")

LAST_HINT = "the next token is predicted at the LAST position: use logits[..., -1, :]"
ONE_POS_HINT = "return only the distribution at the last position: shape (..., V)"
AXIS_HINT = ("index the position axis, which is the second to last: logits[..., -1, :] "
             "(logits[-1] picks the last sequence of a batch)")
TEMP_BEFORE_HINT = ("divide the logits by the temperature before the softmax; "
                    "the probabilities must still sum to one")
TEMP_DIVIDE_HINT = "divide the logits by the temperature (a higher temperature gives a flatter distribution)"
TEMP_RAISE_HINT = "raise ValueError when temperature <= 0"


# ------------------------------------------------------------------ small models for the tests

def random_model(rng, vocab=7, positions=6, d=8, layers=2, dtype=np.float64):
    """A small random GPT parameter dict. Weights are large enough that every slip shows."""
    def n(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    params = {"wte": n(vocab, d), "wpe": n(positions, d, scale=0.5),
              "lnf_g": (1 + n(d, scale=0.3)).astype(dtype), "lnf_b": n(d, scale=0.3), "blocks": []}
    for _ in range(layers):
        s = d ** -0.5
        params["blocks"].append({
            "ln1_g": (1 + n(d, scale=0.2)).astype(dtype), "ln1_b": n(d, scale=0.2),
            "w_q": n(d, d, scale=s), "w_k": n(d, d, scale=s), "w_v": n(d, d, scale=s), "w_o": n(d, d, scale=s),
            "ln2_g": (1 + n(d, scale=0.2)).astype(dtype), "ln2_b": n(d, scale=0.2),
            "w_fc": n(d, 4 * d, scale=s), "b_fc": n(4 * d, scale=0.2),
            "w_proj": n(4 * d, d, scale=(4 * d) ** -0.5), "b_proj": n(d, scale=0.2)})
    return params


_same = functools.partial(matches, rtol=1e-6, atol=1e-8)   # for naming a slip; assert_close decides


# ------------------------------------------------------------------ embed_tokens

def _embed_diagnosis(out, ids, wte, wpe, what):
    t = ids.shape[-1]
    if out.shape != wte[ids].shape:
        return
    if _same(out, wte[ids]):
        raise CheckFailure(f"{what}: the output is the token embedding alone", POS_MISSING_HINT)
    if _same(out, wte[ids] + 2 * wpe[:t]):
        raise CheckFailure(f"{what}: the position embedding was added twice", POS_TWICE_HINT)
    if t < len(wpe) and _same(out, wte[ids] + wpe[-t:]):
        raise CheckFailure(f"{what}: used the last T rows of wpe", POS_SLICE_HINT)
    if ids.max() < len(wpe) and _same(out, wte[ids] + wpe[ids]):
        raise CheckFailure(f"{what}: looked up wpe with the token ids", POS_IDS_HINT)


@test("embed_tokens_visible", "embed_tokens")
def embed_tokens_visible(embed_tokens):
    """Readable embeddings (1000 (t+1) + 10 id + feature): batch, one sequence, too long."""
    vocab, positions, d = 5, 6, 3
    wte = 10.0 * np.arange(vocab)[:, None] + np.arange(d)          # wte[i, j] = 10 i + j
    wpe = 1000.0 * (np.arange(positions)[:, None] + 1) + np.zeros(d)  # wpe[t, j] = 1000 (t + 1)
    ids = np.array([[3, 1, 4], [0, 2, 2]])
    what = "embed_tokens(ids (2, 3), wte (5, 3), wpe (6, 3))"
    out = as_result_array(attempt(lambda: embed_tokens(ids, wte, wpe), what, POS_SLICE_HINT), what)
    assert_shape(out, (2, 3, d), what, "one D-vector per token: the output has shape ids.shape + (D,)")
    _embed_diagnosis(out, ids, wte, wpe, what)
    expected = 1000.0 * (np.arange(3)[:, None] + 1) + 10.0 * ids[..., None] + np.arange(d)
    assert_close(out, expected, what + " (entry [b, t, j] should be 1000 (t + 1) + 10 ids[b, t] + j)",
                 EMBED_HINT)
    one = np.array([2, 0, 1, 1])
    what = "embed_tokens(ids (4,), wte, wpe)"
    out = as_result_array(attempt(lambda: embed_tokens(one, wte, wpe), what, POS_SLICE_HINT), what)
    assert_shape(out, (4, d), what, "one D-vector per token: the output has shape ids.shape + (D,)")
    _embed_diagnosis(out, one, wte, wpe, what)
    assert_close(out, 1000.0 * (np.arange(4)[:, None] + 1) + 10.0 * one[:, None] + np.arange(d), what,
                 EMBED_HINT)
    assert_raises(lambda: embed_tokens(np.zeros(7, dtype=np.int64), wte, wpe), "ValueError",
                  "embed_tokens of 7 tokens with 6 positions", TOO_LONG_HINT)


def _embed_case(embed_tokens, ref, ids, wte, wpe, what):
    out = as_result_array(attempt(lambda: embed_tokens(ids, wte, wpe), what, POS_SLICE_HINT), what)
    expected = ref.embed_tokens(ids, wte, wpe)
    assert_shape(out, expected.shape, what, "the output has shape ids.shape + (D,)")
    _embed_diagnosis(out, ids, wte, wpe, what)
    assert_close(out, expected, what, EMBED_HINT)


@test("embed_tokens_random", "embed_tokens", hidden=True)
def embed_tokens_random(embed_tokens, ref):
    """Random tables, ids with 0 to 2 batch axes, float64 and float32."""
    rng = rng_for("embed_tokens_random")
    for dtype in (np.float64, np.float32):
        wte = rng.standard_normal((11, 6)).astype(dtype)
        wpe = rng.standard_normal((9, 6)).astype(dtype)
        for shape in [(5,), (3, 7), (2, 3, 4)]:
            ids = rng.integers(0, 11, size=shape)
            _embed_case(embed_tokens, ref, ids, wte, wpe, f"embed_tokens(ids {shape}) [{np.dtype(dtype)}]")


@test("embed_tokens_edge", "embed_tokens", hidden=True)
def embed_tokens_edge(embed_tokens, ref):
    """One token; exactly as many tokens as positions; int32 ids; one token too many."""
    rng = rng_for("embed_tokens_edge")
    wte, wpe = rng.standard_normal((4, 5)), rng.standard_normal((6, 5))
    _embed_case(embed_tokens, ref, np.array([3]), wte, wpe, "embed_tokens of one token")
    _embed_case(embed_tokens, ref, rng.integers(0, 4, (2, 6)), wte, wpe, "embed_tokens of T = P tokens")
    _embed_case(embed_tokens, ref, rng.integers(0, 4, (3, 5)).astype(np.int32), wte, wpe,
                "embed_tokens with int32 ids")
    assert_raises(lambda: embed_tokens(np.zeros((2, 7), dtype=np.int64), wte, wpe), "ValueError",
                  "embed_tokens of 7 tokens with 6 positions", TOO_LONG_HINT)


# ------------------------------------------------------------------ final_logits

def _logits_diagnosis(out, x, g, b, wte, what):
    expected = layer_norm(x, g, b) @ wte.T
    if out.shape != expected.shape:
        return
    if _same(out, x @ wte.T):
        raise CheckFailure(f"{what}: the final LayerNorm is missing", NO_LN_HINT)
    if _same(out, softmax(expected)):
        raise CheckFailure(f"{what}: returned probabilities (rows sum to one)", RAW_HINT)
    if _same(out, layer_norm(x, b, g) @ wte.T):
        raise CheckFailure(f"{what}: lnf_g and lnf_b are swapped", LN_PARAMS_HINT)
    if _same(out, layer_norm(x, 1.0, 0.0) @ wte.T):
        raise CheckFailure(f"{what}: the LayerNorm ignores lnf_g and lnf_b", LN_PARAMS_HINT)


@test("final_logits_visible", "final_logits")
def final_logits_visible(final_logits):
    """Final LayerNorm then the tied unembedding, on a 2-token, D=4, V=3 example and with batch axes."""
    x = np.array([[8.0, 4.0, 8.0, 4.0], [1.0, 2.0, 3.0, 10.0]])
    g = np.array([1.0, 2.0, 1.0, 0.5])
    b = np.array([0.0, 0.5, -0.5, 1.0])
    wte = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0], [1.0, -1.0, 2.0, 3.0]])
    what = "final_logits(x (2, 4), lnf_g, lnf_b, wte (3, 4))"
    out = as_result_array(attempt(lambda: final_logits(x, g, b, wte), what, TRANSPOSE_HINT), what)
    assert_shape(out, (2, 3), what, "one logit per vocabulary entry: shape (..., T, V) " + TRANSPOSE_HINT)
    _logits_diagnosis(out, x, g, b, wte, what)
    # Row 0 normalises to (1, -1, 1, -1) (times 1/sqrt(1 + 1e-5)), so its logits are easy to check by hand.
    assert_close(out, layer_norm(x, g, b) @ wte.T, what, NO_LN_HINT)
    xb = np.stack([x, x[::-1] * 3.0, x + 1.0])
    what = "final_logits(x (3, 2, 4), lnf_g, lnf_b, wte)"
    out = as_result_array(attempt(lambda: final_logits(xb, g, b, wte), what, TRANSPOSE_HINT), what)
    assert_shape(out, (3, 2, 3), what, TRANSPOSE_HINT)
    _logits_diagnosis(out, xb, g, b, wte, what)
    assert_close(out, layer_norm(xb, g, b) @ wte.T, what, NO_LN_HINT)


def _logits_case(final_logits, ref, x, g, b, wte, what):
    out = as_result_array(attempt(lambda: final_logits(x, g, b, wte), what, TRANSPOSE_HINT), what)
    expected = ref.final_logits(x, g, b, wte)
    assert_shape(out, expected.shape, what, TRANSPOSE_HINT)
    _logits_diagnosis(out.astype(np.float64), x.astype(np.float64), g, b, wte, what)
    assert_close(out, expected, what, NO_LN_HINT)


@test("final_logits_random", "final_logits", hidden=True)
def final_logits_random(final_logits, ref):
    """Random x, LayerNorm parameters and embeddings, batch axes, float64 and float32."""
    rng = rng_for("final_logits_random")
    for dtype in (np.float64, np.float32):
        for shape in [(5, 8), (2, 4, 8), (2, 2, 3, 8)]:
            x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
            g = (1 + rng.standard_normal(8) * 0.3).astype(dtype)
            b = (rng.standard_normal(8) * 0.3).astype(dtype)
            wte = rng.standard_normal((13, 8)).astype(dtype)
            _logits_case(final_logits, ref, x, g, b, wte, f"final_logits(x {shape}) [{np.dtype(dtype)}]")


@test("final_logits_edge", "final_logits", hidden=True)
def final_logits_edge(final_logits, ref):
    """One position; a vocabulary of one token; huge activations."""
    rng = rng_for("final_logits_edge")
    g, b = 1 + rng.standard_normal(6) * 0.3, rng.standard_normal(6) * 0.3
    _logits_case(final_logits, ref, rng.standard_normal((1, 6)), g, b, rng.standard_normal((9, 6)),
                 "final_logits of one position")
    _logits_case(final_logits, ref, rng.standard_normal((4, 6)), g, b, rng.standard_normal((1, 6)),
                 "final_logits with a vocabulary of one token")
    _logits_case(final_logits, ref, rng.standard_normal((2, 3, 6)) * 1e4, g, b, rng.standard_normal((5, 6)),
                 "final_logits of huge activations")


# ------------------------------------------------------------------ gpt_forward

# Logits at the last position of the visible test's model (random_model(rng_for("gpt_forward_visible"),
# vocab=7, positions=6, d=8, layers=3), ids [2, 5, 0, 6, 3], n_heads=2): computed once with the
# reference, and for four classic slips, to name the slip when a student's output matches one.
VISIBLE_LAST = {
    "correct": [-3.83150197639, 2.76784398908, -0.673883760846, 3.99334982452, -3.6773926024, 2.06308986225,
                -2.32351814964],
    "reversed": [-1.75602678574, 1.720395706, 2.14966304041, 3.73944644943, -2.016121189, -1.03617274398,
                 -3.84362415741],
    "first_block_repeated": [-0.535732825028, -0.230189312629, -4.74775615817, 1.91059993839, -6.2929435836,
                             2.9474903357, 0.7199503287],
    "not_chained": [-1.75019813961, 4.19399368721, -2.93211193745, 4.41080022203, -2.83017155705,
                    1.93018993152, -2.24675906035],
    "residual_twice": [-2.5893238296, 2.94452865197, -3.0103874556, 5.35425693394, -5.43246755641,
                       2.35931622084, -2.0703624883],
}
VISIBLE_IDS = np.array([2, 5, 0, 6, 3])
VISIBLE_SLIPS = {"reversed": ("the blocks ran in reverse order", ORDER_HINT),
                 "first_block_repeated": ("every layer used the first block's parameters", REPEAT_HINT),
                 "not_chained": ("only the last block's output reached the logits", CHAIN_HINT),
                 "residual_twice": ("the residual connection was added twice", RESIDUAL_HINT)}


def _forward_shape(out, expected_shape, params, what):
    if out.shape[:-1] == tuple(expected_shape[:-1]) and out.shape[-1] == params["wpe"].shape[0] \
            and out.shape[-1] != params["wte"].shape[0]:
        raise CheckFailure(f"{what}: one logit per position instead of per vocabulary entry", TIED_HINT)
    assert_shape(out, expected_shape, what, "logits have shape ids.shape + (V,): " + FORWARD_HINT)


def _embed_only(ids, params):
    """The forward pass of a model without blocks (the stack is the identity)."""
    x = params["wte"][ids] + params["wpe"][:ids.shape[-1]]
    return layer_norm(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T


@test("gpt_forward_visible", "gpt_forward")
def gpt_forward_visible(gpt_forward):
    """No blocks (embed, final LayerNorm, tied unembedding); causality; stored logits of a 3-block model."""
    rng = rng_for("gpt_forward_visible")
    params = random_model(rng, vocab=7, positions=6, d=8, layers=3)
    empty = dict(params, blocks=[])
    ids = VISIBLE_IDS
    what = "gpt_forward with no blocks"
    out = as_result_array(attempt(lambda: gpt_forward(ids, empty, 2), what, FORWARD_HINT), what)
    _forward_shape(out, (5, 7), empty, what)
    x = params["wte"][ids]
    if _same(out, layer_norm(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T):
        raise CheckFailure(f"{what}: positions were not added", POS_MISSING_HINT)
    if _same(out, (x + params["wpe"][:5]) @ params["wte"].T):
        raise CheckFailure(f"{what}: the final LayerNorm is missing", NO_LN_HINT)
    assert_close(out, _embed_only(ids, empty), what + " (it should be layer_norm(wte[ids] + wpe[:T]) @ wte.T)",
                 FORWARD_HINT)

    what = "gpt_forward of a 3-block model, ids [2, 5, 0, 6, 3]"
    out = as_result_array(attempt(lambda: gpt_forward(ids, params, 2), what, FORWARD_HINT), what)
    _forward_shape(out, (5, 7), params, what)
    later = ids.copy()
    later[3:] = [1, 1]
    what2 = "gpt_forward with the last two tokens changed"
    out2 = as_result_array(attempt(lambda: gpt_forward(later, params, 2), what2, FORWARD_HINT), what2)
    ensure(out2.shape == out.shape and np.allclose(out2[:3], out[:3], rtol=1e-9, atol=1e-12),
           f"{what2}: the logits of the first three positions changed",
           "a position must never see later tokens: use the given (causal) transformer_block")
    last = out[-1]
    name_the_slip(last, {says: (VISIBLE_LAST[slip], hint) for slip, (says, hint) in VISIBLE_SLIPS.items()}, what,
                  says="{}")
    assert_close(last, VISIBLE_LAST["correct"], what + ", logits at the last position", FORWARD_HINT,
                 rtol=1e-7, atol=1e-9)
    batch = np.stack([ids, later])
    what = "gpt_forward of a batch of 2 sequences"
    outb = as_result_array(attempt(lambda: gpt_forward(batch, params, 2), what, FORWARD_HINT), what)
    _forward_shape(outb, (2, 5, 7), params, what)
    assert_close(outb[0], out, what + ": sequence 0 should give the same logits as alone", FORWARD_HINT)


def _forward_case(gpt_forward, ref, ids, params, n_heads, what):
    out = as_result_array(attempt(lambda: gpt_forward(ids, params, n_heads), what, FORWARD_HINT), what)
    expected = ref.gpt_forward(ids, params, n_heads)
    _forward_shape(out, expected.shape, params, what)
    blocks = params["blocks"]
    if len(blocks) > 1:
        slips = {"reversed": dict(params, blocks=blocks[::-1]),
                 "first_block_repeated": dict(params, blocks=[blocks[0]] * len(blocks))}
        for slip, variant in slips.items():
            if _same(out, ref.gpt_forward(ids, variant, n_heads)):
                raise CheckFailure(f"{what}: {VISIBLE_SLIPS[slip][0]}", VISIBLE_SLIPS[slip][1])
    assert_close(out, expected, what, FORWARD_HINT)


@test("gpt_forward_random", "gpt_forward", hidden=True)
def gpt_forward_random(gpt_forward, ref):
    """Random small models (1 to 3 blocks, 1 to 4 heads), batch axes, float64 and float32."""
    rng = rng_for("gpt_forward_random")
    for dtype in (np.float64, np.float32):
        for layers, heads, shape in [(1, 1, (4,)), (2, 2, (3, 5)), (3, 4, (2, 2, 6))]:
            params = random_model(rng, vocab=9, positions=8, d=8, layers=layers, dtype=dtype)
            ids = rng.integers(0, 9, size=shape)
            _forward_case(gpt_forward, ref, ids, params, heads,
                          f"gpt_forward({layers} blocks, {heads} heads, ids {shape}) [{np.dtype(dtype)}]")


@test("gpt_forward_edge", "gpt_forward", hidden=True)
def gpt_forward_edge(gpt_forward, ref):
    """One token; no blocks; a full context (T = P); a wider model with 4 blocks."""
    rng = rng_for("gpt_forward_edge")
    params = random_model(rng, vocab=5, positions=4, d=8, layers=2)
    _forward_case(gpt_forward, ref, np.array([3]), params, 2, "gpt_forward of one token")
    _forward_case(gpt_forward, ref, np.array([[1, 2, 3], [0, 0, 4]]), dict(params, blocks=[]), 2,
                  "gpt_forward with no blocks")
    _forward_case(gpt_forward, ref, rng.integers(0, 5, (2, 4)), params, 2, "gpt_forward with T = P")
    wide = random_model(rng, vocab=20, positions=12, d=16, layers=4)
    _forward_case(gpt_forward, ref, rng.integers(0, 20, (2, 12)), wide, 4, "gpt_forward, 4 blocks, D = 16")


# ------------------------------------------------------------------ next_token_probs

def _probs_checks(out, logits, temperature, what):
    """Shape, sums and the classic slips; `out` already a plain array."""
    last = logits[..., -1, :]
    if out.shape == logits.shape:
        raise CheckFailure(f"{what}: returned a distribution for every position, shape {out.shape}",
                           ONE_POS_HINT)
    if logits.ndim > 2 and out.shape == logits.shape[1:]:
        raise CheckFailure(f"{what}: shape {out.shape}, the last sequence of the batch instead of the "
                           "last position of each", AXIS_HINT)
    assert_shape(out, last.shape, what, ONE_POS_HINT)
    sums = out.sum(axis=-1)
    if np.all(np.isfinite(out)) and not np.allclose(sums, 1.0, atol=1e-5):
        raise CheckFailure(f"{what}: the probabilities sum to {np.round(sums.ravel()[:3], 4).tolist()}, not 1",
                           TEMP_BEFORE_HINT)
    slips = {"the distribution of the FIRST position": (softmax(logits[..., 0, :] / temperature), LAST_HINT),
             "the logits were multiplied by the temperature": (softmax(last * temperature), TEMP_DIVIDE_HINT),
             "the temperature had no effect": (softmax(last), TEMP_DIVIDE_HINT)}
    name_the_slip(out, slips, what, says="{}", expected=softmax(last / temperature), rtol=1e-6, atol=1e-8)


@test("next_token_probs_visible", "next_token_probs")
def next_token_probs_visible(next_token_probs):
    """The last position's softmax at temperatures 1, 2 and 0.5, on a batch; temperature 0 raises."""
    logits = np.array([[3.0, 0.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    for temperature in (1.0, 2.0, 0.5):
        what = f"next_token_probs(logits (3, 4), temperature={temperature})"
        out = as_result_array(next_token_probs(logits, temperature), what)
        _probs_checks(out, logits, temperature, what)
        assert_close(out, softmax(logits[-1] / temperature), what,
                     "softmax(logits[..., -1, :] / temperature)")
    out = as_result_array(next_token_probs(logits), "next_token_probs(logits) (default temperature)")
    assert_close(out, softmax(logits[-1]), "next_token_probs(logits) with the default temperature 1",
                 "the default temperature is 1.0")
    batch = np.stack([logits, logits[::-1] * 2])
    what = "next_token_probs(logits (2, 3, 4), temperature=1.0)"
    out = as_result_array(next_token_probs(batch, 1.0), what)
    _probs_checks(out, batch, 1.0, what)
    assert_close(out, softmax(batch[:, -1]), what, AXIS_HINT)
    assert_raises(lambda: next_token_probs(logits, 0.0), "ValueError", "next_token_probs with temperature 0",
                  TEMP_RAISE_HINT)
    assert_raises(lambda: next_token_probs(logits, -1.0), "ValueError", "next_token_probs with temperature -1",
                  TEMP_RAISE_HINT)


def _probs_case(next_token_probs, ref, logits, temperature, what):
    out = as_result_array(next_token_probs(logits, temperature), what)
    _probs_checks(out.astype(np.float64), logits.astype(np.float64), temperature, what)
    assert_close(out, ref.next_token_probs(logits, temperature), what,
                 "softmax(logits[..., -1, :] / temperature)")


@test("next_token_probs_random", "next_token_probs", hidden=True)
def next_token_probs_random(next_token_probs, ref):
    """Random logits with batch axes, several temperatures, float64 and float32."""
    rng = rng_for("next_token_probs_random")
    for dtype in (np.float64, np.float32):
        for shape in [(6, 10), (3, 5, 10), (2, 2, 4, 10)]:
            logits = (rng.standard_normal(shape) * 3).astype(dtype)
            for temperature in (1.0, 0.7, 1.8):
                _probs_case(next_token_probs, ref, logits, temperature,
                            f"next_token_probs(logits {shape}, temperature={temperature}) [{np.dtype(dtype)}]")


@test("next_token_probs_edge", "next_token_probs", hidden=True)
def next_token_probs_edge(next_token_probs, ref):
    """One position; huge logits; a tiny temperature (almost greedy); a vocabulary of one."""
    rng = rng_for("next_token_probs_edge")
    _probs_case(next_token_probs, ref, rng.standard_normal((1, 8)), 1.0, "next_token_probs of one position")
    _probs_case(next_token_probs, ref, rng.standard_normal((3, 8)) * 1e4, 1.0,
                "next_token_probs of huge logits")
    _probs_case(next_token_probs, ref, rng.standard_normal((2, 3, 8)), 1e-3,
                "next_token_probs with temperature 0.001")
    _probs_case(next_token_probs, ref, rng.standard_normal((4, 1)), 0.5,
                "next_token_probs with a vocabulary of one")

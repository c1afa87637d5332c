"""Wrong and alternative implementations for chapter 19 (19-programming-by-hand).

Each source is standalone: it brings its own copy of the one-hot embedding helper (named
`_onehot`, so that a source pasted into a notebook leaves the given `seme_embeddings` alone).
"""
from . import Wrong

_PRELUDE = '''
import math
import numpy as np
def _onehot(semes, vocab, n_positions):
    at = {s: i for i, s in enumerate(semes)}
    wte = np.zeros((len(vocab), len(semes)))
    wpe = np.zeros((n_positions, len(semes)))
    for i, tok in enumerate(vocab):
        wte[i, at["tok_" + tok]] = 1.0
    for t in range(n_positions):
        wpe[t, at["pos_" + str(t)]] = 1.0
    return wte, wpe
'''


# ------------------------------------------------------------------ previous token

def _previous(gap="20.0 * math.sqrt(d)", query_from="t - 1", last="n_positions", extra="",
              ret="wte"):
    return _PRELUDE + f'''
def previous_token_weights(letters="abc", n_positions=5):
    vocab = ["^"] + list(letters)
    semes = ["tok_" + v for v in vocab] + ["pos_%d" % t for t in range(n_positions)] + ["prev_" + c for c in letters]
    at = {{s: i for i, s in enumerate(semes)}}
    d = len(semes)
    wte, wpe = _onehot(semes, vocab, n_positions)
{extra}
    gap = {gap}
    w_q, w_k, w_v, w_o = (np.zeros((d, d)) for _ in range(4))
    for t in range(n_positions):
        w_k[at["pos_%d" % t], at["pos_%d" % t]] = 1.0
    for t in range(1, {last}):
        w_q[at["pos_%d" % t], at["pos_%d" % ({query_from})]] = gap
    for c in letters:
        w_v[at["tok_" + c], at["tok_" + c]] = 1.0
        w_o[at["tok_" + c], at["prev_" + c]] = 1.0
    return {{"semes": semes, "wte": {ret}, "wpe": wpe, "w_q": w_q, "w_k": w_k, "w_v": w_v, "w_o": w_o, "n_heads": 1}}
'''


# ------------------------------------------------------------------ repeated token

def _repeated(match="40.0 * math.sqrt(d)", bos="match / 2", own="-match"):
    return _PRELUDE + f'''
def repeated_token_weights(letters="abc", n_positions=5):
    vocab = ["^"] + list(letters)
    semes = ["tok_" + v for v in vocab] + ["pos_%d" % t for t in range(n_positions)] + ["seen"]
    at = {{s: i for i, s in enumerate(semes)}}
    d = len(semes)
    wte, wpe = _onehot(semes, vocab, n_positions)
    match = {match}
    w_q, w_k, w_v, w_o = (np.zeros((d, d)) for _ in range(4))
    for c in letters:
        w_q[at["tok_" + c], at["tok_" + c]] = match
        w_k[at["tok_" + c], at["tok_" + c]] = 1.0
        w_v[at["tok_" + c], at["seen"]] = 1.0
    w_k[at["tok_^"], at["tok_^"]] = 1.0
    for t in range(n_positions):
        w_q[at["pos_%d" % t], at["tok_^"]] = {bos}
        w_q[at["pos_%d" % t], at["pos_%d" % t]] = {own}
        w_k[at["pos_%d" % t], at["pos_%d" % t]] = 1.0
    w_o[at["seen"], at["seen"]] = 1.0
    return {{"semes": semes, "wte": wte, "wpe": wpe, "w_q": w_q, "w_k": w_k, "w_v": w_v, "w_o": w_o, "n_heads": 1}}
'''


# ------------------------------------------------------------------ sort

def _sort(score="(n - r) * step if r > rq else -n * step", sep="(n - r) * step", step="20.0 * math.sqrt(d)"):
    return _PRELUDE + f'''
def sort_weights(letters="abcd", n_positions=9):
    vocab = ["^"] + list(letters) + ["|"]
    semes = ["tok_" + v for v in vocab] + ["pos_%d" % t for t in range(n_positions)] + ["next_" + c for c in letters]
    at = {{s: i for i, s in enumerate(semes)}}
    d = len(semes)
    wte, wpe = _onehot(semes, vocab, n_positions)
    step = {step}
    n = len(letters)
    w_q, w_k, w_v, w_o = (np.zeros((d, d)) for _ in range(4))
    for r, w in enumerate(letters):
        w_k[at["tok_" + w], at["tok_" + w]] = 1.0
        w_v[at["tok_" + w], at["tok_" + w]] = 1.0
        w_o[at["tok_" + w], at["next_" + w]] = 1.0
        w_q[at["tok_|"], at["tok_" + w]] = {sep}
        for rq, v in enumerate(letters):
            w_q[at["tok_" + v], at["tok_" + w]] = {score}
    return {{"semes": semes, "wte": wte, "wpe": wpe, "w_q": w_q, "w_k": w_k, "w_v": w_v, "w_o": w_o, "n_heads": 1}}
'''


# ------------------------------------------------------------------ a ReLU neuron

def _relu(lam="scale * root", mask="4.0 * scale * z_max + 100.0", root="math.sqrt(d)", bias="b",
          bos_key="-(w_pos[0] + b)", bos_value="-(w_pos[0] + b)", masked=True):
    mask_lines = '''
        w_q[at["pos_%d" % t], at["tok_^"]] = m * root
        w_q[at["pos_%d" % t], at["pos_%d" % t]] = m * root''' if masked else ""
    return _PRELUDE + f'''
def relu_neuron_weights(w_tok, w_pos, b, scale=100.0):
    w_tok = np.asarray(w_tok, dtype=float)
    w_pos = np.asarray(w_pos, dtype=float)
    vocab = ["^"] + [chr(ord("a") + i) for i in range(len(w_tok) - 1)]
    n_positions = len(w_pos)
    semes = ["tok_" + v for v in vocab] + ["pos_%d" % t for t in range(n_positions)] + ["relu"]
    at = {{s: i for i, s in enumerate(semes)}}
    d = len(semes)
    root = {root}
    wte, wpe = _onehot(semes, vocab, n_positions)
    z_max = np.abs(w_tok).max() + np.abs(w_pos).max() + abs(b)
    m = {mask}
    w_q, w_k, w_v, w_o = (np.zeros((d, d)) for _ in range(4))
    for i, tok in enumerate(vocab):
        w_k[at["tok_" + tok], at["relu"]] = w_tok[i]
        w_v[at["tok_" + tok], at["relu"]] = w_tok[i]
    w_k[at["tok_^"], at["relu"]] = {bos_key}
    w_v[at["tok_^"], at["relu"]] = {bos_value}
    w_k[at["tok_^"], at["tok_^"]] = 1.0
    for t in range(n_positions):
        w_k[at["pos_%d" % t], at["relu"]] = w_pos[t] + {bias}
        w_v[at["pos_%d" % t], at["relu"]] = w_pos[t] + {bias}
        w_k[at["pos_%d" % t], at["pos_%d" % t]] = 1.0
        w_q[at["pos_%d" % t], at["relu"]] = {lam}{mask_lines}
    w_o[at["relu"], at["relu"]] = 1.0
    return {{"semes": semes, "wte": wte, "wpe": wpe, "w_q": w_q, "w_k": w_k, "w_v": w_v, "w_o": w_o, "n_heads": 1}}
'''


WRONG = [
    Wrong("previous_token_weights", "unsaturated", "not saturated", _previous(gap="3.0 * math.sqrt(d)"),
          "A score gap of 3: the previous position wins, but with a weight of about 0.8, not 1 - "
          "the softmax is not saturated."),
    Wrong("previous_token_weights", "no_sqrt_dhead", "sqrt(d_head)", _previous(gap="20.0"),
          "Forgetting that self_attention divides the scores by sqrt(d_head): a gap of 20 becomes one "
          "of 20 / sqrt(D), too small to saturate."),
    Wrong("previous_token_weights", "attends_to_itself", "copies the current token",
          _previous(query_from="t"),
          "Off by one: the query of position t matches the key of position t, so the head copies the "
          "current token instead of the previous one."),
    Wrong("previous_token_weights", "stops_early", "from position 4 on", _previous(last="4"),
          "Weights that work on the short examples only: the queries stop at position 3, so longer "
          "inputs fail from position 4 on."),
    Wrong("previous_token_weights", "transposed_wte", "one row per token", _previous(ret="wte.T"),
          "Returning the token embedding transposed, (D, V) instead of (V, D)."),
    Wrong("previous_token_weights", "bos_without_seme", "same number of ones",
          _previous(extra='    wte[0] = 0.0   # "the BOS needs no seme"'),
          "Giving the BOS no seme at all: its embedded vectors have one 1 where the others have two, "
          "and no LayerNorm is the identity on both."),

    Wrong("repeated_token_weights", "counts_itself", "counts itself", _repeated(own="0.0"),
          "Forgetting that a letter matches itself: without a penalty on the query's own position, "
          "every letter is 'seen'."),
    Wrong("repeated_token_weights", "no_bos_default", "default", _repeated(bos="0.0"),
          "No default: when no earlier letter matches, the head spreads its attention over letters "
          "whose value is 1 instead of resting on the BOS."),
    Wrong("repeated_token_weights", "bos_as_strong_as_a_match", "as high as a real match",
          _repeated(bos="match"),
          "The BOS default scores as high as a real match, so a repeated letter reads only 1/2, 2/3, ..."),
    Wrong("repeated_token_weights", "bos_beats_match", "missed", _repeated(bos="1.5 * match"),
          "The BOS default scores higher than a match: the head always rests on the BOS and never "
          "sees a repeat."),
    Wrong("repeated_token_weights", "unsaturated", "not saturated", _repeated(match="4.0 * math.sqrt(d)"),
          "Scores of 4 and 2: the right choice wins, but the answer is about 0.85 instead of 1."),

    Wrong("sort_weights", "descending", "largest",
          _sort(score="(r + 1) * step if r > rq else -n * step", sep="(r + 1) * step"),
          "Giving larger letters the higher scores: the head picks the largest remaining letter, not "
          "the next one."),
    Wrong("sort_weights", "greater_or_equal", "strictly greater",
          _sort(score="(n - r) * step if r >= rq else -n * step"),
          "Letting letters equal to the query compete: the current letter is in the list and wins, so "
          "the output repeats it."),
    Wrong("sort_weights", "alphabet_successor", "need not be the next letter of the alphabet",
          _sort(score="n * step if r == rq + 1 else 0.0", sep="n * step if r == 0 else 0.0"),
          "Asking for the next letter of the alphabet: right on lists of consecutive letters, wrong "
          "when the list skips one."),
    Wrong("sort_weights", "candidates_below_bos", "'^' and '|'",
          _sort(score="-(r + 1) * step if r > rq else -(n + 1) * step", sep="-(r + 1) * step"),
          "Negative scores for the candidates too: the BOS and the separator, which score 0, win and "
          "write nothing."),
    Wrong("sort_weights", "no_separator_row", "separator", _sort(sep="0.0"),
          "Forgetting the separator's query: at '|' the head attends evenly to everything."),
    Wrong("sort_weights", "unsaturated", "not saturated", _sort(step="2.0 * math.sqrt(d)"),
          "A score step of 2 between candidates: the smallest candidate wins, but not by enough."),

    Wrong("relu_neuron_weights", "ignores_scale", "sigmoid", _relu(lam="root"),
          "Ignoring the scale: with a score of z the head computes z * sigmoid(z) (the SiLU), not relu(z)."),
    Wrong("relu_neuron_weights", "bos_keeps_its_z", "BOS position's value", _relu(bos_key="w_tok[0]",
                                                                               bos_value="w_tok[0]"),
          "Forgetting that the BOS has a z of its own: its score and value are not 0, so the head "
          "mixes the BOS's z into every answer."),
    Wrong("relu_neuron_weights", "no_mask", "only to itself", _relu(masked=False),
          "No mask: each position attends to every earlier position by scale * z, not only to "
          "itself and the BOS."),
    Wrong("relu_neuron_weights", "no_sqrt_dhead", "sqrt(d_head)", _relu(root="1.0"),
          "Forgetting that self_attention divides the scores by sqrt(d_head): the head computes "
          "z * sigmoid(scale * z / sqrt(d_head))."),
    Wrong("relu_neuron_weights", "bias_forgotten", "bias b", _relu(bias="0.0", bos_key="-w_pos[0]",
                                                                   bos_value="-w_pos[0]"),
          "Leaving the neuron's bias out of z."),
    Wrong("relu_neuron_weights", "fixed_mask", "grow it with the scale", _relu(mask="60.0"),
          "A fixed mask score: fine at scale 1, but at the default scale the other positions' "
          "scale * z beat it."),
]

CORRECT = [
    # Positions coded on a half circle (two features, not one per position), two heads of
    # which the second does nothing, and other seme names.
    '''
import math
import numpy as np

def previous_token_weights(letters="abc", n_positions=5):
    p = n_positions
    names = ["bos"] + ["is_" + c for c in letters] + ["at_%d" % t for t in range(p)] \\
        + ["prev_" + c for c in letters]
    if len(names) % 2:
        names.append("unused")
    d = len(names)
    ix = names.index
    wte = np.zeros((len(letters) + 1, d))
    wte[0, ix("bos")] = 1
    for i, c in enumerate(letters):
        wte[i + 1, ix("is_" + c)] = 1
    wpe = np.zeros((p, d))
    for t in range(p):
        wpe[t, ix("at_%d" % t)] = 1
    h = d // 2                                  # head 0 owns features 0 .. h-1
    angle = math.pi / (p + 1)
    margin = 1 - math.cos(angle)                # the score lost one position away
    w_q = np.zeros((d, d)); w_k = np.zeros((d, d)); w_v = np.zeros((d, d)); w_o = np.zeros((d, d))
    for t in range(p):
        w_k[ix("at_%d" % t), 0:2] = [math.cos(t * angle), math.sin(t * angle)]
        if t >= 1:
            w_q[ix("at_%d" % t), 0:2] = [math.cos((t - 1) * angle), math.sin((t - 1) * angle)]
    w_q *= 30.0 * math.sqrt(h) / margin
    for i, c in enumerate(letters):
        w_v[ix("is_" + c), i] = 1.0
        w_o[i, ix("prev_" + c)] = 1.0
    return {"semes": names, "wte": wte, "wpe": wpe, "w_q": w_q, "w_k": w_k, "w_v": w_v, "w_o": w_o,
            "n_heads": 2}
''',
    # Scores written as one table S = Q K^T in token/position space, then factored as
    # w_q = S-rows, w_k = identity.
    '''
import math
import numpy as np

def repeated_token_weights(letters="abc", n_positions=5):
    vocab = ["^"] + list(letters)
    semes = ["tok_" + v for v in vocab] + ["pos_%d" % t for t in range(n_positions)] + ["seen"]
    d = len(semes)
    v, p = len(vocab), n_positions
    wte = np.hstack([np.eye(v), np.zeros((v, d - v))])
    wpe = np.hstack([np.zeros((p, v)), np.eye(p), np.zeros((p, 1))])
    s = np.zeros((d, d))            # s[i, j]: score between query seme i and key seme j
    s[1:v, 1:v] = 30.0 * np.eye(v - 1)
    s[v:v + p, 0] = 15.0
    s[v:v + p, v:v + p] = -30.0 * np.eye(p)
    w_q = s * math.sqrt(d)
    w_k = np.eye(d)
    w_v = np.zeros((d, d)); w_v[1:v, d - 1] = 1.0
    w_o = np.zeros((d, d)); w_o[d - 1, d - 1] = 1.0
    return {"semes": semes, "wte": wte, "wpe": wpe, "w_q": w_q, "w_k": w_k, "w_v": w_v, "w_o": w_o}
''',
    # The sort table as an explicit matrix over token ids, keys scaled instead of queries.
    '''
import math
import numpy as np

def sort_weights(letters="abcd", n_positions=9):
    n = len(letters)
    vocab = ["^"] + list(letters) + ["|"]
    semes = ["tok_" + t for t in vocab] + ["pos_%d" % t for t in range(n_positions)] + ["next_" + c for c in letters]
    d, v = len(semes), len(vocab)
    wte = np.zeros((v, d)); wte[:, :v] = np.eye(v)
    wpe = np.zeros((n_positions, d)); wpe[:, v:v + n_positions] = np.eye(n_positions)
    table = np.zeros((v, v))        # table[query token, key token]
    rank = {c: i for i, c in enumerate(letters)}
    for q in vocab[1:]:
        for k in letters:
            bigger = q == "|" or rank[k] > rank[q]
            table[vocab.index(q), vocab.index(k)] = 25.0 * (n + 1 - rank[k]) if bigger else -1000.0
    w_q = np.zeros((d, d)); w_q[:v, :v] = table
    w_k = np.zeros((d, d)); w_k[:v, :v] = np.eye(v) * math.sqrt(d)
    w_v = np.zeros((d, d)); w_o = np.zeros((d, d))
    w_v[1:n + 1, :n] = np.eye(n)                           # value features 0..n-1: the letter
    w_o[:n, v + n_positions:] = np.eye(n)
    return {"semes": semes, "wte": wte, "wpe": wpe, "w_q": w_q, "w_k": w_k, "w_v": w_v, "w_o": w_o, "n_heads": 1}
''',
    # The neuron with the scale on the key side and a mask that is a fixed multiple of it.
    '''
import math
import numpy as np

def relu_neuron_weights(w_tok, w_pos, b, scale=100.0):
    w_tok, w_pos = np.asarray(w_tok, float), np.asarray(w_pos, float)
    v, p = len(w_tok), len(w_pos)
    semes = ["tok_^"] + ["tok_" + chr(97 + i) for i in range(v - 1)] + ["pos_%d" % t for t in range(p)] + ["relu"]
    d = len(semes)
    r = math.sqrt(d)
    wte = np.eye(v, d)
    wpe = np.zeros((p, d)); wpe[:, v:v + p] = np.eye(p)
    z_rows = np.concatenate([w_tok, w_pos + b, [0.0]])      # z of a position = sum of its rows
    z_rows[0] -= w_tok[0] + w_pos[0] + b                    # ... and 0 at the BOS
    big = 10.0 * scale * (np.abs(w_tok).sum() + np.abs(w_pos).sum() + abs(b)) + 50.0
    w_q = np.zeros((d, d)); w_k = np.zeros((d, d))
    w_q[v:v + p, d - 1] = r                                 # every query: 1 on feature "z"
    w_k[:, d - 1] = scale * z_rows                          # key feature "z": scale * z
    w_q[v:v + p, 0] = big * r                               # every query: the BOS ...
    w_k[0, 0] = 1.0
    w_q[v:v + p, v:v + p] = big * r * np.eye(p)             # ... and itself
    w_k[v:v + p, v:v + p] = np.eye(p)
    w_v = np.zeros((d, d)); w_v[:, d - 1] = z_rows
    w_o = np.zeros((d, d)); w_o[d - 1, d - 1] = 1.0
    return {"semes": semes, "wte": wte, "wpe": wpe, "w_q": w_q, "w_k": w_k, "w_v": w_v, "w_o": w_o, "n_heads": 1}
''',
]

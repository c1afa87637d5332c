"""Chapter 19 (19-programming-by-hand): weights written by hand, checked on every input.

Each graded function returns a *program*: a dict of weights in named coordinates (see
solutions/reference/programming_by_hand.py). A check runs it through its own copy of the
course's machine (chapter 5's embedding, chapter 4's pre-norm block with causal multi-head
attention, from _gpt_formulas; its first LayerNorm set to the identity on the embedded vectors and the MLP off,
exactly as `program_params` does; tests/test_programming_by_hand.py proves that the copy
and the reference agree) on EVERY input of a small domain, in float64 and in float32, and
compares the answer semes with what the task asks: the right answer is computed from the
input, so even the visible tests are exhaustive and need no answer key. Hidden tests use
larger vocabularies, longer inputs and other neurons.

Solved means: every answer seme within TOL of its exact value at every checked position of
every input.
"""
import itertools
import math

import numpy as np

from ..framework import Chapter, CheckFailure, as_result_array, attempt, describe, ensure, rng_for
from ._gpt_formulas import causal_attention, layer_norm

chapter = Chapter("19-programming-by-hand", reference="programming_by_hand",
                  functions=["previous_token_weights", "repeated_token_weights", "sort_weights",
                             "relu_neuron_weights"],
                  provided=["softmax", "causal_mask", "split_heads", "merge_heads", "self_attention",
                            "layer_norm", "gelu", "mlp", "transformer_block", "embed_tokens", "gpt_forward",
                            "seme_embeddings", "program_params", "run_program", "read_semes"],
                  sample_scores=(12, 6, 0, 0, 9))
test = chapter.test

TOL = 1e-3
BOS, SEP = "^", "|"
KEYS = ("semes", "wte", "wpe", "w_q", "w_k", "w_v", "w_o")

# ------------------------------------------------------------------ hints

DICT_HINT = "return a dict with the keys 'semes', 'wte', 'wpe', 'w_q', 'w_k', 'w_v', 'w_o' (and 'n_heads')"
SEMES_HINT = "'semes' is a list of D distinct strings, one name per residual-stream dimension"
WTE_T_HINT = "one row per token: wte has shape (V, D), not (D, V)"
WPE_T_HINT = "one row per position: wpe has shape (n_positions, D), not (D, n_positions)"
ATTN_SHAPE_HINT = ("the attention matrices are (D, D), applied as x @ w: rows are the semes they read, "
                   "columns the query/key/value features (and, for w_o, the semes it writes)")
HEADS_HINT = "n_heads must be a positive integer that divides D = len(semes) (self_attention splits D into heads)"
LN_HINT = ("the block's LayerNorm can be made the identity only on vectors that share one mean and one "
           "variance: give every token and every position the same number of ones (one-hot rows, as "
           "seme_embeddings makes them)")
FINITE_HINT = "every weight must be a finite number"
UNSAT_HINT = ("the right answer wins everywhere, but not by enough: the softmax is not saturated. Scale the "
              "scores up (self_attention divides them by sqrt(d_head) = sqrt(D / n_heads)) until every "
              f"answer is within {TOL:g} of its exact value")
NAN_HINT = "a score overflowed or a weight is not finite: keep the scores below about 1e4"

PREV_CURRENT_HINT = ("it copies the current token: the query of position t must match the key of "
                     "position t - 1, not of position t")
PREV_BOS_HINT = ("wrong only at position 1, whose previous token is the BOS '^': the BOS's value must "
                 "write nothing into the prev_ semes")
PREV_GENERIC_HINT = ("position t should attend to position t - 1 only (positions 0 and 1 to the BOS, "
                     "whose value is 0) and copy that token into prev_<c>")

SEEN_SELF_HINT = ("every letter counts itself as seen: a letter always matches its own token at its own "
                  "position; keep the query's own position out (a negative score for it)")
SEEN_DEFAULT_HINT = ("wrong where the letter has not appeared before: with no match the head still "
                     "attends somewhere, so give it a default, the BOS at position 0 with the value 0, "
                     "scoring above a non-match")
SEEN_TIE_HINT = ("a repeated letter reads only partly 'seen': the BOS default scores as high as a real "
                 "match; score it between a non-match and a match")
SEEN_MISSED_HINT = ("a repeated letter was missed: every earlier position holding the same letter must "
                    "score higher than the BOS default")
SEEN_GENERIC_HINT = ("position t should attend to the earlier positions holding its letter if there are "
                     "any (value 1), else to the BOS (value 0)")

SORT_ZERO_HINT = ("the winner is the BOS or the separator, whose value is 0: letters that may come next "
                  "must score above the tokens '^' and '|'")
SORT_STRICT_HINT = ("it repeats the current letter: only letters strictly greater than the current one "
                    "may win")
SORT_LARGEST_HINT = ("it picks the largest letter greater than the current one; the next output is the "
                     "smallest: give smaller letters the higher scores")
SORT_SEP_HINT = ("wrong only at the separator '|': its query must pick the smallest letter of the list "
                 "(every letter is greater than '|')")
SORT_GENERIC_HINT = ("the next letter is the smallest letter of the list that is greater than the "
                     "current one, which need not be the next letter of the alphabet: score every greater "
                     "letter, smaller ones higher, and every other letter far lower")

RELU_SCALE_ARG_HINT = ("with the default scale the head still computes z * sigmoid(z) (the SiLU): "
                       "multiply the score of the query's own position by the `scale` argument")
RELU_SQRT_HINT = ("the head computes z * sigmoid(z / sqrt(d_head)): self_attention divides the scores by "
                  "sqrt(d_head), so multiply the query (or key) weights by sqrt(d_head)")
RELU_BIAS_HINT = "the head computes the neuron without its bias: add the neuron's bias b to z"
RELU_BOS_HINT = ("the head writes the BOS's own z where it attends to the BOS: the BOS position's value "
                 "(and its score) must not contain z: make both 0 at the BOS")
RELU_UNSAT_HINT = ("close to relu(z) but not within the tolerance: the default scale is too small to "
                   "saturate the softmax (the error is about |z| * sigmoid(-scale * |z|), with |z| >= 1/8)")
RELU_MASK_SCALE_HINT = ("right at scale 1 but not at the default scale: the mask score must stay far above "
                        "scale * |z| of every other position, so grow it with the scale")
RELU_MASK_HINT = ("each position t >= 1 must attend only to itself (score scale * z_t) and to the BOS "
                  "(score 0, value 0): add a large score for the query's own position and for the BOS, "
                  "far above anything else")


# ------------------------------------------------------------------ the machine (the checks' own model)

def _stream(prog, ids, dtype):
    """The residual stream after the block, as run_program computes it (the MLP, whose weights
    are all zero, adds exactly 0 and is left out)."""
    c = {k: prog[k].astype(dtype) for k in ("wte", "wpe", "w_q", "w_k", "w_v", "w_o")}
    x = c["wte"][ids] + c["wpe"][:ids.shape[-1]]
    h = layer_norm(x, dtype(prog["ln_g"]), dtype(prog["ln_b"]))
    with np.errstate(all="ignore"):
        return x + causal_attention(h, c["w_q"], c["w_k"], c["w_v"], c["w_o"], prog["n_heads"])


def _program(value, what, vocab, n_positions, answers):
    """The returned dict, validated: float64 arrays, the seme list, n_heads and the LayerNorm."""
    if not isinstance(value, dict):
        raise CheckFailure(f"{what} returned {describe(value)}, expected a dict of weights", DICT_HINT)
    missing = [k for k in KEYS if k not in value]
    ensure(not missing, f"{what}: the dict has no key {', '.join(repr(k) for k in missing)}", DICT_HINT)
    semes = value["semes"]
    ensure(isinstance(semes, (list, tuple)) and semes and all(isinstance(s, str) for s in semes),
           f"{what}['semes'] is {describe(semes)}, expected a list of names", SEMES_HINT)
    semes = list(semes)
    dup = sorted({s for s in semes if semes.count(s) > 1})
    ensure(not dup, f"{what}['semes'] names {dup} more than once", SEMES_HINT)
    d, v, p = len(semes), len(vocab), n_positions
    prog = {"semes": semes}
    shapes = {"wte": (v, d), "wpe": (p, d), "w_q": (d, d), "w_k": (d, d), "w_v": (d, d), "w_o": (d, d)}
    for key, shape in shapes.items():
        arr = as_result_array(value[key], f"{what}['{key}']")
        if arr.shape != shape:
            hint = (WTE_T_HINT if key == "wte" and arr.shape == shape[::-1] else
                    WPE_T_HINT if key == "wpe" and arr.shape == shape[::-1] else
                    ATTN_SHAPE_HINT if key.startswith("w_") else
                    f"{key} has shape ({'V' if key == 'wte' else 'n_positions'}, D) with "
                    f"{'V = len(vocab)' if key == 'wte' else 'n_positions'} = {shape[0]} and D = len(semes) = {d}")
            raise CheckFailure(f"{what}['{key}']: shape {arr.shape}, expected {shape} "
                               f"(V = {v} tokens {vocab}, D = {d} semes, {p} positions)", hint)
        arr = arr.astype(np.float64)
        ensure(np.isfinite(arr).all(), f"{what}['{key}'] has entries that are NaN or inf", FINITE_HINT)
        prog[key] = arr
    heads = value.get("n_heads", 1)
    if isinstance(heads, np.ndarray) and heads.shape == () and heads.dtype.kind in "iu":
        heads = int(heads)
    ensure(isinstance(heads, int) and not isinstance(heads, bool) and heads >= 1 and d % heads == 0,
           f"{what}['n_heads'] is {heads!r} with D = {d}", HEADS_HINT)
    prog["n_heads"] = heads
    absent = [a for a in answers if a not in semes]
    ensure(not absent, f"{what}: no seme named {', '.join(repr(a) for a in absent)}",
           f"the answer is read from the semes {', '.join(answers)}: name them so in 'semes'")
    embedded = (prog["wte"][:, None, :] + prog["wpe"][None, :, :]).reshape(-1, d)
    means, variances = embedded.mean(-1), embedded.var(-1)
    if np.ptp(means) > 1e-9 * max(1.0, np.abs(means).max()) or \
            np.ptp(variances) > 1e-9 * max(1.0, variances.max()):
        ones = np.count_nonzero(embedded, axis=-1)
        raise CheckFailure(f"{what}: the embedded vectors wte[v] + wpe[t] have different means or variances "
                           f"(between {ones.min()} and {ones.max()} non-zero semes)", LN_HINT)
    prog["ln_g"] = math.sqrt(variances[0] + 1e-5)
    prog["ln_b"] = means[0]
    prog["cols"] = [semes.index(a) for a in answers]
    return prog


# ------------------------------------------------------------------ domains and reports

def _with_bos(letters, n_positions):
    """ids (N, T) for every T = 1..n_positions: the BOS then every string of T - 1 letters."""
    out = []
    for t in range(1, n_positions + 1):
        rows = list(itertools.product(range(1, len(letters) + 1), repeat=t - 1))
        out.append(np.array([(0,) + r for r in rows], dtype=np.int64).reshape(len(rows), t))
    return out


def _text(row, vocab):
    return "".join(vocab[int(i)] for i in row)


def _fmt(vec):
    return "[" + ", ".join(f"{x:.4g}" for x in np.asarray(vec, dtype=np.float64)) + "]"


class _Run:
    """The program's answers on a domain: per batch of equal length, ids, got, want, checked."""

    def __init__(self, prog, batches, target, checked, dtype):
        self.items = []
        for ids in batches:
            got = _stream(prog, ids, dtype)[..., prog["cols"]].astype(np.float64)
            self.items.append((ids, got, target(ids), checked(ids)))

    def positions(self, which="bad"):
        """(ids row, t, got, want) for the checked (or the bad) positions, shortest input first."""
        for ids, got, want, chk in self.items:
            bad = chk & (~np.isfinite(got).all(-1) | (np.abs(got - want) > TOL).any(-1))
            sel = bad if which == "bad" else chk
            for n, t in zip(*np.nonzero(sel)):
                yield ids[n], int(t), got[n, t], want[n, t]

    def first_bad(self):
        return next(self.positions("bad"), None)

    def every(self, predicate, which="bad"):
        return all(predicate(*rec) for rec in self.positions(which))

    def count(self):
        bad = sum(1 for _ in self.positions("bad"))
        return bad, sum(1 for _ in self.positions("checked"))


def _winner_right(got, want):
    """The right seme wins clearly (one-hot answers) or every seme stays small (zero answers)."""
    if want.max() > 0.5:
        right = int(np.argmax(want))
        others = np.delete(got, right)
        return got[right] > 0.5 and (others.size == 0 or got[right] - others.max() > 0.05)
    return got.max() < 0.5


def _failure(run, what, vocab, names, hint):
    row, t, got, want = run.first_bad()
    bad, total = run.count()
    label = names[0] if len(names) == 1 else ", ".join(names)
    raise CheckFailure(f"{what}: fails on input '{_text(row, vocab)}' at position {t} (token "
                       f"'{vocab[int(row[t])]}'): {label} = {_fmt(got)}, expected {_fmt(want)} "
                       f"({bad} of {total} checked positions are off by more than {TOL:g})", hint)


def _dtypes():
    return ((np.float64, "float64"), (np.float32, "float32"))


# ------------------------------------------------------------------ previous token

def _prev_target(letters):
    def target(ids):
        n, t = ids.shape
        want = np.zeros((n, t, len(letters)))
        for s in range(2, t):
            want[np.arange(n), s, ids[:, s - 1] - 1] = 1.0
        return want
    return target


def _current(row, t, k):
    vec = np.zeros(k)
    if row[t] >= 1:
        vec[int(row[t]) - 1] = 1.0
    return vec


def _check_previous(fn, letters, n_positions, what=None):
    vocab = [BOS] + list(letters)
    names = [f"prev_{c}" for c in letters]
    what = what or f"previous_token_weights({letters!r}, {n_positions})"
    value = attempt(lambda: fn(letters, n_positions), what, PREV_GENERIC_HINT)
    prog = _program(value, what, vocab, n_positions, names)
    batches = _with_bos(letters, n_positions)
    for dtype, name in _dtypes():
        run = _Run(prog, batches, _prev_target(letters), lambda ids: np.ones(ids.shape, bool), dtype)
        if run.first_bad() is None:
            continue
        w = f"{what} [{name}]"
        if not run.every(lambda r, t, g, e: np.isfinite(g).all()):
            _failure(run, w, vocab, names, NAN_HINT)
        if run.every(lambda r, t, g, e: _winner_right(g, e), "checked"):
            _failure(run, w, vocab, names, UNSAT_HINT)
        k = len(letters)
        if run.every(lambda r, t, g, e: np.abs(g - _current(r, t, k)).max() < 0.5):
            _failure(run, w, vocab, names, PREV_CURRENT_HINT)
        if run.every(lambda r, t, g, e: t == 1):
            _failure(run, w, vocab, names, PREV_BOS_HINT)
        first = min(t for _, t, _, _ in run.positions())
        if first >= 2:
            _failure(run, w, vocab, names, f"right at positions 0 to {first - 1} of every input but wrong from "
                     f"position {first} on: build the query of every position 1 ... n_positions - 1 "
                     f"(here {n_positions - 1}), not only of those in the examples")
        _failure(run, w, vocab, names, PREV_GENERIC_HINT)


@test("previous_token_weights_visible", "previous_token_weights")
def previous_token_weights_visible(previous_token_weights):
    """Every input of up to 5 tokens over 'abc' (121 of them): prev_<c> within 1e-3 of the previous token's one-hot."""
    _check_previous(previous_token_weights, "abc", 5)


@test("previous_token_weights_random", "previous_token_weights", hidden=True)
def previous_token_weights_random(previous_token_weights, ref):
    """Every input of larger domains (4 letters and 7 positions, 5 other letters and 6 positions)."""
    _check_previous(previous_token_weights, "abcd", 7)
    _check_previous(previous_token_weights, "pqrst", 6)


@test("previous_token_weights_edge", "previous_token_weights", hidden=True)
def previous_token_weights_edge(previous_token_weights, ref):
    """One letter and 9 positions (many keys to out-score), a single position, two letters and 2 positions."""
    _check_previous(previous_token_weights, "a", 9)
    _check_previous(previous_token_weights, "ab", 1)
    _check_previous(previous_token_weights, "xy", 2)


# ------------------------------------------------------------------ repeated token

def _seen_target(ids):
    n, t = ids.shape
    want = np.zeros((n, t, 1))
    for s in range(2, t):
        want[:, s, 0] = (ids[:, 1:s] == ids[:, s:s + 1]).any(axis=1)
    return want


def _check_repeated(fn, letters, n_positions):
    vocab = [BOS] + list(letters)
    what = f"repeated_token_weights({letters!r}, {n_positions})"
    value = attempt(lambda: fn(letters, n_positions), what, SEEN_GENERIC_HINT)
    prog = _program(value, what, vocab, n_positions, ["seen"])
    batches = _with_bos(letters, n_positions)
    names = ["seen"]
    for dtype, name in _dtypes():
        run = _Run(prog, batches, _seen_target, lambda ids: np.ones(ids.shape, bool), dtype)
        if run.first_bad() is None:
            continue
        w = f"{what} [{name}]"
        if not run.every(lambda r, t, g, e: np.isfinite(g).all()):
            _failure(run, w, vocab, names, NAN_HINT)
        if run.every(lambda r, t, g, e: abs(g[0] - e[0]) < 0.5, "checked"):
            _failure(run, w, vocab, names, UNSAT_HINT)
        if run.every(lambda r, t, g, e: t == 0 or g[0] > 0.9, "checked"):
            _failure(run, w, vocab, names, SEEN_SELF_HINT)
        if run.every(lambda r, t, g, e: e[0] == 1 and 0.2 < g[0] < 0.8):
            _failure(run, w, vocab, names, SEEN_TIE_HINT)
        if run.every(lambda r, t, g, e: e[0] == 1):
            _failure(run, w, vocab, names, SEEN_MISSED_HINT)
        if run.every(lambda r, t, g, e: e[0] == 0):
            _failure(run, w, vocab, names, SEEN_DEFAULT_HINT)
        _failure(run, w, vocab, names, SEEN_GENERIC_HINT)


@test("repeated_token_weights_visible", "repeated_token_weights")
def repeated_token_weights_visible(repeated_token_weights):
    """Every input of up to 5 tokens over 'abc' (121 of them): seen within 1e-3 of 1 for a repeated letter, else 0."""
    _check_repeated(repeated_token_weights, "abc", 5)


@test("repeated_token_weights_random", "repeated_token_weights", hidden=True)
def repeated_token_weights_random(repeated_token_weights, ref):
    """Every input of larger domains (4 letters and 7 positions, 5 other letters and 6 positions)."""
    _check_repeated(repeated_token_weights, "abcd", 7)
    _check_repeated(repeated_token_weights, "vwxyz", 6)


@test("repeated_token_weights_edge", "repeated_token_weights", hidden=True)
def repeated_token_weights_edge(repeated_token_weights, ref):
    """One letter and 9 positions (every letter after the first repeats), a single position, 8 letters and 3 positions."""
    _check_repeated(repeated_token_weights, "a", 9)
    _check_repeated(repeated_token_weights, "ab", 1)
    _check_repeated(repeated_token_weights, "abcdefgh", 3)


# ------------------------------------------------------------------ sort

def _sort_domain(letters, n_positions):
    """Per list length n: ids (N, 2n + 1) of '^' x '|' sorted(x)[:-1], x distinct letters."""
    v = len(letters)
    sep = v + 1
    batches = []
    for n in range(1, v + 1):
        if 2 * n + 1 > n_positions:
            break
        rows = [(0,) + x + (sep,) + tuple(sorted(x))[:-1] for x in itertools.permutations(range(1, v + 1), n)]
        batches.append(np.array(rows, dtype=np.int64))
    return batches


def _sort_target(letters):
    k = len(letters)

    def target(ids):
        m, t = ids.shape
        n = (t - 1) // 2
        want = np.zeros((m, t, k))
        ordered = np.sort(ids[:, 1:n + 1], axis=1)
        for j in range(n):            # position n + 1 + j wants the (j + 1)-th smallest letter
            want[np.arange(m), n + 1 + j, ordered[:, j] - 1] = 1.0
        return want
    return target


def _sort_checked(ids):
    t = ids.shape[1]
    n = (t - 1) // 2
    chk = np.zeros(ids.shape, bool)
    chk[:, n + 1:] = True
    return chk


def _largest_above(row, t, k):
    n = (len(row) - 1) // 2
    query = int(row[t]) if t > n + 1 else 0
    vec = np.zeros(k)
    above = [int(x) for x in row[1:n + 1] if x > query]
    if above:
        vec[max(above) - 1] = 1.0
    return vec


def _check_sort(fn, letters, n_positions):
    vocab = [BOS] + list(letters) + [SEP]
    names = [f"next_{c}" for c in letters]
    k = len(letters)
    what = f"sort_weights({letters!r}, {n_positions})"
    value = attempt(lambda: fn(letters, n_positions), what, SORT_GENERIC_HINT)
    prog = _program(value, what, vocab, n_positions, names)
    batches = _sort_domain(letters, n_positions)
    for dtype, name in _dtypes():
        run = _Run(prog, batches, _sort_target(letters), _sort_checked, dtype)
        if run.first_bad() is None:
            continue
        w = f"{what} [{name}]"
        if not run.every(lambda r, t, g, e: np.isfinite(g).all()):
            _failure(run, w, vocab, names, NAN_HINT)
        if run.every(lambda r, t, g, e: _winner_right(g, e), "checked"):
            _failure(run, w, vocab, names, UNSAT_HINT)
        if run.every(lambda r, t, g, e: np.abs(g).max() < 0.05):
            _failure(run, w, vocab, names, SORT_ZERO_HINT)
        if run.every(lambda r, t, g, e: r[t] <= k and np.abs(g - _current(r, t, k)).max() < 0.5):
            _failure(run, w, vocab, names, SORT_STRICT_HINT)
        if run.every(lambda r, t, g, e: np.abs(g - _largest_above(r, t, k)).max() < 0.5):
            _failure(run, w, vocab, names, SORT_LARGEST_HINT)
        if run.every(lambda r, t, g, e: r[t] == k + 1):
            _failure(run, w, vocab, names, SORT_SEP_HINT)
        _failure(run, w, vocab, names, SORT_GENERIC_HINT)


@test("sort_weights_visible", "sort_weights")
def sort_weights_visible(sort_weights):
    """Every list of 1 to 4 distinct letters of 'abcd' (64 inputs): next_<c> within 1e-3 of the next sorted letter's one-hot."""
    _check_sort(sort_weights, "abcd", 9)


@test("sort_weights_random", "sort_weights", hidden=True)
def sort_weights_random(sort_weights, ref):
    """Every list of up to 4 distinct letters of 6, and of up to 5 of 'bdfhj' (letters not consecutive)."""
    _check_sort(sort_weights, "abcdef", 9)
    _check_sort(sort_weights, "bdfhj", 11)


@test("sort_weights_edge", "sort_weights", hidden=True)
def sort_weights_edge(sort_weights, ref):
    """A single letter, 9 letters with lists of up to 3, and positions to spare beyond the longest input."""
    _check_sort(sort_weights, "a", 3)
    _check_sort(sort_weights, "abcdefghi", 7)
    _check_sort(sort_weights, "abc", 10)


# ------------------------------------------------------------------ a ReLU neuron as attention

def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _neuron_z(w_tok, w_pos, b):
    def z(ids):
        return w_tok[ids] + w_pos[:ids.shape[1]] + b
    return z


def _check_neuron(fn, w_tok, w_pos, b, label):
    w_tok, w_pos = np.asarray(w_tok, dtype=np.float64), np.asarray(w_pos, dtype=np.float64)
    letters = "".join(chr(ord("a") + i) for i in range(len(w_tok) - 1))
    vocab = [BOS] + list(letters)
    n_positions = len(w_pos)
    zf = _neuron_z(w_tok, w_pos, b)
    z0 = w_tok[0] + w_pos[0] + b
    batches = _with_bos(letters, n_positions)

    def checked(ids):
        chk = np.ones(ids.shape, bool)
        chk[:, 0] = False
        return chk

    def program(scale):
        args = (w_tok.copy(), w_pos.copy(), float(b)) + (() if scale is None else (scale,))
        what = f"relu_neuron_weights({label}" + ("" if scale is None else f", scale={scale:g}") + ")"
        value = attempt(lambda: fn(*args), what, RELU_MASK_HINT)
        return what, _program(value, what, vocab, n_positions, ["relu"])

    def like(run, formula):
        """Does the program compute formula(z) at every checked position?"""
        return run.every(lambda r, t, g, e: abs(g[0] - formula(r, t)) < TOL, "checked")

    def z_at(r, t):
        return w_tok[r[t]] + w_pos[t] + b

    for dtype, name in _dtypes():
        what, prog = program(1.0)
        d_head = len(prog["semes"]) // prog["n_heads"]
        run = _Run(prog, batches, lambda ids: (zf(ids) * _sigmoid(zf(ids)))[..., None], checked, dtype)
        if run.first_bad() is not None:
            w = f"{what} [{name}]"
            if not run.every(lambda r, t, g, e: np.isfinite(g).all()):
                _failure(run, w, vocab, ["relu"], NAN_HINT)
            if like(run, lambda r, t: z_at(r, t) * _sigmoid(z_at(r, t) / math.sqrt(d_head))):
                _failure(run, w, vocab, ["relu"], RELU_SQRT_HINT)
            if like(run, lambda r, t: (z_at(r, t) - b) * _sigmoid(z_at(r, t) - b)):
                _failure(run, w, vocab, ["relu"], RELU_BIAS_HINT)
            if like(run, lambda r, t: z_at(r, t) * _sigmoid(z_at(r, t) - z0) + z0 * _sigmoid(z0 - z_at(r, t))) \
                    or like(run, lambda r, t: z_at(r, t) * _sigmoid(z_at(r, t)) + z0 * _sigmoid(-z_at(r, t))):
                _failure(run, w, vocab, ["relu"], RELU_BOS_HINT)
            _failure(run, w, vocab, ["relu"], RELU_MASK_HINT)
        what, prog = program(None)
        run = _Run(prog, batches, lambda ids: np.maximum(zf(ids), 0.0)[..., None], checked, dtype)
        if run.first_bad() is not None:
            w = f"{what} [{name}]"
            if not run.every(lambda r, t, g, e: np.isfinite(g).all()):
                _failure(run, w, vocab, ["relu"], NAN_HINT)
            if like(run, lambda r, t: z_at(r, t) * _sigmoid(z_at(r, t))):
                _failure(run, w, vocab, ["relu"], RELU_SCALE_ARG_HINT)
            if run.every(lambda r, t, g, e: abs(g[0] - e[0]) < 0.1, "checked"):
                _failure(run, w, vocab, ["relu"], RELU_UNSAT_HINT)
            _failure(run, w, vocab, ["relu"], RELU_MASK_SCALE_HINT)


# Quarter steps: z = w_tok[id] + w_pos[t] + b is 0 or at least 1/4 away from it; the BOS's
# own z (w_tok[0] + w_pos[0] + b = 0.5) is not 0, so a head that forgets it shows.
VISIBLE_NEURON = ((0.5, 0.25, -0.5, 0.75), (0.25, 0.0, -0.25, 0.5, -0.75), -0.25)


@test("relu_neuron_weights_visible", "relu_neuron_weights")
def relu_neuron_weights_visible(relu_neuron_weights):
    """One neuron on every input of up to 5 tokens over 'abc': z * sigmoid(z) at scale 1 and relu(z) at the default scale, within 1e-3."""
    w_tok, w_pos, b = VISIBLE_NEURON
    _check_neuron(relu_neuron_weights, w_tok, w_pos, b, "w_tok (4,), w_pos (5,), b=-0.25")


def _random_neuron(rng, v, p, span=1.0):
    steps = int(round(8 * span))
    return (rng.integers(-steps, steps + 1, size=v) / 8.0, rng.integers(-steps, steps + 1, size=p) / 8.0,
            float(rng.integers(-steps, steps + 1)) / 8.0)


@test("relu_neuron_weights_random", "relu_neuron_weights", hidden=True)
def relu_neuron_weights_random(relu_neuron_weights, ref):
    """Random neurons with weights in eighths, 4 letters and 6 positions."""
    rng = rng_for("relu_neuron_weights_random")
    for i in range(3):
        w_tok, w_pos, b = _random_neuron(rng, 5, 6)
        _check_neuron(relu_neuron_weights, w_tok, w_pos, b, f"random neuron {i}, w_tok (5,), w_pos (6,)")


@test("relu_neuron_weights_edge", "relu_neuron_weights", hidden=True)
def relu_neuron_weights_edge(relu_neuron_weights, ref):
    """The zero neuron, large weights (the mask must beat scale * |z| up to 9), a bias only, one letter and 8 positions."""
    _check_neuron(relu_neuron_weights, np.zeros(3), np.zeros(4), 0.0, "the zero neuron")
    rng = rng_for("relu_neuron_weights_edge")
    w_tok, w_pos, b = _random_neuron(rng, 4, 5, span=3.0)
    _check_neuron(relu_neuron_weights, w_tok, w_pos, b, "large weights")
    _check_neuron(relu_neuron_weights, np.zeros(3), np.zeros(4), -0.125, "a bias of -1/8 only")
    _check_neuron(relu_neuron_weights, np.array([0.0, 0.375]), np.linspace(-0.5, 0.375, 8), 0.125,
                  "one letter, 8 positions")

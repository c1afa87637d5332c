"""Chapter 8 (08-tokenization): byte-level BPE: pair counts, merge, training, encode, decode.

Arguments cross to the student's function as tuples (ids: a tuple of ints; merges: a tuple
of (a, b) tuples; special tokens: a tuple of strings): tuples arrive unchanged both in the
student's kernel and through the sandbox's wire, where a list of numbers would arrive as an
array. Results come back as arrays (a list of ints or of pairs becomes an integer array) or,
for decode, as a str.
"""
import numpy as np

from ..framework import (Chapter, CheckFailure, as_result_array, assert_raises, attempt, describe, ensure,
                         rng_for)

chapter = Chapter("08-tokenization", reference="tokenization",
                  functions=["pair_counts", "merge", "train_bpe", "encode", "decode"],
                  provided=["split_special"],
                  sample_scores=(15, 6, 0, 6, 12))
test = chapter.test

EOT = "<|endoftext|>"
SPECIALS = (EOT,)
M_CLASSIC = ((97, 97), (97, 98), (256, 257))  # train_bpe("aaabdaaabac", 259)


# ------------------------------------------------------------------ helpers

def _short(value, n=80):
    text = repr(value)
    return text if len(text) <= n else text[:n - 5] + " ...'"


def _plain(value):
    """A tuple (or list) of numbers as an array; anything else unchanged."""
    if isinstance(value, (tuple, list)):
        try:
            arr = np.array(value)
        except Exception:
            return value
        if arr.dtype.kind in "biuf":
            return arr
    return value


def _integers(value, what):
    """The result as an int64 array (an empty result of any shape becomes shape (0,))."""
    out = as_result_array(_plain(value), what)
    if out.size == 0:
        return np.zeros(0, dtype=np.int64)
    if out.dtype.kind == "f" and not np.all(np.isfinite(out) & (out == np.round(out))):
        raise CheckFailure(f"{what}: the values are not whole numbers", "token ids and counts are integers")
    return out.astype(np.int64)


def _ids(value, what):
    """A flat list of ints (the result of merge / encode)."""
    out = _integers(value, what)
    if out.ndim != 1:
        raise CheckFailure(f"{what}: returned {describe(out)}, expected a flat list of ids",
                           "return one list of ints, one entry per token")
    return [int(x) for x in out]


def _rows(value, what):
    """pair_counts' (P, 3) table."""
    out = _integers(value, what)
    if out.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    if out.ndim != 2 or out.shape[1] != 3:
        raise CheckFailure(f"{what}: returned {describe(out)}, expected shape (P, 3)",
                           "one row (a, b, count) per distinct pair: an integer array of shape (P, 3)")
    return out


def _merges(value, what):
    """train_bpe's list of (a, b) pairs, as a list of int tuples."""
    out = _integers(value, what)
    if out.size == 0:
        return []
    if out.ndim != 2 or out.shape[1] != 2:
        raise CheckFailure(f"{what}: returned {describe(out)}, expected a list of (a, b) pairs",
                           "return the merges as a list of (a, b) tuples, in the order they were learned")
    return [(int(a), int(b)) for a, b in out]


def _text(value, what):
    if not isinstance(value, str):
        raise CheckFailure(f"{what}: returned {describe(value)}, expected a str",
                           'join the bytes, then turn them into text with .decode("utf-8", errors="replace")')
    return value


_PIECES = ["a", "b", "ab", "ba", "the", " ", "e", "é", "ü", "ñ", "中", "文", "😀", "\n", "x", "ing", "ß", "r"]
_WEIGHTS = 1.0 / np.arange(1, len(_PIECES) + 1)  # Zipf-like: some pieces are common, so pairs repeat


def _random_text(rng, n_pieces, specials=(), p_special=0.04):
    parts = []
    probs = _WEIGHTS / _WEIGHTS.sum()
    for _ in range(n_pieces):
        if specials and rng.random() < p_special:
            parts.append(specials[int(rng.integers(len(specials)))])
        else:
            parts.append(_PIECES[int(rng.choice(len(_PIECES), p=probs))])
    return "".join(parts)


def _first_difference(got, want):
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return i
    return min(len(got), len(want))


# ------------------------------------------------------------------ pair_counts

NEIGHBOUR_HINT = "count every neighbour pair (ids[i], ids[i + 1]), for every i from 0 to len(ids) - 2"
OVERLAP_HINT = ("every neighbour pair counts, overlapping ones too: [7, 7, 7] has the pair (7, 7) twice "
                "(counting is not merging)")
LAST_PAIR_HINT = "the last pair (ids[-2], ids[-1]) counts too: loop over range(len(ids) - 1)"
SORT_HINT = "sort the rows by a, then by b, ascending (sorted() on the (a, b) keys does it)"
EMPTY_HINT = "fewer than 2 ids have no pairs: return an empty (0, 3) array"

PC_A = (1, 2, 3, 1, 2)
PC_A_WANT = [[1, 2, 2], [2, 3, 1], [3, 1, 1]]
PC_A_DISJOINT = [[1, 2, 1], [3, 1, 1]]
PC_A_NO_LAST = [[1, 2, 1], [2, 3, 1], [3, 1, 1]]
PC_B = (2, 1, 2, 1, 1, 2, 300, 1)
PC_B_WANT = [[1, 1, 1], [1, 2, 2], [2, 1, 2], [2, 300, 1], [300, 1, 1]]


@test("pair_counts_visible", "pair_counts")
def pair_counts_visible(pair_counts):
    """Every neighbour pair counted (overlaps too), as (a, b, count) rows sorted by pair.

    Fewer than 2 ids give no rows."""
    what = f"pair_counts({PC_A})"
    out = _rows(attempt(lambda: pair_counts(PC_A), what, NEIGHBOUR_HINT), what).tolist()
    if out == PC_A_DISJOINT:
        raise CheckFailure(f"{what} gave {out}: only the pairs at even positions were counted", NEIGHBOUR_HINT)
    if out == PC_A_NO_LAST:
        raise CheckFailure(f"{what} gave {out}: the last pair (1, 2) is missing", LAST_PAIR_HINT)
    if sorted(out) == PC_A_WANT and out != PC_A_WANT:
        raise CheckFailure(f"{what} gave {out}: the right rows in the wrong order", SORT_HINT)
    ensure(out == PC_A_WANT, f"{what} gave {out}, expected {PC_A_WANT}", NEIGHBOUR_HINT)

    what = "pair_counts((7, 7, 7))"
    out = _rows(pair_counts((7, 7, 7)), what).tolist()
    ensure(out == [[7, 7, 2]], f"{what} gave {out}, expected [[7, 7, 2]]", OVERLAP_HINT)
    what = "pair_counts((4, 4, 4, 4))"
    out = _rows(pair_counts((4, 4, 4, 4)), what).tolist()
    ensure(out == [[4, 4, 3]], f"{what} gave {out}, expected [[4, 4, 3]]", OVERLAP_HINT)

    what = f"pair_counts({PC_B})"
    out = _rows(pair_counts(PC_B), what).tolist()
    if sorted(out) == PC_B_WANT and out != PC_B_WANT:
        raise CheckFailure(f"{what} gave the rows {out}: the right rows in the wrong order", SORT_HINT)
    ensure(out == PC_B_WANT, f"{what} gave {out}, expected {PC_B_WANT}", NEIGHBOUR_HINT)

    for ids in [(), (5,)]:
        what = f"pair_counts({ids})"
        out = _rows(attempt(lambda: pair_counts(ids), what, EMPTY_HINT), what)
        ensure(out.shape[0] == 0, f"{what} gave {out.tolist()}, expected no rows", EMPTY_HINT)


def _compare_counts(out, want, what):
    got = out.tolist()
    want = want.tolist()
    if got == want:
        return
    if sorted(got) == want:
        raise CheckFailure(f"{what}: the right rows in the wrong order", SORT_HINT)
    have = {(a, b): n for a, b, n in got}
    for a, b, n in want:
        if have.get((a, b)) != n:
            raise CheckFailure(f"{what}: pair ({a}, {b}) counted {have.get((a, b), 0)} times, it occurs {n} times",
                               NEIGHBOUR_HINT + "; overlapping pairs count")
    raise CheckFailure(f"{what}: {len(got)} rows, expected {len(want)}", NEIGHBOUR_HINT)


@test("pair_counts_random", "pair_counts", hidden=True)
def pair_counts_random(pair_counts, ref):
    """Random sequences: small alphabets (many repeats and runs), large ids, up to 2000 ids."""
    rng = rng_for("pair_counts_random")
    for n, alphabet, offset in [(2, 2, 0), (10, 3, 0), (57, 2, 0), (300, 8, 250), (2000, 40, 0), (500, 600, 0)]:
        ids = tuple(int(x) for x in rng.integers(0, alphabet, size=n) + offset)
        what = f"pair_counts(random ids, length {n}, {alphabet} distinct values)"
        _compare_counts(_rows(pair_counts(ids), what), ref.pair_counts(ids), what)


@test("pair_counts_edge", "pair_counts", hidden=True)
def pair_counts_edge(pair_counts, ref):
    """Empty and one-id sequences, one pair, long runs, large ids."""
    cases = [(), (3,), (3, 3), (9,) * 10, (0, 0, 0, 1, 1, 1), (1, 0), (10 ** 6, 10 ** 6 + 1, 10 ** 6),
             (255, 256, 255, 256, 255)]
    for ids in cases:
        what = f"pair_counts({_short(ids)})"
        _compare_counts(_rows(pair_counts(ids), what), ref.pair_counts(ids), what)


# ------------------------------------------------------------------ merge

EVERY_HINT = "replace every occurrence of the pair, not only the first: scan the whole sequence"
AFTER_HINT = ("occurrences must not overlap: after a replacement, continue after the pair (i += 2), "
              "so merge([5, 5, 5], (5, 5), X) == [X, 5]")
LEFT_HINT = "scan from left to right: the leftmost occurrence wins, merge([5, 5, 5], (5, 5), X) == [X, 5]"
LAST_ID_HINT = "keep the last id when it is not part of a pair: loop while i < len(ids)"
ORDER_HINT = "a pair is ordered: (b, a) is not (a, b); match ids[i] == a and ids[i + 1] == b"
MERGE_HINT = "scan left to right; where ids[i], ids[i + 1] == pair emit new_id and skip both, else emit ids[i]"


def _merge_diagnose(out, want, ids, pair, what):
    if out == want:
        return
    def has_pair(seq):
        return any((x, y) == tuple(pair) for x, y in zip(seq[:-1], seq[1:]))
    if pair[0] != pair[1] and has_pair(out) and not has_pair(want):
        raise CheckFailure(f"{what} gave {out}, expected {want}: the pair is still there", EVERY_HINT)
    if out == want[:-1] and want:
        raise CheckFailure(f"{what} gave {out}, expected {want}: the last id is missing", LAST_ID_HINT)
    if len(out) < len(want):
        raise CheckFailure(f"{what} gave {out}, expected {want}: too many replacements", AFTER_HINT)
    raise CheckFailure(f"{what} gave {out}, expected {want}", MERGE_HINT)


@test("merge_visible", "merge")
def merge_visible(merge):
    """Every occurrence replaced, left to right, without overlaps: [5, 5, 5] -> [X, 5].

    The pair's order is respected and the last id kept."""
    what = "merge((1, 2, 3, 1, 2), (1, 2), 9)"
    out = _ids(attempt(lambda: merge((1, 2, 3, 1, 2), (1, 2), 9), what, MERGE_HINT), what)
    if out == [9, 3, 1, 2]:
        raise CheckFailure(f"{what} gave {out}, expected [9, 3, 9]", EVERY_HINT)
    ensure(out == [9, 3, 9], f"{what} gave {out}, expected [9, 3, 9]", MERGE_HINT)

    what = "merge((5, 5, 5), (5, 5), 256)"
    out = _ids(merge((5, 5, 5), (5, 5), 256), what)
    if out == [256, 256]:
        raise CheckFailure(f"{what} gave {out}: three ids became two new tokens", AFTER_HINT)
    if out == [5, 256]:
        raise CheckFailure(f"{what} gave {out}, expected [256, 5]", LEFT_HINT)
    if out == [256]:
        raise CheckFailure(f"{what} gave {out}, expected [256, 5]: the last 5 is lost", LAST_ID_HINT)
    ensure(out == [256, 5], f"{what} gave {out}, expected [256, 5]", MERGE_HINT)

    what = "merge((2, 1, 2, 1), (1, 2), 7)"
    out = _ids(merge((2, 1, 2, 1), (1, 2), 7), what)
    if out == [7, 7]:
        raise CheckFailure(f"{what} gave {out}, expected [2, 7, 1]: (2, 1) was merged too", ORDER_HINT)
    if out == [2, 7]:
        raise CheckFailure(f"{what} gave {out}, expected [2, 7, 1]: the last id is missing", LAST_ID_HINT)
    ensure(out == [2, 7, 1], f"{what} gave {out}, expected [2, 7, 1]", MERGE_HINT)

    for ids, pair, new_id, want in [((5, 5, 5, 5, 3), (5, 5), 300, [300, 300, 3]), ((1, 2, 4), (2, 4), 8, [1, 8]),
                                    ((3, 1, 4), (4, 1), 9, [3, 1, 4]), ((), (1, 2), 256, []), ((4,), (4, 4), 256, [4])]:
        what = f"merge({ids}, {pair}, {new_id})"
        out = _ids(attempt(lambda: merge(ids, pair, new_id), what, MERGE_HINT), what)
        _merge_diagnose(out, want, list(ids), pair, what)


@test("merge_random", "merge", hidden=True)
def merge_random(merge, ref):
    """Random sequences over 2 to 5 values (long runs), pairs taken from the sequence, a == b included."""
    rng = rng_for("merge_random")
    for n, alphabet in [(12, 2), (40, 2), (100, 3), (500, 5), (1000, 2)]:
        for _ in range(3):
            ids = tuple(int(x) for x in rng.integers(0, alphabet, size=n))
            i = int(rng.integers(0, n - 1))
            pair = (ids[i], ids[i + 1])
            new_id = 256 + int(rng.integers(0, 50))
            what = f"merge(random ids of length {n}, {pair}, {new_id})"
            _merge_diagnose(_ids(merge(ids, pair, new_id), what), ref.merge(ids, pair, new_id), list(ids), pair, what)


@test("merge_edge", "merge", hidden=True)
def merge_edge(merge, ref):
    """Runs of every length, the pair at both ends, absent pairs, empty and one-id sequences."""
    cases = [((7,) * k, (7, 7), 300) for k in range(1, 8)]
    cases += [((1, 2, 1, 2, 1, 2), (1, 2), 256), ((1, 2, 1, 2, 1, 2), (2, 1), 256), ((1, 2, 2, 2, 1), (2, 2), 999),
              ((3, 4), (3, 4), 256), ((9, 3, 4), (3, 4), 256), ((3, 4, 9), (3, 4), 256), ((1, 2, 3), (3, 1), 256),
              ((), (0, 0), 256), ((0,), (0, 0), 256), ((0, 0, 1, 0, 0), (0, 0), 1)]
    for ids, pair, new_id in cases:
        what = f"merge({_short(ids)}, {pair}, {new_id})"
        _merge_diagnose(_ids(merge(ids, pair, new_id), what), ref.merge(ids, pair, new_id), list(ids), pair, what)


# ------------------------------------------------------------------ train_bpe

COUNT_HINT = ("learn n_merges = vocab_size - 256 - len(special_tokens) merges (fewer only when no pair is left): "
              "vocab_size includes the 256 bytes and the special tokens")
NEW_ID_HINT = "merge r (counting from 0) creates the id 256 + r: the first merge makes 256, the second 257"
TIE_HINT = ("among equally frequent pairs take the smallest pair (compare a, then b), "
            "e.g. max(counts, key=lambda p: (counts[p], -p[0], -p[1]))")
RECOUNT_HINT = ("count the pairs again after every merge: merging changes the counts and creates pairs "
                "with the new id")
BYTES_HINT = 'train on the UTF-8 bytes of the text (list(piece.encode("utf-8"))), not on characters (ord)'
ACROSS_HINT = ("never count a pair across a special token: keep the pieces between special tokens separate "
               "(add up pair_counts piece by piece, merge piece by piece)")
SPECIAL_TRAIN_HINT = "cut the special tokens out with split_special and do not train on them"
STOP_HINT = "stop early when no piece has a pair left (nothing can be merged any more)"
TRAIN_HINT = ("in every step: add up the pair counts of all pieces, take the most frequent pair (ties: the "
              "smallest), append it, and merge it in every piece with the new id 256 + r")

TRAIN_CASES = [  # (text, vocab_size, special_tokens, expected merges); diagnoses of known slips
    ("aaabdaaabac", 259, (), [(97, 97), (97, 98), (256, 257)],
     {((97, 97), (256, 97), (257, 98)): TIE_HINT, ((97, 97), (97, 98), (97, 99)): RECOUNT_HINT}),
    ("héhé", 258, (), [(104, 195), (256, 169)],
     {((104, 233), (256, 256)): BYTES_HINT, ((195, 169), (104, 256)): TIE_HINT, ((104, 195), (195, 169)): RECOUNT_HINT}),
    ("abc<|endoftext|>cab<|endoftext|>c", 259, SPECIALS, [(97, 98), (99, 256)],
     {((97, 98), (256, 99)): ACROSS_HINT, ((60, 124), (62, 99)): SPECIAL_TRAIN_HINT}),
    ("ab", 300, (), [(97, 98)], {}),
]


def _check_merges_exist(out, what):
    for r, (a, b) in enumerate(out):
        if max(a, b) >= 256 + r:
            raise CheckFailure(f"{what}: merge {r} is {(a, b)}, but id {max(a, b)} does not exist yet "
                               f"(before merge {r} the ids are 0 .. {255 + r})", NEW_ID_HINT)
        if min(a, b) < 0:
            raise CheckFailure(f"{what}: merge {r} is {(a, b)}, ids are never negative", TRAIN_HINT)


def _train_diagnose(out, want, what, known=None):
    if out == want:
        return
    if len(out) != len(want):
        raise CheckFailure(f"{what}: {len(out)} merges, expected {len(want)}", COUNT_HINT)
    _check_merges_exist(out, what)
    if known and tuple(out) in known:
        raise CheckFailure(f"{what} gave {out}, expected {want}", known[tuple(out)])
    r = _first_difference(out, want)
    raise CheckFailure(f"{what}: merge {r} is {out[r]}, expected {want[r]} (merges {want[:r]} agree)",
                       TRAIN_HINT + "; " + TIE_HINT)


@test("train_bpe_visible", "train_bpe")
def train_bpe_visible(train_bpe):
    """Worked examples: "aaabdaaabac" with a tie, UTF-8 bytes, special tokens, early stop.

    Special tokens are never trained on, never crossed and counted in vocab_size; a vocab_size
    too small for the special tokens raises ValueError."""
    for text, vocab_size, specials, want, known in TRAIN_CASES:
        what = f"train_bpe({text!r}, {vocab_size}" + (f", {specials})" if specials else ")")
        hint = STOP_HINT if text == "ab" else TRAIN_HINT
        out = _merges(attempt(lambda: train_bpe(text, vocab_size, specials), what, hint), what)
        _train_diagnose(out, want, what, known)
    assert_raises(lambda: train_bpe("abc", 256, SPECIALS), "ValueError", f"train_bpe('abc', 256, {SPECIALS})",
                  "raise ValueError when vocab_size < 256 + len(special_tokens)")


@test("train_bpe_random", "train_bpe", hidden=True)
def train_bpe_random(train_bpe, ref):
    """Random texts with accents, CJK and emoji, with and without special tokens.

    300 to 2000 bytes, 5 to 40 merges, compared merge by merge with the reference."""
    rng = rng_for("train_bpe_random")
    for n_pieces, n_merges, specials in [(150, 12, ()), (400, 40, ()), (300, 25, SPECIALS),
                                         (500, 30, (EOT, "<|pad|>")), (120, 5, SPECIALS)]:
        text = _random_text(rng, n_pieces, specials)
        vocab_size = 256 + n_merges + len(specials)
        what = (f"train_bpe(random text of {len(text.encode('utf-8'))} bytes, {vocab_size}"
                + (f", {specials})" if specials else ")"))
        _train_diagnose(_merges(train_bpe(text, vocab_size, specials), what),
                        ref.train_bpe(text, vocab_size, specials), what)


@test("train_bpe_edge", "train_bpe", hidden=True)
def train_bpe_edge(train_bpe, ref):
    """Empty text, runs of one letter, only special tokens, no room for merges, ValueError.

    Also one character, emoji, and special tokens that contain each other."""
    cases = [("", 300, ()), ("a", 300, ()), ("a" * 10, 262, ()), ("ab" * 8, 270, ()), ("😀" * 5, 270, ()),
             (EOT * 3, 280, SPECIALS), ("xy" + EOT + "xy", 257, SPECIALS), ("abcabc", 256, ()),
             ("héllo wörld, héllo", 266, ()),
             ("<|a|>ab<|a|><|b|>ab<|a|>", 262, ("<|a|>", "<|a|><|b|>")),
             ("a" + EOT + "a" + EOT + "a", 270, SPECIALS)]
    for text, vocab_size, specials in cases:
        what = f"train_bpe({_short(text)}, {vocab_size}" + (f", {specials})" if specials else ")")
        out = _merges(attempt(lambda: train_bpe(text, vocab_size, specials), what, STOP_HINT), what)
        _train_diagnose(out, ref.train_bpe(text, vocab_size, specials), what)
    assert_raises(lambda: train_bpe("abc", 255), "ValueError", "train_bpe('abc', 255)",
                  "raise ValueError when vocab_size < 256 + len(special_tokens)")
    assert_raises(lambda: train_bpe("abc", 257, (EOT, "<|pad|>")), "ValueError",
                  "train_bpe('abc', 257, two special tokens)",
                  "raise ValueError when vocab_size < 256 + len(special_tokens)")


# ------------------------------------------------------------------ encode

RANK_HINT = ("apply the merges in rank order (merge 0 first, everywhere, then merge 1, ...), or repeatedly "
             "the present pair of lowest rank; never by frequency in this text or by position")
NEW_PAIRS_HINT = ("after a merge, look for pairs again: new pairs with the new ids appear, and later merges "
                  "join them (a merge may use ids made by earlier merges)")
UTF8_HINT = 'encode the text to UTF-8 bytes first: list(piece.encode("utf-8")), not ord() of characters'
SPECIAL_ID_HINT = "special token i has the id 256 + len(merges) + i (after the bytes and all the merges)"
SPECIAL_ONE_HINT = ("cut the text with split_special: each special token becomes one id, never bytes, and "
                    "pairs are never merged across it")
ENCODE_HINT = "bytes of each piece, then the merges in rank order; special tokens get 256 + len(merges) + i"


def _encode_diagnose(out, want, what, text=None, merges=(), specials=()):
    if out == want:
        return
    special_ids = set(range(256 + len(merges), 256 + len(merges) + len(specials)))
    if out and max(out) >= 256 + len(merges) + len(specials):
        if any(ord(c) > 255 for c in text or ""):
            raise CheckFailure(f"{what}: id {max(out)} is beyond the vocabulary", UTF8_HINT)
        raise CheckFailure(f"{what}: id {max(out)} is beyond the vocabulary of "
                           f"{256 + len(merges) + len(specials)} ids", ENCODE_HINT)
    if specials and sum(x in special_ids for x in want) != sum(x in special_ids for x in out):
        raise CheckFailure(f"{what}: {sum(x in special_ids for x in out)} special-token ids, expected "
                           f"{sum(x in special_ids for x in want)}", SPECIAL_ONE_HINT + "; " + SPECIAL_ID_HINT)
    r = _first_difference(out, want)
    raise CheckFailure(f"{what}: got {_short(out)}, expected {_short(want)} (first difference at position {r})",
                       RANK_HINT)


@test("encode_visible", "encode")
def encode_visible(encode):
    """Merges applied in rank order, UTF-8 bytes, special tokens as ids 256 + len(merges) + i.

    Merges of merged ids must be applied too."""
    merges = ((98, 99), (97, 98))  # rank 0: (b, c); rank 1: (a, b)
    what = "encode('ababc', merges=((98, 99), (97, 98)))"
    out = _ids(attempt(lambda: encode("ababc", merges), what, ENCODE_HINT), what)
    if out == [257, 257, 99]:
        raise CheckFailure(f"{what} gave {out}, expected [257, 97, 256]: (a, b) was merged before (b, c), "
                           "whose rank is lower", RANK_HINT)
    ensure(out == [257, 97, 256], f"{what} gave {out}, expected [257, 97, 256]", RANK_HINT)

    what = f"encode('aaabdaaabac', merges={M_CLASSIC})"
    out = _ids(encode("aaabdaaabac", M_CLASSIC), what)
    if out == [256, 257, 100, 256, 257, 97, 99]:
        raise CheckFailure(f"{what} gave {out}: merge 2, (256, 257), was never applied", NEW_PAIRS_HINT)
    ensure(out == [258, 100, 258, 97, 99], f"{what} gave {out}, expected [258, 100, 258, 97, 99]", RANK_HINT)

    what = "encode('hé😀', merges=())"
    want = [104, 195, 169, 240, 159, 152, 128]
    out = _ids(attempt(lambda: encode("hé😀", ()), what, UTF8_HINT), what)
    ensure(out == want, f"{what} gave {out}, expected the UTF-8 bytes {want}", UTF8_HINT)

    what = f"encode('ab{EOT}ab', merges=((97, 98),), special_tokens={SPECIALS})"
    out = _ids(attempt(lambda: encode(f"ab{EOT}ab", ((97, 98),), SPECIALS), what, SPECIAL_ONE_HINT), what)
    if out == [256, 256, 256]:
        raise CheckFailure(f"{what} gave {out}: the special token got the id of merge 0", SPECIAL_ID_HINT)
    if len(out) > 3:
        raise CheckFailure(f"{what} gave {out}: the special token was spelled out", SPECIAL_ONE_HINT)
    ensure(out == [256, 257, 256], f"{what} gave {out}, expected [256, 257, 256]", SPECIAL_ID_HINT)

    specials = (EOT, "<|pad|>")
    what = f"encode('<|pad|>a{EOT}{EOT}ab<|pad|>', merges=((97, 98),), special_tokens={specials})"
    out = _ids(encode(f"<|pad|>a{EOT}{EOT}ab<|pad|>", ((97, 98),), specials), what)
    ensure(out == [258, 97, 257, 257, 256, 258], f"{what} gave {out}, expected [258, 97, 257, 257, 256, 258]",
           SPECIAL_ID_HINT)
    what = "encode('', merges=((97, 98),))"
    out = _ids(attempt(lambda: encode("", ((97, 98),)), what, ENCODE_HINT), what)
    ensure(out == [], f"{what} gave {out}, expected []", ENCODE_HINT)


def _trained(ref, rng, n_pieces, n_merges, specials):
    text = _random_text(rng, n_pieces, specials)
    merges = tuple(ref.train_bpe(text, 256 + n_merges + len(specials), specials))
    return text, merges


@test("encode_random", "encode", hidden=True)
def encode_random(encode, ref):
    """Merges trained on random text (accents, CJK, emoji); the training text and new texts.

    With and without special tokens."""
    rng = rng_for("encode_random")
    for n_pieces, n_merges, specials in [(300, 30, ()), (400, 50, SPECIALS), (300, 20, (EOT, "<|pad|>"))]:
        train_text, merges = _trained(ref, rng, n_pieces, n_merges, specials)
        texts = [train_text, _random_text(rng, 150, specials), _random_text(rng, 40, specials, 0.2)]
        for k, text in enumerate(texts):
            what = (f"encode({'the training text' if k == 0 else 'a random text'} of {len(text)} characters, "
                    f"{len(merges)} merges" + (f", {specials})" if specials else ")"))
            out = _ids(encode(text, merges, specials), what)
            _encode_diagnose(out, ref.encode(text, merges, specials), what, text, merges, specials)


@test("encode_edge", "encode", hidden=True)
def encode_edge(encode, ref):
    """No merges, empty text, special tokens alone, at both ends and side by side, unseen characters.

    Also special tokens that contain each other."""
    rng = rng_for("encode_edge")
    _, merges = _trained(ref, rng, 300, 25, SPECIALS)
    nested = ("<|a|>", "<|a|><|b|>")
    cases = [("hello", (), ()), ("", merges, SPECIALS), (EOT, merges, SPECIALS), (EOT * 3, merges, SPECIALS),
             (EOT + "ab" + EOT, merges, SPECIALS), ("Ωμέγα 🎉 ∑ 한국어", merges, SPECIALS),
             ("aaaaaaaaa", ((97, 97), (256, 256), (257, 97)), ()), ("<|endoftext", merges, SPECIALS),
             ("x<|a|><|b|>y<|a|>z", ((120, 60),), nested)]
    for text, m, specials in cases:
        what = f"encode({_short(text)}, {len(m)} merges" + (f", {specials})" if specials else ")")
        out = _ids(attempt(lambda: encode(text, m, specials), what, ENCODE_HINT), what)
        _encode_diagnose(out, ref.encode(text, m, specials), what, text, m, specials)


# ------------------------------------------------------------------ decode

JOIN_HINT = ("join the bytes of all the tokens first (b''.join), then decode the whole byte string once: "
             "a token may hold only part of a character")
REPLACE_HINT = ('decode with .decode("utf-8", errors="replace"): invalid bytes become "\\ufffd" '
                '(never raise, never drop them)')
UTF8_DECODE_HINT = 'decode the bytes as UTF-8 (.decode("utf-8", errors="replace")), not byte by byte with chr()'
DECODE_HINT = ("id i < 256 is the byte i; merge r makes id 256 + r with the bytes of a then b; special token i "
               "is id 256 + len(merges) + i")


@test("decode_visible", "decode")
def decode_visible(decode):
    """Bytes joined before decoding, errors="replace", special tokens after the merges.

    A token can hold half a character: only the joined bytes are valid UTF-8."""
    what = f"decode((258, 100, 258, 97, 99), merges={M_CLASSIC})"
    out = _text(attempt(lambda: decode((258, 100, 258, 97, 99), M_CLASSIC), what, DECODE_HINT), what)
    ensure(out == "aaabdaaabac", f"{what} gave {out!r}, expected 'aaabdaaabac'", DECODE_HINT)

    what = "decode((256, 169), merges=((104, 195),))  [token 256 is b'h\\xc3', half of é]"
    out = _text(attempt(lambda: decode((256, 169), ((104, 195),)), what, JOIN_HINT), what)
    if out == "h\ufffd\ufffd":
        raise CheckFailure(f"{what} gave {out!r}, expected 'hé'", JOIN_HINT)
    if out == "hÃ©":
        raise CheckFailure(f"{what} gave {out!r}, expected 'hé'", UTF8_DECODE_HINT)
    ensure(out == "hé", f"{what} gave {out!r}, expected 'hé'", JOIN_HINT)

    what = "decode((255, 65), merges=())  [the byte 255 is never valid UTF-8]"
    out = _text(attempt(lambda: decode((255, 65), ()), what, REPLACE_HINT), what)
    ensure(out == "\ufffdA", f"{what} gave {out!r}, expected '\\ufffdA'", REPLACE_HINT)

    what = f"decode((256, 257, 256), merges=((97, 98),), special_tokens={SPECIALS})"
    out = _text(attempt(lambda: decode((256, 257, 256), ((97, 98),), SPECIALS), what, DECODE_HINT), what)
    ensure(out == f"ab{EOT}ab", f"{what} gave {out!r}, expected {'ab' + EOT + 'ab'!r}", SPECIAL_ID_HINT)

    # "naïve 😀" with merges that cut the emoji (240, 159, 152, 128) in two tokens.
    merges = ((240, 159), (152, 128), (110, 97), (195, 175))
    ids = (258, 259, 118, 101, 32, 256, 257)
    what = f"decode({ids}, merges={merges})"
    out = _text(decode(ids, merges), what)
    ensure(out == "naïve 😀", f"{what} gave {out!r}, expected 'naïve 😀'", JOIN_HINT)
    what = "decode((), merges=())"
    out = _text(attempt(lambda: decode((), ()), what, DECODE_HINT), what)
    ensure(out == "", f"{what} gave {out!r}, expected ''", DECODE_HINT)


def _decode_diagnose(out, want, what, specials=()):
    if out == want:
        return
    msg = f"{what}: got {_short(out)}, expected {_short(want)}"
    for s in specials:
        if out.count(s) != want.count(s):
            raise CheckFailure(f"{msg}: {s!r} occurs {out.count(s)} times, expected {want.count(s)}", SPECIAL_ID_HINT)
    if out.count("\ufffd") > want.count("\ufffd"):
        raise CheckFailure(f"{msg}: too many replacement characters \\ufffd", JOIN_HINT)
    if out.count("\ufffd") < want.count("\ufffd"):
        raise CheckFailure(f"{msg}: too few replacement characters \\ufffd", REPLACE_HINT)
    raise CheckFailure(msg, DECODE_HINT)


@test("decode_random", "decode", hidden=True)
def decode_random(decode, ref):
    """decode(encode(text)) == text for random texts; random id sequences against the reference.

    Texts with accents, CJK, emoji and special tokens; id sequences include invalid UTF-8."""
    rng = rng_for("decode_random")
    for n_pieces, n_merges, specials in [(300, 30, ()), (400, 60, SPECIALS), (300, 20, (EOT, "<|pad|>"))]:
        train_text, merges = _trained(ref, rng, n_pieces, n_merges, specials)
        for text in (train_text, _random_text(rng, 200, specials)):
            ids = tuple(ref.encode(text, merges, specials))
            what = f"decode(encode(a random text of {len(text)} characters), {len(merges)} merges)"
            out = _text(attempt(lambda: decode(ids, merges, specials), what, REPLACE_HINT), what)
            _decode_diagnose(out, text, what, specials)
        vocab = 256 + len(merges) + len(specials)
        for n in (5, 50, 300):
            ids = tuple(int(x) for x in rng.integers(0, vocab, size=n))
            what = f"decode({n} random ids below {vocab}, {len(merges)} merges)"
            out = _text(attempt(lambda: decode(ids, merges, specials), what, REPLACE_HINT), what)
            _decode_diagnose(out, ref.decode(ids, merges, specials), what, specials)


@test("decode_edge", "decode", hidden=True)
def decode_edge(decode, ref):
    """Lone continuation bytes, a cut-off emoji, only special tokens, empty input.

    Also merges of merges that split characters."""
    merges = ((240, 159), (256, 152), (195, 169), (104, 258), (259, 259))
    cases = [((), (), ()), ((128, 129, 65), (), ()), ((240, 159, 152), (), ()), ((257,), merges, ()),
             ((257, 128), merges, ()), ((260, 32, 257, 128), merges, ()), ((261, 262, 261), merges, (EOT, "<|pad|>")),
             ((0, 10, 127), (), ()), ((195, 258), merges, ())]
    for ids, m, specials in cases:
        what = f"decode({ids}, {len(m)} merges" + (f", {specials})" if specials else ")")
        out = _text(attempt(lambda: decode(ids, m, specials), what, REPLACE_HINT), what)
        _decode_diagnose(out, ref.decode(ids, m, specials), what, specials)

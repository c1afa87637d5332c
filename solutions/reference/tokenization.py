"""Chapter 8 reference: byte-level BPE (train the merges, encode, decode).

Conventions, used everywhere in the chapter:

* A text is turned into its UTF-8 bytes; the 256 byte values are the first 256 token ids.
* Merge number r (its *rank*, counted from 0 in the order the merges were learned) joins a
  pair of ids (a, b) into the new id 256 + r.
* Special tokens (such as "<|endoftext|>") come last: with M merges, special token i of the
  list `special_tokens` has id 256 + M + i. They are cut out of the text before anything
  else happens, so they are never split into bytes and no pair is ever counted or merged
  across them. The vocabulary size is 256 + M + len(special_tokens), as in GPT-2
  (256 bytes + 50000 merges + "<|endoftext|>" = 50257).

Token ids travel as sequences of Python ints (lists or tuples); merges as a sequence of
(a, b) pairs in rank order, such as the list `train_bpe` returns.
"""
import re

import numpy as np


def split_special(text, special_tokens=()):
    """Cut `text` around the special tokens (given: not graded).

    Returns a list of strings: every occurrence of a special token is an element of its
    own, and the ordinary text between them fills the elements in between (empty pieces
    are left out). Joining the list gives back `text`. Where two special tokens could
    start at the same place, the longer one wins.
    Example: split_special("Hi<|endoftext|>Yo", ("<|endoftext|>",))
             == ["Hi", "<|endoftext|>", "Yo"]
    """
    if len(special_tokens) == 0:
        return [text] if text else []
    longest_first = sorted(special_tokens, key=len, reverse=True)
    pattern = "(" + "|".join(re.escape(s) for s in longest_first) + ")"
    return [piece for piece in re.split(pattern, text) if piece]


def pair_counts(ids):
    """Count the adjacent pairs of a sequence of token ids.

    ids: a sequence of integer ids (a list or a tuple).
    Every neighbour pair (ids[i], ids[i + 1]) counts, overlapping ones included: in
    [7, 7, 7] the pair (7, 7) occurs twice.
    Returns an integer NumPy array of shape (P, 3) with one row (a, b, count) for each of
    the P distinct pairs, the rows sorted by a, then by b (ascending). A sequence of
    fewer than 2 ids has no pairs: return an array of shape (0, 3).
    Example: pair_counts([1, 2, 3, 1, 2]) == [[1, 2, 2], [2, 3, 1], [3, 1, 1]]
    """
    counts = {}
    for a, b in zip(ids[:-1], ids[1:]):
        pair = (int(a), int(b))
        counts[pair] = counts.get(pair, 0) + 1
    rows = [(a, b, n) for (a, b), n in sorted(counts.items())]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def merge(ids, pair, new_id):
    """Replace the occurrences of `pair` in `ids` by the single id `new_id`.

    ids: a sequence of integer ids; pair: a tuple (a, b); new_id: an integer.
    Scan from left to right; where ids[i] == a and ids[i + 1] == b, emit new_id and
    continue after the pair (at i + 2), otherwise emit ids[i] and move on by one. So
    occurrences never overlap, and the leftmost one wins:
    merge([5, 5, 5], (5, 5), 256) == [256, 5].
    Returns a new list of ints (the input is not modified).
    """
    a, b = pair
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(int(ids[i]))
            i += 1
    return out


def train_bpe(text, vocab_size, special_tokens=()):
    """Learn byte-level BPE merges from `text`.

    vocab_size counts everything: the 256 byte tokens, the merges and the special tokens,
    so learn n_merges = vocab_size - 256 - len(special_tokens) merges (ValueError if that
    is negative).
    1. Cut the text with split_special(text, special_tokens), drop the special tokens, and
       turn every other piece into its list of UTF-8 bytes (list(piece.encode("utf-8"))).
       The pieces stay separate: a pair is never counted across a special token.
    2. Repeat n_merges times: add up pair_counts over all pieces; take the most frequent
       pair, and among equally frequent pairs the smallest (a, b) (compare a first, then b);
       the merge learned in step r (r = 0, 1, ...) gets the new id 256 + r; replace the pair
       in every piece with merge(...). Stop early if no piece has a pair left.
    Returns the merges: a list of (a, b) tuples of ints, in the order they were learned.
    """
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError(f"vocab_size {vocab_size} is smaller than 256 bytes + "
                         f"{len(special_tokens)} special tokens")
    pieces = [list(piece.encode("utf-8")) for piece in split_special(text, special_tokens)
              if piece not in special_tokens]
    merges = []
    for rank in range(n_merges):
        counts = {}
        for piece in pieces:
            for a, b, n in pair_counts(piece):
                counts[(int(a), int(b))] = counts.get((int(a), int(b)), 0) + int(n)
        if not counts:
            break
        # Most frequent first; on a tie, the smaller pair (so -a, -b: larger is better).
        best = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))
        merges.append(best)
        pieces = [merge(piece, best, 256 + rank) for piece in pieces]
    return merges


def encode(text, merges, special_tokens=()):
    """Turn `text` into token ids with the learned `merges`.

    merges: a sequence of (a, b) pairs in rank order (merge r makes id 256 + r);
    special_tokens: strings that get the ids 256 + len(merges) + i, in list order.
    Cut the text with split_special; each special token becomes its one id. Every other
    piece becomes its UTF-8 bytes, and then the merges are applied in rank order: first
    merge 0 everywhere in the piece, then merge 1, and so on. (Equivalently: repeatedly
    merge the pair of the piece whose rank is lowest, until no pair of the piece is a
    merge.) Never choose by how often a pair occurs in the text being encoded.
    Returns a list of ints.
    """
    rank_of = {(int(a), int(b)): r for r, (a, b) in enumerate(merges)}
    special_id = {s: 256 + len(merges) + i for i, s in enumerate(special_tokens)}
    ids = []
    for piece in split_special(text, special_tokens):
        if piece in special_id:
            ids.append(special_id[piece])
            continue
        tokens = list(piece.encode("utf-8"))
        while len(tokens) >= 2:
            # The merge of lowest rank among the pairs present: the one learned first.
            pair = min(zip(tokens[:-1], tokens[1:]), key=lambda p: rank_of.get(p, len(merges)))
            if pair not in rank_of:
                break
            tokens = merge(tokens, pair, 256 + rank_of[pair])
        ids.extend(tokens)
    return ids


def decode(ids, merges, special_tokens=()):
    """Turn token ids back into text.

    Every id stands for a string of bytes: id i < 256 is the single byte i; merge r,
    (a, b), makes id 256 + r, whose bytes are those of a followed by those of b; special
    token i has id 256 + len(merges) + i and stands for its UTF-8 bytes.
    Join the bytes of all the ids first, then decode the whole byte string once with
    .decode("utf-8", errors="replace"): a token may hold only part of a character, and
    bytes that are not valid UTF-8 become the replacement character "\\ufffd".
    Returns a str. decode(encode(s, merges, special), merges, special) == s for every str s.
    """
    token_bytes = [bytes([i]) for i in range(256)]
    for a, b in merges:
        token_bytes.append(token_bytes[a] + token_bytes[b])
    token_bytes += [s.encode("utf-8") for s in special_tokens]
    return b"".join(token_bytes[i] for i in ids).decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------
# Not graded: what the chapter's page and bench/tokenizer_compare.py share.

ENDOFTEXT = "<|endoftext|>"

# Standard-library modules that every CPython 3.x has, read in this order.
STDLIB_FILES = ("bisect.py", "colorsys.py", "fnmatch.py", "heapq.py", "keyword.py", "linecache.py",
                "shlex.py", "string.py", "textwrap.py", "this.py")


# Other modules, held out: Python code the tokenizer has not seen.
STDLIB_HELDOUT_FILES = ("abc.py", "copy.py", "glob.py", "queue.py", "sched.py")


def chapter_corpus():
    """The chapter's texts: 40 KB of stories and 40 KB of standard-library Python to train on,
    20 KB of each held out (other stories, other modules).

    Returns a dict with the keys "train", "heldout_stories" and "heldout_python".
    """
    return {"train": story_corpus(40_000) + python_corpus(40_000),
            "heldout_stories": story_corpus(20_000, seed=7),
            "heldout_python": python_corpus(20_000, STDLIB_HELDOUT_FILES)}


def story_corpus(n_bytes=40_000, seed=2024):
    """Stories from the course's generator (models/stories.py), separated by ENDOFTEXT,
    whole stories only, at most n_bytes bytes of UTF-8."""
    from models.stories import stories

    out, size = [], 0
    for s in stories(n=max(10, n_bytes // 300), seed=seed):
        extra = len(s.encode("utf-8")) + len(ENDOFTEXT)
        if size + extra > n_bytes:
            break
        out.append(s)
        size += extra
    return ENDOFTEXT.join(out) + ENDOFTEXT


def python_corpus(n_bytes=40_000, files=STDLIB_FILES):
    """Python source code: the standard-library files `files` (those that exist), in that
    order, separated by ENDOFTEXT, cut to at most n_bytes bytes in total (the cut is moved
    back to a line end, so no character is split)."""
    import os
    from pathlib import Path

    lib = Path(os.__file__).parent
    parts = [(lib / f).read_text(encoding="utf-8") for f in files if (lib / f).is_file()]
    data = ENDOFTEXT.join(parts).encode("utf-8")[:n_bytes]
    return data[:data.rfind(b"\n") + 1].decode("utf-8")


def token_bytes(i, merges, special_tokens=()):
    """The bytes that token id i stands for (for displaying single tokens)."""
    i = int(i)
    if i < 256:
        return bytes([i])
    if i < 256 + len(merges):
        a, b = merges[i - 256]
        return token_bytes(a, merges) + token_bytes(b, merges)
    return special_tokens[i - 256 - len(merges)].encode("utf-8")


def fast_train_bpe(text, vocab_size, special_tokens=(), on_merge=None):
    """The same merges as train_bpe, computed with NumPy on whole arrays.

    All pieces live in one int64 array, with -1 between pieces (a separator no pair can
    cross). Pairs are counted with np.unique on a*K + b codes, and merges find their
    non-overlapping positions without a Python loop over the text. on_merge(rank, n_tokens)
    is called after every merge with the number of tokens left (separators not counted).
    """
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError("vocab_size too small")
    parts = []
    for piece in split_special(text, special_tokens):
        if piece not in special_tokens:
            parts.append(np.frombuffer(piece.encode("utf-8"), dtype=np.uint8).astype(np.int64))
            parts.append(np.array([-1]))
    seq = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    key = 256 + n_merges + 1  # larger than every id
    merges = []
    for rank in range(n_merges):
        a, b = seq[:-1], seq[1:]
        ok = (a >= 0) & (b >= 0)
        if not ok.any():
            break
        codes, counts = np.unique(a[ok] * key + b[ok], return_counts=True)
        best = int(codes[np.argmax(counts)])  # codes ascend, argmax takes the first: smallest pair
        pair = (best // key, best % key)
        merges.append(pair)
        seq = fast_merge(seq, pair, 256 + rank)
        if on_merge is not None:
            on_merge(rank, int((seq >= 0).sum()))
    return merges


def fast_merge(seq, pair, new_id):
    """merge() on an int64 array, without a Python loop over the array."""
    a, b = pair
    hit = np.zeros(len(seq), dtype=bool)
    if len(seq) >= 2:
        hit[:-1] = (seq[:-1] == a) & (seq[1:] == b)
    if a == b:  # runs like a a a a: keep every other hit, counting from the start of the run
        idx = np.flatnonzero(hit)
        if len(idx):
            starts = np.ones(len(idx), dtype=bool)
            starts[1:] = np.diff(idx) != 1
            run_start = idx[starts][np.cumsum(starts) - 1]
            hit[idx[(idx - run_start) % 2 == 1]] = False
    out = seq.copy()
    out[hit] = new_id
    drop = np.zeros(len(seq), dtype=bool)
    drop[1:] = hit[:-1]
    return out[~drop]


def fast_encode(text, merges, special_tokens=(), n_merges=None):
    """encode() with NumPy: apply the first n_merges merges (default all) in rank order.
    The same ids as encode (merge r can only create pairs of rank above r)."""
    merges = list(merges)[:n_merges]
    special_id = {s: 256 + len(merges) + i for i, s in enumerate(special_tokens)}
    parts = []
    for piece in split_special(text, special_tokens):
        if piece in special_id:
            parts.append(np.array([-2 - special_id[piece]]))
        else:
            parts.append(np.frombuffer(piece.encode("utf-8"), dtype=np.uint8).astype(np.int64))
    seq = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    for rank, pair in enumerate(merges):
        seq = fast_merge(seq, pair, 256 + rank)
    return np.where(seq < 0, -2 - seq, seq)

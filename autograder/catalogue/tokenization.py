"""Wrong and alternative implementations for chapter 8 (08-tokenization)."""
from . import Wrong

# Correct helpers under private names, so that a train_bpe / encode source below runs on
# its own, and pasted into a notebook (the sample submissions) does not replace the
# student's own split_special, pair_counts or merge.
_HELPERS = '''
import re
import numpy as np
def _bpe_split(text, special_tokens=()):
    if len(special_tokens) == 0:
        return [text] if text else []
    pattern = "(" + "|".join(re.escape(s) for s in sorted(special_tokens, key=len, reverse=True)) + ")"
    return [p for p in re.split(pattern, text) if p]
def _bpe_counts(ids):
    counts = {}
    for a, b in zip(ids[:-1], ids[1:]):
        counts[(int(a), int(b))] = counts.get((int(a), int(b)), 0) + 1
    return counts
def _bpe_merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(int(ids[i]))
            i += 1
    return out
'''


def _train(body: str, prepare: str = None) -> str:
    """A train_bpe whose choice of the next merge is `body` (it sets `best` from `counts`)
    and whose preparation of the pieces is `prepare`."""
    prepare = prepare or '''
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError("vocab_size too small")
    pieces = [list(p.encode("utf-8")) for p in _bpe_split(text, special_tokens) if p not in special_tokens]
'''
    return _HELPERS + '''
def train_bpe(text, vocab_size, special_tokens=()):''' + prepare + '''
    merges = []
    for rank in range(n_merges):
        counts = {}
        for piece in pieces:
            for pair, n in _bpe_counts(piece).items():
                counts[pair] = counts.get(pair, 0) + n
        if not counts:
            break
''' + body + '''
        merges.append(best)
        pieces = [_bpe_merge(piece, best, 256 + rank) for piece in pieces]
    return merges
'''


_BEST = "        best = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))\n"


def _encode(body: str, prelude: str = "") -> str:
    """An encode() whose handling of one ordinary piece (bytes in `tokens`) is `body`."""
    return _HELPERS + prelude + '''
def encode(text, merges, special_tokens=()):
    rank_of = {(int(a), int(b)): r for r, (a, b) in enumerate(merges)}
    special_id = {s: 256 + len(merges) + i for i, s in enumerate(special_tokens)}
    ids = []
    for piece in _bpe_split(text, special_tokens):
        if piece in special_id:
            ids.append(special_id[piece])
            continue
        tokens = list(piece.encode("utf-8"))
''' + body + '''
        ids.extend(tokens)
    return ids
'''


_ENCODE_RANK = '''
        while len(tokens) >= 2:
            pair = min(zip(tokens[:-1], tokens[1:]), key=lambda p: rank_of.get(p, len(merges)))
            if pair not in rank_of:
                break
            tokens = _bpe_merge(tokens, pair, 256 + rank_of[pair])
'''

WRONG = [
    # ---------------------------------------------------------------- pair_counts
    Wrong("pair_counts", "disjoint_pairs", "every neighbour pair", '''
import numpy as np
def pair_counts(ids):
    counts = {}
    for a, b in zip(ids[0::2], ids[1::2]):
        counts[(a, b)] = counts.get((a, b), 0) + 1
    return np.array([(a, b, n) for (a, b), n in sorted(counts.items())], dtype=np.int64).reshape(-1, 3)
''', "Cutting the sequence into disjoint pairs (ids[0::2], ids[1::2]): half of the neighbour pairs are "
         "never counted."),
    Wrong("pair_counts", "overlap_counted_once", "overlapping", '''
import numpy as np
def pair_counts(ids):
    counts = {}
    i = 0
    while i < len(ids) - 1:
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
        i += 2 if ids[i] == ids[i + 1] else 1   # "pairs cannot overlap", as in merge
    return np.array([(a, b, n) for (a, b), n in sorted(counts.items())], dtype=np.int64).reshape(-1, 3)
''', "Counting a run like 7 7 7 as one (7, 7) instead of two, as if counting were merging: counting "
         "looks at every neighbour pair, overlapping ones included."),
    Wrong("pair_counts", "misses_last_pair", "last pair", '''
import numpy as np
def pair_counts(ids):
    counts = {}
    for i in range(len(ids) - 2):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
    return np.array([(a, b, n) for (a, b), n in sorted(counts.items())], dtype=np.int64).reshape(-1, 3)
''', "An off-by-one loop, range(len(ids) - 2), that never counts the last pair."),
    Wrong("pair_counts", "unsorted", "sort the rows", '''
from collections import Counter
import numpy as np
def pair_counts(ids):
    counts = Counter(zip(ids[:-1], ids[1:]))
    return np.array([(a, b, n) for (a, b), n in counts.items()], dtype=np.int64).reshape(-1, 3)
''', "Rows in the order the pairs first occur: the result is right as a set, but not sorted by (a, b)."),
    Wrong("pair_counts", "sorted_by_count", "sort the rows", '''
from collections import Counter
import numpy as np
def pair_counts(ids):
    counts = Counter(zip(ids[:-1], ids[1:]))
    return np.array([(a, b, n) for (a, b), n in counts.most_common()], dtype=np.int64).reshape(-1, 3)
''', "Rows sorted by count (Counter.most_common) instead of by the pair (a, b)."),

    # ---------------------------------------------------------------- merge
    Wrong("merge", "overlapping", "continue after the pair", '''
def merge(ids, pair, new_id):
    out = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
        elif i > 0 and (ids[i - 1], ids[i]) == tuple(pair):
            continue                                     # the second half of a pair
        else:
            out.append(ids[i])
    return out
''', "Overlapping merges: in 5 5 5 both (5, 5) pairs are replaced, making two new tokens out of three "
         "ids. After a replacement, continue after the pair."),
    Wrong("merge", "right_to_left", "left to right", '''
def merge(ids, pair, new_id):
    out = []
    i = len(ids) - 1
    while i >= 0:
        if i >= 1 and ids[i - 1] == pair[0] and ids[i] == pair[1]:
            out.append(new_id)
            i -= 2
        else:
            out.append(ids[i])
            i -= 1
    return out[::-1]
''', "Scanning from the right: merge([5, 5, 5], (5, 5), X) gives [5, X] instead of [X, 5]."),
    Wrong("merge", "drops_last", "last id", '''
def merge(ids, pair, new_id):
    out = []
    i = 0
    while i < len(ids) - 1:
        if ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
''', "A loop `while i < len(ids) - 1` that forgets the last id when it is not part of a pair."),
    Wrong("merge", "first_only", "every occurrence", '''
def merge(ids, pair, new_id):
    ids = list(ids)
    for i in range(len(ids) - 1):
        if ids[i] == pair[0] and ids[i + 1] == pair[1]:
            return ids[:i] + [new_id] + ids[i + 2:]
    return ids
''', "Replacing only the first occurrence of the pair."),
    Wrong("merge", "either_order", "(b, a)", '''
def merge(ids, pair, new_id):
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and sorted((ids[i], ids[i + 1])) == sorted(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
''', "Matching the pair in either order ((b, a) as well as (a, b)): a pair is ordered."),

    # ---------------------------------------------------------------- train_bpe
    Wrong("train_bpe", "tie_first_seen", "smallest pair", _train('''
        best = max(counts, key=lambda p: counts[p])   # on ties: the pair seen first
'''), "Breaking ties by the order the pairs were first seen (max over a dict, Counter.most_common): "
         "the merges then depend on the order of the text, not on a stated rule."),
    Wrong("train_bpe", "tie_largest_pair", "smallest pair", _train('''
        best = max(counts, key=lambda p: (counts[p], p))
'''), "Ties broken towards the largest pair instead of the smallest."),
    Wrong("train_bpe", "no_recount", "count the pairs again", _HELPERS + '''
def train_bpe(text, vocab_size, special_tokens=()):
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError("vocab_size too small")
    counts = {}
    for p in _bpe_split(text, special_tokens):
        if p not in special_tokens:
            for pair, n in _bpe_counts(list(p.encode("utf-8"))).items():
                counts[pair] = counts.get(pair, 0) + n
    order = sorted(counts, key=lambda p: (-counts[p], p))
    return order[:n_merges]     # the most frequent pairs of the raw bytes, counted once
''', "Counting the pairs once and taking the most frequent ones: after each merge the counts change "
         "and pairs with the new id appear, so they must be counted again."),
    Wrong("train_bpe", "new_id_off_by_one", "256 + r", _HELPERS + '''
def train_bpe(text, vocab_size, special_tokens=()):
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError("vocab_size too small")
    pieces = [list(p.encode("utf-8")) for p in _bpe_split(text, special_tokens) if p not in special_tokens]
    merges = []
    for rank in range(1, n_merges + 1):
        counts = {}
        for piece in pieces:
            for pair, n in _bpe_counts(piece).items():
                counts[pair] = counts.get(pair, 0) + n
        if not counts:
            break
        best = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))
        merges.append(best)
        pieces = [_bpe_merge(piece, best, 256 + rank) for piece in pieces]
    return merges
''', "New ids counted from 257 (ranks from 1): merge r must create id 256 + r, the first one 256."),
    Wrong("train_bpe", "characters_not_bytes", "UTF-8 bytes", _train(_BEST, '''
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError("vocab_size too small")
    pieces = [[ord(c) for c in p] for p in _bpe_split(text, special_tokens) if p not in special_tokens]
'''), "Working on characters (ord(c)) instead of UTF-8 bytes: code points above 255 collide with "
         "the ids of merges, and the tokenizer is no longer byte-level."),
    Wrong("train_bpe", "across_special_tokens", "across a special token", _train(_BEST, '''
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError("vocab_size too small")
    joined = "".join(p for p in _bpe_split(text, special_tokens) if p not in special_tokens)
    pieces = [list(joined.encode("utf-8"))]
'''), "Removing the special tokens and joining the rest: pairs are then counted (and merged) across "
         "document boundaries, where no real text has them."),
    Wrong("train_bpe", "trains_on_special_tokens", "split_special", _train(_BEST, '''
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError("vocab_size too small")
    pieces = [list(text.encode("utf-8"))]
'''), "Training on the special tokens' characters as ordinary text: merges are wasted on pieces "
         "of <|endoftext|>, which is always one token of its own."),
    Wrong("train_bpe", "vocab_without_specials", "vocab_size includes", _train(_BEST, '''
    n_merges = vocab_size - 256
    if n_merges < 0:
        raise ValueError("vocab_size too small")
    pieces = [list(p.encode("utf-8")) for p in _bpe_split(text, special_tokens) if p not in special_tokens]
'''), "Learning vocab_size - 256 merges, forgetting that the special tokens take places in the vocabulary too."),

    # ---------------------------------------------------------------- encode
    Wrong("encode", "frequency_order", "rank order", _encode('''
        while len(tokens) >= 2:
            counts = _bpe_counts(tokens)
            known = [p for p in counts if p in rank_of]
            if not known:
                break
            pair = max(known, key=lambda p: counts[p])   # the most frequent pair of *this* text
            tokens = _bpe_merge(tokens, pair, 256 + rank_of[pair])
'''), "Applying the merges in the order of how often their pairs occur in the text being encoded, as "
         "if training again: the result is not the segmentation training learned."),
    Wrong("encode", "leftmost_first", "rank order", _encode('''
        while True:
            hits = [i for i in range(len(tokens) - 1) if (tokens[i], tokens[i + 1]) in rank_of]
            if not hits:
                break
            i = hits[0]                                  # the leftmost known pair
            tokens = tokens[:i] + [256 + rank_of[(tokens[i], tokens[i + 1])]] + tokens[i + 2:]
'''), "Merging the leftmost pair that is a merge, whatever its rank."),
    Wrong("encode", "reversed_order", "rank order", _encode('''
        for r in reversed(range(len(merges))):
            tokens = _bpe_merge(tokens, tuple(int(x) for x in merges[r]), 256 + r)
'''), "Applying the merges from the last learned to the first."),
    Wrong("encode", "pairs_found_once", "new pairs", _encode('''
        present = sorted({p for p in zip(tokens[:-1], tokens[1:]) if p in rank_of}, key=rank_of.get)
        for pair in present:                             # only the merges whose pair is in the bytes
            tokens = _bpe_merge(tokens, pair, 256 + rank_of[pair])
'''), "Looking for mergeable pairs only once, in the raw bytes: merges whose pairs contain new ids "
         "(made by earlier merges) are never applied."),
    Wrong("encode", "characters_not_bytes", "UTF-8 bytes", _encode('''
        tokens = [ord(c) for c in piece]
''' + _ENCODE_RANK), "Using characters' code points (ord) instead of UTF-8 bytes: é becomes 233 instead of "
         "[195, 169], and an emoji an id beyond the vocabulary."),
    Wrong("encode", "special_ids_first", "256 + len(merges) + i", _HELPERS + '''
def encode(text, merges, special_tokens=()):
    rank_of = {(int(a), int(b)): r for r, (a, b) in enumerate(merges)}
    special_id = {s: 256 + i for i, s in enumerate(special_tokens)}   # collides with the merges
    ids = []
    for piece in _bpe_split(text, special_tokens):
        if piece in special_id:
            ids.append(special_id[piece])
            continue
        tokens = list(piece.encode("utf-8"))
''' + _ENCODE_RANK + '''
        ids.extend(tokens)
    return ids
''', "Giving special token i the id 256 + i: those ids belong to the first merges."),
    Wrong("encode", "special_tokens_as_text", "one id", _HELPERS + '''
def encode(text, merges, special_tokens=()):
    rank_of = {(int(a), int(b)): r for r, (a, b) in enumerate(merges)}
    tokens = list(text.encode("utf-8"))                 # special tokens encoded like any text
    while len(tokens) >= 2:
        pair = min(zip(tokens[:-1], tokens[1:]), key=lambda p: rank_of.get(p, len(merges)))
        if pair not in rank_of:
            break
        tokens = _bpe_merge(tokens, pair, 256 + rank_of[pair])
    return tokens
''', "Ignoring special_tokens: <|endoftext|> is spelled out in bytes (and merged with its neighbours) "
          "instead of being one id."),

    # ---------------------------------------------------------------- decode
    Wrong("decode", "per_token_decode", "join the bytes", '''
def decode(ids, merges, special_tokens=()):
    vocab = [bytes([i]) for i in range(256)]
    for a, b in merges:
        vocab.append(vocab[a] + vocab[b])
    vocab += [s.encode("utf-8") for s in special_tokens]
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)
''', "Decoding every token to text on its own: a token that holds half of a character (é is two "
         "bytes, an emoji four) becomes replacement characters although the text is valid."),
    Wrong("decode", "strict_errors", "errors=\"replace\"", '''
def decode(ids, merges, special_tokens=()):
    vocab = [bytes([i]) for i in range(256)]
    for a, b in merges:
        vocab.append(vocab[a] + vocab[b])
    vocab += [s.encode("utf-8") for s in special_tokens]
    return b"".join(vocab[i] for i in ids).decode("utf-8")
''', "Decoding with errors=\"strict\" (the default): a model can emit ids whose bytes are not valid "
         "UTF-8, and decode then raises UnicodeDecodeError."),
    Wrong("decode", "ignore_errors", "errors=\"replace\"", '''
def decode(ids, merges, special_tokens=()):
    vocab = [bytes([i]) for i in range(256)]
    for a, b in merges:
        vocab.append(vocab[a] + vocab[b])
    vocab += [s.encode("utf-8") for s in special_tokens]
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="ignore")
''', "Decoding with errors=\"ignore\": invalid bytes vanish without a trace instead of showing as \ufffd."),
    Wrong("decode", "latin1", "as UTF-8", '''
def decode(ids, merges, special_tokens=()):
    vocab = [bytes([i]) for i in range(256)]
    for a, b in merges:
        vocab.append(vocab[a] + vocab[b])
    vocab += [s.encode("utf-8") for s in special_tokens]
    return "".join(chr(byte) for byte in b"".join(vocab[i] for i in ids))
''', "Turning every byte into the character with that number (chr(byte), i.e. Latin-1): é comes back as Ã©."),
    Wrong("decode", "special_ids_first", "256 + len(merges) + i", '''
def decode(ids, merges, special_tokens=()):
    vocab = [bytes([i]) for i in range(256)]
    vocab += [s.encode("utf-8") for s in special_tokens]      # specials before the merges
    for a, b in merges:
        vocab.append(vocab[a] + vocab[b])
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
''', "Putting the special tokens right after the bytes (ids 256, 257, ...) when the merges own those ids."),
]

CORRECT = [
    # pair_counts with a Counter and NumPy's lexsort.
    '''
from collections import Counter
import numpy as np
def pair_counts(ids):
    c = Counter(zip(ids[:-1], ids[1:]))
    rows = np.array([(a, b, n) for (a, b), n in c.items()], dtype=np.int64).reshape(-1, 3)
    return rows[np.lexsort((rows[:, 1], rows[:, 0]))]
''',
    # pair_counts fully in NumPy: unique rows of the (n - 1, 2) array of neighbours.
    '''
import numpy as np
def pair_counts(ids):
    x = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(x) < 2:
        return np.zeros((0, 3), dtype=np.int64)
    pairs, counts = np.unique(np.stack([x[:-1], x[1:]], axis=1), axis=0, return_counts=True)
    return np.column_stack([pairs, counts])
''',
    # merge with a for loop and a skip flag.
    '''
def merge(ids, pair, new_id):
    out, skip = [], False
    for i, x in enumerate(ids):
        if skip:
            skip = False
        elif i + 1 < len(ids) and (x, ids[i + 1]) == tuple(pair):
            out.append(new_id)
            skip = True
        else:
            out.append(x)
    return out
''',
    # train_bpe that keeps one Counter of word-like pieces with their multiplicity, and the
    # tie-break through sorting.
    '''
from collections import Counter
import re
def train_bpe(text, vocab_size, special_tokens=()):
    if vocab_size < 256 + len(special_tokens):
        raise ValueError("too small")
    if special_tokens:
        pat = "|".join(re.escape(s) for s in sorted(special_tokens, key=len, reverse=True))
        parts = re.split(pat, text)
    else:
        parts = [text]
    words = Counter(tuple(p.encode("utf-8")) for p in parts if p)
    merges = []
    for r in range(vocab_size - 256 - len(special_tokens)):
        counts = Counter()
        for w, n in words.items():
            for pair in zip(w, w[1:]):
                counts[pair] += n
        if not counts:
            break
        best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        merges.append(best)
        new = Counter()
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(256 + r)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] += n
        words = new
    return merges
''',
    # encode: one pass per merge, in rank order (slower, same result).
    '''
import re
def encode(text, merges, special_tokens=()):
    if special_tokens:
        pat = "(" + "|".join(re.escape(s) for s in sorted(special_tokens, key=len, reverse=True)) + ")"
        parts = [p for p in re.split(pat, text) if p]
    else:
        parts = [text] if text else []
    ids = []
    for part in parts:
        if part in special_tokens:
            ids.append(256 + len(merges) + list(special_tokens).index(part))
            continue
        toks = list(part.encode("utf-8"))
        for r, (a, b) in enumerate(merges):
            out, i = [], 0
            while i < len(toks):
                if i + 1 < len(toks) and toks[i] == a and toks[i + 1] == b:
                    out.append(256 + r)
                    i += 2
                else:
                    out.append(toks[i])
                    i += 1
            toks = out
        ids += toks
    return ids
''',
    # decode through a recursive expansion of every id into bytes.
    '''
def decode(ids, merges, special_tokens=()):
    merges = [tuple(m) for m in merges]
    def expand(i):
        if i < 256:
            return bytes([i])
        if i < 256 + len(merges):
            a, b = merges[i - 256]
            return expand(a) + expand(b)
        return special_tokens[i - 256 - len(merges)].encode("utf-8")
    return b"".join(expand(int(i)) for i in ids).decode("utf-8", errors="replace")
''',
]

"""Chapter 8's ungraded pieces: the NumPy variants the page and the benchmark use agree with
the reference, round trips hold for any text, the corpus is what the page says, and the
committed benchmark has what the page reads."""
import json

import numpy as np
import pytest

from conftest import REPO
from solutions.reference import tokenization as tk

SPECIALS = (tk.ENDOFTEXT,)


@pytest.fixture(scope="module")
def corpus():
    return tk.chapter_corpus()


def test_corpus_sizes_and_documents(corpus):
    sizes = {k: len(v.encode("utf-8")) for k, v in corpus.items()}
    assert 70_000 < sizes["train"] <= 80_000
    assert 15_000 < sizes["heldout_stories"] <= 20_000 and 10_000 < sizes["heldout_python"] <= 20_000
    assert corpus["train"].count(tk.ENDOFTEXT) > 50
    assert corpus == tk.chapter_corpus()  # deterministic


def test_fast_training_and_encoding_match_the_reference(corpus):
    sample = corpus["train"][:5000] + tk.ENDOFTEXT + corpus["heldout_python"][:3000]
    merges = tk.train_bpe(sample, 256 + 40 + 1, SPECIALS)
    assert tk.fast_train_bpe(sample, 256 + 40 + 1, SPECIALS) == merges
    for text in (sample, corpus["heldout_stories"][:3000], "aaaa😀😀" + tk.ENDOFTEXT + "  x"):
        assert tk.fast_encode(text, merges, SPECIALS).tolist() == tk.encode(text, merges, SPECIALS)
        assert tk.fast_encode(text, merges, SPECIALS, n_merges=10).tolist() == tk.encode(text, merges[:10], SPECIALS)


def test_fast_merge_matches_merge_on_runs():
    rng = np.random.default_rng(0)
    for _ in range(200):
        seq = rng.integers(0, 3, size=int(rng.integers(0, 30)))
        pair = tuple(int(x) for x in rng.integers(0, 3, size=2))
        assert tk.fast_merge(seq, pair, 9).tolist() == tk.merge(seq.tolist(), pair, 9)


def test_round_trip_of_arbitrary_text(corpus):
    rng = np.random.default_rng(1)
    merges = tk.fast_train_bpe(corpus["train"][:20_000], 256 + 100 + 2, (tk.ENDOFTEXT, "<|pad|>"))
    pool = [chr(c) for c in rng.integers(32, 0x2FFF, size=300)] + list("aé中😀\n\t ") + [tk.ENDOFTEXT, "<|pad|>"]
    for _ in range(50):
        text = "".join(pool[int(i)] for i in rng.integers(0, len(pool), size=int(rng.integers(0, 60))))
        ids = tk.encode(text, merges, (tk.ENDOFTEXT, "<|pad|>"))
        assert tk.decode(ids, merges, (tk.ENDOFTEXT, "<|pad|>")) == text
        assert max(ids, default=0) < 256 + len(merges) + 2


def test_split_special_prefers_the_longer_token():
    assert tk.split_special("x<|a|><|b|>y<|a|>", ("<|a|>", "<|a|><|b|>")) == ["x", "<|a|><|b|>", "y", "<|a|>"]
    assert tk.split_special("", SPECIALS) == [] and tk.split_special("abc", ()) == ["abc"]


def test_committed_benchmark_has_what_the_page_reads():
    path = REPO / "bench" / "results" / "tokenizer_compare.json"
    if not path.is_file():
        pytest.skip("no committed benchmark (the page says so)")
    bench = json.loads(path.read_text())
    for key in ("date", "machine", "python", "numpy", "tokenizers", "timing", "rows"):
        assert key in bench
    impls = {(r["impl"], r["vocab_size"]) for r in bench["rows"]}
    for impl in ("ours (pure Python)", "ours (NumPy)", "tokenizers (no pre-tokenization)", "tokenizers (GPT-2 regex)"):
        assert (impl, 557) in impls
    for r in bench["rows"]:
        assert set(r["bytes_per_token"]) == {"train", "heldout_stories", "heldout_python"}
        assert r["roundtrip"]


def test_committed_benchmark_matches_this_corpus(corpus):
    """Compression is deterministic: the file's numbers must be this corpus's (on the Python
    version that made it; another version's standard library is another corpus)."""
    import platform

    path = REPO / "bench" / "results" / "tokenizer_compare.json"
    if not path.is_file():
        pytest.skip("no committed benchmark")
    bench = json.loads(path.read_text())
    if bench["python"].rsplit(".", 1)[0] != platform.python_version().rsplit(".", 1)[0]:
        pytest.skip(f"benchmark made with Python {bench['python']}")
    row = next(r for r in bench["rows"] if r["impl"] == "ours (NumPy)" and r["vocab_size"] == 557)
    merges = tk.fast_train_bpe(corpus["train"], 557, SPECIALS)
    for key, text in corpus.items():
        bpt = len(text.encode("utf-8")) / len(tk.fast_encode(text, merges, SPECIALS))
        assert bpt == pytest.approx(row["bytes_per_token"][key], abs=1e-4), key

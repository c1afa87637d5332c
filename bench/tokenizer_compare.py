"""Benchmark: our byte-level BPE against Hugging Face `tokenizers`, on the chapter's corpus.

    python bench/tokenizer_compare.py           # writes bench/results/tokenizer_compare.{json,md}
    python bench/tokenizer_compare.py --quick   # 300 merges only, no pure-Python training at 1000

Both sides train a byte-level BPE with the same vocabulary size on the same text (chapter 8's
corpus: generated stories and Python standard-library sources, documents separated by
<|endoftext|>), and encode the same held-out texts. Reported per vocabulary size:

* compression: UTF-8 bytes per token on the training text and on held-out stories and code;
* training and encoding time, best of several runs (one run for the slow pure-Python training);
* how many merges the two sides share (compared as byte strings, since the ids differ).

"Ours" is the chapter's reference implementation (`train_bpe`/`encode`, pure Python, the code
students write) and its NumPy variant (`fast_train_bpe`/`fast_encode`, same merges). "Theirs"
is `tokenizers` with a ByteLevel pre-tokenizer that does not split the text
(use_regex=False), which is the same algorithm, and, for reference, with GPT-2's regex
pre-tokenization (use_regex=True), which never merges across word boundaries.
Needs the `tokenizers` package (pip install tokenizers); without it the script says so and exits 2.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"


def best_time(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def byte_to_char():
    """GPT-2's reversible map from the 256 bytes to printable characters (what the ByteLevel
    pre-tokenizer shows in its vocabulary): printable Latin-1 bytes stand for themselves,
    the others are shifted to code points from 256 on."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def hf_tokenizer(tokenizers, pieces, vocab_size, special, use_regex):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special), min_frequency=0,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(pieces, trainer=trainer)
    return tok


def hf_merges_as_bytes(tok):
    """The learned merges as (bytes, bytes) pairs."""
    char_to_byte = {c: b for b, c in byte_to_char().items()}
    merges = json.loads(tok.to_str())["model"]["merges"]
    out = []
    for m in merges:
        a, b = m.split(" ") if isinstance(m, str) else m
        out.append((bytes(char_to_byte[c] for c in a), bytes(char_to_byte[c] for c in b)))
    return out


def our_merges_as_bytes(merges):
    vocab = [bytes([i]) for i in range(256)]
    out = []
    for a, b in merges:
        out.append((vocab[a], vocab[b]))
        vocab.append(vocab[a] + vocab[b])
    return out


def measure(quick: bool) -> dict:
    import numpy as np
    import tokenizers

    from solutions.reference import tokenization as tk

    special = (tk.ENDOFTEXT,)
    texts = tk.chapter_corpus()
    train = texts["train"]
    pieces = [p for p in tk.split_special(train, special) if p not in special]
    held = {k: v for k, v in texts.items() if k != "train"}
    n_bytes = {k: len(v.encode("utf-8")) for k, v in texts.items()}
    sizes = [256 + 300 + 1] if quick else [256 + 100 + 1, 256 + 300 + 1, 256 + 1000 + 1]
    rows = []
    for vocab_size in sizes:
        n_merges = vocab_size - 256 - len(special)
        impls = {}
        # Ours, pure Python: the slow one runs once (and only up to 300 merges).
        if n_merges <= 300:
            t, merges = best_time(lambda: tk.train_bpe(train, vocab_size, special), 1)
            enc_t, _ = best_time(lambda: tk.encode(held["heldout_stories"], merges, special), 1)
            impls["ours (pure Python)"] = dict(
                train_seconds=t, encode_seconds=enc_t, merges=merges,
                encode=lambda s, m=merges: tk.encode(s, m, special))
        t, merges = best_time(lambda: tk.fast_train_bpe(train, vocab_size, special), 3)
        enc_t, _ = best_time(lambda: tk.fast_encode(held["heldout_stories"], merges, special), 3)
        impls["ours (NumPy)"] = dict(train_seconds=t, encode_seconds=enc_t, merges=merges,
                                     encode=lambda s, m=merges: tk.fast_encode(s, m, special))
        for label, regex in (("tokenizers (no pre-tokenization)", False), ("tokenizers (GPT-2 regex)", True)):
            t, tok = best_time(lambda: hf_tokenizer(tokenizers, pieces, vocab_size, special, regex), 3)
            enc_t, _ = best_time(lambda: tok.encode(held["heldout_stories"]), 3)
            impls[label] = dict(train_seconds=t, encode_seconds=enc_t, tok=tok,
                                encode=lambda s, tok=tok: tok.encode(s).ids)
        ours_bytes = our_merges_as_bytes(impls["ours (NumPy)"]["merges"])
        if "ours (pure Python)" in impls:
            assert impls["ours (pure Python)"]["merges"] == impls["ours (NumPy)"]["merges"]
        for label, impl in impls.items():
            ids = {k: impl["encode"](v) for k, v in texts.items()}
            bpt = {k: n_bytes[k] / max(len(ids[k]), 1) for k in texts}
            if "tok" in impl:
                theirs = hf_merges_as_bytes(impl["tok"])
                shared = len(set(theirs) & set(ours_bytes))
                same_prefix = next((i for i, (x, y) in enumerate(zip(theirs, ours_bytes)) if x != y),
                                   min(len(theirs), len(ours_bytes)))
                actual_vocab = impl["tok"].get_vocab_size()
                roundtrip = all(impl["tok"].decode(ids[k], skip_special_tokens=False) == texts[k] for k in texts)
                n_learned = len(theirs)
            else:
                shared, same_prefix, n_learned = len(ours_bytes), len(ours_bytes), len(impl["merges"])
                actual_vocab = 256 + n_learned + len(special)
                roundtrip = all(tk.decode([int(i) for i in ids[k]], impl["merges"], special) == texts[k]
                                for k in texts)
            row = dict(vocab_size=vocab_size, impl=label, actual_vocab_size=actual_vocab, merges_learned=n_learned,
                       train_seconds=round(impl["train_seconds"], 4), encode_seconds=round(impl["encode_seconds"], 5),
                       bytes_per_token={k: round(v, 4) for k, v in bpt.items()},
                       tokens={k: int(len(v)) for k, v in ids.items()},
                       merges_shared_with_ours=shared, same_merges_up_to_rank=same_prefix, roundtrip=roundtrip)
            rows.append(row)
            print(f"V={vocab_size:5d} {label:34s} train {row['train_seconds']:8.3f} s  encode "
                  f"{row['encode_seconds']:8.4f} s  bytes/token " +
                  " ".join(f"{k}={v:.3f}" for k, v in row["bytes_per_token"].items()) +
                  f"  shared merges {shared}/{n_merges}", flush=True)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(),
                    # Timings on a shared machine are noisy: the 1-minute load average when done.
                    "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None},
        "python": platform.python_version(), "numpy": np.__version__, "tokenizers": tokenizers.__version__,
        "corpus": {"bytes": n_bytes, "stdlib_train_files": list(tk.STDLIB_FILES),
                   "stdlib_heldout_files": list(tk.STDLIB_HELDOUT_FILES),
                   "special_tokens": list(special),
                   "description": tk.chapter_corpus.__doc__.strip().splitlines()[0]},
        "timing": "best of 3 runs; the pure-Python training and encoding ran once; "
                  "encode_seconds is the held-out stories text",
        "rows": rows,
    }


def markdown(result: dict) -> str:
    lines = ["# Byte-level BPE: ours against Hugging Face tokenizers", "",
             f"{result['date']}; {result['machine']['platform']}, {result['machine']['cpu_count']} CPUs "
             f"(load average {result['machine'].get('load_average')}); "
             f"Python {result['python']}, NumPy {result['numpy']}, tokenizers {result['tokenizers']}.", "",
             "Corpus (UTF-8 bytes): " + ", ".join(f"{k} {v}" for k, v in result["corpus"]["bytes"].items()) + ". "
             + result["timing"] + ".", "",
             "| vocab | implementation | train s | encode s | bytes/token train | held-out stories | "
             "held-out code | merges shared with ours |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        b = r["bytes_per_token"]
        lines.append(f"| {r['vocab_size']} | {r['impl']} | {r['train_seconds']:.3f} | {r['encode_seconds']:.4f} | "
                     f"{b['train']:.3f} | {b['heldout_stories']:.3f} | {b['heldout_python']:.3f} | "
                     f"{r['merges_shared_with_ours']} / {r['merges_learned']} |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one vocabulary size (300 merges)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and markdown")
    args = parser.parse_args(argv)
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        print("This benchmark compares with Hugging Face `tokenizers`, which is not installed.\n"
              "Install it (pip install tokenizers) and run the script again; nothing was measured.",
              file=sys.stderr)
        return 2
    result = measure(args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tokenizer_compare.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    (args.out / "tokenizer_compare.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Chapter 5's checkpoint: consistent, reproduced exactly by the NumPy forward pass, and
able to write text that looks like its corpus.

Everything here is deterministic (fixed seeds, the committed checkpoint), so there is no
false-failure rate to speak of: a failure means the checkpoint or the code changed.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO
from models.stories import corpus_text, corpus_words, stories
from models.tiny_gpt import BLOCK_KEYS, CONFIG, CharTokenizer, TinyGPT
from solutions.reference import gpt_numpy as ref

NPZ = REPO / "models" / "tiny-gpt.npz"
JSON = REPO / "models" / "tiny-gpt.json"


@pytest.fixture(scope="module")
def checkpoint():
    return ref.load_checkpoint(NPZ)


def test_checkpoint_files_and_config_are_consistent():
    cfg = json.loads(JSON.read_text())
    assert NPZ.stat().st_size < 5e6, "the checkpoint should stay a few MB"
    vocab = cfg["vocab"]
    assert all(isinstance(c, str) and len(c) == 1 for c in vocab) and vocab == sorted(set(vocab))
    assert vocab == CharTokenizer.from_text(corpus_text(cfg["training"]["n_stories"],
                                                        cfg["training"]["corpus_seed"])).vocab
    V, L, D, P = len(vocab), cfg["n_layer"], cfg["d_model"], cfg["block_size"]
    assert D % cfg["n_head"] == 0
    expected = {"wte": (V, D), "wpe": (P, D), "lnf_g": (D,), "lnf_b": (D,)}
    block = {"ln1_g": (D,), "ln1_b": (D,), "w_q": (D, D), "w_k": (D, D), "w_v": (D, D), "w_o": (D, D),
             "ln2_g": (D,), "ln2_b": (D,), "w_fc": (D, 4 * D), "b_fc": (4 * D,), "w_proj": (4 * D, D),
             "b_proj": (D,)}
    assert set(block) == set(BLOCK_KEYS) == set(ref.BLOCK_KEYS)
    for i in range(L):
        expected.update({f"blocks.{i}.{k}": s for k, s in block.items()})
    with np.load(NPZ) as arrays:
        assert set(arrays.files) == set(expected)
        for name, shape in expected.items():
            assert arrays[name].shape == shape, name
            assert arrays[name].dtype == np.float32, name
            assert np.isfinite(arrays[name]).all(), name
        assert cfg["n_params"] == sum(arrays[n].size for n in arrays.files)
    train = cfg["training"]
    for key in ("steps", "final_train_loss", "val_loss", "seed", "seconds", "loss_curve"):
        assert key in train, key
    curve = train["loss_curve"]
    assert len(curve["step"]) == len(curve["loss"]) and curve["step"][-1] == train["steps"]
    assert curve["loss"][0] > 3.0 and train["final_train_loss"] < 0.5 and train["val_loss"] < 0.5
    # Under 5 minutes on 2 cores: wall time, or CPU time / threads when the machine was busy.
    assert min(train["seconds"], train["cpu_seconds"] / train["threads"]) < 300


def test_numpy_forward_matches_the_pytorch_model(checkpoint):
    """The reference gpt_forward and the model that trained the weights, both in float64."""
    params, cfg = checkpoint
    model = TinyGPT.load(NPZ, JSON, dtype=torch.float64)
    T = cfg["block_size"]
    text = "\n".join(stories(4, seed=7))
    ids = np.stack([ref.encode(text[:T], cfg["vocab"]), ref.encode(text[T:2 * T], cfg["vocab"])])
    with torch.no_grad():
        expected = model(torch.from_numpy(ids)).numpy()
    got = ref.gpt_forward(ids, params, cfg["n_head"])
    assert got.shape == (2, T, len(cfg["vocab"]))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    short = ids[0, :17]
    np.testing.assert_allclose(ref.gpt_forward(short, params, cfg["n_head"]), expected[0, :17], rtol=0, atol=1e-5)
    probs = ref.next_token_probs(got, 0.8)
    with torch.no_grad():
        torch_probs = torch.softmax(model(torch.from_numpy(ids))[:, -1] / 0.8, dim=-1).numpy()
    np.testing.assert_allclose(probs, torch_probs, rtol=0, atol=1e-8)


def test_the_model_uses_its_context(checkpoint):
    """What the book shows: the hero's name, 24 characters back, decides "She" or "He"."""
    params, cfg = checkpoint

    def p_next(name, letter):
        text = f"There once was a shy owl called {name}. One day, {name} wanted a blue ball. "
        p = ref.next_token_probs(ref.gpt_forward(ref.encode(text, cfg["vocab"]), params, cfg["n_head"]))
        return p[cfg["vocab"].index(letter)]

    # Each hero's pronoun is the likelier one, by at least 2 to 1 (the committed checkpoint:
    # Mia "S" 0.91 against "H" 0.01, Tom "H" 0.74 against "S" 0.25).
    assert p_next("Mia", "S") > 0.5 and p_next("Tom", "H") > 0.5
    assert p_next("Mia", "S") > 2 * p_next("Mia", "H") and p_next("Tom", "H") > 2 * p_next("Tom", "S")


def _known_share(text, known):
    words = [w.strip('.,!?"').lower() for w in text.split()]
    words = [w for w in words if w.isalpha()]
    return np.mean([w in known for w in words]), len(words)


def test_samples_are_recognisably_like_the_corpus(checkpoint):
    """Samples at temperature 0.7 (seeds 0-2): at least 90% of their words are corpus words,
    while random characters from the same vocabulary score far lower (the criterion bites)."""
    params, cfg = checkpoint
    known = corpus_words(corpus_text())
    samples = [ref.continue_text("Once upon a time, there was a ", params, cfg, 160, temperature=0.7,
                                 rng=np.random.default_rng(seed))[30:] for seed in range(3)]
    share, n_words = _known_share(" ".join(samples), known)
    assert n_words >= 60, samples
    assert share >= 0.9, (share, samples)
    greedy = ref.continue_text("Tom was a shy dog who lived near the hill. ", params, cfg, 150)
    assert _known_share(greedy, known)[0] >= 0.95, greedy
    rng = np.random.default_rng(0)
    letters = [c for c in cfg["vocab"] if c.isalpha()] + [" "] * 8
    noise = "".join(rng.choice(letters, size=480))
    assert _known_share(noise, known)[0] < 0.3


def test_training_script_runs_and_exports_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "tiny.npz"
    run = subprocess.run([sys.executable, "-m", "models.tiny_gpt", "--steps", "3", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    params, cfg = ref.load_checkpoint(out)
    assert cfg["training"]["steps"] == 3 and cfg["n_layer"] == CONFIG["n_layer"]
    logits = ref.gpt_forward(ref.encode("Once", cfg["vocab"]), params, cfg["n_head"])
    assert logits.shape == (4, len(cfg["vocab"])) and np.isfinite(logits).all()
    # On one thread the run repeats bit for bit (what `make checkpoint-check` relies on).
    again = tmp_path / "again.npz"
    subprocess.run([sys.executable, "-m", "models.tiny_gpt", "--steps", "3", "--out", str(again)],
                   cwd=REPO, capture_output=True, text=True, timeout=240, check=True)
    first, second = np.load(out), np.load(again)
    assert all(np.array_equal(first[k], second[k]) for k in first.files)

"""Chapter 18: the page's NumPy forward pass is the course's model, and the committed
checkpoints and training logs are what the page expects."""
import json
from pathlib import Path

import numpy as np
import pytest

from solutions.reference import looking_inside as ref
from solutions.reference.gpt_numpy import gpt_forward, load_checkpoint

MODELS = Path(__file__).resolve().parents[1] / "models"
CHECKPOINTS = ["induction-heads", "it-coreference"]


def test_run_with_cache_is_gpt_forward_and_heads_add_up():
    params, config = load_checkpoint(MODELS / "tiny-gpt.npz")
    ids = np.random.default_rng(18).integers(0, len(config["vocab"]), size=(2, 24))
    logits, cache = ref.run_with_cache(ids, params, config["n_head"])
    np.testing.assert_allclose(logits, gpt_forward(ids, params, config["n_head"]), atol=1e-10)
    L = len(params["blocks"])
    assert cache["resid"].shape == (L + 1, 2, 24, params["wte"].shape[1])
    assert cache["weights"].shape == (L, 2, config["n_head"], 24, 24)
    np.testing.assert_allclose(cache["weights"].sum(-1), 1.0, atol=1e-12)
    # the stream after the last block, read with the lens, is the model's output
    np.testing.assert_allclose(ref.logit_lens(cache["resid"][-1], params["lnf_g"], params["lnf_b"], params["wte"]),
                               logits, atol=1e-10)
    # patching a layer with its own outputs changes nothing; patching in another run's moves the logits
    same, _ = ref.run_with_cache(ids, params, config["n_head"], patch=(1, cache["head_out"][1]))
    np.testing.assert_allclose(same, logits, atol=1e-12)
    one, one_cache = ids[0], {k: v[:, 0] for k, v in cache.items()}       # one sequence: (L, H, T, D)
    other = ref.patch_head(-one_cache["head_out"], one_cache["head_out"], 1, 2, 5)
    moved, _ = ref.run_with_cache(one, params, config["n_head"], patch=(1, other[1]))
    assert np.abs(moved[:5] - logits[0, :5]).max() < 1e-10                 # earlier positions untouched
    assert np.abs(moved[5] - logits[0, 5]).max() > 1e-6


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_committed_checkpoint_and_log(name):
    npz = MODELS / f"{name}.npz"
    assert npz.stat().st_size < 1_000_000
    meta = json.loads(npz.with_suffix(".json").read_text())
    for key in ("date", "machine", "python", "torch", "numpy"):
        assert meta["run"][key]
    log = meta["log"]
    assert len(log["step"]) > 10 and log["step"][-1] == meta["config"]["steps"]
    params, meta2 = ref.load_model(npz)
    assert meta2 == meta and len(params["blocks"]) == meta["n_layer"]


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_numpy_forward_matches_the_torch_model(name):
    torch = pytest.importorskip("torch")
    from models import induction_heads, it_coreference
    from models.gpt import GPT, GPTConfig
    params, meta = ref.load_model(MODELS / f"{name}.npz")
    if name == "induction-heads":
        config = GPTConfig(meta["vocab_size"], meta["n_layer"], meta["n_head"], meta["d_model"], meta["block_size"])
        model = induction_heads.AttentionOnlyGPT(config, tied=meta["config"]["tied"])
        ids = ref.repeated_sequences(np.random.default_rng(0), 3, 8, meta["vocab_size"])
    else:
        model = GPT(GPTConfig(len(meta["vocab"]), meta["n_layer"], meta["n_head"], meta["d_model"],
                              meta["block_size"]))
        ids = it_coreference.to_batch([it_coreference.sentence("box", "bag", "fit", "big")])
    with np.load(MODELS / f"{name}.npz") as arrays:
        model.load_state_dict({k: torch.from_numpy(arrays[k]) for k in arrays.files}, strict=True)
    with torch.no_grad():
        expected = model.double()(torch.from_numpy(ids)).numpy()
    logits, _ = ref.run_with_cache(ids, params, meta["n_head"])
    np.testing.assert_allclose(logits, expected, atol=1e-9)


def test_induction_log_shows_the_phase_change():
    meta = json.loads((MODELS / "induction-heads.json").read_text())
    log = meta["log"]
    assert abs(log["gap"][0]) < 0.1 and log["gap"][-1] > 2.0
    assert np.max(log["prefix"][-1]) > 0.8

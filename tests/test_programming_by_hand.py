"""Chapter 19: the hand-written programs run on the course's own machine, and the checks'
copy of that machine is the same machine."""
import numpy as np
import pytest

from autograder.chapters import programming_by_hand as checks
from solutions.reference import programming_by_hand as ref
from solutions.reference.gpt_numpy import gpt_forward
from solutions.reference.transformer_block import layer_norm


def _programs():
    rng = np.random.default_rng(19)
    w_tok, w_pos = rng.integers(-8, 9, 4) / 8, rng.integers(-8, 9, 5) / 8
    return [ref.previous_token_weights(), ref.repeated_token_weights("ab", 4), ref.sort_weights("abc", 7),
            ref.relu_neuron_weights(w_tok, w_pos, 0.25, scale=3.0)]


def _random_program(rng, heads):
    """One-hot embeddings (so LayerNorm can be tamed) and dense random attention weights."""
    semes = ["tok_^", "tok_a", "tok_b"] + [f"pos_{t}" for t in range(4)] + ["x", "y", "z", "u", "v"]
    wte, wpe = ref.seme_embeddings(semes, ["^", "a", "b"], 4)
    d = len(semes)
    return {"semes": semes, "wte": wte, "wpe": wpe, "n_heads": heads,
            **{k: rng.standard_normal((d, d)) for k in ("w_q", "w_k", "w_v", "w_o")}}


@pytest.mark.parametrize("heads", [1, 2, 3])
def test_the_checks_machine_is_the_reference_machine(heads):
    rng = np.random.default_rng(heads)
    for prog in _programs() + [_random_program(rng, heads)]:
        p = len(prog["wpe"])
        ids = rng.integers(1, len(prog["wte"]), size=(6, p))
        ids[:, 0] = 0
        expected = ref.run_program(prog, ids)
        names = list(prog["semes"])
        checked = checks._program(prog, "program", ["?"] * len(prog["wte"]), p, names[-1:])
        for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-3)):
            got = checks._stream(checked, ids, dtype)
            assert got.dtype == dtype
            np.testing.assert_allclose(got, expected, atol=tol * max(1.0, np.abs(expected).max()), rtol=0)


def test_first_layer_norm_is_the_identity_and_gpt_forward_runs_the_same_block():
    for prog in _programs():
        params = ref.program_params(prog)
        block = params["blocks"][0]
        x = (prog["wte"][:, None, :] + prog["wpe"][None, :, :]).reshape(-1, len(prog["semes"]))
        np.testing.assert_allclose(layer_norm(x, block["ln1_g"], block["ln1_b"]), x, atol=1e-12)
        ids = np.zeros((2, len(prog["wpe"])), dtype=np.int64)
        ids[:, 1:] = 1
        stream = ref.run_program(prog, ids)
        logits = layer_norm(stream, params["lnf_g"], params["lnf_b"]) @ params["wte"].T
        np.testing.assert_allclose(gpt_forward(ids, params, prog["n_heads"]), logits, atol=1e-9)


def test_unequal_embeddings_are_refused():
    prog = ref.previous_token_weights()
    prog["wte"][0] = 0.0
    with pytest.raises(ValueError, match="one mean and one variance"):
        ref.program_params(prog)


def test_the_relu_head_computes_z_sigmoid_of_scale_z():
    """At any scale the head's answer is z * sigmoid(scale * z): the construction, not a fit."""
    w_tok, w_pos, b = np.array([0.0, 0.5, -1.0]), np.array([0.0, 0.25, -0.5, 1.0]), -0.25
    ids = np.array([[0, 1, 2, 1], [0, 2, 2, 1], [0, 1, 1, 2]])
    z = w_tok[ids] + w_pos + b
    for scale in (0.5, 1.0, 1.702, 10.0, 1000.0):
        prog = ref.relu_neuron_weights(w_tok, w_pos, b, scale=scale)
        got = ref.run_program(prog, ids)[..., prog["semes"].index("relu")]
        np.testing.assert_allclose(got[:, 1:], (z * 0.5 * (1 + np.tanh(0.5 * scale * z)))[:, 1:], atol=1e-9)

"""Chapter 9's model and training pieces, beyond what the graded checks see: the PyTorch GPT
is chapter 5's NumPy GPT, chapter 9's AdamW is torch's, and a saved run resumes exactly."""
import numpy as np
import torch
import torch.nn.functional as F

from conftest import REPO
from models.gpt import GPT, GPTConfig
from models.stories import stories
from models.tiny_gpt import TinyGPT, TrainState, load_training, save_training, train_step
from solutions.reference import gpt_numpy
from solutions.reference.gpt_training import adamw_step, cross_entropy, weight_decay_groups

NPZ = REPO / "models" / "tiny-gpt.npz"


def test_pytorch_gpt_from_the_checkpoint_equals_chapter_5_numpy_gpt():
    """Same weights, both in float64: the logits agree to 1e-10."""
    params, cfg = gpt_numpy.load_checkpoint(NPZ)
    model = GPT.load(NPZ, dtype=torch.float64)
    T = cfg["block_size"]
    text = "\n".join(stories(3, seed=11))
    ids = np.stack([gpt_numpy.encode(text[:T], cfg["vocab"]), gpt_numpy.encode(text[T:2 * T], cfg["vocab"])])
    with torch.no_grad():
        got = model(torch.from_numpy(ids)).numpy()
    expected = gpt_numpy.gpt_forward(ids, params, cfg["n_head"])
    assert got.shape == expected.shape == (2, T, len(cfg["vocab"]))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    # The nested NumPy dict and the module convert both ways without loss.
    back = GPT.from_numpy(model.to_numpy(), cfg["n_head"]).to_numpy()
    for name in ("wte", "wpe", "lnf_g"):
        np.testing.assert_array_equal(back[name], params[name])
    np.testing.assert_array_equal(back["blocks"][2]["w_fc"], params["blocks"][2]["w_fc"])
    assert isinstance(TinyGPT.load(), GPT)


def test_adamw_step_is_torch_adamw_bit_for_bit():
    torch.manual_seed(0)
    shapes = {"w": (17, 9), "b": (9,)}
    ps = {k: torch.randn(s).requires_grad_() for k, s in shapes.items()}
    opt = torch.optim.AdamW([{"params": [ps["w"]], "weight_decay": 0.1},
                             {"params": [ps["b"]], "weight_decay": 0.0}], lr=1e-2, betas=(0.9, 0.99))
    p = {k: t.detach().clone() for k, t in ps.items()}
    m = {k: torch.zeros(s) for k, s in shapes.items()}
    v = {k: torch.zeros(s) for k, s in shapes.items()}
    for step in range(1, 21):
        lr = 1e-2 * min(1.0, step / 5)
        for group in opt.param_groups:
            group["lr"] = lr
        grads = {k: torch.randn(s) for k, s in shapes.items()}
        for k, t in ps.items():
            t.grad = grads[k].clone()
        opt.step()
        p, m, v = adamw_step(p, grads, m, v, step, lr, (0.9, 0.99), 1e-8, 0.1, ("b",))
        for k, t in ps.items():
            assert torch.equal(p[k], t.detach()), (step, k)
            assert torch.equal(m[k], opt.state[t]["exp_avg"]) and torch.equal(v[k], opt.state[t]["exp_avg_sq"])


def test_cross_entropy_gradients_are_torch_cross_entropy_gradients():
    torch.manual_seed(1)
    logits = torch.randn(3, 7, 11, requires_grad=True)
    targets = torch.randint(11, (3, 7))
    targets[0, :2] = -100
    ours = cross_entropy(logits, targets)
    (g_ours,) = torch.autograd.grad(ours, logits)
    theirs = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1))
    (g_theirs,) = torch.autograd.grad(theirs, logits)
    assert torch.allclose(ours, theirs, rtol=1e-6)
    assert torch.equal(g_ours, g_theirs)


def test_weight_decay_groups_of_the_course_gpt():
    model = GPT(GPTConfig(30, n_layer=2, n_head=2, d_model=8, block_size=16))
    named = dict(model.named_parameters())
    decay, no_decay = weight_decay_groups({n: tuple(p.shape) for n, p in named.items()})
    assert decay == [n for n, p in named.items() if p.dim() == 2 and n != "wpe"]
    assert set(no_decay) == set(named) - set(decay) and "wpe" in no_decay and "wte" in decay


def _tiny_run():
    torch.manual_seed(3)
    model = GPT(GPTConfig(13, n_layer=2, n_head=2, d_model=16, block_size=12))
    cfg = dict(lr=1e-2, min_lr=1e-3, warmup=3, steps=10, batch_size=4, block_size=12, weight_decay=0.1)
    data = np.random.default_rng(0).integers(0, 13, size=400)
    return model, cfg, data


def test_a_saved_run_resumes_exactly(tmp_path):
    """10 steps in one go, and 6 steps + save + a fresh model + load + 4 steps: the same losses
    and the same weights, bit for bit (on one thread: with several, PyTorch's CPU kernels are
    not bitwise repeatable from run to run, saved or not)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _resume(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _resume(tmp_path):
    model, cfg, data = _tiny_run()
    state = TrainState.start(model, np.random.default_rng(42))
    straight = [train_step(model, state, data, cfg) for _ in range(10)]

    first, cfg, data = _tiny_run()
    state = TrainState.start(first, np.random.default_rng(42))
    resumed = [train_step(first, state, data, cfg) for _ in range(6)]
    save_training(tmp_path / "run.pt", first, state)
    torch.manual_seed(99)
    second = GPT(first.config)           # other initial weights: everything must come from the file
    state = load_training(tmp_path / "run.pt", second)
    assert state.step == 6
    resumed += [train_step(second, state, data, cfg) for _ in range(4)]
    assert resumed == straight
    for (name, a), b in zip(model.named_parameters(), second.parameters()):
        assert torch.equal(a, b), name

"""Chapter 16's GPU path, tested where the tests run: on the CPU, in float32 with
F.scaled_dot_product_attention, and with the Triton kernels through the interpreter. The
CUDA-only properties (bfloat16, CUDA graphs) are tested when a GPU is present and skipped
otherwise; the benchmarks' arithmetic and tables are tested on made-up measurements."""
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.gpt import GPT, GPTConfig  # noqa: E402
from solutions.reference import gpu_gpt as g  # noqa: E402
from solutions.reference import kv_cache as kv15  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _bench(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=31, n_layer=2, n_head=2, d_model=32, block_size=40)).eval()


def test_cached_decode_equals_recompute_in_float32(model):
    ids = torch.randint(0, 31, (3, 6), generator=torch.Generator().manual_seed(1))
    sg = g.StaticGPT(model, 3, 32)
    ptr = sg.kv.data_ptr()
    logits = sg.prefill(ids)
    seq = ids
    with torch.no_grad():
        assert (logits - model(seq)[:, -1]).abs().max() < 1e-5
        for step in range(20):
            token = torch.randint(0, 31, (3,), generator=torch.Generator().manual_seed(step))
            sg.token.copy_(token)
            out = sg.step()
            seq = torch.cat([seq, token[:, None]], dim=1)
            assert (out - model(seq)[:, -1]).abs().max() < 1e-5, step
    assert sg.kv.data_ptr() == ptr                          # written in place, never reallocated
    assert sg.start.tolist() == [26, 26, 26]                # static cache positions
    assert not sg.kv[..., 26:, :].any()                     # the tail was never written


def test_generation_equals_the_loop_without_cache(model):
    ids = torch.randint(0, 31, (2, 5), generator=torch.Generator().manual_seed(2))
    for temperature in (0.0, 0.9):
        ours = g.StaticGPT(model, 2, 30).generate(ids, 12, temperature, seed=3)
        slow = g.generate_recompute(model, ids, 12, temperature, seed=3)
        assert torch.equal(ours, slow), temperature


def test_ragged_prompts_in_one_batch(model):
    """Right-padded prompts of different lengths: each sequence continues as if alone; the
    padding's keys sit past each prompt's end until decode steps overwrite them."""
    ids = torch.tensor([[5, 6, 7, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    sg = g.StaticGPT(model, 2, 24)
    out = sg.generate(ids, 8, lengths=torch.tensor([3, 6]))
    assert sg.start.tolist() == [3 + 7, 6 + 7]
    assert torch.equal(out[0], g.generate_recompute(model, ids[:1, :3], 8)[0])
    assert torch.equal(out[1], g.generate_recompute(model, ids[1:], 8)[0])


def test_decode_steps_keep_their_shapes_and_never_sync(model):
    """The same operations with the same shapes at every position, and no value read back to
    Python (aten._local_scalar_dense): what a CUDA graph needs to capture one step and replay it."""
    sg = g.StaticGPT(model, 2, 32)
    sg.prefill(torch.tensor([[1, 2, 3], [4, 5, 6]]))
    _, first = g.trace_ops(sg.step)
    for _ in range(6):
        sg.step()
    _, later = g.trace_ops(sg.step)
    assert first == later
    assert not any(name == "_local_scalar_dense" for name, _ in first)
    # Chapter 15's NumPy decode step, by contrast, grows its cache: its shapes change every step.
    params = model.to_numpy()
    _, cache = kv15.prefill(np.array([1, 2, 3]), params, 2)
    _, cache2 = kv15.decode_step(4, cache, params, 2)
    assert cache2["k"].shape != cache["k"].shape


def test_static_step_equals_chapter_15(model):
    """The graded static_step, in float64, against chapter 15's NumPy prefill and decode_step."""
    params = model.to_numpy()
    tp = kv15.torch_params(params)
    kv = torch.zeros(2, 2, 1, 2, 16, 16, dtype=torch.float64)
    prompt = np.array([3, 1, 4, 1, 5])
    logits, kv = g.static_step(tp, kv, torch.tensor(prompt[None]), torch.tensor([0]), 2)
    ref_logits, cache = kv15.prefill(prompt, params, 2)
    assert np.abs(logits[0].numpy() - ref_logits).max() < 1e-12
    for t, token in enumerate([9, 2, 6]):
        logits, kv = g.static_step(tp, kv, torch.tensor([[token]]), torch.tensor([5 + t]), 2)
        ref_logits, cache = kv15.decode_step(token, cache, params, 2)
        assert np.abs(logits[0, 0].numpy() - ref_logits).max() < 1e-12
    assert np.abs(kv[:, 0, 0, :, :8].numpy() - cache["k"]).max() < 1e-12
    assert np.abs(kv[:, 1, 0, :, :8].numpy() - cache["v"]).max() < 1e-12


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                    reason="needs Triton's interpreter or a GPU")
def test_kernel_paths_in_the_interpreter(model):
    """The GPU path's kernels, run by Triton's interpreter on CPU tensors: chapter 14's
    FlashAttention for the prompt and decode_attention for the steps give the SDPA path's tokens;
    FlashGPT's forward and backward through the kernel equal models/gpt.py's."""
    small = GPT(GPTConfig(vocab_size=31, n_layer=1, n_head=2, d_model=32, block_size=40)).eval()
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    by_kernel = g.StaticGPT(small, 1, 20, attention="kernel").generate(ids, 4)
    assert torch.equal(by_kernel, g.StaticGPT(small, 1, 20).generate(ids, 4))
    flash = g.flash_gpt_class()(small.config, attention="kernel")
    flash.load_state_dict(small.state_dict())
    x = torch.randint(0, 31, (2, 9))
    a, b = flash(x), small(x)
    assert (a - b).abs().max() < 1e-5
    a.square().mean().backward()
    b.square().mean().backward()
    for (name, p), q in zip(flash.named_parameters(), small.parameters()):
        assert (p.grad - q.grad).abs().max() < 1e-6, name
    small.zero_grad()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replay_equals_eager_in_bfloat16():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=97, n_layer=2, n_head=2, d_model=64, block_size=64)).cuda().bfloat16().eval()
    ids = torch.randint(0, 97, (3, 7), device="cuda")
    eager = g.StaticGPT(model, 3, 48, cuda_graph=False).generate(ids, 20)
    graph = g.StaticGPT(model, 3, 48, cuda_graph=True).generate(ids, 20)
    assert (eager == graph).float().mean() > 0.9   # bf16: a near tie may round either way


# ------------------------------------------------------------------ the benchmarks' arithmetic

def test_decode_roofline_arithmetic_and_table():
    decode = _bench("decode")
    assert decode.n_params(decode.GPT2_SMALL) == 124_402_944      # GPT-2 small without attention biases
    torch.manual_seed(0)
    tiny = GPT(GPTConfig(**decode.TINY))
    assert decode.n_params(decode.TINY) == sum(p.numel() for p in tiny.parameters())
    cfg = dict(vocab_size=10, n_layer=1, n_head=1, d_model=2, block_size=4)
    # weights 10*2 + 1*(48 + 18) + 4 = 90 (positions: one row per sequence), cache 2*1*2*B*(context+1)
    assert decode.bytes_per_step(cfg, 1, 3, 2) == (90 + 2 + 4 * 4) * 2
    fake = dict(device="Fake GPU", versions="v", date="2024-01-01", config=cfg, dtype="bfloat16", bytes_per_value=2,
                bandwidth_bytes_per_s=1000.0,
                runs=[dict(method="cache+graph", batch=2, prompt=3, steps=2, seconds=0.5),
                      dict(method="recompute", batch=2, prompt=3, steps=2, seconds=2.0)])
    rows = decode.summarize(fake)
    step_bytes = [decode.bytes_per_step(cfg, 2, 3, 2), decode.bytes_per_step(cfg, 2, 4, 2)]
    roof = 4 / (sum(step_bytes) / 1000.0)
    assert rows[0]["tokens_per_s"] == 8.0 and rows[1]["tokens_per_s"] == 2.0
    assert rows[0]["roofline_tokens_per_s"] == pytest.approx(roof)
    assert rows[0]["fraction"] == pytest.approx(8.0 / roof)
    text = decode.markdown(fake)
    assert "Fake GPU" in text and "| cache+graph | 2 | 3 | 2 | 250.000 |" in text and text.count("\n|") == 4


def test_train_mfu_arithmetic_and_table():
    train = _bench("train")
    cfg = train.GPT2_SMALL
    n = train.n_params(cfg) - 1024 * 768
    assert train.train_flops_per_token(cfg, 1024) == 6 * n + 12 * 12 * 1024 * 768
    assert train.datasheet_peak("NVIDIA H200") == 989e12 and train.datasheet_peak("Some CPU") is None
    fake = dict(device="NVIDIA H100 80GB HBM3", versions="v", date="2024-01-01", config=cfg, seq_len=1024,
                precision="bf16", datasheet_peak_flops=989e12, matmul_flops_per_s=700e12,
                runs=[dict(attention="kernel", batch=8, steps=10, seconds=2.0),
                      dict(attention="sdpa", batch=8, steps=10, seconds=1.0)])
    rows = train.summarize(fake)
    per_token = train.train_flops_per_token(cfg, 1024)
    assert rows[1]["tokens_per_s"] == 8 * 1024 * 10 / 1.0
    assert rows[1]["mfu"] == pytest.approx(8 * 1024 * 10 * per_token / 989e12)
    assert rows[0]["of_matmul"] == pytest.approx(8 * 1024 * 5 * per_token / 700e12)
    text = train.markdown(fake)
    assert "989 TFLOP/s" in text and "| sdpa |" in text


def test_benchmarks_measure_nothing_without_cuda(monkeypatch, capsys):
    """Without CUDA both scripts exit with status 2 and a clear message, measuring nothing."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("decode", "train"):
        bench = _bench(name)
        assert bench.main([]) == 2
        assert "found none" in capsys.readouterr().err

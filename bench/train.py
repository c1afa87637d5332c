"""Benchmark: training throughput and model FLOPs utilisation (MFU) of a GPT-2-small-shaped GPT,
with our FlashAttention kernel (chapter 14) against F.scaled_dot_product_attention, one process.

    python bench/train.py             # on a CUDA GPU: writes bench/results/train.{json,md}
    python bench/train.py --quick     # fewer steps, to try the script
    python bench/train.py --dry-run   # anywhere (the CPU): a tiny model, a few steps of each; prints
                                      # the table, writes nothing and claims nothing

The model is models/gpt.py's GPT (solutions/reference/gpu_gpt.py's FlashGPT: the same module
with the blocks' attention chosen), float32 weights, bfloat16 autocast, AdamW, random tokens,
BATCH x SEQ tokens per step. One training step is forward, backward and the optimizer.

MFU (Chowdhery et al., 2022, appendix B) is the model's FLOPs per second over the device's peak:
a token costs 6 N FLOPs for the weights (2 N forward, 4 N backward; Kaplan et al., 2020), N the
parameters without the position table, plus 12 L T d for attention over a context of T (the
PaLM convention counts the whole T x T score matrix, not the causal half). The peak is the dense
bfloat16 figure of the device's datasheet when the script knows the device, and a measured
large bfloat16 matrix product either way (reported as MFU against the measured matmul).
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GPT2_SMALL = dict(vocab_size=50257, n_layer=12, n_head=12, d_model=768, block_size=1024)
TINY = dict(vocab_size=97, n_layer=2, n_head=2, d_model=32, block_size=32)
# Dense bfloat16 Tensor Core peaks from NVIDIA's datasheets (A100: 312 TFLOP/s; H100 SXM and
# H200 SXM: 989 TFLOP/s; the often-printed larger figures assume 2:4 sparsity).
DATASHEET_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12}
IMPLS = ("kernel", "sdpa")
NO_CUDA = ("bench/train.py measures a CUDA GPU and found none: nothing was measured and nothing "
           "written. Run it on a machine with a CUDA GPU (or try the code with --dry-run).")


# ------------------------------------------------------------------ arithmetic (tested on the CPU)

def n_params(cfg: dict) -> int:
    """models/gpt.py's GPT of this shape (see bench/decode.py)."""
    v, d, layers, block = cfg["vocab_size"], cfg["d_model"], cfg["n_layer"], cfg["block_size"]
    return v * d + block * d + layers * (12 * d * d + 9 * d) + 2 * d


def train_flops_per_token(cfg: dict, seq_len: int) -> float:
    """6 N + 12 L T d: N the parameters without the position table (a lookup, no products; the
    token table counts once, as the tied unembedding's matrix product), T the context."""
    n = n_params(cfg) - cfg["block_size"] * cfg["d_model"]
    return 6 * n + 12 * cfg["n_layer"] * seq_len * cfg["d_model"]


def datasheet_peak(device_name: str):
    """The dense bf16 peak of a known device (FLOP/s), or None."""
    for key, peak in DATASHEET_BF16.items():
        if key in device_name:
            return peak
    return None


def summarize(result: dict) -> list[dict]:
    """One row per attention implementation: tokens/s, achieved FLOP/s and MFU."""
    cfg, seq = result["config"], result["seq_len"]
    per_token = train_flops_per_token(cfg, seq)
    rows = []
    for run in result["runs"]:
        tps = run["batch"] * seq * run["steps"] / run["seconds"]
        flops = tps * per_token
        peak = result.get("datasheet_peak_flops")
        rows.append(dict(attention=run["attention"], tokens_per_s=tps, ms_per_step=1e3 * run["seconds"] / run["steps"],
                         tflops=flops / 1e12, mfu=(flops / peak) if peak else None,
                         of_matmul=flops / result["matmul_flops_per_s"]))
    return rows


def markdown(result: dict) -> str:
    peak = result.get("datasheet_peak_flops")
    lines = [f"# Training throughput and MFU ({result['date']})", "",
             f"Device: {result['device']}; {result['versions']}.",
             f"Model: GPT shape {result['config']}, {n_params(result['config']) / 1e6:.1f} M parameters; "
             f"batch {result['runs'][0]['batch']} x {result['seq_len']} tokens, {result['precision']}.",
             f"FLOPs per token (6 N + 12 L T d): {train_flops_per_token(result['config'], result['seq_len']) / 1e9:.3f} G.",
             (f"Peak: datasheet {peak / 1e12:.0f} TFLOP/s dense bf16" if peak else
              "Peak: the device is not in the datasheet table") +
             f"; measured matmul {result['matmul_flops_per_s'] / 1e12:.1f} TFLOP/s.", "",
             "| attention | ms / step | tokens / s | model TFLOP/s | MFU (datasheet) | of measured matmul |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in summarize(result):
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        lines.append(f"| {r['attention']} | {r['ms_per_step']:.1f} | {r['tokens_per_s']:,.0f} | {r['tflops']:.1f} | "
                     f"{mfu} | {r['of_matmul']:.1%} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ measuring

def _sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_flops(device, n=8192, repeats=10) -> float:
    """FLOP/s of an n x n x n bfloat16 matrix product (float32 on the CPU), the median."""
    import torch
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for _ in range(repeats + 2):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t0)
    times = sorted(times[2:])
    return 2 * n ** 3 / times[len(times) // 2]


def time_training(model, attention, batch, seq, steps, device) -> float:
    """Seconds for `steps` training steps (after two untimed ones)."""
    import torch
    import torch.nn.functional as F

    model.set_attention(attention)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    gen = torch.Generator(device=device).manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq + 1), device=device, generator=gen)
    x, y = ids[:, :-1], ids[:, 1:]

    def step():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - t0


def measure(cfg, batch, seq, steps, device) -> dict:
    import torch
    import triton
    sys.path.insert(0, str(ROOT))
    from solutions.reference.gpu_gpt import flash_gpt_class
    from models.gpt import GPTConfig

    torch.manual_seed(0)
    model = flash_gpt_class()(GPTConfig(**cfg)).to(device)
    runs = []
    for attention in IMPLS:
        seconds = time_training(model, attention, batch, seq, steps, device)
        runs.append(dict(attention=attention, batch=batch, steps=steps, seconds=seconds))
        print(f"  {attention:<7} {1e3 * seconds / steps:8.1f} ms per step", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or 'cpu'})"
    cuda = torch.version.cuda or "none"
    return dict(device=name, date=datetime.date.today().isoformat(), config=cfg, seq_len=seq,
                versions=f"Python {platform.python_version()}, PyTorch {torch.__version__} (CUDA {cuda}), "
                         f"Triton {triton.__version__}",
                precision="bfloat16 autocast, float32 weights" if device.type == "cuda" else "float32",
                datasheet_peak_flops=datasheet_peak(name),
                matmul_flops_per_s=matmul_flops(device, 8192 if device.type == "cuda" else 256), runs=runs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--dry-run", action="store_true", help="a tiny model on the CPU; writes nothing")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch

    if args.dry_run:
        import os
        os.environ.setdefault("TRITON_INTERPRET", "1")
        result = measure(TINY, 2, 32, 1, torch.device("cpu"))
        print(markdown(result))
        print("dry run on the CPU: the code paths ran; these times measure nothing of interest.")
        return 0
    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    result = measure(GPT2_SMALL, 8, 1024, 5 if args.quick else 20, torch.device("cuda"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "train.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: decode throughput of a GPT-2-small-shaped GPT against the memory-bandwidth roofline.

    python bench/decode.py             # on a CUDA GPU: writes bench/results/decode.{json,md}
    python bench/decode.py --quick     # fewer tokens and batch sizes, to try the script
    python bench/decode.py --dry-run   # anywhere (the CPU): a tiny model, every method once; prints the
                                       # table, writes nothing and claims nothing

The model is models/gpt.py's GPT with GPT-2 small's shape (12 blocks, 12 heads, width 768,
vocabulary 50257, 1024 positions) and random weights, in bfloat16. After a prefill of
PROMPT tokens per sequence it decodes STEPS tokens, timed, in four ways, in one process:

  recompute     the model over the whole sequence at every step, no cache (chapter 6's loop)
  cache         solutions/reference/gpu_gpt.py's StaticGPT, eager, attention over the static
                cache by F.scaled_dot_product_attention with a mask
  cache+kernel  the same with our Triton decode_attention kernel (flash-decoding)
  cache+graph   the kernel, and every decode step replayed as a CUDA graph

The roofline: a decode step must read every weight once (shared by the batch) and the keys and
values of every cached position of every sequence, so no step can take less than those bytes
divided by the memory bandwidth. The bandwidth is measured here, by a device-to-device copy
(bytes read + bytes written, over the time). Tokens per second divided by the roofline's tokens
per second is the fraction of the bandwidth the method turns into tokens.
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
TINY = dict(vocab_size=97, n_layer=2, n_head=2, d_model=32, block_size=64)
METHODS = ("recompute", "cache", "cache+kernel", "cache+graph")
NO_CUDA = ("bench/decode.py measures a CUDA GPU and found none: nothing was measured and nothing "
           "written. Run it on a machine with a CUDA GPU (or try the code with --dry-run).")


# ------------------------------------------------------------------ arithmetic (tested on the CPU)

def n_params(cfg: dict) -> int:
    """The parameters of models/gpt.py's GPT of this shape: embeddings (tied unembedding),
    positions, L blocks of 12 d^2 + 9 d (four attention matrices, the MLP's two, biases and two
    LayerNorms), and the final LayerNorm."""
    v, d, layers, block = cfg["vocab_size"], cfg["d_model"], cfg["n_layer"], cfg["block_size"]
    return v * d + block * d + layers * (12 * d * d + 9 * d) + 2 * d


def bytes_per_step(cfg: dict, batch: int, context: int, bytes_per_value: float) -> float:
    """Bytes a decode step must move at least: every weight once (the position table only for
    the batch's rows), the cache of `context` positions of every sequence read (keys and values,
    every block), and the new position's keys and values written."""
    d, layers = cfg["d_model"], cfg["n_layer"]
    weights = n_params(cfg) - cfg["block_size"] * d + batch * d
    cache = 2 * layers * d * batch * (context + 1)
    return (weights + cache) * bytes_per_value


def roofline_tokens_per_s(cfg: dict, batch: int, prompt: int, steps: int, bandwidth: float,
                          bytes_per_value: float) -> float:
    """The most tokens per second that `steps` decode steps after a prompt of `prompt` tokens can
    reach at `bandwidth` bytes/s: step j (j = 0, 1, ...) feeds position prompt + j and reads the
    cache of its prompt + j + 1 positions (its own included)."""
    seconds = sum(bytes_per_step(cfg, batch, prompt + j, bytes_per_value) for j in range(steps)) / bandwidth
    return batch * steps / seconds


def summarize(result: dict) -> list[dict]:
    """One row per measured run: tokens/s, the roofline's tokens/s, and their ratio."""
    cfg, bw, b = result["config"], result["bandwidth_bytes_per_s"], result["bytes_per_value"]
    rows = []
    for run in result["runs"]:
        tps = run["batch"] * run["steps"] / run["seconds"]
        roof = roofline_tokens_per_s(cfg, run["batch"], run["prompt"], run["steps"], bw, b)
        rows.append(dict(method=run["method"], batch=run["batch"], prompt=run["prompt"], steps=run["steps"],
                         tokens_per_s=tps, ms_per_step=1e3 * run["seconds"] / run["steps"],
                         roofline_tokens_per_s=roof, fraction=tps / roof))
    return rows


def markdown(result: dict) -> str:
    """The results as a markdown page: what ran where, then one table row per run."""
    lines = [f"# Decode throughput against the bandwidth roofline ({result['date']})", "",
             f"Device: {result['device']}; {result['versions']}.",
             f"Model: GPT shape {result['config']}, {n_params(result['config']) / 1e6:.1f} M parameters, "
             f"{result['dtype']}, random weights.",
             f"Measured copy bandwidth: {result['bandwidth_bytes_per_s'] / 1e12:.2f} TB/s.", "",
             "| method | batch | prompt | steps | ms / step | tokens / s | roofline tokens / s | fraction of roofline |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summarize(result):
        lines.append(f"| {r['method']} | {r['batch']} | {r['prompt']} | {r['steps']} | {r['ms_per_step']:.3f} | "
                     f"{r['tokens_per_s']:,.0f} | {r['roofline_tokens_per_s']:,.0f} | {r['fraction']:.1%} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ measuring (needs CUDA, or --dry-run)

def _sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_bandwidth(device, n_bytes=2**30, repeats=10) -> float:
    """Bytes per second of a device-to-device copy (read + write), the median of `repeats`."""
    import torch
    src = torch.empty(n_bytes // 2, dtype=torch.bfloat16, device=device).fill_(1)
    dst = torch.empty_like(src)
    times = []
    for _ in range(repeats + 2):
        _sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        times.append(time.perf_counter() - t0)
    times = sorted(times[2:])
    return 2 * src.numel() * src.element_size() / times[len(times) // 2]


def time_method(method, model, batch, prompt, steps, device):
    """Seconds for `steps` decode steps after a prefill (the prefill is not timed)."""
    import torch
    from solutions.reference import gpu_gpt

    gen = torch.Generator(device=device).manual_seed(batch)
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt), device=device, generator=gen)
    if method == "recompute":
        with torch.no_grad():
            seq = ids
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                nxt = model(seq)[:, -1].argmax(-1)
                seq = torch.cat([seq, nxt[:, None]], dim=1)
            _sync(device)
            return time.perf_counter() - t0
    attention = "sdpa" if method == "cache" else "kernel"
    graph = method == "cache+graph"
    sg = gpu_gpt.StaticGPT(model, batch, max_len=prompt + steps + 1, attention=attention, cuda_graph=graph)
    with torch.no_grad():
        sg.token.copy_(sg.prefill(ids).argmax(-1))
        sg.step()                       # warm-up: compiles the kernels, captures the graph
        sg.prefill(ids)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            sg.step()
        _sync(device)
        return time.perf_counter() - t0


def versions() -> str:
    import torch
    import triton
    cuda = torch.version.cuda or "none"
    return (f"Python {platform.python_version()}, PyTorch {torch.__version__} (CUDA {cuda}), "
            f"Triton {triton.__version__}")


def measure(cfg, batches, prompt, steps, device, dtype, methods) -> dict:
    import torch
    from models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(**cfg)).to(device=device, dtype=dtype).eval()
    runs = []
    for batch in batches:
        for method in methods:
            seconds = time_method(method, model, batch, prompt, steps, device)
            runs.append(dict(method=method, batch=batch, prompt=prompt, steps=steps, seconds=seconds))
            print(f"  {method:<13} batch {batch:>3}: {1e3 * seconds / steps:8.3f} ms per step", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or 'cpu'})"
    return dict(device=name, versions=versions(), date=datetime.date.today().isoformat(), config=cfg,
                dtype=str(dtype).replace("torch.", ""), bytes_per_value=torch.tensor([], dtype=dtype).element_size(),
                bandwidth_bytes_per_s=measure_bandwidth(device, 2**24 if device.type == "cpu" else 2**30),
                runs=runs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer tokens and batch sizes")
    parser.add_argument("--dry-run", action="store_true", help="a tiny model on the CPU; writes nothing")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch

    if args.dry_run:
        import os
        os.environ.setdefault("TRITON_INTERPRET", "1")
        result = measure(TINY, (1, 3), 8, 4, torch.device("cpu"), torch.float32, METHODS[:3])
        print(markdown(result))
        print("dry run on the CPU: the code paths ran; these times measure nothing of interest.")
        return 0
    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    device = torch.device("cuda")
    batches, prompt, steps = ((1, 16), 128, 64) if args.quick else ((1, 8, 32), 128, 256)
    result = measure(GPT2_SMALL, batches, prompt, steps, device, torch.bfloat16, METHODS)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "decode.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "decode.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: our FlashAttention versions against PyTorch's SDPA backends, in one process.

    python bench/flash_attention.py            # on a CUDA GPU: writes bench/results/flash_attention.{json,md}
    python bench/flash_attention.py --quick    # a few shapes only, to try the script
    TRITON_INTERPRET=1 python bench/flash_attention.py --check   # CPU: correctness of every version, no timing

Shapes: bf16, batch * n = 16384 tokens, hidden 2048 (heads = 2048 / d), d in {64, 128},
n in {1k, 2k, 4k, 8k, 16k}, causal and not. FLOPs (DESIGN.md): 4 * B * H * n^2 * d for the
forward, halved when causal; forward + backward counts 3.5x the forward (the backward does five
n x n x d matrix products to the forward's two, one of them recomputing the scores: 2 + 5 = 7 = 3.5 x 2).
Every implementation is checked against SDPA's math backend (float32) before it is timed; a
version that is wrong is reported as wrong, not timed. Timing: triton.testing.do_bench (median).
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import flash_versions as versions  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SDPA = {"sdpa-flash": "FLASH_ATTENTION", "sdpa-cudnn": "CUDNN_ATTENTION",
        "sdpa-efficient": "EFFICIENT_ATTENTION", "sdpa-math": "MATH"}


def flops(batch, heads, n, d, causal, backward):
    f = 4 * batch * heads * n * n * d / (2 if causal else 1)
    return f * (3.5 if backward else 1.0)


def sdpa(backend):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F

    def run(q, k, v, causal=False):
        with sdpa_kernel(getattr(SDPBackend, SDPA[backend])):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return run


def implementations(backward: bool):
    impls = {name: sdpa(name) for name in SDPA}
    if backward:
        impls["v1+b1"] = versions.differentiable(versions.FORWARD["v1"], versions.BACKWARD["b1"])
        impls["v5+b2"] = versions.differentiable(versions.FORWARD["v5"], versions.BACKWARD["b2"])
    else:
        impls.update({name: (lambda f: lambda q, k, v, causal=False: f(q, k, v, causal)[0])(f)
                      for name, f in versions.FORWARD.items()})
    return impls


def relative_error(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def measure(quick: bool) -> dict:
    import triton
    import triton.testing

    ns = [1024, 4096] if quick else [1024, 2048, 4096, 8192, 16384]
    rows = []
    for backward in (False, True):
        for d in (64, 128):
            for n in ns:
                for causal in (False, True):
                    batch, heads = 16384 // n, 2048 // d
                    gen = torch.Generator(device="cuda").manual_seed(n + d)
                    q, k, v = (torch.randn(batch, heads, n, d, device="cuda", dtype=torch.bfloat16,
                                           generator=gen) for _ in range(3))
                    do = torch.randn_like(q)
                    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
                        small = slice(0, 1)  # the float32 yardstick on one sequence keeps memory small
                        qs, ks, vs = (t[small].float().requires_grad_() for t in (q, k, v))
                        want = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=causal)
                        want.backward(do[small].float())
                    for name, fn in implementations(backward).items():
                        if name == "sdpa-math" and n > 4096:
                            continue  # the (n, n) matrix no longer fits comfortably
                        row = dict(pass_="forward+backward" if backward else "forward", impl=name, d=d, n=n,
                                   causal=causal, batch=batch, heads=heads)
                        try:
                            args = [t[small].detach().clone().requires_grad_(backward) for t in (q, k, v)]
                            got = fn(*args, causal=causal)
                            err = relative_error(got, want)
                            if backward:
                                got.backward(do[small])
                                err = max([err] + [relative_error(a.grad, b.grad) for a, b in zip(args, (qs, ks, vs))])
                            row["relative_error"] = err
                            if not err <= 2e-2:
                                row["status"] = "wrong"
                                rows.append(row)
                                continue
                            full = [t.detach().clone().requires_grad_(backward) for t in (q, k, v)]
                            if backward:
                                def step():
                                    fn(*full, causal=causal).backward(do)
                            else:
                                def step():
                                    fn(*full, causal=causal)
                            ms = triton.testing.do_bench(step, warmup=25, rep=100)
                            row.update(status="ok", ms=ms,
                                       tflops=flops(batch, heads, n, d, causal, backward) / ms / 1e9)
                        except Exception as exc:  # a backend that refuses this shape says why
                            row.update(status="error", error=f"{type(exc).__name__}: {str(exc)[:200]}")
                        rows.append(row)
                        print(_line(row), flush=True)
                    del q, k, v, do
                    torch.cuda.empty_cache()
    for row in rows:
        row["pass"] = row.pop("pass_")
    return {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "flop_convention": "forward 4*B*H*n*n*d, halved when causal; forward+backward 3.5x forward",
        "rows": rows,
    }


def _line(row):
    what = f"{row.get('pass_', row.get('pass'))} {row['impl']:>15} d={row['d']} n={row['n']:>5} causal={row['causal']!s:5}"
    if row.get("status") == "ok":
        return f"{what} {row['ms']:8.3f} ms {row['tflops']:7.1f} TFLOP/s"
    return f"{what} {row.get('status')} {row.get('error', '')} {row.get('relative_error', '')}"


def markdown(result: dict) -> str:
    """Tables of TFLOP/s, and each of ours as a ratio to the SDPA flash backend."""
    lines = [f"# FlashAttention benchmark", "",
             f"{result['device']}; torch {result['torch']}, triton {result['triton']}, CUDA {result['cuda']}; "
             f"{result['date']}. bf16, batch*n = 16384, hidden 2048. {result['flop_convention']}.", ""]
    by = {(r["pass"], r["impl"], r["d"], r["n"], r["causal"]): r for r in result["rows"]}
    for pass_ in ("forward", "forward+backward"):
        impls = sorted({r["impl"] for r in result["rows"] if r["pass"] == pass_})
        for d in (64, 128):
            for causal in (False, True):
                ns = sorted({r["n"] for r in result["rows"] if r["pass"] == pass_ and r["d"] == d})
                lines += [f"## {pass_}, d={d}, causal={causal}: TFLOP/s (ratio to sdpa-flash)", "",
                          "| impl | " + " | ".join(str(n) for n in ns) + " |",
                          "|---|" + "---|" * len(ns)]
                for impl in impls:
                    cells = []
                    for n in ns:
                        r = by.get((pass_, impl, d, n, causal))
                        base = by.get((pass_, "sdpa-flash", d, n, causal))
                        if not r:
                            cells.append("-")
                        elif r.get("status") != "ok":
                            cells.append(r.get("status", "?"))
                        elif base and base.get("status") == "ok":
                            cells.append(f"{r['tflops']:.0f} ({r['tflops'] / base['tflops']:.2f}x)")
                        else:
                            cells.append(f"{r['tflops']:.0f}")
                    lines.append(f"| {impl} | " + " | ".join(cells) + " |")
                lines.append("")
    return "\n".join(lines)


def check() -> int:
    """Every version against naive attention on small CPU inputs (interpreter) or GPU inputs."""
    from solutions.reference import flash_attention_2 as ref
    device = "cuda" if torch.cuda.is_available() and not versions.interpreting() else "cpu"
    dtypes = (torch.float32, torch.float16) if device == "cpu" else (torch.bfloat16, torch.float16)
    worst = 0.0
    for dtype in dtypes:
        for shape in [(1, 2, 37, 16), (2, 1, 64, 32), (1, 1, 48, 64)]:
            for causal in (False, True):
                q, k, v = (torch.randn(*shape, dtype=dtype, device=device, requires_grad=True) for _ in range(3))
                do = torch.randn_like(q)
                want = ref.naive_attention(*(t.double() for t in (q, k, v)), causal)
                grads = torch.autograd.grad(want, [q, k, v], do.double())
                for name, fwd in versions.FORWARD.items():
                    o, _ = fwd(q.detach(), k.detach(), v.detach(), causal)
                    worst = max(worst, relative_error(o, want))
                for name, bwd in versions.BACKWARD.items():
                    o, lse = ref.flash_attention_forward(q.detach(), k.detach(), v.detach(), causal)
                    got = bwd(q.detach(), k.detach(), v.detach(), o, lse, do, causal)
                    worst = max([worst] + [relative_error(a, b) for a, b in zip(got, grads)])
    print(f"checked {len(versions.FORWARD)} forward and {len(versions.BACKWARD)} backward versions on {device}: "
          f"largest relative error {worst:.2g}")
    return 0 if worst < 1e-2 else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="check correctness only (works on the CPU)")
    parser.add_argument("--quick", action="store_true", help="n in {1k, 4k} only")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and markdown")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    if not torch.cuda.is_available() or versions.interpreting():
        print("no CUDA GPU (or TRITON_INTERPRET=1 is set): nothing was measured. Run this on a machine with "
              "an NVIDIA GPU; use --check to test correctness on the CPU.", file=sys.stderr)
        return 2
    result = measure(args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "flash_attention.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "flash_attention.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

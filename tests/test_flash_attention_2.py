"""Chapter 14's kernels beyond the exercise checks: the autograd.Function under gradcheck,
every numbered benchmark version against naive attention (through the interpreter), the
refusal of CPU tensors without the interpreter, and the benchmark's ratio tables."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import flash_attention as bench  # noqa: E402
import flash_versions as versions  # noqa: E402
from solutions.reference import flash_attention_2 as ref  # noqa: E402


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("causal", [False, True])
def test_flash_attention_function_passes_gradcheck(causal):
    gen = torch.Generator().manual_seed(14)
    q, k, v = (torch.randn(1, 1, 2, 16, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda a, b, c: ref.flash_attention(a, b, c, causal), (q, k, v))
    q, k, v = (torch.randn(2, 2, 21, 32, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda a, b, c: ref.flash_attention(a, b, c, causal), (q, k, v), fast_mode=True)


def test_gradcheck_catches_a_wrong_backward():
    """The check bites: a backward without the -delta term fails gradcheck."""
    from autograder.catalogue.flash_attention_2 import WRONG
    ns = {}
    exec(next(w.source for w in WRONG if w.name == "bwd_no_delta"), ns)

    class Broken(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v):
            o, lse = ref.flash_attention_forward(q, k, v)
            ctx.save_for_backward(q, k, v, o, lse)
            return o

        @staticmethod
        def backward(ctx, do):
            return ns["flash_attention_backward"](*ctx.saved_tensors, do)

    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 1, 2, 16, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(3))
    assert not torch.autograd.gradcheck(Broken.apply, (q, k, v), raise_exception=False)


@pytest.mark.parametrize("name", sorted(versions.FORWARD))
@pytest.mark.parametrize("causal", [False, True])
def test_forward_versions_compute_attention(name, causal):
    gen = torch.Generator().manual_seed(2)
    for shape in [(1, 2, 45, 16), (1, 1, 64, 32)]:
        q, k, v = (torch.randn(*shape, generator=gen) for _ in range(3))
        o, lse = versions.FORWARD[name](q, k, v, causal)
        want_o, want_lse = ref.flash_attention_forward(q, k, v, causal)
        assert _rel(o, ref.naive_attention(q.double(), k.double(), v.double(), causal)) < 1e-5
        assert _rel(lse, want_lse) < 1e-5


@pytest.mark.parametrize("name", sorted(versions.BACKWARD))
@pytest.mark.parametrize("causal", [False, True])
def test_backward_versions_compute_gradients(name, causal):
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 45, 16, generator=gen, requires_grad=True) for _ in range(3))
    do = torch.randn(1, 2, 45, 16, generator=gen)
    want = torch.autograd.grad(ref.naive_attention(q, k, v, causal), (q, k, v), do)
    o, lse = ref.flash_attention_forward(q.detach(), k.detach(), v.detach(), causal)
    got = versions.BACKWARD[name](q.detach(), k.detach(), v.detach(), o, lse, do, causal)
    for a, b in zip(got, want):
        assert _rel(a, b) < 1e-5


def test_cpu_tensors_without_the_interpreter_are_refused():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = ("import torch\nfrom solutions.reference import flash_attention_2 as F\n"
            "q = torch.randn(1, 1, 16, 16)\n"
            "try:\n    F.flash_attention_forward(q, q, q)\nexcept ValueError as e:\n    print('ValueError:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert "ValueError: CPU tensors need Triton's interpreter" in out.stdout, out.stdout + out.stderr


def test_benchmark_reports_ratios_to_the_flash_backend():
    rows = [{"pass": "forward", "impl": impl, "d": 128, "n": 4096, "causal": False, "status": "ok",
             "tflops": t, "ms": 1.0} for impl, t in (("sdpa-flash", 350.0), ("v5", 420.0))]
    rows.append({"pass": "forward", "impl": "v1", "d": 128, "n": 4096, "causal": False, "status": "wrong"})
    md = bench.markdown({"device": "test", "torch": "t", "triton": "t", "cuda": "c", "date": "today",
                         "flop_convention": "c", "rows": rows})
    assert "| v5 | 420 (1.20x) |" in md
    assert "| v1 | wrong |" in md
    assert bench.flops(2, 16, 4096, 128, causal=True, backward=False) == 4 * 2 * 16 * 4096 ** 2 * 128 / 2
    assert bench.flops(1, 1, 8, 8, causal=False, backward=True) == 3.5 * 4 * 8 * 8 * 8


def test_benchmark_refuses_to_time_without_a_gpu():
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, str(REPO / "bench" / "flash_attention.py")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "nothing was measured" in out.stderr

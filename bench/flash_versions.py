"""Numbered versions of FlashAttention's kernels, each one optimisation on top of the last.

Every forward version has the launcher signature of the exercise,
`forward(q, k, v, causal=False) -> (o, lse)`; every backward version
`backward(q, k, v, o, lse, do, causal=False) -> (dq, dk, dv)`.

  v1  the exercise's kernel (solutions/reference/flash_attention_2.py), 64 x 64 blocks,
      no software pipelining (num_stages=1); causal programs visit every key block.
  v2  causal programs stop at the diagonal; only blocks that straddle it are masked, and
      the ragged-end masks are compiled in only when n is not a multiple of the blocks.
  v3  exp2 instead of exp, with 1/sqrt(d) * log2(e) folded into one multiply per score.
  v4  128-row query blocks, 8 warps, 3 pipeline stages (the next key block's loads overlap
      this block's arithmetic).
  v5  triton.autotune over block sizes, warps and stages, per (n, d, causal).
  b1  the exercise's backward kernels.
  b2  b1 with causal loops that skip fully masked blocks, exp2, and pipelining.

Under Triton's interpreter (CPU) the block sizes shrink to 16 and autotuning is off, so
tests can check that every version computes the same attention; speed is a GPU matter
(bench/flash_attention.py).
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from solutions.reference import flash_attention_2 as ref  # noqa: E402

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


# ------------------------------------------------------------------ forward, v2-v5

@triton.jit
def _fwd_blocks(acc, l, m, q, K, V, base, rows, lo, hi, n, qk_scale, D: tl.constexpr,
                BLOCK_N: tl.constexpr, MASK_CAUSAL: tl.constexpr, MASK_N: tl.constexpr,
                EXP2: tl.constexpr, ACC: tl.constexpr, PRECISION: tl.constexpr):
    """Fold key blocks [lo, hi) into the running (acc, l, m); masks only where asked."""
    dims = tl.arange(0, D)
    for start in range(lo, hi, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        if MASK_N:
            k = tl.load(K + base + cols[:, None] * D + dims[None, :], mask=cols[:, None] < n, other=0.0)
            v = tl.load(V + base + cols[:, None] * D + dims[None, :], mask=cols[:, None] < n, other=0.0)
        else:
            k = tl.load(K + base + cols[:, None] * D + dims[None, :])
            v = tl.load(V + base + cols[:, None] * D + dims[None, :])
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION).to(ACC) * qk_scale
        if MASK_N:
            s = tl.where(cols[None, :] < n, s, float("-inf"))
        if MASK_CAUSAL:
            s = tl.where(cols[None, :] <= rows[:, None], s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        if EXP2:
            alpha = tl.exp2(m - m_new)
            p = tl.exp2(s - m_new[:, None])
        else:
            alpha = tl.exp(m - m_new)
            p = tl.exp(s - m_new[:, None])
        l = l * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION).to(ACC)
        m = m_new
    return acc, l, m


@triton.jit
def _fwd_kernel(Q, K, V, O, LSE, n, scale, CAUSAL: tl.constexpr, SKIP: tl.constexpr,
                EXP2: tl.constexpr, EVEN_N: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_N: tl.constexpr, ACC: tl.constexpr, PRECISION: tl.constexpr):
    block_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    base = bh * n * D
    rows = block_m * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, D)
    if EVEN_N:
        q = tl.load(Q + base + rows[:, None] * D + dims[None, :])
    else:
        q = tl.load(Q + base + rows[:, None] * D + dims[None, :], mask=rows[:, None] < n, other=0.0)
    qk_scale = scale * 1.4426950408889634 if EXP2 else scale
    m = tl.full([BLOCK_M], float("-inf"), ACC)
    l = tl.zeros([BLOCK_M], ACC)
    acc = tl.zeros([BLOCK_M, D], ACC)
    if CAUSAL and SKIP:
        # Keys left of this block's first row are visible to every row: no mask at all.
        # BLOCK_M is a multiple of BLOCK_N, so these are whole key blocks.
        diagonal = block_m * BLOCK_M
        acc, l, m = _fwd_blocks(acc, l, m, q, K, V, base, rows, 0, diagonal, n, qk_scale, D, BLOCK_N,
                                False, False, EXP2, ACC, PRECISION)
        # Blocks on the diagonal need the causal mask; keys right of it are never visited.
        hi = tl.minimum(n, diagonal + BLOCK_M)
        acc, l, m = _fwd_blocks(acc, l, m, q, K, V, base, rows, diagonal, hi, n, qk_scale, D, BLOCK_N,
                                True, not EVEN_N, EXP2, ACC, PRECISION)
    else:
        acc, l, m = _fwd_blocks(acc, l, m, q, K, V, base, rows, 0, n, n, qk_scale, D, BLOCK_N,
                                CAUSAL, not EVEN_N, EXP2, ACC, PRECISION)
    if EXP2:
        lse = (m + tl.log2(l)) * 0.6931471805599453
    else:
        lse = m + tl.log(l)
    o = (acc / l[:, None]).to(O.dtype.element_ty)
    if EVEN_N:
        tl.store(O + base + rows[:, None] * D + dims[None, :], o)
        tl.store(LSE + bh * n + rows, lse)
    else:
        tl.store(O + base + rows[:, None] * D + dims[None, :], o, mask=rows[:, None] < n)
        tl.store(LSE + bh * n + rows, lse, mask=rows < n)


def _even(args):
    return args["n"] % args["BLOCK_M"] == 0 and args["n"] % args["BLOCK_N"] == 0


_fwd_even = triton.heuristics({"EVEN_N": _even})(_fwd_kernel)

# v5's search space: BLOCK_M a multiple of BLOCK_N (the causal split needs it).
_TUNE = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
         for bm, bn in ((64, 64), (128, 64), (128, 32), (128, 128))
         for w in (4, 8) for s in (2, 3, 4)
         if not (bm == 128 and bn == 128 and s == 4)]  # too much shared memory
_fwd_tuned = triton.autotune(configs=_TUNE, key=["n", "D", "CAUSAL", "ACC"])(_fwd_even)


def _alloc(q):
    lse = torch.empty(q.shape[:-1], device=q.device,
                      dtype=torch.float64 if q.dtype == torch.float64 else torch.float32)
    return torch.empty_like(q), lse


def _launch_v1(q, k, v, causal=False):
    ref.check_attention_inputs(q, k, v)
    batch, heads, n, d = q.shape
    o, lse = _alloc(q)
    settings = ref.kernel_settings(q)
    grid = (triton.cdiv(n, settings["BLOCK_M"]), batch * heads)
    ref._flash_fwd_kernel[grid](q, k, v, o, lse, n, 1.0 / math.sqrt(d), CAUSAL=causal, D=d,
                                num_warps=4, num_stages=1, **settings)
    return o, lse


def _forward_version(skip, exp2, block_m, block_n, warps, stages, tuned=False):
    def forward(q, k, v, causal=False):
        ref.check_attention_inputs(q, k, v)
        batch, heads, n, d = q.shape
        o, lse = _alloc(q)
        settings = ref.kernel_settings(q)
        common = dict(CAUSAL=causal, SKIP=skip, EXP2=exp2, D=d, ACC=settings["ACC"],
                      PRECISION=settings["PRECISION"])
        if tuned and not interpreting():
            grid = lambda meta: (triton.cdiv(n, meta["BLOCK_M"]), batch * heads)  # noqa: E731
            _fwd_tuned[grid](q, k, v, o, lse, n, 1.0 / math.sqrt(d), **common)
            return o, lse
        bm, bn = (block_m, block_n) if not interpreting() else (2 * 16 if block_m > 64 else 16, 16)
        grid = (triton.cdiv(n, bm), batch * heads)
        _fwd_even[grid](q, k, v, o, lse, n, 1.0 / math.sqrt(d), BLOCK_M=bm, BLOCK_N=bn,
                        num_warps=warps, num_stages=stages, **common)
        return o, lse
    return forward


FORWARD = {
    "v1": _launch_v1,
    "v2": _forward_version(skip=True, exp2=False, block_m=64, block_n=64, warps=4, stages=1),
    "v3": _forward_version(skip=True, exp2=True, block_m=64, block_n=64, warps=4, stages=1),
    "v4": _forward_version(skip=True, exp2=True, block_m=128, block_n=64, warps=8, stages=3),
    "v5": _forward_version(skip=True, exp2=True, block_m=128, block_n=64, warps=8, stages=3, tuned=True),
}


# ------------------------------------------------------------------ backward, b2

@triton.jit
def _bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, n, scale, CAUSAL: tl.constexpr,
                     D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     ACC: tl.constexpr, PRECISION: tl.constexpr):
    """b1's dK/dV kernel with exp2 and, when causal, no visit to query blocks above the diagonal."""
    block_n = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    base = bh * n * D
    cols = block_n * BLOCK_N + tl.arange(0, BLOCK_N)
    dims = tl.arange(0, D)
    k = tl.load(K + base + cols[:, None] * D + dims[None, :], mask=cols[:, None] < n, other=0.0)
    v = tl.load(V + base + cols[:, None] * D + dims[None, :], mask=cols[:, None] < n, other=0.0)
    dk = tl.zeros([BLOCK_N, D], ACC)
    dv = tl.zeros([BLOCK_N, D], ACC)
    lo = (block_n * BLOCK_N // BLOCK_M) * BLOCK_M if CAUSAL else 0  # rows above see none of these keys
    for start in range(lo, n, BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        q = tl.load(Q + base + rows[:, None] * D + dims[None, :], mask=rows[:, None] < n, other=0.0)
        do = tl.load(DO + base + rows[:, None] * D + dims[None, :], mask=rows[:, None] < n, other=0.0)
        lse2 = tl.load(LSE + bh * n + rows, mask=rows < n, other=0.0) * 1.4426950408889634
        delta = tl.load(DELTA + bh * n + rows, mask=rows < n, other=0.0)
        s2 = tl.dot(q, tl.trans(k), input_precision=PRECISION).to(ACC) * (scale * 1.4426950408889634)
        keep = (rows[:, None] < n) & (cols[None, :] < n)
        if CAUSAL:
            keep = keep & (cols[None, :] <= rows[:, None])
        p = tl.where(keep, tl.exp2(s2 - lse2[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION).to(ACC)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION).to(ACC)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION).to(ACC)
    tl.store(DK + base + cols[:, None] * D + dims[None, :], (dk * scale).to(DK.dtype.element_ty),
             mask=cols[:, None] < n)
    tl.store(DV + base + cols[:, None] * D + dims[None, :], dv.to(DV.dtype.element_ty), mask=cols[:, None] < n)


@triton.jit
def _bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, n, scale, CAUSAL: tl.constexpr, D: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ACC: tl.constexpr,
                   PRECISION: tl.constexpr):
    """b1's dQ kernel with exp2 and, when causal, no visit to key blocks right of the diagonal."""
    block_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    base = bh * n * D
    rows = block_m * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, D)
    q = tl.load(Q + base + rows[:, None] * D + dims[None, :], mask=rows[:, None] < n, other=0.0)
    do = tl.load(DO + base + rows[:, None] * D + dims[None, :], mask=rows[:, None] < n, other=0.0)
    lse2 = tl.load(LSE + bh * n + rows, mask=rows < n, other=0.0) * 1.4426950408889634
    delta = tl.load(DELTA + bh * n + rows, mask=rows < n, other=0.0)
    dq = tl.zeros([BLOCK_M, D], ACC)
    hi = tl.minimum(n, (block_m + 1) * BLOCK_M) if CAUSAL else n
    for start in range(0, hi, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        k = tl.load(K + base + cols[:, None] * D + dims[None, :], mask=cols[:, None] < n, other=0.0)
        v = tl.load(V + base + cols[:, None] * D + dims[None, :], mask=cols[:, None] < n, other=0.0)
        s2 = tl.dot(q, tl.trans(k), input_precision=PRECISION).to(ACC) * (scale * 1.4426950408889634)
        keep = (rows[:, None] < n) & (cols[None, :] < n)
        if CAUSAL:
            keep = keep & (cols[None, :] <= rows[:, None])
        p = tl.where(keep, tl.exp2(s2 - lse2[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION).to(ACC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION).to(ACC)
    tl.store(DQ + base + rows[:, None] * D + dims[None, :], (dq * scale).to(DQ.dtype.element_ty),
             mask=rows[:, None] < n)


def _backward_b2(q, k, v, o, lse, do, causal=False):
    ref.check_attention_inputs(q, k, v)
    batch, heads, n, d = q.shape
    do = do.contiguous().to(q.dtype)
    lse = lse.contiguous().to(torch.float64 if q.dtype == torch.float64 else torch.float32)
    delta = (o.to(lse.dtype) * do.to(lse.dtype)).sum(-1).contiguous()
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    settings = ref.kernel_settings(q)
    launch = {} if interpreting() else dict(num_warps=8 if d > 64 else 4, num_stages=3)
    scale = 1.0 / math.sqrt(d)
    _bwd_dkdv_kernel[(triton.cdiv(n, settings["BLOCK_N"]), batch * heads)](
        q, k, v, do, lse, delta, dk, dv, n, scale, CAUSAL=causal, D=d, **settings, **launch)
    _bwd_dq_kernel[(triton.cdiv(n, settings["BLOCK_M"]), batch * heads)](
        q, k, v, do, lse, delta, dq, n, scale, CAUSAL=causal, D=d, **settings, **launch)
    return dq, dk, dv


BACKWARD = {"b1": ref.flash_attention_backward, "b2": _backward_b2}


def differentiable(forward, backward):
    """An autograd.Function from a forward and a backward version (for the fwd+bwd timings)."""
    class Attention(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, causal):
            o, lse = forward(q, k, v, causal)
            ctx.save_for_backward(q, k, v, o, lse)
            ctx.causal = causal
            return o

        @staticmethod
        def backward(ctx, do):
            q, k, v, o, lse = ctx.saved_tensors
            return (*backward(q, k, v, o, lse, do, ctx.causal), None)

    return lambda q, k, v, causal=False: Attention.apply(q, k, v, causal)

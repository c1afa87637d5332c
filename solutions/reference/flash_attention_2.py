"""Reference for chapter 14 (14-flash-attention-2): FlashAttention's forward and backward
passes as Triton kernels, and an autograd.Function that joins them.

Tensors are (batch, heads, n, d), contiguous, on a CUDA GPU, or on the CPU when Triton's
interpreter is on (TRITON_INTERPRET=1 set before `import triton`). These are the simple
kernels the exercise asks for; bench/flash_versions.py builds the faster numbered
versions on them.
"""
import math
import os

import torch
import triton
import triton.language as tl

HEAD_DIMS = (16, 32, 64, 128)
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_attention_inputs(q, k, v):
    """Raise a ValueError that says what is wrong unless the kernels can run on q, k, v (given).

    The kernels need three tensors of one shape (batch, heads, n, d) with n >= 1 and d in
    HEAD_DIMS, one floating dtype, contiguous, on one device: CUDA, or the CPU when the
    Triton interpreter is on. The interpreter has no bfloat16 arithmetic.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, not {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have shape (batch, heads, n, d); it has shape {tuple(t.shape)}")
    if not q.shape == k.shape == v.shape:
        raise ValueError(f"q, k and v must have one shape; got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    if q.shape[-1] not in HEAD_DIMS:
        raise ValueError(f"head dimension d = {q.shape[-1]} is not supported; use one of {HEAD_DIMS}")
    if 0 in q.shape:
        raise ValueError(f"empty input of shape {tuple(q.shape)}")
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k and v must have one dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dtype not in DTYPES:
        raise ValueError(f"dtype {q.dtype} is not supported; use float16, bfloat16, float32 or float64")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not t.is_contiguous():
            raise ValueError(f"{name} is not contiguous (a transposed or sliced view?): call .contiguous()")
    if not q.device == k.device == v.device:
        raise ValueError(f"q, k and v are on different devices: {q.device}, {k.device}, {v.device}")
    interpreting = os.environ.get("TRITON_INTERPRET") == "1"
    if q.device.type == "cpu" and not interpreting:
        raise ValueError("CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before "
                         "importing triton, or move the tensors to a CUDA GPU")
    if q.device.type not in ("cpu", "cuda"):
        raise ValueError(f"tensors on {q.device.type} are not supported; use CUDA (or the CPU interpreter)")
    if interpreting and q.dtype == torch.bfloat16:
        raise ValueError("Triton's interpreter computes bfloat16 wrongly (NumPy has no bfloat16): "
                         "use float16 or float32 on the CPU, bfloat16 on a GPU")


def kernel_settings(q):
    """Block sizes and number types for the kernels, chosen from q (given).

    The accumulators are float32 (float64 for float64 inputs, so that gradcheck can
    see tiny changes); float32 products use full precision ("ieee"), not TF32. The blocks
    of queries (BLOCK_M rows) and of keys (BLOCK_N rows) differ in size on purpose: a
    kernel that mixes them up, or a missing transpose or [:, None], fails loudly instead of
    computing the wrong numbers with shapes that happen to agree.
    """
    block_m, block_n = (16, 32) if q.device.type == "cpu" else (64, 32)
    acc = tl.float64 if q.dtype == torch.float64 else tl.float32
    precision = "ieee" if q.dtype in (torch.float32, torch.float64) else "tf32"
    return dict(BLOCK_M=block_m, BLOCK_N=block_n, ACC=acc, PRECISION=precision)


# ------------------------------------------------------------------ forward

@triton.jit
def _flash_fwd_kernel(Q, K, V, O, LSE, n, scale, CAUSAL: tl.constexpr, D: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ACC: tl.constexpr,
                      PRECISION: tl.constexpr):
    """One program: BLOCK_M query rows of one (batch, head), against every block of keys.

    Q, K, V, O point to contiguous (batch * heads, n, D) tensors; LSE to (batch * heads, n).
    The grid is (cdiv(n, BLOCK_M), batch * heads). Rows and keys past n are masked.
    """
    block_m = tl.program_id(0)
    base = tl.program_id(1).to(tl.int64) * n * D  # the start of this (batch, head)
    rows = block_m * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, D)
    q = tl.load(Q + base + rows[:, None] * D + dims[None, :], mask=rows[:, None] < n, other=0.0)
    m = tl.full([BLOCK_M], float("-inf"), ACC)   # running maximum of each row's scores
    l = tl.zeros([BLOCK_M], ACC)                 # running sum of exp(score - m)
    acc = tl.zeros([BLOCK_M, D], ACC)            # running sum of exp(score - m) * value
    for start in range(0, n, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        k = tl.load(K + base + cols[:, None] * D + dims[None, :], mask=cols[:, None] < n, other=0.0)
        v = tl.load(V + base + cols[:, None] * D + dims[None, :], mask=cols[:, None] < n, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION).to(ACC) * scale
        keep = cols[None, :] < n
        if CAUSAL:
            keep = keep & (cols[None, :] <= rows[:, None])
        s = tl.where(keep, s, float("-inf"))
        # Key 0 is in the first block and every row may see it, so m is finite from
        # the first block on and m - m_new is never -inf - (-inf).
        m_new = tl.maximum(m, tl.max(s, 1))
        alpha = tl.exp(m - m_new)
        p = tl.exp(s - m_new[:, None])
        l = l * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION).to(ACC)
        m = m_new
    tl.store(O + base + rows[:, None] * D + dims[None, :], (acc / l[:, None]).to(O.dtype.element_ty),
             mask=rows[:, None] < n)
    tl.store(LSE + tl.program_id(1).to(tl.int64) * n + rows, m + tl.log(l), mask=rows < n)


def flash_attention_forward(q, k, v, causal=False):
    """FlashAttention's forward pass: returns (o, lse).

    q, k, v: (batch, heads, n, d) tensors accepted by `check_attention_inputs`.
    o = softmax(q k^T / sqrt(d) [causal-masked]) v has q's shape and dtype; lse is the
    log-sum-exp of each query's scaled scores, shape (batch, heads, n), float32 (float64
    for float64 inputs): the backward pass rebuilds the weights from it.
    """
    check_attention_inputs(q, k, v)
    batch, heads, n, d = q.shape
    o = torch.empty_like(q)
    lse = torch.empty((batch, heads, n), device=q.device,
                      dtype=torch.float64 if q.dtype == torch.float64 else torch.float32)
    settings = kernel_settings(q)
    grid = (triton.cdiv(n, settings["BLOCK_M"]), batch * heads)
    _flash_fwd_kernel[grid](q, k, v, o, lse, n, 1.0 / math.sqrt(d), CAUSAL=causal, D=d, **settings)
    return o, lse


# ------------------------------------------------------------------ backward

@triton.jit
def _flash_bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, n, scale, CAUSAL: tl.constexpr,
                           D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                           ACC: tl.constexpr, PRECISION: tl.constexpr):
    """One program: dK and dV for BLOCK_N keys of one (batch, head), over every query block.

    With p = exp(s - lse) the attention weights and ds = p * (do v^T - delta):
    dV = p^T do and dK = scale * ds^T q, summed over the query blocks.
    """
    block_n = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    base = bh * n * D
    cols = block_n * BLOCK_N + tl.arange(0, BLOCK_N)
    dims = tl.arange(0, D)
    k = tl.load(K + base + cols[:, None] * D + dims[None, :], mask=cols[:, None] < n, other=0.0)
    v = tl.load(V + base + cols[:, None] * D + dims[None, :], mask=cols[:, None] < n, other=0.0)
    dk = tl.zeros([BLOCK_N, D], ACC)
    dv = tl.zeros([BLOCK_N, D], ACC)
    for start in range(0, n, BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        q = tl.load(Q + base + rows[:, None] * D + dims[None, :], mask=rows[:, None] < n, other=0.0)
        do = tl.load(DO + base + rows[:, None] * D + dims[None, :], mask=rows[:, None] < n, other=0.0)
        lse = tl.load(LSE + bh * n + rows, mask=rows < n, other=0.0)
        delta = tl.load(DELTA + bh * n + rows, mask=rows < n, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION).to(ACC) * scale
        keep = (rows[:, None] < n) & (cols[None, :] < n)
        if CAUSAL:
            keep = keep & (cols[None, :] <= rows[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION).to(ACC)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION).to(ACC)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION).to(ACC)
    tl.store(DK + base + cols[:, None] * D + dims[None, :], (dk * scale).to(DK.dtype.element_ty),
             mask=cols[:, None] < n)
    tl.store(DV + base + cols[:, None] * D + dims[None, :], dv.to(DV.dtype.element_ty),
             mask=cols[:, None] < n)


@triton.jit
def _flash_bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, n, scale, CAUSAL: tl.constexpr,
                         D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         ACC: tl.constexpr, PRECISION: tl.constexpr):
    """One program: dQ for BLOCK_M queries of one (batch, head): dQ = scale * ds k over key blocks."""
    block_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    base = bh * n * D
    rows = block_m * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, D)
    q = tl.load(Q + base + rows[:, None] * D + dims[None, :], mask=rows[:, None] < n, other=0.0)
    do = tl.load(DO + base + rows[:, None] * D + dims[None, :], mask=rows[:, None] < n, other=0.0)
    lse = tl.load(LSE + bh * n + rows, mask=rows < n, other=0.0)
    delta = tl.load(DELTA + bh * n + rows, mask=rows < n, other=0.0)
    dq = tl.zeros([BLOCK_M, D], ACC)
    for start in range(0, n, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        k = tl.load(K + base + cols[:, None] * D + dims[None, :], mask=cols[:, None] < n, other=0.0)
        v = tl.load(V + base + cols[:, None] * D + dims[None, :], mask=cols[:, None] < n, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION).to(ACC) * scale
        keep = (rows[:, None] < n) & (cols[None, :] < n)
        if CAUSAL:
            keep = keep & (cols[None, :] <= rows[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION).to(ACC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION).to(ACC)
    tl.store(DQ + base + rows[:, None] * D + dims[None, :], (dq * scale).to(DQ.dtype.element_ty),
             mask=rows[:, None] < n)


def flash_attention_backward(q, k, v, o, lse, do, causal=False):
    """FlashAttention's backward pass: returns (dq, dk, dv), the gradients of a loss with
    respect to q, k and v, given the forward's o and lse and the gradient do = dLoss/do.

    The weights are rebuilt block by block as p = exp(q k^T / sqrt(d) - lse), never stored.
    delta = rowsum(o * do) is computed first (one number per query). Each gradient has
    the shape and dtype of its input.
    """
    check_attention_inputs(q, k, v)
    if o.shape != q.shape or do.shape != q.shape or lse.shape != q.shape[:-1]:
        raise ValueError(f"o and do must have q's shape {tuple(q.shape)} and lse {tuple(q.shape[:-1])}; "
                         f"got {tuple(o.shape)}, {tuple(do.shape)}, {tuple(lse.shape)}")
    batch, heads, n, d = q.shape
    do = do.contiguous().to(q.dtype)
    lse = lse.contiguous().to(torch.float64 if q.dtype == torch.float64 else torch.float32)
    delta = (o.to(lse.dtype) * do.to(lse.dtype)).sum(-1).contiguous()
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    settings = kernel_settings(q)
    scale = 1.0 / math.sqrt(d)
    _flash_bwd_dkdv_kernel[(triton.cdiv(n, settings["BLOCK_N"]), batch * heads)](
        q, k, v, do, lse, delta, dk, dv, n, scale, CAUSAL=causal, D=d, **settings)
    _flash_bwd_dq_kernel[(triton.cdiv(n, settings["BLOCK_M"]), batch * heads)](
        q, k, v, do, lse, delta, dq, n, scale, CAUSAL=causal, D=d, **settings)
    return dq, dk, dv


# ------------------------------------------------------------------ autograd

class FlashAttention(torch.autograd.Function):
    """Attention whose forward and backward are the kernels above (given).

    The forward saves q, k, v, o and the logsumexp, never the (n, n) weights.
    """

    @staticmethod
    def forward(ctx, q, k, v, causal=False):
        o, lse = flash_attention_forward(q, k, v, causal)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.causal = causal
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = flash_attention_backward(q, k, v, o, lse, do, ctx.causal)
        return dq, dk, dv, None


def flash_attention(q, k, v, causal=False):
    """softmax(q k^T / sqrt(d)) v with FlashAttention's kernels, differentiable (given)."""
    return FlashAttention.apply(q, k, v, causal)


def naive_attention(q, k, v, causal=False):
    """Attention the direct way in PyTorch, forming the (n, n) weights: the yardstick (given)."""
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if causal:
        n_q, n_k = s.shape[-2:]
        s = s.masked_fill(~torch.ones(n_q, n_k, dtype=torch.bool, device=s.device).tril(), float("-inf"))
    return torch.softmax(s, dim=-1) @ v

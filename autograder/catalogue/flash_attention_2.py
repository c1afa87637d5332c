"""Wrong and alternative implementations for chapter 14 (14-flash-attention-2).

Each entry is the reference's kernels and launcher with one slip edited in. The edits are
made on the reference's source text and must match it exactly once, so a change to the
reference that would silently make an entry correct fails loudly here instead.
"""
from .. import reference
from ..release import source_of
from . import Wrong

_ref = reference.load("flash_attention_2")

_HEADER = '''import math
import os

import torch
import triton
import triton.language as tl

HEAD_DIMS = (16, 32, 64, 128)
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
'''
# What the notebook gives students read-only; the launchers need them.
_GIVEN = "\n\n".join(source_of(getattr(_ref, name)) for name in ("check_attention_inputs", "kernel_settings"))


def _edit(source: str, edits) -> str:
    for old, new in edits:
        if source.count(old) < 1:
            raise ValueError(f"catalogue edit not found in the reference: {old!r}")
        source = source.replace(old, new)
    return source


def _forward(*edits, launcher=()):
    return "\n\n".join([_HEADER, _GIVEN, _edit(source_of(_ref._flash_fwd_kernel), edits),
                        _edit(source_of(_ref.flash_attention_forward), launcher)]) + "\n"


def _backward(*edits, launcher=()):
    kernels = [_edit(source_of(getattr(_ref, k)), edits) if edits else source_of(getattr(_ref, k))
               for k in ("_flash_bwd_dkdv_kernel", "_flash_bwd_dq_kernel")]
    return "\n\n".join([_HEADER, _GIVEN, *kernels,
                        _edit(source_of(_ref.flash_attention_backward), launcher)]) + "\n"


def _backward_one(kernel, *edits):
    """An edit in one of the two backward kernels only."""
    parts = {k: source_of(getattr(_ref, k)) for k in ("_flash_bwd_dkdv_kernel", "_flash_bwd_dq_kernel")}
    parts[kernel] = _edit(parts[kernel], edits)
    return "\n\n".join([_HEADER, _GIVEN, *parts.values(), source_of(_ref.flash_attention_backward)]) + "\n"


_CAUSAL = "keep = keep & (cols[None, :] <= rows[:, None])"

WRONG = [
    # ---------------------------------------------------------------- forward
    Wrong("flash_attention_forward", "fwd_no_rescale_l", "rescale both l and acc",
          _forward(("l = l * alpha + tl.sum(p, 1)", "l = l + tl.sum(p, 1)")),
          "Adding a block's exponentials to the running sum l without rescaling l by exp(m_old - m_new)."),
    Wrong("flash_attention_forward", "fwd_no_rescale_acc", "rescale both l and acc",
          _forward(("acc = acc * alpha[:, None] + ", "acc = acc + ")),
          "Rescaling l but not the accumulator acc when the running maximum grows."),
    Wrong("flash_attention_forward", "fwd_causal_off_by_one", "keep the diagonal",
          _forward((_CAUSAL, "keep = keep & (cols[None, :] < rows[:, None])")),
          "A causal mask `cols < rows` that hides each query from its own key (and leaves query 0 nothing)."),
    Wrong("flash_attention_forward", "fwd_mask_with_zero", "mask with -inf, not 0",
          _forward(('s = tl.where(keep, s, float("-inf"))', "s = tl.where(keep, s, 0.0)")),
          "Masking scores with 0 instead of -inf: masked keys still get weight exp(0 - m)."),
    Wrong("flash_attention_forward", "fwd_no_scale", "scale the scores by 1/sqrt(d)",
          _forward(("s = tl.dot(q, tl.trans(k), input_precision=PRECISION).to(ACC) * scale",
                    "s = tl.dot(q, tl.trans(k), input_precision=PRECISION).to(ACC)")),
          "Forgetting the 1/sqrt(d) scale of the scores."),
    Wrong("flash_attention_forward", "fwd_lse_without_max", "m + log(l)",
          _forward(("m + tl.log(l), mask=rows < n", "tl.log(l), mask=rows < n")),
          "Saving log(l) as the log-sum-exp, forgetting that l was summed relative to the running max m."),
    Wrong("flash_attention_forward", "fwd_lse_not_saved", "store the log-sum-exp",
          _forward(("\n    tl.store(LSE + tl.program_id(1).to(tl.int64) * n + rows, m + tl.log(l), mask=rows < n)",
                    ""), launcher=[("lse = torch.empty(", "lse = torch.zeros(")]),
          "Not saving the log-sum-exp: the backward pass has no way to rebuild the weights."),
    Wrong("flash_attention_forward", "fwd_ragged_keys_unmasked", "wrong otherwise: mask keys past n",
          _forward(("keep = cols[None, :] < n", "keep = cols[None, :] >= 0")),
          "Loading the last, partial block of keys with zeros but not masking its scores: the padding "
          "keys get score 0 and a share of the weight when n is not a multiple of the block."),
    Wrong("flash_attention_forward", "fwd_grid_floor", "launch cdiv(n, BLOCK_M) programs",
          _forward(launcher=[('grid = (triton.cdiv(n, settings["BLOCK_M"]), batch * heads)',
                              'grid = (n // settings["BLOCK_M"], batch * heads)'),
                             ("o = torch.empty_like(q)", "o = torch.zeros_like(q)")]),
          "A grid of n // BLOCK_M programs: the last, partial block of queries is never computed."),
    Wrong("flash_attention_forward", "fwd_head_offset", "program_id(1) * n * d",
          # zeros_like: the slip leaves rows of o unwritten, and empty_like's leftovers would
          # make the verdict's numbers differ from one process to the next.
          _forward(("base = tl.program_id(1).to(tl.int64) * n * D", "base = tl.program_id(1).to(tl.int64) * n"),
                   launcher=[("o = torch.empty_like(q)", "o = torch.zeros_like(q)")]),
          "Starting each (batch, head) at program_id(1) * n instead of program_id(1) * n * d."),
    Wrong("flash_attention_forward", "fwd_dot_no_trans", "tl.dot(q, tl.trans(k))",
          _forward(("s = tl.dot(q, tl.trans(k), input_precision=PRECISION)",
                    "s = tl.dot(q, k, input_precision=PRECISION)")),
          "Scores as tl.dot(q, k) instead of tl.dot(q, tl.trans(k)): with square blocks and d equal "
          "to the block size the shapes agree and the numbers are silently wrong."),
    Wrong("flash_attention_forward", "fwd_max_without_none", "[:, None]",
          _forward(("p = tl.exp(s - m_new[:, None])", "p = tl.exp(s - m_new)")),
          "exp(s - m_new) without [:, None]: the row maxima are subtracted along the columns, which "
          "the shapes allow only when BLOCK_M == BLOCK_N."),
    Wrong("flash_attention_forward", "fwd_mask_without_none", "[:, None]",
          _forward(("q = tl.load(Q + base + rows[:, None] * D + dims[None, :], mask=rows[:, None] < n,",
                    "q = tl.load(Q + base + rows[:, None] * D + dims[None, :], mask=rows < n,")),
          "Loading the queries with mask=rows < n, without [:, None]: the mask then runs along the "
          "head dimension, which the shapes allow only when BLOCK_M == d."),
    # ---------------------------------------------------------------- backward
    Wrong("flash_attention_backward", "bwd_do_not_contiguous", "non-contiguous do",
          _backward(launcher=[("do = do.contiguous().to(q.dtype)", "do = do.to(q.dtype)")]),
          "Passing do to the kernels as autograd hands it over: loss.sum().backward() gives an "
          "expanded do with stride 0, which row-major offsets read past its one element (NaN or garbage)."),
    Wrong("flash_attention_backward", "bwd_ignores_causal", "ignores the causal mask",
          _backward(("        if CAUSAL:\n            " + _CAUSAL + "\n", "")),
          "A backward pass that forgets the causal mask: masked weights come back as exp(s - lse) > 0."),
    Wrong("flash_attention_backward", "bwd_causal_off_by_one", "(keep the diagonal)",
          _backward((_CAUSAL, "keep = keep & (cols[None, :] < rows[:, None])")),
          "The causal diagonal off by one in the backward pass."),
    Wrong("flash_attention_backward", "bwd_no_delta", "rowsum(o * do)",
          _backward(("ds = p * (dp - delta[:, None])", "ds = p * dp")),
          "ds = p * dp, forgetting the softmax's -delta term (delta = rowsum(o * do))."),
    Wrong("flash_attention_backward", "bwd_dk_unscaled", "dK = scale * ds^T q",
          _backward_one("_flash_bwd_dkdv_kernel", ("(dk * scale)", "dk")),
          "Storing dK without the 1/sqrt(d) factor that the scores carried."),
    Wrong("flash_attention_backward", "bwd_dq_unscaled", "dQ = scale * ds k",
          _backward_one("_flash_bwd_dq_kernel", ("(dq * scale)", "dq")),
          "Storing dQ without the 1/sqrt(d) factor."),
    Wrong("flash_attention_backward", "bwd_dv_not_transposed", "dV = p^T do",
          _backward_one("_flash_bwd_dkdv_kernel", ("tl.dot(tl.trans(p.to(do.dtype)), do",
                                                   "tl.dot(p.to(do.dtype), do")),
          "dV = p do instead of p^T do (the shapes agree only when the blocks are square; "
          "BLOCK_M != BLOCK_N makes tl.dot refuse it)."),
    Wrong("flash_attention_backward", "bwd_dv_overwritten", "accumulate dk, dv",
          _backward_one("_flash_bwd_dkdv_kernel", ("dv += ", "dv = ")),
          "dv = ... instead of dv += ...: only the last block of queries contributes to dV."),
    # The right numbers without the method: graded on the source (autograder/method.py).
    Wrong("flash_attention_forward", "fwd_in_pytorch", "does not launch the Triton kernel",
          _forward(launcher=[(
              "    _flash_fwd_kernel[grid](q, k, v, o, lse, n, 1.0 / math.sqrt(d), CAUSAL=causal, D=d, **settings)\n",
              "    s = (q.double() @ k.double().transpose(-1, -2)) / math.sqrt(d)\n"
              "    if causal:\n"
              "        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float('-inf'))\n"
              "    lse.copy_(torch.logsumexp(s, dim=-1))\n"
              "    o.copy_(torch.softmax(s, dim=-1) @ v.double())\n")]),
          "Attention written in plain PyTorch inside the launcher: right numbers, no kernel."),
]

# Differently written correct versions: exp2 with the scale folded in, and causal loops
# that stop at (or start from) the diagonal block.
CORRECT = [
    _forward(("s = tl.dot(q, tl.trans(k), input_precision=PRECISION).to(ACC) * scale",
              "s = tl.dot(q, tl.trans(k), input_precision=PRECISION).to(ACC) * (scale * 1.4426950408889634)"),
             ("alpha = tl.exp(m - m_new)", "alpha = tl.exp2(m - m_new)"),
             ("p = tl.exp(s - m_new[:, None])", "p = tl.exp2(s - m_new[:, None])"),
             ("m + tl.log(l), mask=rows < n", "(m + tl.log2(l)) * 0.6931471805599453, mask=rows < n")),
    _forward(("for start in range(0, n, BLOCK_N):",
              "stop = tl.minimum(n, (block_m + 1) * BLOCK_M) if CAUSAL else n\n"
              "    for start in range(0, stop, BLOCK_N):")),
    _backward_one("_flash_bwd_dkdv_kernel",
                  ("for start in range(0, n, BLOCK_M):",
                   "first = (block_n * BLOCK_N // BLOCK_M) * BLOCK_M if CAUSAL else 0\n"
                   "    for start in range(first, n, BLOCK_M):")),
]

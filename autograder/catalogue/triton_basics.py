"""Wrong and alternative implementations for chapter 12 (12-triton-basics).

Every source is self-contained (imports, the interpreter switch, the provided
check_kernel_inputs, a kernel and its launcher), so it runs alone in a test process,
in the sandbox, or pasted into a sample submission. None of the wrong kernels writes
outside its output tensor: an unmasked store past the end corrupts memory and can kill
the process (see the chapter), which a catalogue test must never do.
"""
import ast

from .. import reference
from . import Wrong


def _provided_helper() -> str:
    """The source of check_kernel_inputs, read from the reference file (not imported: no torch here)."""
    path = reference.solutions_dir() / "reference" / "triton_basics.py"
    text = path.read_text()
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == "check_kernel_inputs":
            return ast.get_source_segment(text, node)
    raise LookupError("check_kernel_inputs is missing from the reference")


_PRELUDE = '''
import os

import numpy as np
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import triton
import triton.language as tl


''' + _provided_helper() + "\n"

# ---------------------------------------------------------------- vector_add

_ADD_KERNEL = '''
@triton.jit
def _vector_add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offsets = {offsets}
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, x + y, mask=mask)
'''


def _add(offsets="pid * BLOCK + tl.arange(0, BLOCK)", checks="    check_kernel_inputs(x, y, ndim=1)\n",
         shape_check=True, alloc="torch.empty_like(x)", grid="(triton.cdiv(n, BLOCK),)", block=1024):
    return _PRELUDE + _ADD_KERNEL.format(offsets=offsets) + f'''

def vector_add(x, y):
{checks}''' + ('''    if x.shape != y.shape:
        raise ValueError("x and y must have the same shape")
''' if shape_check else "") + f'''    out = {alloc}
    n = x.numel()
    BLOCK = {block}
    _vector_add_kernel[{grid}](x, y, out, n, BLOCK=BLOCK)
    return out
'''


# ---------------------------------------------------------------- row_softmax

def _softmax(load='tl.load(x_ptr + row * x_row_stride + cols, mask=mask, other=-float("inf"))',
             shift="x - tl.max(x, axis=0)", block="triton.next_power_of_2(n_cols)",
             checks="    check_kernel_inputs(x, ndim=2)\n"):
    return _PRELUDE + f'''
@triton.jit
def _row_softmax_kernel(out_ptr, x_ptr, x_row_stride, out_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = {load}
    x = x.to(tl.float32)
    z = {shift}
    e = tl.exp(z)
    tl.store(out_ptr + row * out_row_stride + cols, e / tl.sum(e, axis=0), mask=mask)


def row_softmax(x):
{checks}    n_rows, n_cols = x.shape
    out = torch.empty((n_rows, n_cols), dtype=x.dtype, device=x.device)
    BLOCK = {block}
    _row_softmax_kernel[(n_rows,)](out, x, x.stride(0), out.stride(0), n_cols, BLOCK=BLOCK)
    return out
'''


# ---------------------------------------------------------------- block_matmul

_MM_LOOP = '''    for k0 in range(0, K, BLOCK_K):
        k = k0 + ks
        a = tl.load(a_ptr + rows[:, None] * stride_am + k[None, :] * stride_ak,
                    mask=(rows[:, None] < M) & ({kmask}[None, :] < K), other=0.0)
        b = tl.load(b_ptr + k[:, None] * stride_bk + cols[None, :] * stride_bn,
                    mask=({kmask}[:, None] < K) & (cols[None, :] < N), other=0.0)
        {accumulate}
'''

_MM_ONE_BLOCK = '''    a = tl.load(a_ptr + rows[:, None] * stride_am + ks[None, :] * stride_ak,
                mask=(rows[:, None] < M) & (ks[None, :] < K), other=0.0)
    b = tl.load(b_ptr + ks[:, None] * stride_bk + cols[None, :] * stride_bn,
                mask=(ks[:, None] < K) & (cols[None, :] < N), other=0.0)
    acc += tl.dot(a, b, input_precision="ieee")
'''


def _mm(loop=None, kmask="k", accumulate='acc += tl.dot(a, b, input_precision="ieee")',
        checks="    check_kernel_inputs(a, b, ndim=2, rows_contiguous=False)\n", inner_check=True,
        alloc="torch.empty((M, N), dtype=a.dtype, device=a.device)",
        grid="(triton.cdiv(M, BLOCK_M), triton.cdiv(N, BLOCK_N))",
        strides="a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0), c.stride(1)"):
    body = loop if loop is not None else _MM_LOOP.format(kmask=kmask, accumulate=accumulate)
    return _PRELUDE + '''
@triton.jit
def _block_matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K,
                         stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
''' + body + f'''    tl.store(c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn,
             acc.to(c_ptr.dtype.element_ty), mask=(rows[:, None] < M) & (cols[None, :] < N))


def block_matmul(a, b):
{checks}    M, K = a.shape
    N = b.shape[1]
''' + ('''    if b.shape[0] != K:
        raise ValueError("inner sizes differ")
''' if inner_check else "") + f'''    c = {alloc}
    BLOCK_M, BLOCK_N, BLOCK_K = 32, 32, 16
    grid = {grid}
    _block_matmul_kernel[grid](a, b, c, M, N, K, {strides},
                               BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K)
    return c
'''


WRONG = [
    # ---------------------------------------------------------------- vector_add
    Wrong("vector_add", "floor_division_grid", "grid = (triton.cdiv(n, BLOCK),)", _add(grid="(n // BLOCK,)"),
          "A grid of `n // BLOCK` programs: the ragged last block never runs, and for n < BLOCK no "
          "program runs at all."),
    Wrong("vector_add", "no_program_offset", "offsets = pid * BLOCK + tl.arange(0, BLOCK)",
          _add(offsets="tl.arange(0, BLOCK)", block=256),
          "Offsets without `pid * BLOCK`: every program adds block 0 again, and the rest of the output "
          "is never written."),
    Wrong("vector_add", "add_float32_output", "return the input's dtype", _add(alloc="torch.empty(x.shape, device=x.device)"),
          "`torch.empty(x.shape)` for the output: the default dtype is float32, so float16 inputs come "
          "back as float32."),
    Wrong("vector_add", "no_shape_check", "raise ValueError when x.shape != y.shape", _add(shape_check=False),
          "No shape check: x of length 5 plus y of length 6 silently returns 5 numbers (and with x the "
          "longer one, the kernel reads past the end of y)."),
    Wrong("vector_add", "add_no_input_checks", "call check_kernel_inputs(...) first", _add(checks=""),
          "Skipping `check_kernel_inputs`: integer and 2-D tensors are added without complaint, and "
          "bfloat16 under the interpreter returns garbage."),
    # ---------------------------------------------------------------- row_softmax
    Wrong("row_softmax", "no_max_subtraction", "subtract the row maximum before tl.exp", _softmax(shift="x"),
          "No maximum subtracted: `tl.exp(1000.0)` is inf in float32, and inf / inf is NaN."),
    Wrong("row_softmax", "masked_lanes_zero", "fill the masked lanes with -inf",
          _softmax(load="tl.load(x_ptr + row * x_row_stride + cols, mask=mask, other=0.0)"),
          "Masked lanes loaded as 0 (`other=0.0`, the default is no better): each adds exp(0 - max) to "
          "the sum, and for a row of negative numbers 0 even becomes the maximum."),
    Wrong("row_softmax", "unmasked_load", "load the row with a mask",
          _softmax(load="tl.load(x_ptr + row * x_row_stride + cols)"),
          "A mask on the store but not on the load: the lanes past n_cols read the next row (or memory "
          "past the end) into the maximum and the sum."),
    Wrong("row_softmax", "fixed_block", "BLOCK = triton.next_power_of_2(n_cols)", _softmax(block="64"),
          "A fixed `BLOCK = 64`: rows longer than the block are cut, and the columns past it are never "
          "written."),
    Wrong("row_softmax", "block_not_power_of_2", "triton.next_power_of_2(n_cols)", _softmax(block="n_cols"),
          "`BLOCK = n_cols`: `tl.arange` needs a power-of-2 length, so any other width fails to compile."),
    Wrong("row_softmax", "softmax_no_input_checks", "call check_kernel_inputs(x, ndim=2) first", _softmax(checks=""),
          "No input check: a transposed tensor (whose row elements are not neighbours) is read as if it "
          "were row-major and the result is silently wrong."),
    # ---------------------------------------------------------------- block_matmul
    Wrong("block_matmul", "overwritten_accumulator", "acc += tl.dot(a_tile, b_tile)",
          _mm(accumulate='acc = tl.dot(a, b, input_precision="ieee")'),
          "`acc = tl.dot(...)` inside the K loop: each block overwrites the last, and c is the product of "
          "the last block of K only."),
    Wrong("block_matmul", "one_k_block", "accumulate over every K block", _mm(loop=_MM_ONE_BLOCK),
          "No loop over K: one `tl.dot` of the first BLOCK_K columns of a and rows of b, right only when "
          "K <= BLOCK_K."),
    Wrong("block_matmul", "k_mask_not_advanced", "recomputed in every step of the loop", _mm(kmask="ks"),
          "The K mask built from `tl.arange(0, BLOCK_K)` alone: it never masks anything when K >= BLOCK_K, "
          "and the ragged last block of K reads past the rows of a and the end of b."),
    Wrong("block_matmul", "floor_division_grid_2d", "triton.cdiv(M, BLOCK_M)", _mm(grid="(M // BLOCK_M, N // BLOCK_N)"),
          "A grid of `(M // BLOCK_M, N // BLOCK_N)`: the partial tiles at the bottom and right edges of c "
          "are never computed."),
    Wrong("block_matmul", "row_major_strides", "through their strides", _mm(strides="K, 1, N, 1, N, 1"),
          "Strides written as `K, 1, N, 1`: right for contiguous inputs, wrong for a transposed view."),
    Wrong("block_matmul", "matmul_float32_output", "return the input's dtype",
          _mm(alloc="torch.empty((M, N), device=a.device)"),
          "`c = torch.empty((M, N))` with the default float32: float16 inputs come back as float32."),
    Wrong("block_matmul", "no_inner_check", "raise ValueError when a.shape[1] != b.shape[0]", _mm(inner_check=False),
          "No check of the inner sizes: a (4, 5) @ b (6, 3) silently uses the first 5 rows of b."),
    # The right numbers without the method: graded on the source (autograder/method.py).
    Wrong("vector_add", "add_in_pytorch", "does not launch the Triton kernel",
          _add().replace("    _vector_add_kernel[(triton.cdiv(n, BLOCK),)](x, y, out, n, BLOCK=BLOCK)\n    return out",
                         "    return x + y"),
          "`return x + y` in the launcher: right numbers, but the kernel never runs."),
    Wrong("vector_add", "kernel_without_jit", "not a Triton kernel",
          _add().replace("@triton.jit\n", ""),
          "The kernel written without `@triton.jit`: it is then an ordinary Python function."),
    Wrong("row_softmax", "softmax_in_pytorch", "`_row_softmax_kernel` is not defined in its answer cell",
          _PRELUDE + "\ndef row_softmax(x):\n    check_kernel_inputs(x, ndim=2)\n"
          "    return torch.softmax(x.float(), dim=-1).to(x.dtype)\n",
          "`torch.softmax` in the launcher, and no kernel at all."),
]

CORRECT = [
    # Pointer arithmetic on a per-program base, a smaller block and tl.where instead of masked loads' `other`.
    _PRELUDE + '''
@triton.jit
def _vector_add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    start = tl.program_id(axis=0) * BLOCK
    idx = tl.arange(0, BLOCK)
    inside = start + idx < n
    a = tl.load(x_ptr + start + idx, mask=inside, other=0.0)
    b = tl.load(y_ptr + start + idx, mask=inside, other=0.0)
    tl.store(out_ptr + start + idx, tl.where(inside, a + b, 0.0), mask=inside)


def vector_add(x, y):
    check_kernel_inputs(x, y, ndim=1)
    if tuple(x.shape) != tuple(y.shape):
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    grid = lambda meta: (triton.cdiv(x.numel(), meta["BLOCK"]),)
    _vector_add_kernel[grid](x, y, out, x.numel(), BLOCK=128)
    return out
''',
    # exp2 with a log2(e) factor, masking with tl.where after the load, a hand-rolled power of 2.
    _PRELUDE + '''
@triton.jit
def _row_softmax_kernel(out_ptr, x_ptr, x_row_stride, out_row_stride, n_cols, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    ok = offs < n_cols
    v = tl.load(x_ptr + r * x_row_stride + offs, mask=ok, other=0.0).to(tl.float32)
    v = tl.where(ok, v, float("-inf"))
    p = tl.exp2((v - tl.max(v, axis=0)) * 1.4426950408889634)
    p = p / tl.sum(p, axis=0)
    tl.store(out_ptr + r * out_row_stride + offs, p, mask=ok)


def row_softmax(x):
    check_kernel_inputs(x, ndim=2)
    rows, n = x.shape
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    block = 1 << (n - 1).bit_length() if n > 1 else 1
    _row_softmax_kernel[(rows,)](out, x, x.stride(0), out.stride(0), n, BLOCK=block)
    return out
''',
    # Pointers advanced by BLOCK_K each step, the K mask as k < K - k0, tl.dot with an accumulator
    # argument, other block sizes and a grid computed from the launch's meta-parameters.
    _PRELUDE + '''
@triton.jit
def _block_matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K,
                         stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    om = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    on = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    ok = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + om[:, None] * stride_am + ok[None, :] * stride_ak
    b_ptrs = b_ptr + ok[:, None] * stride_bk + on[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, tl.cdiv(K, BLOCK_K)):
        left = K - k0 * BLOCK_K
        a = tl.load(a_ptrs, mask=(om[:, None] < M) & (ok[None, :] < left), other=0.0)
        b = tl.load(b_ptrs, mask=(ok[:, None] < left) & (on[None, :] < N), other=0.0)
        acc = tl.dot(a, b, acc, input_precision="ieee")
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    c_ptrs = c_ptr + om[:, None] * stride_cm + on[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(om[:, None] < M) & (on[None, :] < N))


def block_matmul(a, b):
    check_kernel_inputs(a, b, ndim=2, rows_contiguous=False)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"cannot multiply {tuple(a.shape)} by {tuple(b.shape)}")
    M, K = a.shape
    N = b.shape[1]
    c = a.new_empty((M, N))
    grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]), triton.cdiv(N, meta["BLOCK_N"]))
    _block_matmul_kernel[grid](a, b, c, M, N, K, *a.stride(), *b.stride(), *c.stride(),
                               BLOCK_M=16, BLOCK_N=64, BLOCK_K=32)
    return c
''',
]

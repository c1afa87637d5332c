"""Chapter 12 reference: GPU programming with Triton (a vector sum, a fused softmax, a tiled matmul).

The launchers take torch tensors: on a CUDA GPU, or on the CPU when Triton's interpreter is
on (TRITON_INTERPRET=1, set before `import triton`), where the same kernels run in NumPy.
"""
import os

import torch

if not torch.cuda.is_available():  # no GPU: run the kernels in Triton's interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402


def check_kernel_inputs(*tensors, ndim, rows_contiguous=True):
    """Raise a ValueError saying what is wrong unless the tensors suit this chapter's kernels (given).

    Every tensor must be a torch.Tensor with `ndim` dimensions, of one floating dtype
    (float16 or float32; bfloat16 only on a GPU: Triton's interpreter computes it wrongly,
    since NumPy has no bfloat16) and on one device: a CUDA GPU, or the CPU when the
    interpreter is on (TRITON_INTERPRET=1). With rows_contiguous=True the last axis must
    have stride 1 (the kernel walks along a row with tl.arange); the other strides are free,
    and the launcher passes them to the kernel.
    """
    interpreting = os.environ.get("TRITON_INTERPRET") == "1"
    first = tensors[0]
    for i, t in enumerate(tensors):
        name = f"input {i}" if len(tensors) > 1 else "the input"
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, not {type(t).__name__}")
        if t.dim() != ndim:
            raise ValueError(f"{name} must have {ndim} dimension(s); it has shape {tuple(t.shape)}")
        if t.dtype == torch.bfloat16 and interpreting:
            raise ValueError("Triton's interpreter cannot compute in bfloat16 (NumPy has none): use "
                             "float16 or float32 on the CPU, or run on a GPU for bfloat16")
        if t.dtype not in (torch.float16, torch.float32, torch.bfloat16):
            raise ValueError(f"{name} has dtype {t.dtype}; these kernels take float16 or float32 "
                             "(and bfloat16 on a GPU)")
        if t.dtype != first.dtype or t.device != first.device:
            raise ValueError(f"all inputs must share one dtype and device; got {first.dtype} on "
                             f"{first.device} and {t.dtype} on {t.device}")
        if t.device.type == "cpu" and not interpreting:
            raise ValueError("CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before "
                             "`import triton`, or move the tensors to a CUDA GPU")
        if t.device.type not in ("cpu", "cuda"):
            raise ValueError(f"tensors on {t.device.type} are not supported: use CUDA (or the CPU interpreter)")
        if rows_contiguous and t.numel() > 0 and t.shape[-1] > 1 and t.stride(-1) != 1:
            raise ValueError(f"{name} has stride {t.stride(-1)} along its last axis (a transposed view?); "
                             "the kernel needs stride 1 there: pass x.contiguous()")


# ------------------------------------------------------------------ 1. vector_add

@triton.jit
def _vector_add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    """Program `pid` adds elements pid * BLOCK ... pid * BLOCK + BLOCK - 1 of x and y.

    x_ptr, y_ptr, out_ptr point to the first element of three 1-D tensors of n
    elements. Compute this program's offsets from tl.program_id(0) and
    tl.arange(0, BLOCK), mask the offsets that are >= n (the last block is ragged
    when n is not a multiple of BLOCK), then load, add and store with that mask.
    """
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK + tl.arange(0, BLOCK)
    in_range = offsets < n
    x = tl.load(x_ptr + offsets, mask=in_range)
    y = tl.load(y_ptr + offsets, mask=in_range)
    tl.store(out_ptr + offsets, x + y, mask=in_range)


def vector_add(x, y):
    """x + y for two 1-D tensors of any length, computed by `_vector_add_kernel`.

    Validate the inputs with check_kernel_inputs (ndim=1), and raise a ValueError if
    x and y differ in shape. Allocate a new output tensor like x (same dtype and
    device), launch one program per block of BLOCK = 1024 elements (enough programs
    to cover all n elements: the last block may be partly empty), and return the output.
    """
    check_kernel_inputs(x, y, ndim=1)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape; got {tuple(x.shape)} and {tuple(y.shape)}")
    out = torch.empty_like(x)
    n = out.numel()
    BLOCK = 1024
    _vector_add_kernel[(triton.cdiv(n, BLOCK),)](x, y, out, n, BLOCK=BLOCK)
    return out


# ------------------------------------------------------------------ 2. row_softmax

@triton.jit
def _row_softmax_kernel(out_ptr, x_ptr, x_row_stride, out_row_stride, n_cols, BLOCK: tl.constexpr):
    """Program `row` writes the softmax of row `row` of x into row `row` of out.

    Row r of x starts at x_ptr + r * x_row_stride and its n_cols elements are
    consecutive (stride 1); the same holds for out with out_row_stride. BLOCK is a
    power of 2 >= n_cols, so one block holds the whole row: load it with a mask,
    filling the lanes past n_cols with -inf (they must add nothing to the sum),
    compute in float32, subtract the row maximum before tl.exp, divide by the sum
    and store the n_cols valid lanes.
    """
    row = tl.program_id(axis=0)
    cols = tl.arange(0, BLOCK)
    valid = cols < n_cols
    x = tl.load(x_ptr + row * x_row_stride + cols, mask=valid, other=-float("inf"))
    x = x.to(tl.float32)
    shifted = x - tl.max(x, axis=0)
    numerator = tl.exp(shifted)
    denominator = tl.sum(numerator, axis=0)
    tl.store(out_ptr + row * out_row_stride + cols, numerator / denominator, mask=valid)


def row_softmax(x):
    """The softmax over the last axis of a 2-D tensor, one program per row (fused: one read, one write).

    Validate x with check_kernel_inputs (ndim=2): its rows may be strided, as in
    x[:, :k] of a wider tensor, but each row must be contiguous. Allocate a new
    output of the same shape, dtype and device, and launch `_row_softmax_kernel` with
    one program per row, passing both row strides explicitly and
    BLOCK = triton.next_power_of_2(n_cols). Return the output.
    """
    check_kernel_inputs(x, ndim=2)
    n_rows, n_cols = x.shape
    out = torch.empty((n_rows, n_cols), dtype=x.dtype, device=x.device)
    block = triton.next_power_of_2(n_cols)
    _row_softmax_kernel[(n_rows,)](out, x, x.stride(0), out.stride(0), n_cols, BLOCK=block)
    return out


# ------------------------------------------------------------------ 3. block_matmul

@triton.jit
def _block_matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K,
                         stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Program (pid_m, pid_n) computes the BLOCK_M x BLOCK_N tile of c = a @ b at rows
    pid_m * BLOCK_M ... and columns pid_n * BLOCK_N ...

    a is (M, K), b is (K, N), c is (M, N); element (i, j) of a is at
    a_ptr + i * stride_am + j * stride_ak (likewise for b and c). Start a float32
    accumulator of zeros; for k0 = 0, BLOCK_K, 2 * BLOCK_K, ... < K load the
    (BLOCK_M, BLOCK_K) tile of a and the (BLOCK_K, BLOCK_N) tile of b, masked (with
    0) where a row, a column or k0 + the offset along K is out of range, and add
    tl.dot(a_tile, b_tile, input_precision="ieee") ("ieee": full float32 products,
    not TF32) to the accumulator. Store the accumulator, converted to c's dtype,
    with a mask for the ragged edges of c.
    """
    pid_m = tl.program_id(axis=0)
    pid_n = tl.program_id(axis=1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + ks
        a_tile = tl.load(a_ptr + rows[:, None] * stride_am + k[None, :] * stride_ak,
                         mask=(rows[:, None] < M) & (k[None, :] < K), other=0.0)
        b_tile = tl.load(b_ptr + k[:, None] * stride_bk + cols[None, :] * stride_bn,
                         mask=(k[:, None] < K) & (cols[None, :] < N), other=0.0)
        acc += tl.dot(a_tile, b_tile, input_precision="ieee")
    c_tile = acc.to(c_ptr.dtype.element_ty)
    tl.store(c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn, c_tile,
             mask=(rows[:, None] < M) & (cols[None, :] < N))


def block_matmul(a, b):
    """a @ b for 2-D tensors a (M, K) and b (K, N), tile by tile with `_block_matmul_kernel`.

    Validate the inputs with check_kernel_inputs (ndim=2, and rows_contiguous=False:
    the kernel follows the strides, so transposed views work), and raise a
    ValueError if the inner sizes differ. Allocate c (M, N) with the inputs' dtype
    and device, and launch a 2-D grid of (cdiv(M, BLOCK_M), cdiv(N, BLOCK_N))
    programs with BLOCK_M = BLOCK_N = 32 and BLOCK_K = 16, passing all six strides.
    Return c.
    """
    check_kernel_inputs(a, b, ndim=2, rows_contiguous=False)
    (M, K), (K2, N) = a.shape, b.shape
    if K != K2:
        raise ValueError(f"inner sizes differ: a is {tuple(a.shape)}, b is {tuple(b.shape)}")
    c = torch.empty((M, N), dtype=a.dtype, device=a.device)
    BLOCK_M, BLOCK_N, BLOCK_K = 32, 32, 16
    grid = (triton.cdiv(M, BLOCK_M), triton.cdiv(N, BLOCK_N))
    _block_matmul_kernel[grid](a, b, c, M, N, K,
                               a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0), c.stride(1),
                               BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K)
    return c

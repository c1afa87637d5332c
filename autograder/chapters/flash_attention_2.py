"""Chapter 14 (14-flash-attention-2): FlashAttention's forward and backward kernels in Triton.

Expected values come from attention written out in float64 PyTorch, never from the
reference kernels. The student's kernels run through Triton's interpreter on CPU
tensors (or on a GPU, when the student's own kernel has one).
"""
import functools
import math

import numpy as np

from ..framework import (Chapter, CheckFailure, assert_dtype, assert_raises, assert_rel_close,
                         assert_shape, dtype_name, relative_error, rng_for, REL_TOL,
                         StudentError, tensor_device, torch)

chapter = Chapter("14-flash-attention-2", reference="flash_attention_2",
                  functions=["flash_attention_forward", "flash_attention_backward"],
                  provided=["check_attention_inputs", "kernel_settings", "naive_attention",
                            "FlashAttention", "flash_attention"],
                  helpers=["_flash_fwd_kernel", "_flash_bwd_dkdv_kernel", "_flash_bwd_dq_kernel"],
                  imports=("numpy", "torch", "triton"),
                  kernels={"flash_attention_forward": ["_flash_fwd_kernel"],
                           "flash_attention_backward": ["_flash_bwd_dkdv_kernel", "_flash_bwd_dq_kernel"]},
                  sample_scores=(12, 6, 0, 0, 6),
                  sample_mistakes={"flash_attention_backward": "bwd_no_delta"})
test = chapter.test

# ------------------------------------------------------------------ inputs and the plain formulas

def _inputs(rng, shape, dtype=None, scale=1.0, count=3):
    dtype = torch.float32 if dtype is None else dtype
    return [torch.from_numpy(scale * rng.standard_normal(shape)).to(dtype).to(tensor_device())
            for _ in range(count)]


def _scores(q, k, causal, scale=True, diag=0, fill=float("-inf")):
    q, k = q.double().cpu(), k.double().cpu()
    s = q @ k.transpose(-1, -2)
    if scale:
        s = s / math.sqrt(q.shape[-1])
    if causal:
        n = s.shape[-1]
        s = s.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(diag), fill)
    return s


def _attention(q, k, v, causal, **variant):
    """(o, lse) in float64 as NumPy arrays; `variant` reproduces a classic slip."""
    s = _scores(q, k, causal, **variant)
    return ((torch.softmax(s, -1) @ v.double().cpu()).numpy(), torch.logsumexp(s, -1).numpy())


def _gradients(q, k, v, do, causal, **variant):
    """(dq, dk, dv) of attention by autograd in float64, as NumPy arrays."""
    q, k, v = (t.detach().double().cpu().requires_grad_() for t in (q, k, v))
    s = _scores(q, k, causal, **variant)
    o = torch.softmax(s, -1) @ v
    o.backward(do.double().cpu())
    return q.grad.numpy(), k.grad.numpy(), v.grad.numpy()


def _close(actual, expected, precision, nan_equal=False) -> bool:
    """Within dtype's relative-norm tolerance. With nan_equal, NaN where `expected` (a
    reproduced slip) has NaN also matches: a causal mask that hides query 0 from every key
    gives a NaN row, in the slip and in the student's kernel alike."""
    if not isinstance(actual, np.ndarray) or actual.shape != expected.shape:
        return False
    bad = ~np.isfinite(actual)
    if nan_equal:
        if not np.array_equal(bad, ~np.isfinite(expected)):
            return False
        actual, expected = np.where(bad, 0, actual), np.where(bad, 0, expected)
    elif bad.any():
        return False
    return relative_error(actual, expected) <= REL_TOL[precision]


def _results(result, what, count, names):
    if not isinstance(result, (tuple, list)) or len(result) != count:
        got = f"a tuple of {len(result)} items" if isinstance(result, (tuple, list)) else \
            f"a {type(result).__name__}"
        raise CheckFailure(f"{what} returned {got}, expected ({', '.join(names)})",
                           f"return the {count} tensors as a tuple: return {', '.join(names)}")
    out = []
    for name, value in zip(names, result):
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise CheckFailure(f"{what}: {name} is {type(value).__name__}, not a floating tensor",
                               f"return torch tensors: {', '.join(names)}")
        out.append(value)
    return out


def _describe(shape, dtype, causal):
    return f"(q, k, v of shape {tuple(shape)}, {dtype_name(dtype)}, causal={causal})"


# ------------------------------------------------------------------ hints

SCALE_HINT = "scale the scores by 1/sqrt(d) before the softmax: s = q k^T * scale, scale = 1/sqrt(d)"
OFF_BY_ONE_HINT = ("query i sees keys j <= i: keep the diagonal (cols <= rows), mask only cols > rows")
MASK_ZERO_HINT = ("mask with -inf, not 0: a score of 0 still gets weight exp(0 - m); only -inf gives "
                  "a weight of exactly 0")
CAUSAL_HINT = "with causal=True, set the scores of keys j > i to -inf (tl.where(cols <= rows, s, -inf))"
RESCALE_HINT = ("right for one block of keys, wrong for several: when the running max grows, rescale "
                "both l and acc by alpha = exp(m_old - m_new) before adding the new block")
RAGGED_HINT = ("right when n is a multiple of the block size, wrong otherwise: mask keys past n in the "
               "scores (cols < n, with -inf), load with mask= and other=0, store rows < n only, and "
               "launch cdiv(n, BLOCK_M) programs so the last partial block runs")
BATCH_HINT = ("right for one (batch, head), wrong for several: program_id(1) picks the (batch, head), "
              "whose data starts at program_id(1) * n * d (and its lse at program_id(1) * n)")
LSE_HINT = ("store the log-sum-exp of every query's scaled scores, m + log(l), in lse: the backward "
            "pass rebuilds the weights from it")
DTYPE_HINT = "return o in q's dtype (cast the accumulator with .to(O.dtype.element_ty) when storing)"
VALUE_ERROR_HINT = ("call check_attention_inputs(q, k, v) first: unsupported inputs must raise a "
                    "ValueError that says what is wrong, not crash or compute garbage")
STABLE_HINT = "keep the running max m: exp(s - m) never overflows, exp(s) does for large scores"

BWD_CAUSAL_HINT = ("the backward ignores the causal mask: set p to 0 where cols > rows, exactly as "
                   "the forward masked those scores")
BWD_OFF_BY_ONE_HINT = "in the backward too, query i sees keys j <= i (keep the diagonal)"
DELTA_HINT = ("ds = p * (dp - delta) with delta = rowsum(o * do): the softmax's gradient subtracts "
              "each row's delta")
DK_SCALE_HINT = "dK = scale * ds^T q: the scores were q k^T * scale, so the scale comes back in dK"
DQ_SCALE_HINT = "dQ = scale * ds k: the scores were q k^T * scale, so the scale comes back in dQ"
DV_HINT = "dV = p^T do, with p = exp(s - lse) the attention weights rebuilt from the saved lse"
BWD_RESCALE_HINT = ("right for one block, wrong for several: accumulate dk, dv (over query blocks) and "
                    "dq (over key blocks) across every block, with p = exp(s - lse) from the saved lse")
FWD_DOT_HINT = ("the blocks' shapes do not fit tl.dot: queries are (BLOCK_M, d) and keys (BLOCK_N, d), "
                "so the scores are tl.dot(q, tl.trans(k)), (BLOCK_M, BLOCK_N), and the output adds "
                "tl.dot(p, v), (BLOCK_M, d); BLOCK_M and BLOCK_N differ, so no other order fits")
BWD_DOT_HINT = ("the blocks' shapes do not fit tl.dot (BLOCK_M queries, BLOCK_N keys, d columns; "
                "BLOCK_M != BLOCK_N): s = tl.dot(q, tl.trans(k)), dp = tl.dot(do, tl.trans(v)), "
                "dV = p^T do = tl.dot(tl.trans(p), do), dK = scale * ds^T q = tl.dot(tl.trans(ds), q) "
                "* scale, dQ = scale * ds k = tl.dot(ds, k) * scale")
NONE_HINT = ("shapes that do not broadcast: a vector with one number per row (rows, m_new, alpha, l, "
             "lse, delta) must be made a column with [:, None] before it meets a (BLOCK_M, BLOCK_N) or "
             "(BLOCK_M, d) block: mask=rows[:, None] < n, s - m_new[:, None], acc * alpha[:, None], "
             "acc / l[:, None]; a vector of columns (cols, dims) gets [None, :]")
DO_CONTIGUOUS_HINT = ("autograd may hand over an expanded or transposed, non-contiguous do (loss = o.sum() "
                      "gives one with stride 0): make it contiguous (do = do.contiguous()) before the "
                      "kernels read it with row-major offsets")
GRADCHECK_HINT = ("torch.autograd.gradcheck compared your gradients with finite differences of the "
                  "exact attention and they disagree: check dq, dk and dv one at a time")


# ------------------------------------------------------------------ forward

RAISED_HINT = "the kernel raised: run it on this input in your notebook and read the message"


def _attempt_kernel(thunk, what, dot_hint):
    """Call the student's launcher; a shape error from Triton gets a hint that names its
    usual cause (a missing tl.trans or [:, None], shown up by BLOCK_M != BLOCK_N != d)."""
    try:
        return thunk()
    except StudentError as err:
        text = err.message.lower()
        if "reduction dimension" in text or "matmul" in text or "tl.dot" in text:
            hint = dot_hint
        elif "shape_compatible" in text or "broadcast" in text or "incompatible dimensions" in text:
            hint = NONE_HINT
        else:
            hint = RAISED_HINT
        raise CheckFailure(f"{what} raised {err.type_name}: {err.message}", hint) from None


def _run_forward(fn, q, k, v, causal, what):
    out = _attempt_kernel(lambda: fn(q, k, v, causal=causal), what, FWD_DOT_HINT)
    return _results(out, what, 2, ("o", "lse"))


def _check_forward(fn, q, k, v, causal, fallback_hint):
    """Run the student's forward on q, k, v and compare (o, lse) with the formula, naming
    the slip when the result matches a known one, else `fallback_hint`."""
    precision = dtype_name(q.dtype)
    what = f"flash_attention_forward{_describe(q.shape, q.dtype, causal)}"
    o, lse = _run_forward(fn, q, k, v, causal, what)
    expected_o, expected_lse = _attention(q, k, v, causal)
    assert_shape(o, expected_o.shape, f"{what}: o", "o has q's shape (batch, heads, n, d)")
    assert_shape(lse, expected_lse.shape, f"{what}: lse", "lse has one number per query: (batch, heads, n)")
    assert_dtype(o, np.dtype(precision), f"{what}: o", DTYPE_HINT)
    if not _close(o, expected_o, precision):
        variants = [(dict(scale=False), SCALE_HINT, "the scores were not scaled")]
        if causal:
            variants += [(dict(diag=-1), OFF_BY_ONE_HINT, "query i does not see key i"),
                         (dict(diag=1), OFF_BY_ONE_HINT, "query i also sees key i + 1"),
                         (dict(fill=0.0), MASK_ZERO_HINT, "masked keys still count"),
                         (dict(causal=False), CAUSAL_HINT, "every query saw every key")]
        for variant, hint, slip in variants:
            args = dict(variant)
            c = args.pop("causal", causal)
            if _close(o, _attention(q, k, v, c, **args)[0], precision, nan_equal=True):
                raise CheckFailure(f"{what}: {slip}", hint)
        assert_rel_close(o, expected_o, f"{what}: o", fallback_hint, precision)
    # float16 inputs still give float32 log-sum-exps, so hold lse to float32's tolerance
    # scaled by the inputs' rounding.
    lse_tol = REL_TOL[precision] if q.dtype != torch.float64 else 1e-12
    if not _close(lse, expected_lse, precision):
        s = _scores(q, k, causal)
        if _close(lse, expected_lse - s.max(-1).values.numpy(), precision):
            raise CheckFailure(f"{what}: lse is log(l) without the running max m", LSE_HINT)
        if np.all(lse == 0) or np.allclose(lse, s.max(-1).values.numpy()):
            raise CheckFailure(f"{what}: lse holds {'zeros' if np.all(lse == 0) else 'only the max m'}",
                               LSE_HINT)
        assert_rel_close(lse, expected_lse, f"{what}: lse", LSE_HINT, precision, tol=lse_tol)


def _check_value_errors(fn, dev, backward=False):
    """Unsupported inputs raise ValueError (shapes, head dim, dtype, layout)."""
    rng = rng_for("flash_value_errors")
    good = _inputs(rng, (1, 1, 16, 16))

    def call(q, k, v):
        if not backward:
            return fn(q, k, v, causal=False)
        o, lse = torch.zeros_like(q), torch.zeros(q.shape[:-1], dtype=torch.float32, device=q.device)
        return fn(q, k, v, o, lse, torch.zeros_like(q), causal=False)

    name = "flash_attention_backward" if backward else "flash_attention_forward"
    q48 = _inputs(rng, (1, 1, 16, 48))
    assert_raises(lambda: call(*q48), "ValueError", f"{name} with head dimension d = 48", VALUE_ERROR_HINT)
    assert_raises(lambda: call(good[0], good[1], _inputs(rng, (1, 1, 20, 16), count=1)[0]), "ValueError",
                  f"{name} with v of shape (1, 1, 20, 16) and q, k of (1, 1, 16, 16)", VALUE_ERROR_HINT)
    ints = [torch.ones(1, 1, 16, 16, dtype=torch.int32, device=dev) for _ in range(3)]
    assert_raises(lambda: call(*ints), "ValueError", f"{name} with int32 tensors", VALUE_ERROR_HINT)
    transposed = good[0].transpose(-1, -2)  # same shape, not contiguous
    assert_raises(lambda: call(transposed, good[1], good[2]), "ValueError",
                  f"{name} with q = x.transpose(-1, -2) (not contiguous)", VALUE_ERROR_HINT)
    if dev == "cpu":
        bf = [t.to(torch.bfloat16) for t in good]
        assert_raises(lambda: call(*bf), "ValueError", f"{name} with bfloat16 tensors in the interpreter",
                      VALUE_ERROR_HINT)


@test("flash_forward_visible", "flash_attention_forward", points=3)
def flash_forward_visible(flash_attention_forward):
    """Bad inputs; one block, causal and not; several blocks; ragged n; batch and heads; float16."""
    fn = flash_attention_forward
    rng = rng_for("flash_forward_visible")
    dev = tensor_device()
    _check_value_errors(fn, dev)
    # n = 32 is one block of keys and two of queries on the CPU (BLOCK_N = 32, BLOCK_M = 16), and
    # d = 64 differs from both: a kernel that mixes up the blocks' shapes fails here, by name.
    one = _inputs(rng, (1, 1, 32, 64))
    for causal in (False, True):
        _check_forward(fn, *one, causal, "one block of keys: compare with softmax(q k^T / sqrt(d)) v")
    several = _inputs(rng, (1, 1, 128, 16))
    for causal in (False, True):
        _check_forward(fn, *several, causal, RESCALE_HINT)
    ragged = _inputs(rng, (1, 1, 37, 16))
    for causal in (False, True):
        _check_forward(fn, *ragged, causal, RAGGED_HINT)
    _check_forward(fn, *_inputs(rng, (2, 3, 21, 32)), True, BATCH_HINT)
    _check_forward(fn, *_inputs(rng, (1, 2, 40, 64), torch.float16), True,
                   "float16 inputs: load them as they are, accumulate in float32 (ACC), store o as float16")


@test("flash_forward_random", "flash_attention_forward", points=2, hidden=True)
def flash_forward_random(flash_attention_forward, ref):
    """Random shapes, head dims 16-128, float16/32/64, causal and not."""
    rng = rng_for("flash_forward_random")
    cases = [((1, 2, 50, 16), torch.float64), ((2, 1, 33, 32), torch.float32),
             ((1, 1, 70, 64), torch.float16), ((1, 1, 24, 128), torch.float32),
             ((3, 2, 17, 16), torch.float16), ((1, 1, 65, 32), torch.float64)]
    for shape, dtype in cases:
        for causal in (False, True):
            _check_forward(flash_attention_forward, *_inputs(rng, shape, dtype), causal,
                           "compare with softmax(q k^T / sqrt(d)) v on this input")


@test("flash_forward_edge", "flash_attention_forward", hidden=True)
def flash_forward_edge(flash_attention_forward, ref):
    """One token; huge scores; all-equal keys; more bad inputs."""
    fn = flash_attention_forward
    rng = rng_for("flash_forward_edge")
    for causal in (False, True):
        _check_forward(fn, *_inputs(rng, (2, 2, 1, 16)), causal, "n = 1: the output is v")
        _check_forward(fn, *_inputs(rng, (1, 1, 45, 32), scale=8.0), causal, STABLE_HINT)
    q, k, v = _inputs(rng, (1, 1, 30, 16))
    k = k[:, :, :1].expand(-1, -1, 30, -1).contiguous()  # equal scores everywhere: a running mean of v
    _check_forward(fn, q, k, v, True, RESCALE_HINT)
    bad = _inputs(rng, (1, 16, 16))
    assert_raises(lambda: fn(*bad, causal=False), "ValueError", "flash_attention_forward with 3-D tensors",
                  VALUE_ERROR_HINT)
    mixed = _inputs(rng, (1, 1, 16, 16))
    mixed[1] = mixed[1].double()
    assert_raises(lambda: fn(*mixed, causal=False), "ValueError",
                  "flash_attention_forward with float32 q and float64 k", VALUE_ERROR_HINT)
    big = _inputs(rng, (1, 1, 8, 256))
    assert_raises(lambda: fn(*big, causal=False), "ValueError", "flash_attention_forward with d = 256",
                  VALUE_ERROR_HINT)


# ------------------------------------------------------------------ backward

def _make_do(shape, dtype, device, layout, seed_rng):
    """do as autograd may hand it over: `layout` "contiguous", "transposed" (random values in a
    transposed view, as after o.transpose(...) in the loss) or "expanded" (ones with stride 0,
    what o.sum().backward() gives)."""
    if layout == "expanded":
        return torch.ones((), dtype=dtype, device=device).expand(shape)
    if layout == "transposed":
        flipped = tuple(shape[:-2]) + (shape[-1], shape[-2])
        return torch.from_numpy(seed_rng.standard_normal(flipped)).to(dtype).to(device).transpose(-1, -2)
    return torch.from_numpy(seed_rng.standard_normal(shape)).to(dtype).to(device)


_DO_LAYOUTS = {"contiguous": "", "transposed": ", do a transposed (non-contiguous) view",
               "expanded": ", do = torch.ones(()).expand(q.shape) as o.sum().backward() gives"}


def _check_backward(fn, q, k, v, causal, fallback_hint, seed_rng, do_layout="contiguous"):
    """Run the student's backward with the exact o and lse and a random do; compare each gradient."""
    precision = dtype_name(q.dtype)
    what = f"flash_attention_backward{_describe(q.shape, q.dtype, causal)[:-1]}{_DO_LAYOUTS[do_layout]})"
    o, lse = _attention(q, k, v, causal)
    do = _make_do(q.shape, q.dtype, q.device, do_layout, seed_rng)
    o_t = torch.from_numpy(o).to(q.dtype).to(q.device)
    lse_t = torch.from_numpy(lse).to(torch.float64 if q.dtype == torch.float64 else torch.float32).to(q.device)
    out = _attempt_kernel(lambda: fn(q, k, v, o_t, lse_t, do, causal=causal), what, BWD_DOT_HINT)
    grads = _results(out, what, 3, ("dq", "dk", "dv"))
    expected = _gradients(q, k, v, do, causal)
    for name, got, exp in zip(("dq", "dk", "dv"), grads, expected):
        assert_shape(got, exp.shape, f"{what}: {name}", f"{name} has the shape of {name[1]}")
        assert_dtype(got, np.dtype(precision), f"{what}: {name}", f"return {name} in the inputs' dtype")
    if all(_close(g, e, precision) for g, e in zip(grads, expected)):
        return
    if do_layout == "transposed":
        # What kernels see when they read do's storage with row-major offsets.
        read = do.transpose(-1, -2).contiguous().reshape(q.shape)
        wrong = _formula_gradients(q, k, v, read, causal, delta_do=do)
        if sum(_close(g, w, precision, nan_equal=True) for g, w in zip(grads, wrong)) >= 2:
            raise CheckFailure(f"{what}: the kernels read do as if it were contiguous", DO_CONTIGUOUS_HINT)
    if do_layout != "contiguous" and any(not np.isfinite(g).all() for g in grads):
        raise CheckFailure(f"{what}: NaN or inf in the gradients", DO_CONTIGUOUS_HINT)
    root_d = math.sqrt(q.shape[-1])
    slips = [(dict(delta=False), DELTA_HINT, "dq and dk miss the -delta term")]
    if causal:
        slips += [(dict(mask=False), BWD_CAUSAL_HINT, "gradients with the causal mask left out"),
                  (dict(diag=-1), BWD_OFF_BY_ONE_HINT, "gradients where query i does not see key i"),
                  (dict(diag=1), BWD_OFF_BY_ONE_HINT, "gradients where query i also sees key i + 1")]
    for variant, hint, slip in slips:
        wrong = _formula_gradients(q, k, v, do, causal, **variant)
        if sum(_close(g, w, precision, nan_equal=True) for g, w in zip(grads, wrong)) >= 2:
            raise CheckFailure(f"{what}: {slip}", hint)
    if _close(grads[1], expected[1] * root_d, precision):
        raise CheckFailure(f"{what}: dk is off by a factor sqrt(d) = {root_d:g}", DK_SCALE_HINT)
    if _close(grads[0], expected[0] * root_d, precision):
        raise CheckFailure(f"{what}: dq is off by a factor sqrt(d) = {root_d:g}", DQ_SCALE_HINT)
    for name, got, exp, hint in zip(("dq", "dk", "dv"), grads, expected,
                                    (fallback_hint, fallback_hint, DV_HINT + "; " + fallback_hint)):
        assert_rel_close(got, exp, f"{what}: {name}", hint, precision)


def _formula_gradients(q, k, v, do, causal, mask=True, diag=0, delta=True, delta_do=None):
    """(dq, dk, dv) from the backward kernels' formulas in float64, with the true lse, so a
    slip in the backward alone (mask left out or shifted, delta forgotten) is reproduced.
    `delta_do`: the do that delta is computed from, when the kernels read another one."""
    q, k, v, do = (t.detach().double().cpu() for t in (q, k, v, do))
    delta_do = do if delta_do is None else delta_do.detach().double().cpu()
    o, lse = (torch.from_numpy(a) for a in _attention(q, k, v, causal))
    s = _scores(q, k, causal=False)
    p = torch.exp(s - lse[..., None])
    if causal and mask:
        n = s.shape[-1]
        p = p.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(diag), 0.0)
    dp = do @ v.transpose(-1, -2)
    ds = p * (dp - (o * delta_do).sum(-1, keepdim=True)) if delta else p * dp
    scale = 1 / math.sqrt(q.shape[-1])
    return ((ds @ k * scale).numpy(), (ds.transpose(-1, -2) @ q * scale).numpy(),
            (p.transpose(-1, -2) @ do).numpy())


@functools.cache
def _exact_forward_student_backward():
    """A torch.autograd.Function: exact float64 attention forward, the student's kernel as its
    backward (what gradcheck tests). Built on first use, so torch is imported only then."""

    class ExactForwardStudentBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, backward, causal):
            o, lse = _attention(q, k, v, causal)
            o, lse = torch.from_numpy(o), torch.from_numpy(lse)
            ctx.save_for_backward(q, k, v, o, lse)
            ctx.backward, ctx.causal = backward, causal
            return o.to(q.device)

        @staticmethod
        def backward(ctx, do):
            q, k, v, o, lse = (t.detach() for t in ctx.saved_tensors)
            dev = q.device
            out = ctx.backward(q, k, v, o.to(dev), lse.to(dev), do.contiguous(), causal=ctx.causal)
            grads = _results(out, "flash_attention_backward (inside gradcheck)", 3, ("dq", "dk", "dv"))
            return tuple(torch.from_numpy(np.ascontiguousarray(g)).to(dev) for g in grads) + (None, None)

    return ExactForwardStudentBackward


def _gradcheck(fn, shape, causal, rng, fast):
    q, k, v = (t.requires_grad_() for t in _inputs(rng, shape, torch.float64))
    what = f"torch.autograd.gradcheck of flash_attention_backward{_describe(shape, torch.float64, causal)}"
    try:
        ok = torch.autograd.gradcheck(lambda a, b, c: _exact_forward_student_backward().apply(a, b, c, fn, causal),
                                      (q, k, v), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=fast,
                                      raise_exception=False)
    except StudentError as err:
        raise CheckFailure(f"{what}: the kernel raised {err.type_name}: {err.message}") from None
    if not ok:
        raise CheckFailure(f"{what} failed", GRADCHECK_HINT)


@test("flash_backward_visible", "flash_attention_backward", points=3)
def flash_backward_visible(flash_attention_backward):
    """Bad inputs; one block; several blocks; ragged n; batch and heads; float32; gradcheck."""
    fn = flash_attention_backward
    rng = rng_for("flash_backward_visible")
    dev = tensor_device()
    _check_value_errors(fn, dev, backward=True)
    # One block of keys, two of queries (BLOCK_N = 32, BLOCK_M = 16 on the CPU), d = 64 unlike
    # both; do arrives transposed, not contiguous, as autograd may hand it over.
    one = _inputs(rng, (1, 1, 32, 64), torch.float64)
    for causal in (False, True):
        _check_backward(fn, *one, causal, ("one block of keys, two of queries: accumulate dk, dv (over the query "
                                                "blocks) and dq, and compare with autograd"), rng,
                        do_layout="transposed")
    several = _inputs(rng, (1, 1, 96, 16), torch.float64)
    for causal in (False, True):
        _check_backward(fn, *several, causal, BWD_RESCALE_HINT, rng)
    ragged = _inputs(rng, (1, 1, 37, 16), torch.float64)
    for causal in (False, True):
        _check_backward(fn, *ragged, causal, RAGGED_HINT, rng)
    _check_backward(fn, *_inputs(rng, (2, 2, 19, 32), torch.float32), True, BATCH_HINT, rng)
    _check_backward(fn, *_inputs(rng, (1, 2, 20, 16), torch.float32), False, DO_CONTIGUOUS_HINT, rng,
                    do_layout="expanded")
    _gradcheck(fn, (1, 1, 5, 16), True, rng, fast=True)


@test("flash_backward_random", "flash_attention_backward", points=2, hidden=True)
def flash_backward_random(flash_attention_backward, ref):
    """Random shapes, head dims 16-128, float16/32/64, causal and not."""
    rng = rng_for("flash_backward_random")
    cases = [((1, 2, 41, 16), torch.float64), ((2, 1, 30, 32), torch.float32),
             ((1, 1, 50, 64), torch.float16), ((1, 1, 20, 128), torch.float32)]
    for shape, dtype in cases:
        for causal in (False, True):
            _check_backward(flash_attention_backward, *_inputs(rng, shape, dtype), causal,
                            "compare with torch.autograd on this input", rng)


@test("flash_backward_gradcheck", "flash_attention_backward", hidden=True)
def flash_backward_gradcheck(flash_attention_backward, ref):
    """torch.autograd.gradcheck in float64 (the full Jacobian on a tiny causal input); one token."""
    rng = rng_for("flash_backward_gradcheck")
    # The full check calls the backward once per output entry (32 here): keep it tiny.
    _gradcheck(flash_attention_backward, (1, 1, 2, 16), True, rng, fast=False)
    _gradcheck(flash_attention_backward, (1, 2, 7, 16), False, rng, fast=True)
    _check_backward(flash_attention_backward, *_inputs(rng, (1, 2, 1, 16), torch.float64), True,
                    "n = 1: dv = do and dq = dk = 0", rng)

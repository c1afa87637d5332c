"""Reference for chapter 16 (16-gpu-gpt): a whole GPT on the GPU.

The model is the course's one PyTorch GPT, `models/gpt.py` (imported where it is needed,
never copied). This module adds what a GPU wants around it:

* a **static KV cache**: one preallocated tensor per model, written in place by index,
      kv: (L, 2, B, H, S, d_head)   kv[l, 0] keys, kv[l, 1] values of block l,
  with S = max_len slots per sequence; sequences of a batch may be at different positions
  (prompts of different lengths), so every position is a tensor of one entry per sequence;
* steps of **fixed shape**: attention always runs over all S slots with a mask, so that no
  tensor's shape depends on the position and nothing is read back to Python, and a decode
  step can be captured once as a CUDA graph and replayed;
* a **decode-attention kernel** in Triton: one query per (sequence, head) against the
  cache, the cache split into chunks whose partial results are combined with their
  log-sum-exps (the "flash-decoding" idea);
* sampling without leaving the GPU: the Gumbel-max trick on noise drawn beforehand.

The graded functions (positions_for_step, write_cache, static_step, sample_next,
decode_attention and its two kernels) are the exercise; below them, not graded, the GPU
path that the benchmarks and the chapter's page use: `StaticGPT` (prefill with chapter 14's
FlashAttention, decode with the kernel, CUDA graphs) and `FlashGPT` (models/gpt.py's GPT
whose attention is chapter 14's kernel, for training). On a CPU everything runs in float32
with `F.scaled_dot_product_attention`, or with the kernels through Triton's interpreter.
"""
import math
import os

import torch
import torch.nn.functional as F

# Triton's interpreter runs the kernels on CPU tensors; it must be chosen before triton is
# imported (the notebook and the tests do the same).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

HEAD_DIMS = (16, 32, 64, 128)
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ------------------------------------------------------------------ given helpers

def to_heads(x, n_head):
    """(B, T, D) -> (B, n_head, T, D // n_head): head h gets features [h * d_head, (h + 1) * d_head) (given)."""
    b, t, d = x.shape
    return x.view(b, t, n_head, d // n_head).transpose(1, 2)


def from_heads(x):
    """(B, H, T, d_head) -> (B, T, H * d_head), the inverse of to_heads (given)."""
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


def check_decode_inputs(q, k_cache, v_cache, lengths):
    """Raise a ValueError that says what is wrong unless decode_attention can run (given).

    q: (B, H, d), one query per sequence and head; k_cache, v_cache: (B, H, S, d); lengths:
    an integer tensor (B,). d in HEAD_DIMS; q and the caches of one floating dtype,
    contiguous, on one device (CUDA, or the CPU with Triton's interpreter on). Only shapes,
    dtypes and devices are checked, never values: reading a value back to Python would stop
    a CUDA graph from capturing the step.
    """
    for name, t in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache), ("lengths", lengths)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, not {type(t).__name__}")
    if q.dim() != 3 or k_cache.dim() != 4:
        raise ValueError(f"q must be (B, H, d) and the caches (B, H, S, d); got {tuple(q.shape)} "
                         f"and {tuple(k_cache.shape)}")
    if k_cache.shape != v_cache.shape:
        raise ValueError(f"k_cache and v_cache differ in shape: {tuple(k_cache.shape)}, {tuple(v_cache.shape)}")
    b, h, s, d = k_cache.shape
    if tuple(q.shape) != (b, h, d):
        raise ValueError(f"q has shape {tuple(q.shape)}; the caches need ({b}, {h}, {d})")
    if d not in HEAD_DIMS:
        raise ValueError(f"head dimension d = {d} is not supported; use one of {HEAD_DIMS}")
    if s == 0 or b == 0 or h == 0:
        raise ValueError(f"empty cache of shape {tuple(k_cache.shape)}")
    if lengths.shape != (b,) or lengths.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"lengths must be an int32 or int64 tensor of shape ({b},); got "
                         f"{lengths.dtype} of shape {tuple(lengths.shape)}")
    if not q.dtype == k_cache.dtype == v_cache.dtype or q.dtype not in DTYPES:
        raise ValueError(f"q and the caches must share one floating dtype; got {q.dtype}, "
                         f"{k_cache.dtype}, {v_cache.dtype}")
    for name, t in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache), ("lengths", lengths)):
        if not t.is_contiguous():
            raise ValueError(f"{name} is not contiguous (a transposed or sliced view?): call .contiguous()")
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device}, q on {q.device}")
    interpreting = os.environ.get("TRITON_INTERPRET") == "1"
    if q.device.type == "cpu" and not interpreting:
        raise ValueError("CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before "
                         "importing triton, or move the tensors to a CUDA GPU")
    if q.device.type not in ("cpu", "cuda"):
        raise ValueError(f"tensors on {q.device.type} are not supported; use CUDA (or the CPU interpreter)")
    if interpreting and q.dtype == torch.bfloat16:
        raise ValueError("Triton's interpreter computes bfloat16 wrongly (NumPy has no bfloat16): "
                         "use float16 or float32 on the CPU, bfloat16 on a GPU")


def decode_settings(q):
    """The chunk size and accumulator type for decode_attention's kernels (given).

    CHUNK keys per program: 16 on the CPU (small chunks keep the interpreter quick and
    give small test caches several chunks), 64 on a GPU. The partial results are
    accumulated in float32 (float64 for float64 inputs).
    """
    chunk = 16 if q.device.type == "cpu" else 64
    acc = tl.float64 if q.dtype == torch.float64 else tl.float32
    return dict(CHUNK=chunk, ACC=acc)


# ------------------------------------------------------------------ 1. positions

def positions_for_step(start, n_tokens, max_len):
    """The positions of a step's new tokens, and which cache slots each of them may see.

    start: int64 tensor (B,): how many slots of each sequence's static cache are already
    written (sequences may be at different positions). n_tokens: the number of new tokens
    of every sequence in this step (1 for a decode step, the prompt's length for a
    prefill). max_len: the number of slots S of the cache.
    Returns (positions, allowed):
      positions: int64 (B, n_tokens), positions[b, i] = start[b] + i: the position of new
                 token i of sequence b, which is also the cache slot it is written to;
      allowed:   bool (B, n_tokens, max_len), allowed[b, i, j] = (j <= start[b] + i): new
                 token i sees every written slot and the new tokens up to itself (causal),
                 and never the unwritten tail of the cache.
    Both on start's device. The shapes depend on n_tokens and max_len only, never on the
    values in start: a decode step has the same shapes at every position, so it can be
    replayed as a CUDA graph. Do not read start's values back to Python (no int(), .item()
    or .tolist()). Raises ValueError unless 1 <= n_tokens <= max_len.
    """
    if not 1 <= n_tokens <= max_len:
        raise ValueError(f"n_tokens must be between 1 and max_len = {max_len}, got {n_tokens}")
    steps = torch.arange(n_tokens, device=start.device)
    positions = start.to(torch.int64)[:, None] + steps[None, :]               # (B, n)
    slots = torch.arange(max_len, device=start.device)
    allowed = slots[None, None, :] <= positions[:, :, None]                    # (B, n, S)
    return positions, allowed


# ------------------------------------------------------------------ 2. writing the cache

def write_cache(cache, k_new, v_new, positions):
    """Write new keys and values into one block's static cache, in place, by index.

    cache: (2, B, H, S, d_head), preallocated: cache[0] holds the keys, cache[1] the
    values of every sequence b, head h and slot s. k_new, v_new: (B, H, n, d_head), the
    keys and values of n new tokens of every sequence. positions: int64 (B, n), the slot
    of each new token (from positions_for_step): k_new[b, :, i] goes to
    cache[0, b, :, positions[b, i]], and v_new likewise to cache[1].
    Write into `cache` itself (indexed assignment, index_put_ or scatter_: not into a copy)
    and leave every other slot exactly as it was: the cache is allocated once and reused,
    and a CUDA graph replays the same memory addresses. Returns cache (the same tensor).
    """
    b = torch.arange(cache.shape[1], device=cache.device)[:, None]             # (B, 1)
    # Advanced indices (b, positions) around a slice: the indexed axes come first, (B, n, H, d).
    cache[0, b, :, positions] = k_new.transpose(1, 2).to(cache.dtype)
    cache[1, b, :, positions] = v_new.transpose(1, 2).to(cache.dtype)
    return cache


# ------------------------------------------------------------------ 3. a step of fixed shape

def static_step(params, kv, ids, start, n_head):
    """Run n new tokens of every sequence through the GPT against a static KV cache.

    params: chapter 5's parameter dict as torch tensors (wte (V, D), wpe (block_size, D),
    lnf_g, lnf_b and a list of blocks with ln1_g, ln1_b, w_q, w_k, w_v, w_o, ln2_g, ln2_b,
    w_fc, b_fc, w_proj, b_proj; every weight used as x @ w).
    kv: (L, 2, B, H, S, d_head), the static cache of every block (kv[l] is block l's, in
    write_cache's layout); S <= block_size. ids: int64 (B, n), the new tokens; start: int64
    (B,), how many slots of each sequence are written already. With start = 0 and n = the
    prompt's length this is the prefill; with n = 1 it is one decode step.
    Use positions_for_step(start, n, S) for the positions and the mask. The input of new
    token i of sequence b is wte[ids[b, i]] + wpe[positions[b, i]]. In every block l:
    h = LayerNorm(x) with ln1 (F.layer_norm(x, (D,), g, b, eps=1e-5) is the course's
    LayerNorm); the new queries, keys and values split into heads (to_heads); write the keys
    and values into kv[l] with write_cache BEFORE attending (a token sees itself); attend
    with scale 1/sqrt(d_head) over ALL S slots of kv[l], masked with `allowed` (unwritten
    slots may hold anything: leftovers of an earlier or a padded sequence); merge the heads
    (from_heads), apply w_o and add to x; then x += MLP(LayerNorm(x) with ln2), the MLP being
    gelu(h @ w_fc + b_fc) @ w_proj + b_proj with the tanh GELU (F.gelu(..., approximate="tanh")).
    Finally logits = LayerNorm(x) with lnf, @ wte.T.
    No tensor may change shape with start: no slicing by position, no torch.cat.
    Returns (logits (B, n, V), kv), kv written in place and returned.
    """
    n = ids.shape[1]
    max_len = kv.shape[4]
    positions, allowed = positions_for_step(start, n, max_len)
    x = params["wte"][ids] + params["wpe"][positions]                          # (B, n, D)
    width = x.shape[-1:]
    for layer, p in enumerate(params["blocks"]):
        h = F.layer_norm(x, width, p["ln1_g"], p["ln1_b"], eps=1e-5)
        q, k, v = (to_heads(h @ p[w], n_head) for w in ("w_q", "w_k", "w_v"))
        write_cache(kv[layer], k, v, positions)
        o = F.scaled_dot_product_attention(q, kv[layer, 0], kv[layer, 1], attn_mask=allowed[:, None])
        x = x + from_heads(o) @ p["w_o"]
        h = F.layer_norm(x, width, p["ln2_g"], p["ln2_b"], eps=1e-5)
        x = x + F.gelu(h @ p["w_fc"] + p["b_fc"], approximate="tanh") @ p["w_proj"] + p["b_proj"]
    logits = F.layer_norm(x, width, params["lnf_g"], params["lnf_b"], eps=1e-5) @ params["wte"].T
    return logits, kv


# ------------------------------------------------------------------ 4. sampling on the device

def sample_next(logits, temperature, uniform):
    """The next token of every sequence, drawn with the Gumbel-max trick from given noise.

    logits: (..., V) float tensor; temperature: a number >= 0; uniform: a tensor of
    logits' shape of independent Uniform(0, 1) draws (strictly between 0 and 1), made
    beforehand by the caller (torch.rand, or uniform_ on a preallocated buffer).
    With g = -log(-log(uniform)), standard Gumbel noise, return
        argmax over the last axis of (logits / temperature + g),
    which is a draw from softmax(logits / temperature): no cumulative sums, no
    torch.multinomial and no value read back to Python, so it can run inside a CUDA graph.
    Temperature 0 means greedy: the argmax of the logits (ignore the noise; do not divide
    by 0). A logit of -inf is never drawn. Returns int64 ids of shape (...). Raises
    ValueError for a negative temperature.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return torch.argmax(logits, dim=-1)
    gumbel = -torch.log(-torch.log(uniform.to(logits.dtype)))
    return torch.argmax(logits / temperature + gumbel, dim=-1)


# ------------------------------------------------------------------ 5. the decode-attention kernel

@triton.jit
def _decode_split_kernel(Q, K, V, LENGTHS, O_PART, LSE_PART, S, n_chunks, scale, H: tl.constexpr,
                         D: tl.constexpr, CHUNK: tl.constexpr, ACC: tl.constexpr):
    """One program: the query of one (sequence, head) against one chunk of CHUNK cache slots.

    Q: (B * H, D); K, V: (B * H, S, D); LENGTHS: (B,); O_PART: (B * H, n_chunks, D) and
    LSE_PART: (B * H, n_chunks), both ACC. The grid is (n_chunks, B * H). Slots at or past the
    sequence's length are masked; a chunk with no valid slot stores o = 0 and lse = -inf.
    """
    chunk = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    length = tl.load(LENGTHS + bh // H)
    dims = tl.arange(0, D)
    slots = chunk * CHUNK + tl.arange(0, CHUNK)
    valid = slots < length                       # written slots only (length <= S)
    q = tl.load(Q + bh * D + dims).to(ACC)
    k = tl.load(K + bh * S * D + slots[:, None] * D + dims[None, :], mask=valid[:, None], other=0.0).to(ACC)
    v = tl.load(V + bh * S * D + slots[:, None] * D + dims[None, :], mask=valid[:, None], other=0.0).to(ACC)
    s = tl.sum(k * q[None, :], 1) * scale        # (CHUNK,) scores
    s = tl.where(valid, s, float("-inf"))
    m = tl.max(s, 0)
    m = tl.where(m == float("-inf"), 0.0, m)     # an empty chunk: exp(-inf - 0) = 0, not NaN
    p = tl.exp(s - m)
    l = tl.sum(p, 0)
    l_safe = tl.where(l > 0, l, 1.0)
    o = tl.sum(p[:, None] * v, 0) / l_safe       # this chunk's own softmax average
    lse = tl.where(l > 0, m + tl.log(l_safe), float("-inf"))
    tl.store(O_PART + (bh * n_chunks + chunk) * D + dims, o)
    tl.store(LSE_PART + bh * n_chunks + chunk, lse)


@triton.jit
def _decode_combine_kernel(O_PART, LSE_PART, O, n_chunks, D: tl.constexpr, N_CHUNKS: tl.constexpr):
    """One program per (sequence, head): combine the chunks' partial outputs.

    lse = log(sum_i exp(lse_i)) over the chunks (stably, from the largest lse_i) and
    o = sum_i exp(lse_i - lse) * o_i, stored in O (B * H, D) in O's dtype. N_CHUNKS is a
    power of two >= n_chunks; the entries past n_chunks are masked (lse -inf, weight 0).
    """
    bh = tl.program_id(0).to(tl.int64)
    idx = tl.arange(0, N_CHUNKS)
    dims = tl.arange(0, D)
    lse_i = tl.load(LSE_PART + bh * n_chunks + idx, mask=idx < n_chunks, other=float("-inf"))
    m = tl.max(lse_i, 0)                         # finite: chunk 0 holds slot 0 and length >= 1
    w = tl.exp(lse_i - m)
    w = w / tl.sum(w, 0)                         # = exp(lse_i - lse)
    o_i = tl.load(O_PART + (bh * n_chunks + idx[:, None]) * D + dims[None, :],
                  mask=idx[:, None] < n_chunks, other=0.0)
    o = tl.sum(w[:, None] * o_i, 0)
    tl.store(O + bh * D + dims, o.to(O.dtype.element_ty))


def decode_attention(q, k_cache, v_cache, lengths):
    """Attention of one new query per (sequence, head) over a static cache, split along it.

    q: (B, H, d); k_cache, v_cache: (B, H, S, d) (one block's cache[0] and cache[1]);
    lengths: integer (B,), the number of valid slots of each sequence, 1 <= lengths[b] <= S
    (the new token's own key and value are already written, at slot lengths[b] - 1).
    Returns o (B, H, d) in q's dtype: softmax(k[:length] q / sqrt(d)) v[:length] for every
    sequence and head; the slots past each length are unwritten and take no part.
    Call check_decode_inputs first. Split the S slots into n_chunks = cdiv(S, CHUNK)
    chunks (decode_settings(q) gives CHUNK and ACC). _decode_split_kernel, on the grid
    (n_chunks, B * H), computes each chunk's own softmax-weighted average o_i and the
    log-sum-exp lse_i of its scores, into float32 (ACC) scratch tensors of shapes
    (B * H, n_chunks, d) and (B * H, n_chunks); _decode_combine_kernel, on the grid
    (B * H,), combines them: o = sum_i exp(lse_i - lse) o_i with lse = log(sum_i exp(lse_i)).
    """
    check_decode_inputs(q, k_cache, v_cache, lengths)
    batch, heads, slots, d = k_cache.shape
    settings = decode_settings(q)
    n_chunks = triton.cdiv(slots, settings["CHUNK"])
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    o_part = torch.empty((batch * heads, n_chunks, d), device=q.device, dtype=acc)
    lse_part = torch.empty((batch * heads, n_chunks), device=q.device, dtype=acc)
    _decode_split_kernel[(n_chunks, batch * heads)](q, k_cache, v_cache, lengths, o_part, lse_part, slots,
                                                    n_chunks, 1.0 / math.sqrt(d), H=heads, D=d, **settings)
    o = torch.empty_like(q)
    _decode_combine_kernel[(batch * heads,)](o_part, lse_part, o, n_chunks, D=d,
                                             N_CHUNKS=triton.next_power_of_2(n_chunks))
    return o


# ==================================================================== not graded: the GPU path

def decode_partials(q, k_cache, v_cache, lengths):
    """The split kernel alone: (o_part (B, H, n_chunks, d), lse_part (B, H, n_chunks)), for the page."""
    check_decode_inputs(q, k_cache, v_cache, lengths)
    batch, heads, slots, d = k_cache.shape
    settings = decode_settings(q)
    n_chunks = triton.cdiv(slots, settings["CHUNK"])
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    o_part = torch.empty((batch * heads, n_chunks, d), device=q.device, dtype=acc)
    lse_part = torch.empty((batch * heads, n_chunks), device=q.device, dtype=acc)
    _decode_split_kernel[(n_chunks, batch * heads)](q, k_cache, v_cache, lengths, o_part, lse_part, slots,
                                                    n_chunks, 1.0 / math.sqrt(d), H=heads, D=d, **settings)
    return o_part.view(batch, heads, n_chunks, d), lse_part.view(batch, heads, n_chunks)


def params_of(model):
    """models/gpt.py's GPT as chapter 5's nested parameter dict: its own Parameters, not
    copies, so the dict follows the module to any device or dtype it is moved to first."""
    from models.gpt import BLOCK_KEYS

    out = {name: getattr(model, name) for name in ("wte", "wpe", "lnf_g", "lnf_b")}
    out["blocks"] = [{key: getattr(block, key) for key in BLOCK_KEYS} for block in model.blocks]
    return out


def causal_attention(q, k, v, impl):
    """Causal attention of (B, H, T, d) tensors: chapter 14's Triton kernel ("kernel") or
    PyTorch's fused F.scaled_dot_product_attention ("sdpa")."""
    if impl == "kernel":
        from solutions.reference.flash_attention_2 import flash_attention
        return flash_attention(q.contiguous(), k.contiguous(), v.contiguous(), True)
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    raise ValueError(f"unknown attention {impl!r}: use 'kernel' or 'sdpa'")


def _pick(impl, device):
    if impl == "auto":
        return "kernel" if device.type == "cuda" else "sdpa"
    return impl


def flash_gpt_class():
    """`FlashGPT`, models/gpt.py's GPT whose blocks' attention is chosen: chapter 14's kernel
    (forward and backward, differentiable) or SDPA. Built on first use, so that importing this
    module does not need models/ (the grader's sandbox has no models/ folder)."""
    global _FLASH_GPT
    if _FLASH_GPT is not None:
        return _FLASH_GPT
    from models.gpt import GPT, Block

    class FlashBlock(Block):
        """models/gpt.py's Block, with the attention computed by a fused kernel."""
        attention_impl = "sdpa"

        def attention(self, x):
            *lead, t, d = x.shape
            flat = x.reshape(-1, t, d)
            q, k, v = (to_heads(flat @ w, self.n_head) for w in (self.w_q, self.w_k, self.w_v))
            o = causal_attention(q, k, v, _pick(self.attention_impl, x.device))
            return from_heads(o).reshape(*lead, t, d) @ self.w_o

    class FlashGPT(GPT):
        """models/gpt.py's GPT (same parameters, same initialisation) with fused attention."""
        block_class = FlashBlock

        def __init__(self, config, attention="auto"):
            super().__init__(config)
            self.set_attention(attention)

        def set_attention(self, attention):
            """'kernel' (chapter 14's Triton FlashAttention), 'sdpa', or 'auto' (the kernel on
            CUDA, SDPA on the CPU)."""
            for block in self.blocks:
                block.attention_impl = attention
            return self

    _FLASH_GPT = FlashGPT
    return FlashGPT


_FLASH_GPT = None


@torch.no_grad()
def generate_recompute(model, ids, n_new, temperature=0.0, seed=0):
    """The loop without a cache (chapter 6's): the whole sequence through the model at every
    step. ids (B, T) of equal-length prompts; noise drawn as StaticGPT.generate draws it, so
    that both give the same tokens. Returns the new ids (B, n_new)."""
    device = ids.device
    gen = torch.Generator(device=device).manual_seed(seed)
    vocab = model.wte.shape[0]
    uniform = torch.empty(ids.shape[0], vocab, device=device)
    seq = ids
    for _ in range(n_new):
        logits = model(seq[:, -model.block_size:])[:, -1].float()
        uniform.uniform_(generator=gen)
        nxt = sample_next(logits, temperature, uniform)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
    return seq[:, ids.shape[1]:]


class StaticGPT:
    """Generation with models/gpt.py's GPT, a static KV cache and decode steps of fixed shape.

    On a CUDA GPU (give it the model in bfloat16): the prompt runs through chapter 14's
    FlashAttention kernel, each decode step through `decode_attention`, and the decode step
    is captured once as a CUDA graph and replayed. On the CPU the same code runs eagerly with
    F.scaled_dot_product_attention (attention="sdpa"), or with the Triton kernels through the
    interpreter (attention="kernel"). The state lives in preallocated buffers:

        kv      (L, 2, B, H, S, d_head)   the cache;
        start   (B,) int64                slots written per sequence (the next position);
        token   (B,) int64                the token to feed next;
        uniform (B, V) float32            the noise of the next draw.

    The CUDA path (bfloat16, compiled kernels, graph capture) follows PyTorch's documented
    rules for capture but was written without a GPU at hand; tests/test_gpu_gpt.py compares
    the graph with eager decoding wherever a GPU is present.
    """

    def __init__(self, model, batch, max_len=None, attention="auto", cuda_graph="auto"):
        cfg = model.config
        weight = next(model.parameters())
        self.device, self.dtype = weight.device, weight.dtype
        self.model = model
        self.params = params_of(model)
        self.n_head = cfg.n_head
        self.max_len = max_len or cfg.block_size
        if not 1 <= self.max_len <= cfg.block_size:
            raise ValueError(f"max_len must be between 1 and block_size = {cfg.block_size}")
        self.batch = batch
        self.vocab = cfg.vocab_size
        dh = cfg.d_model // cfg.n_head
        self.kv = torch.zeros(cfg.n_layer, 2, batch, cfg.n_head, self.max_len, dh, dtype=self.dtype,
                              device=self.device)
        self.start = torch.zeros(batch, dtype=torch.int64, device=self.device)
        self.token = torch.zeros(batch, dtype=torch.int64, device=self.device)
        self.uniform = torch.full((batch, self.vocab), 0.5, dtype=torch.float32, device=self.device)
        self.attention = _pick(attention, self.device)
        self.use_graph = (self.device.type == "cuda") if cuda_graph == "auto" else bool(cuda_graph)
        if self.use_graph and self.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.graphs = {}  # temperature -> the captured decode step

    # ---------------------------------------------------------------- the two phases

    def _block_mlp(self, x, p):
        width = x.shape[-1:]
        h = F.layer_norm(x, width, p["ln2_g"], p["ln2_b"], eps=1e-5)
        return x + F.gelu(h @ p["w_fc"] + p["b_fc"], approximate="tanh") @ p["w_proj"] + p["b_proj"]

    def _logits(self, x):
        p = self.params
        return F.layer_norm(x, x.shape[-1:], p["lnf_g"], p["lnf_b"], eps=1e-5) @ p["wte"].T

    @torch.no_grad()
    def prefill(self, ids, lengths=None):
        """Run the prompts ids (B, T), right-padded to one length T, and fill slots 0..T-1.
        lengths (B,): each prompt's real length (default T). The padding's keys and values
        land in slots past each length, where the mask hides them until decode steps
        overwrite them. Returns the logits (B, V) after each prompt's last real token and
        sets start = lengths."""
        b, t = ids.shape
        if b != self.batch or not 1 <= t <= self.max_len:
            raise ValueError(f"ids must be ({self.batch}, T) with 1 <= T <= {self.max_len}; got {tuple(ids.shape)}")
        lengths = torch.full((b,), t, device=self.device) if lengths is None else \
            torch.as_tensor(lengths, device=self.device)
        zero = torch.zeros(b, dtype=torch.int64, device=self.device)
        positions, _ = positions_for_step(zero, t, self.max_len)
        x = self.params["wte"][ids] + self.params["wpe"][:t]
        for layer, p in enumerate(self.params["blocks"]):
            h = F.layer_norm(x, x.shape[-1:], p["ln1_g"], p["ln1_b"], eps=1e-5)
            q, k, v = (to_heads(h @ p[w], self.n_head) for w in ("w_q", "w_k", "w_v"))
            write_cache(self.kv[layer], k, v, positions)
            # From slot 0, causal attention over the new tokens alone is the masked attention
            # over the cache: the kernel of chapter 14 needs no cache at all.
            x = x + from_heads(causal_attention(q, k, v, self.attention)) @ p["w_o"]
            x = self._block_mlp(x, p)
        last = x[torch.arange(b, device=self.device), lengths - 1]              # (B, D)
        self.start.copy_(lengths)
        return self._logits(last).float()

    def _decode(self):
        """One decode step on the buffers: the logits (B, V) after `token` at position `start`,
        its keys and values written into slot `start`. Fixed shapes, no value read back."""
        positions = self.start[:, None]                                           # (B, 1)
        x = (self.params["wte"][self.token] + self.params["wpe"][self.start])[:, None]
        lengths = self.start + 1
        if self.attention == "sdpa":
            allowed = positions_for_step(self.start, 1, self.max_len)[1][:, None]   # (B, 1, 1, S)
        for layer, p in enumerate(self.params["blocks"]):
            h = F.layer_norm(x, x.shape[-1:], p["ln1_g"], p["ln1_b"], eps=1e-5)
            q, k, v = (to_heads(h @ p[w], self.n_head) for w in ("w_q", "w_k", "w_v"))
            write_cache(self.kv[layer], k, v, positions)
            if self.attention == "kernel":
                o = decode_attention(q[:, :, 0].contiguous(), self.kv[layer, 0], self.kv[layer, 1],
                                     lengths)[:, :, None]
            else:
                o = F.scaled_dot_product_attention(q, self.kv[layer, 0], self.kv[layer, 1], attn_mask=allowed)
            x = self._block_mlp(x + from_heads(o) @ p["w_o"], p)
        return self._logits(x[:, 0]).float()

    def _step_eager(self, temperature):
        logits = self._decode()
        self.token.copy_(sample_next(logits, temperature, self.uniform))
        return logits

    def _capture(self, temperature):
        """Record the decode step, sampling included, as a CUDA graph (once per temperature).
        Warm-up runs on a side stream first, as PyTorch asks: they compile the Triton kernels
        and write only into slot `start`, which the next real step overwrites before reading."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                logits = self._decode()
                sample_next(logits, temperature, self.uniform)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits = self._step_eager(temperature)
        self.graphs[temperature] = (graph, logits)

    def step(self, temperature=0.0):
        """One decode step: feed `token` at position `start`; afterwards `token` holds the next
        token (sampled with the noise in `uniform`) and start has grown by one. Returns the
        logits (B, V), a view of a static buffer when a CUDA graph runs the step."""
        if self.use_graph:
            if temperature not in self.graphs:
                self._capture(temperature)
            graph, logits = self.graphs[temperature]
            graph.replay()
        else:
            logits = self._step_eager(temperature)
        self.start.add_(1)
        return logits

    @torch.no_grad()
    def generate(self, ids, n_new, temperature=0.0, seed=0, lengths=None):
        """Prefill the prompts, then n_new - 1 decode steps: the new ids (B, n_new). The noise
        comes from one generator seeded with `seed`, a (B, V) draw per token, as
        generate_recompute draws it. Nothing is read back to Python until the end."""
        gen = torch.Generator(device=self.device).manual_seed(seed)
        logits = self.prefill(ids, lengths)
        out = torch.empty(self.batch, n_new, dtype=torch.int64, device=self.device)
        self.uniform.uniform_(generator=gen)
        self.token.copy_(sample_next(logits, temperature, self.uniform))
        out[:, 0] = self.token
        for i in range(1, n_new):
            self.uniform.uniform_(generator=gen)
            self.step(temperature)
            out[:, i] = self.token
        return out


# ------------------------------------------------------------------ not graded: tracing a step

def trace_ops(fn, *args, **kwargs):
    """Run fn(*args, **kwargs) and record every ATen operation it dispatches: a list of
    (name, shapes of its tensor outputs). `aten._local_scalar_dense` in the list means a
    value was read back to Python (int(), .item(), a bool of a tensor): a host sync, which a
    CUDA graph cannot capture. Returns (result, ops)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    ops = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            shapes = tuple(tuple(t.shape) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
            ops.append((str(func.overloadpacket.__name__), shapes))
            return out

    with Recorder():
        result = fn(*args, **kwargs)
    return result, ops

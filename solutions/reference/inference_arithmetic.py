"""Chapter 11 reference: inference arithmetic.

FLOPs and bytes of a GPT's forward pass, the size of its KV cache, arithmetic intensity,
the roofline, and a lower bound on the time it takes to generate text.

A model is described by a config dict with string keys:

    n_layers     the number of transformer blocks
    d_model      the width of the residual stream
    n_heads      the number of query heads; head_dim = d_model // n_heads
    n_kv_heads   the number of key/value heads (grouped-query attention); optional:
                 missing means n_heads (ordinary multi-head attention)
    d_ff         the width of the MLP's hidden layer; optional: missing means 4 * d_model
    vocab_size   the number of tokens in the vocabulary

d_model is a multiple of n_heads, and n_heads a multiple of n_kv_heads. The blocks are
chapter 4's: attention with four projection matrices, an MLP with two matrices.
"""
import numpy as np


def flops_per_token(config, seq_len):
    """Forward-pass FLOPs for ONE token whose context holds seq_len tokens.

    config: a dict with n_layers, d_model, n_heads, vocab_size and, optionally, n_kv_heads
    (missing means n_heads) and d_ff (missing means 4 * d_model); head_dim = d_model // n_heads.
    What counts, and what does not:
    - only matrix products, at 2 FLOPs per multiply-add: a (1, k) @ (k, n) product
      costs 2 * k * n;
    - in each of the n_layers blocks: the query and output projections (d_model x d_model
      each), the key and value projections (d_model x kv_dim each, where
      kv_dim = n_kv_heads * head_dim), the MLP's two matrices (d_model x d_ff and
      d_ff x d_model), and attention: in every one of the n_heads query heads, the token's
      scores against seq_len keys (2 * head_dim * seq_len) and its weighted sum of seq_len
      values (2 * head_dim * seq_len again);
    - after the blocks: the unembedding (d_model x vocab_size) that gives the logits;
    - not counted: the embedding lookup (no multiplications), biases, LayerNorms, the
      softmax, GELU and the residual additions (a few FLOPs per number, not per weight).
    seq_len is the length of the token's context, the token itself included: in a causal
    sequence, the t-th token (t = 1, 2, ...) has seq_len = t. seq_len < 1 raises ValueError.
    Returns a number (an int when the config holds ints).
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be at least 1 (the token itself), got {seq_len}")
    n_layers, d_model, n_heads = config["n_layers"], config["d_model"], config["n_heads"]
    head_dim = d_model // n_heads
    kv_dim = config.get("n_kv_heads", n_heads) * head_dim
    d_ff = config.get("d_ff", 4 * d_model)
    per_block = d_model * d_model * 2 + d_model * kv_dim * 2 + d_model * d_ff * 2
    matmul_weights = n_layers * per_block + d_model * config["vocab_size"]
    attention = n_layers * n_heads * (2 * head_dim * seq_len + 2 * head_dim * seq_len)
    return 2 * matmul_weights + attention


def kv_cache_bytes(config, seq_len, batch, bytes_per_value):
    """Bytes of the KV cache that holds seq_len positions of each of batch sequences.

    config: as for flops_per_token (n_kv_heads may be missing: then it is n_heads).

    Every block keeps, for every cached position of every sequence, one key vector and
    one value vector per key/value head: n_kv_heads of them (missing means n_heads), each
    of head_dim = d_model // n_heads numbers, each number taking bytes_per_value bytes
    (2 for bf16 or fp16, 4 for float32, 0.5 for a 4-bit format).
    seq_len and batch may be 0 (an empty cache: 0 bytes). Returns a number.
    """
    n_heads = config["n_heads"]
    head_dim = config["d_model"] // n_heads
    per_position = 2 * config["n_layers"] * config.get("n_kv_heads", n_heads) * head_dim
    return per_position * seq_len * batch * bytes_per_value


def arithmetic_intensity(flops, n_bytes):
    """FLOPs per byte of memory traffic: flops / n_bytes.

    flops, n_bytes: numbers, or NumPy arrays (elementwise, with broadcasting: one
    intensity per pair). Always a true division: 7 FLOPs over 2 bytes is 3.5, also when
    both are integers.
    """
    return flops / n_bytes


def roofline_time(flops, n_bytes, peak_flops, bandwidth):
    """The roofline's lower bound on the time, in seconds, of work that does `flops`
    floating-point operations and moves `n_bytes` bytes to or from memory, on a machine
    that computes at most peak_flops FLOP/s and moves at most bandwidth bytes/s.

    Computing takes at least flops / peak_flops and moving the data at least
    n_bytes / bandwidth; the two overlap, so the bound is the larger of the two.
    flops, n_bytes: numbers or NumPy arrays (elementwise, with broadcasting).
    """
    return np.maximum(flops / peak_flops, n_bytes / bandwidth)


def generation_time_lower_bound(config, prompt_len, n_new, batch, bytes_per_value,
                                peak_flops, bandwidth):
    """A lower bound, in seconds, on the time to generate n_new tokens after each of
    batch prompts of prompt_len tokens, with weights and KV cache stored at
    bytes_per_value bytes per number, on a machine of peak_flops FLOP/s and bandwidth
    bytes/s. The phases run one after the other:

    - the prefill: one pass over the whole prompt of every sequence. Prompt token t
      (t = 1 .. prompt_len) has context length t, so the FLOPs are
      batch * (sum over t of flops_per_token(config, t)). The bytes: all the weights,
      read once, plus writing the prompt's cache,
      kv_cache_bytes(config, prompt_len, batch, bytes_per_value).
      The logits of the prompt's last position give the first new token.
    - the decode steps, one per further token: n_new - 1 of them. Step j (j = 1 ..
      n_new - 1) feeds new token j of every sequence, whose context length is
      prompt_len + j. FLOPs: batch * flops_per_token(config, prompt_len + j). Bytes: all
      the weights, read once per step and shared by the whole batch, plus the cache of
      the context, kv_cache_bytes(config, prompt_len + j, batch, bytes_per_value).

    The weights are the matrices that flops_per_token multiplies with: per block
    2 * d_model**2 + 2 * d_model * kv_dim + 2 * d_model * d_ff numbers, plus
    d_model * vocab_size for the unembedding; each takes bytes_per_value bytes.
    Each phase takes at least roofline_time(its FLOPs, its bytes, peak_flops, bandwidth);
    return the sum of these bounds over the phases, as a number. (Use your flops_per_token,
    kv_cache_bytes and roofline_time.) prompt_len < 1 or n_new < 1 raises ValueError.
    """
    if prompt_len < 1 or n_new < 1:
        raise ValueError(f"need prompt_len >= 1 and n_new >= 1, got {prompt_len} and {n_new}")
    n_layers, d_model, n_heads = config["n_layers"], config["d_model"], config["n_heads"]
    kv_dim = config.get("n_kv_heads", n_heads) * (d_model // n_heads)
    d_ff = config.get("d_ff", 4 * d_model)
    n_weights = (n_layers * (2 * d_model * d_model + 2 * d_model * kv_dim + 2 * d_model * d_ff)
                 + d_model * config["vocab_size"])
    weight_bytes = n_weights * bytes_per_value

    prefill_flops = batch * sum(flops_per_token(config, t) for t in range(1, prompt_len + 1))
    prefill_bytes = weight_bytes + kv_cache_bytes(config, prompt_len, batch, bytes_per_value)
    total = float(roofline_time(prefill_flops, prefill_bytes, peak_flops, bandwidth))
    for context in range(prompt_len + 1, prompt_len + n_new):
        step_flops = batch * flops_per_token(config, context)
        step_bytes = weight_bytes + kv_cache_bytes(config, context, batch, bytes_per_value)
        total += float(roofline_time(step_flops, step_bytes, peak_flops, bandwidth))
    return total

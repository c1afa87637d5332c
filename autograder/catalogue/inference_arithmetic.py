"""Wrong and alternative implementations for chapter 11 (11-inference-arithmetic)."""
from . import Wrong


def _flops(weights="d * d * 2 + d * kv_dim * 2 + d * d_ff * 2", total="n_layers * per_block + d * v",
           attention="n_layers * h * 4 * head_dim * seq_len", result="2 * weights + attention",
           kv_dim="config.get('n_kv_heads', h) * head_dim", d_ff="config.get('d_ff', 4 * d)") -> str:
    """A flops_per_token whose pieces can be replaced one by one."""
    return f'''
def flops_per_token(config, seq_len):
    if seq_len < 1:
        raise ValueError("seq_len must be >= 1")
    n_layers, d, h, v = config["n_layers"], config["d_model"], config["n_heads"], config["vocab_size"]
    head_dim = d // h
    kv_dim = {kv_dim}
    d_ff = {d_ff}
    per_block = {weights}
    weights = {total}
    attention = {attention}
    return {result}
'''


def _kv(expr="2 * n_layers * n_kv * head_dim * seq_len * batch * bytes_per_value") -> str:
    return f'''
def kv_cache_bytes(config, seq_len, batch, bytes_per_value):
    n_layers, h = config["n_layers"], config["n_heads"]
    n_kv = config.get("n_kv_heads", h)
    head_dim = config["d_model"] // h
    return {expr}
'''


# The generate-time sources define private helpers (prefixed _gt_), so that one pasted into
# a notebook (the sample submissions) does not replace the student's own functions.
_GEN_HEAD = '''
import numpy as np
def _gt_weights(config):
    n_layers, d, h = config["n_layers"], config["d_model"], config["n_heads"]
    kv_dim = config.get("n_kv_heads", h) * (d // h)
    d_ff = config.get("d_ff", 4 * d)
    return n_layers * (2 * d * d + 2 * d * kv_dim + 2 * d * d_ff) + d * config["vocab_size"]
def _gt_flops(config, t):
    return 2 * _gt_weights(config) + 4 * config["n_layers"] * config["d_model"] * t
def _gt_kv(config, t, batch, bpv):
    h = config["n_heads"]
    return 2 * config["n_layers"] * config.get("n_kv_heads", h) * (config["d_model"] // h) * t * batch * bpv
def _gt_time(flops, nbytes, peak, bw):
    return max(flops / peak, nbytes / bw)
def generation_time_lower_bound(config, prompt_len, n_new, batch, bytes_per_value, peak_flops, bandwidth):
    if prompt_len < 1 or n_new < 1:
        raise ValueError("need prompt_len >= 1 and n_new >= 1")
    w = _gt_weights(config) * bytes_per_value
    P, B, bpv = prompt_len, batch, bytes_per_value
'''


def _gen(prefill_flops="B * sum(_gt_flops(config, t) for t in range(1, P + 1))",
         prefill_bytes="w + _gt_kv(config, P, B, bpv)",
         steps="range(P + 1, P + n_new)",
         step_flops="B * _gt_flops(config, t)",
         step_bytes="w + _gt_kv(config, t, B, bpv)") -> str:
    """generation_time_lower_bound with one phase's count replaced."""
    return _GEN_HEAD + f'''
    total = _gt_time({prefill_flops}, {prefill_bytes}, peak_flops, bandwidth)
    for t in {steps}:
        total += _gt_time({step_flops}, {step_bytes}, peak_flops, bandwidth)
    return total
'''


_GEN_TOTALS = _GEN_HEAD + '''
    flops = B * sum(_gt_flops(config, t) for t in range(1, P + n_new))
    nbytes = n_new * w + _gt_kv(config, P, B, bpv) + sum(_gt_kv(config, t, B, bpv) for t in range(P + 1, P + n_new))
    return _gt_time(flops, nbytes, peak_flops, bandwidth)
'''

WRONG = [
    # ---------------------------------------------------------------- flops_per_token
    Wrong("flops_per_token", "no_factor_two", "2 FLOPs per multiply-add",
          _flops(result="weights + attention // 2"),
          "Counting multiply-adds instead of FLOPs: a multiply-add is 2 FLOPs, so every count is half."),
    Wrong("flops_per_token", "attention_quadratic", "linear in seq_len",
          _flops(attention="n_layers * h * 4 * head_dim * seq_len ** 2"),
          "Counting attention as seq_len² per token: the whole n x n matrix is the cost of all n tokens; "
          "one token compares itself with seq_len keys."),
    Wrong("flops_per_token", "attention_forgotten", "scores against seq_len keys",
          _flops(result="2 * weights"),
          "Counting only the weights (2N): attention's scores and weighted sum grow with the context "
          "and are missing."),
    Wrong("flops_per_token", "scores_only", "weighted sum of the values",
          _flops(attention="n_layers * h * 2 * head_dim * seq_len"),
          "Counting the scores q·k but not the weighted sum of the values: attention is two matrix products."),
    Wrong("flops_per_token", "one_layer", "every one of the n_layers",
          _flops(total="per_block + d * v", attention="h * 4 * head_dim * seq_len"),
          "Forgetting the number of layers: every block has its own weights and its own attention."),
    Wrong("flops_per_token", "kv_full_width", "n_kv_heads",
          _flops(kv_dim="d"),
          "Sizing the key and value projections d_model x d_model: with grouped-query attention they "
          "are d_model x (n_kv_heads * head_dim)."),
    Wrong("flops_per_token", "no_unembedding", "unembedding",
          _flops(total="n_layers * per_block"),
          "Leaving out the unembedding (d_model x vocab_size), which every token needs for its logits."),
    Wrong("flops_per_token", "d_ff_fixed", "d_ff",
          _flops(d_ff="4 * d"),
          "Assuming the MLP is 4 * d_model wide even when the config says otherwise (d_ff)."),

    # ---------------------------------------------------------------- kv_cache_bytes
    Wrong("kv_cache_bytes", "keys_only", "keys and values",
          _kv("n_layers * n_kv * head_dim * seq_len * batch * bytes_per_value"),
          "Caching the keys only: the cache holds a key and a value per position, a factor 2."),
    Wrong("kv_cache_bytes", "n_heads_not_kv_heads", "n_kv_heads",
          _kv("2 * n_layers * h * head_dim * seq_len * batch * bytes_per_value"),
          "Using n_heads (or d_model) instead of n_kv_heads * head_dim: grouped-query attention "
          "stores only the key/value heads."),
    Wrong("kv_cache_bytes", "bits", "bytes, not bits",
          _kv("2 * n_layers * n_kv * head_dim * seq_len * batch * bytes_per_value * 8"),
          "Counting bits instead of bytes (16 per bf16 number instead of 2)."),
    Wrong("kv_cache_bytes", "layers_forgotten", "every layer",
          _kv("2 * n_kv * head_dim * seq_len * batch * bytes_per_value"),
          "Forgetting the layers: every block keeps its own keys and values."),
    Wrong("kv_cache_bytes", "batch_forgotten", "batch",
          _kv("2 * n_layers * n_kv * head_dim * seq_len * bytes_per_value"),
          "Forgetting the batch: every sequence has its own cache."),

    # ---------------------------------------------------------------- arithmetic_intensity
    Wrong("arithmetic_intensity", "inverted", "FLOPs divided by bytes", '''
def arithmetic_intensity(flops, n_bytes):
    return n_bytes / flops
''', "Dividing bytes by FLOPs: intensity is FLOPs per byte, higher means more work per byte."),
    Wrong("arithmetic_intensity", "floor_division", "true division", '''
def arithmetic_intensity(flops, n_bytes):
    return flops // n_bytes
''', "Floor division (//): 7 FLOPs over 2 bytes is 3.5 FLOP/byte, not 3."),
    Wrong("arithmetic_intensity", "aggregated", "elementwise", '''
import numpy as np
def arithmetic_intensity(flops, n_bytes):
    return np.sum(flops) / np.sum(n_bytes)
''', "Summing arrays into one ratio: with arrays, each pair of FLOPs and bytes has its own intensity."),

    # ---------------------------------------------------------------- roofline_time
    Wrong("roofline_time", "min_not_max", "the larger of the two", '''
import numpy as np
def roofline_time(flops, n_bytes, peak_flops, bandwidth):
    return np.minimum(flops / peak_flops, n_bytes / bandwidth)
''', "Taking the smaller of the compute time and the memory time: the work must do both, so the "
       "bound is the larger."),
    Wrong("roofline_time", "sum_not_max", "overlap", '''
def roofline_time(flops, n_bytes, peak_flops, bandwidth):
    return flops / peak_flops + n_bytes / bandwidth
''', "Adding the compute time and the memory time: computing and moving data overlap, so the "
       "roofline bound is their maximum (the sum is a pessimistic estimate, not a lower bound)."),
    Wrong("roofline_time", "python_max", "np.maximum", '''
def roofline_time(flops, n_bytes, peak_flops, bandwidth):
    return max(flops / peak_flops, n_bytes / bandwidth)
''', "Python's max() on arrays: it raises (or compares whole arrays); use np.maximum elementwise."),
    Wrong("roofline_time", "attainable_flops", "seconds", '''
import numpy as np
def roofline_time(flops, n_bytes, peak_flops, bandwidth):
    return np.minimum(peak_flops, flops / n_bytes * bandwidth)
''', "Returning the attainable FLOP/s (the roof's height) instead of a time."),

    # ---------------------------------------------------------------- generation_time_lower_bound
    Wrong("generation_time_lower_bound", "n_new_decode_steps", "n_new - 1 decode steps",
          _gen(steps="range(P + 1, P + n_new + 1)"),
          "One decode step too many: the prefill already gives the first new token, so n_new tokens "
          "need n_new - 1 decode steps."),
    Wrong("generation_time_lower_bound", "cache_not_growing", "grows by one",
          _gen(step_flops="B * _gt_flops(config, P + 1)", step_bytes="w + _gt_kv(config, P + 1, B, bpv)"),
          "Costing every decode step at the prompt's length: the context, and the cache each step "
          "reads, grow by one token per step."),
    Wrong("generation_time_lower_bound", "weights_per_sequence", "shared by the whole batch",
          _gen(prefill_bytes="B * w + _gt_kv(config, P, B, bpv)", step_bytes="B * w + _gt_kv(config, t, B, bpv)"),
          "Reading the weights once per sequence: one pass reads them once for the whole batch, which "
          "is the point of batching."),
    Wrong("generation_time_lower_bound", "prefill_full_context", "context length t",
          _gen(prefill_flops="B * P * _gt_flops(config, P)"),
          "Costing every prompt token's attention at the full prompt length: with a causal mask, "
          "prompt token t attends to t positions."),
    Wrong("generation_time_lower_bound", "weights_read_once", "every decode step reads all the weights",
          _gen(step_bytes="_gt_kv(config, t, B, bpv)"),
          "Reading the weights only once for the whole generation: every decode step is a full "
          "forward pass and streams all the weights again."),
    Wrong("generation_time_lower_bound", "cache_reads_ignored", "reads the KV cache",
          _gen(step_bytes="w"),
          "Leaving the KV cache out of a decode step's bytes: each step reads the keys and values of "
          "the whole context."),
    Wrong("generation_time_lower_bound", "roofline_of_totals", "each phase separately", _GEN_TOTALS,
          "One roofline for the totals of the whole generation: the phases run one after another, "
          "and a memory-bound phase cannot borrow the compute-bound prefill's spare bandwidth."),
]

CORRECT = ['''
import numpy as np


def flops_per_token(config, seq_len):
    if seq_len < 1:
        raise ValueError("the context includes the token itself")
    L = config["n_layers"]
    d = config["d_model"]
    hd = d // config["n_heads"]
    kv = config["n_kv_heads"] if "n_kv_heads" in config else config["n_heads"]
    ff = config["d_ff"] if "d_ff" in config else 4 * d
    total = 0
    for _ in range(L):
        total += 2 * d * d          # W_Q
        total += 2 * 2 * d * kv * hd  # W_K and W_V
        total += 2 * d * d          # W_O
        total += 2 * 2 * d * ff     # the MLP
        total += 2 * 2 * d * seq_len  # q.k and weights @ V, all query heads (n_heads * hd = d)
    return total + 2 * d * config["vocab_size"]


def kv_cache_bytes(config, seq_len, batch, bytes_per_value):
    kv = config.get("n_kv_heads") or config["n_heads"]
    one_vector = config["d_model"] // config["n_heads"] * bytes_per_value
    return config["n_layers"] * 2 * kv * one_vector * batch * seq_len


def arithmetic_intensity(flops, n_bytes):
    return np.true_divide(flops, n_bytes)


def roofline_time(flops, n_bytes, peak_flops, bandwidth):
    compute = np.divide(flops, peak_flops)
    memory = np.divide(n_bytes, bandwidth)
    return np.where(compute > memory, compute, memory)


def generation_time_lower_bound(config, prompt_len, n_new, batch, bytes_per_value,
                                peak_flops, bandwidth):
    """Prefill, then n_new - 1 decode steps, each bounded by its own roofline."""
    if min(prompt_len, n_new) < 1:
        raise ValueError("nothing to generate")
    d, h, L = config["d_model"], config["n_heads"], config["n_layers"]
    kv_dim = config.get("n_kv_heads", h) * (d // h)
    ff = config.get("d_ff", 4 * d)
    weight_bytes = bytes_per_value * (L * 2 * d * (d + kv_dim + ff) + d * config["vocab_size"])
    contexts = np.arange(1, prompt_len + 1)
    prefill_flops = batch * float(sum(flops_per_token(config, int(t)) for t in contexts))
    times = [roofline_time(prefill_flops, weight_bytes + kv_cache_bytes(config, prompt_len, batch, bytes_per_value),
                           peak_flops, bandwidth)]
    for j in range(1, n_new):
        t = prompt_len + j
        times.append(roofline_time(batch * flops_per_token(config, t),
                                   weight_bytes + kv_cache_bytes(config, t, batch, bytes_per_value),
                                   peak_flops, bandwidth))
    return float(np.sum(times))
''']

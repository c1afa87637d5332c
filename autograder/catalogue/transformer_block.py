"""Wrong and alternative implementations for chapter 4 (04-transformer-block).

The block sources carry their own copies of the read-only building blocks (softmax ...
self_attention, exactly as the notebook gives them) and private helpers `_ln` and `_mlp`,
so each runs on its own and, pasted into a sample submission, does not overwrite the
student's own `layer_norm` or `mlp`.
"""
from . import Wrong

_ATTENTION = '''
import math
import numpy as np

def softmax(x, axis=-1):
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)

def causal_mask(n):
    return np.tril(np.ones((n, n), dtype=bool))

def split_heads(x, n_heads):
    *lead, t, d = x.shape
    if d % n_heads:
        raise ValueError(f"model width {d} is not divisible by {n_heads} heads")
    return np.swapaxes(x.reshape(*lead, t, n_heads, d // n_heads), -2, -3)

def merge_heads(x):
    *lead, h, t, dh = x.shape
    return np.swapaxes(x, -2, -3).reshape(*lead, t, h * dh)

def self_attention(x, w_q, w_k, w_v, w_o, n_heads, causal=True):
    q = split_heads(x @ w_q, n_heads)
    k = split_heads(x @ w_k, n_heads)
    v = split_heads(x @ w_v, n_heads)
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        scores = np.where(causal_mask(x.shape[-2]), scores, -np.inf)
    return merge_heads(softmax(scores, axis=-1) @ v) @ w_o
'''

_HELPERS = _ATTENTION + '''
def _ln(x, g, b, eps=1e-5):
    mu = x.mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(axis=-1, keepdims=True) + eps) * g + b

def _mlp(h, p):
    a = h @ p["w_fc"] + p["b_fc"]
    a = 0.5 * a * (1 + np.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a ** 3)))
    return a @ p["w_proj"] + p["b_proj"]

def _attn(h, p, n_heads, causal=True):
    return self_attention(h, p["w_q"], p["w_k"], p["w_v"], p["w_o"], n_heads, causal=causal)
'''

_GELU = '''
import math
import numpy as np
def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
'''

WRONG = [
    # ---------------------------------------------------------------- layer_norm
    Wrong("layer_norm", "no_centering", "subtract each row's mean first", '''
import numpy as np
def layer_norm(x, gamma, beta, eps=1e-5):
    var = x.var(axis=-1, keepdims=True)
    return x / np.sqrt(var + eps) * gamma + beta
''', "Forgetting to centre: dividing by the standard deviation without subtracting the mean."),
    Wrong("layer_norm", "rms_only", "subtract each row's mean first", '''
import numpy as np
def layer_norm(x, gamma, beta, eps=1e-5):
    return x / np.sqrt((x ** 2).mean(axis=-1, keepdims=True) + eps) * gamma + beta
''', "Dividing by the root mean square without centering (that is RMSNorm, chapter 10, not LayerNorm)."),
    Wrong("layer_norm", "no_scaling", "divide by each row's standard deviation", '''
import numpy as np
def layer_norm(x, gamma, beta, eps=1e-5):
    return (x - x.mean(axis=-1, keepdims=True)) * gamma + beta
''', "Centering without scaling: rows keep whatever spread they had."),
    Wrong("layer_norm", "eps_outside_sqrt", "eps goes inside the square root", '''
import numpy as np
def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    return (x - mean) / (std + eps) * gamma + beta
''', "Adding eps to the standard deviation instead of to the variance: sqrt(var) + eps."),
    Wrong("layer_norm", "unbiased_variance", "not the unbiased one", '''
import numpy as np
def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, ddof=1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta
''', "Using the unbiased variance (ddof=1, as torch.var does by default) instead of dividing by D."),
    Wrong("layer_norm", "wrong_axis", "normalise over the last axis", '''
import numpy as np
def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=0, keepdims=True)
    var = x.var(axis=0, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta
''', "Normalising over axis 0 (each feature across tokens, like BatchNorm) instead of over the features."),
    Wrong("layer_norm", "ignores_eps", "use the eps argument", '''
import numpy as np
def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5) * gamma + beta
''', "Hard-coding eps = 1e-5 instead of using the argument."),
    Wrong("layer_norm", "gamma_beta_swapped", "multiply the normalised rows by gamma", '''
import numpy as np
def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis=-1, keepdims=True) + eps) * beta + gamma
''', "Swapping gamma and beta: scaling by the shift and shifting by the scale."),

    # ---------------------------------------------------------------- gelu
    Wrong("gelu", "exact_erf", "use the tanh approximation", '''
import math
import numpy as np
def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
''', "Using the exact erf GELU where the tanh approximation (GPT-2's) is asked: differences up to 5e-4."),
    Wrong("gelu", "relu", "it is not ReLU", '''
import numpy as np
def gelu(x):
    return np.maximum(x, 0)
''', "Writing ReLU: GELU is smooth and slightly negative for negative inputs."),
    Wrong("gelu", "missing_half", "multiply by 0.5", '''
import math
import numpy as np
def gelu(x):
    return x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
''', "Dropping the 0.5: gelu(x) grows like 2x."),
    Wrong("gelu", "sigmoid_approx", "use the tanh approximation", '''
import numpy as np
def gelu(x):
    return x / (1.0 + np.exp(-1.702 * x))
''', "Using the cruder sigmoid approximation x * sigmoid(1.702 x)."),
    Wrong("gelu", "wrong_cube_coefficient", "0.044715 x^3", '''
import math
import numpy as np
def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.44715 * x ** 3)))
''', "A typo in a constant (0.44715 for 0.044715, or pi/2 for 2/pi)."),

    # ---------------------------------------------------------------- mlp
    Wrong("mlp", "missing_b_fc", "add the bias b_fc", _GELU + '''
def mlp(x, w_fc, b_fc, w_proj, b_proj):
    return gelu(x @ w_fc) @ w_proj + b_proj
''', "Forgetting the hidden bias b_fc."),
    Wrong("mlp", "missing_b_proj", "add the bias b_proj", _GELU + '''
def mlp(x, w_fc, b_fc, w_proj, b_proj):
    return gelu(x @ w_fc + b_fc) @ w_proj
''', "Forgetting the output bias b_proj."),
    Wrong("mlp", "gelu_after_projection", "apply GELU to the hidden layer", _GELU + '''
def mlp(x, w_fc, b_fc, w_proj, b_proj):
    return gelu((x @ w_fc + b_fc) @ w_proj + b_proj)
''', "Applying GELU after the output projection instead of to the hidden layer."),
    Wrong("mlp", "no_activation", "apply GELU to the hidden layer", '''
def mlp(x, w_fc, b_fc, w_proj, b_proj):
    return (x @ w_fc + b_fc) @ w_proj + b_proj
''', "Leaving out the nonlinearity: two linear maps collapse into one."),
    Wrong("mlp", "transposed_weights", "apply the weights as x @ w_fc", _GELU + '''
def mlp(x, w_fc, b_fc, w_proj, b_proj):
    return gelu(x @ w_fc.T + b_fc) @ w_proj.T + b_proj
''', "Applying the weights as x @ w.T (PyTorch's nn.Linear stores them transposed; here they are (in, out))."),

    # ---------------------------------------------------------------- transformer_block
    Wrong("transformer_block", "post_norm", "post-norm", _HELPERS + '''
def transformer_block(x, params, n_heads):
    p = params
    x = _ln(x + _attn(x, p, n_heads), p["ln1_g"], p["ln1_b"])
    return _ln(x + _mlp(x, p), p["ln2_g"], p["ln2_b"])
''', "Writing the post-norm block LN(x + sublayer(x)) of the 2017 Transformer instead of the pre-norm one."),
    Wrong("transformer_block", "norm_on_stream", "normalises the residual stream itself", _HELPERS + '''
def transformer_block(x, params, n_heads):
    p = params
    x = _ln(x, p["ln1_g"], p["ln1_b"])
    x = x + _attn(x, p, n_heads)
    x = _ln(x, p["ln2_g"], p["ln2_b"])
    return x + _mlp(x, p)
''', "Overwriting x with ln(x): the norm lands on the residual stream instead of only on the branch input."),
    Wrong("transformer_block", "missing_attention_residual", "the residual connection", _HELPERS + '''
def transformer_block(x, params, n_heads):
    p = params
    x = _attn(_ln(x, p["ln1_g"], p["ln1_b"]), p, n_heads)
    return x + _mlp(_ln(x, p["ln2_g"], p["ln2_b"]), p)
''', "Dropping the attention residual: x = attn(ln1(x)) loses the token's own embedding."),
    Wrong("transformer_block", "missing_mlp_residual", "the residual connection", _HELPERS + '''
def transformer_block(x, params, n_heads):
    p = params
    x = x + _attn(_ln(x, p["ln1_g"], p["ln1_b"]), p, n_heads)
    return _mlp(_ln(x, p["ln2_g"], p["ln2_b"]), p)
''', "Returning the MLP's output instead of adding it to the stream."),
    Wrong("transformer_block", "ln1_for_both", "the MLP has its own LayerNorm", _HELPERS + '''
def transformer_block(x, params, n_heads):
    p = params
    x = x + _attn(_ln(x, p["ln1_g"], p["ln1_b"]), p, n_heads)
    return x + _mlp(_ln(x, p["ln1_g"], p["ln1_b"]), p)
''', "Reusing ln1's gamma and beta for the MLP's LayerNorm (copy-paste from the attention line)."),
    Wrong("transformer_block", "mlp_reads_block_input", "after the attention residual", _HELPERS + '''
def transformer_block(x, params, n_heads):
    p = params
    h = x + _attn(_ln(x, p["ln1_g"], p["ln1_b"]), p, n_heads)
    return h + _mlp(_ln(x, p["ln2_g"], p["ln2_b"]), p)
''', "Feeding the MLP a norm of the block's input x instead of the stream after the attention residual."),
    Wrong("transformer_block", "not_causal", "causal=True", _HELPERS + '''
def transformer_block(x, params, n_heads):
    p = params
    x = x + _attn(_ln(x, p["ln1_g"], p["ln1_b"]), p, n_heads, causal=False)
    return x + _mlp(_ln(x, p["ln2_g"], p["ln2_b"]), p)
''', "Calling self_attention with causal=False: every token sees the future."),

    # ---------------------------------------------------------------- parallel_block
    Wrong("parallel_block", "sequential_branches", "both branches read the same h = ln1(x)", _HELPERS + '''
def parallel_block(x, params, n_heads):
    p = params
    x = x + _attn(_ln(x, p["ln1_g"], p["ln1_b"]), p, n_heads)
    return x + _mlp(_ln(x, p["ln1_g"], p["ln1_b"]), p)
''', "Running the branches one after the other: the MLP then sees the attention's output."),
    Wrong("parallel_block", "uses_ln2_for_mlp", "the parallel block has a single LayerNorm", _HELPERS + '''
def parallel_block(x, params, n_heads):
    p = params
    a = _attn(_ln(x, p["ln1_g"], p["ln1_b"]), p, n_heads)
    return x + a + _mlp(_ln(x, p["ln2_g"], p["ln2_b"]), p)
''', "Giving the MLP branch its own LayerNorm ln2: the parallel block shares ln1."),
    Wrong("parallel_block", "missing_residual", "add both branch outputs to the block's input", _HELPERS + '''
def parallel_block(x, params, n_heads):
    p = params
    h = _ln(x, p["ln1_g"], p["ln1_b"])
    return _attn(h, p, n_heads) + _mlp(h, p)
''', "Returning only the sum of the branches, without the residual x."),
    Wrong("parallel_block", "sequential_pre_norm", "both branches read the same h = ln1(x)", _HELPERS + '''
def parallel_block(x, params, n_heads):
    p = params
    x = x + _attn(_ln(x, p["ln1_g"], p["ln1_b"]), p, n_heads)
    return x + _mlp(_ln(x, p["ln2_g"], p["ln2_b"]), p)
''', "Returning the ordinary sequential pre-norm block under the parallel block's name."),
]

CORRECT = [
    '''
import numpy as np
def layer_norm(x, gamma, beta, eps=1e-5):
    centred = x - np.mean(x, axis=-1, keepdims=True)
    inv_std = 1.0 / np.sqrt(np.var(x, axis=-1, keepdims=True) + eps)
    return gamma * (centred * inv_std) + beta
''',
    '''
import numpy as np
def gelu(x):
    inner = np.sqrt(2 / np.pi) * (x + 0.044715 * np.power(x, 3))
    return x * 0.5 * (1 + np.tanh(inner))
''',
    _GELU + '''
def mlp(x, w_fc, b_fc, w_proj, b_proj):
    hidden = np.einsum("...d,dh->...h", x, w_fc) + b_fc
    return np.einsum("...h,hd->...d", gelu(hidden), w_proj) + b_proj
''',
    _HELPERS + '''
def transformer_block(x, params, n_heads):
    attn_in = _ln(x, params["ln1_g"], params["ln1_b"])
    resid = x + self_attention(attn_in, params["w_q"], params["w_k"], params["w_v"], params["w_o"], n_heads)
    mlp_in = _ln(resid, params["ln2_g"], params["ln2_b"])
    return resid + _mlp(mlp_in, params)
''',
    _HELPERS + '''
def parallel_block(x, params, n_heads):
    h = _ln(x, params["ln1_g"], params["ln1_b"])
    branches = [_attn(h, params, n_heads), _mlp(h, params)]
    return x + sum(branches)
''',
]

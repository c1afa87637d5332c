"""Wrong and alternative implementations for chapter 9 (09-gpt-pytorch)."""
from . import Wrong

WRONG = [
    # ------------------------------------------------------------------ get_batch
    Wrong("get_batch", "targets_not_shifted", "shifted by ONE position", '''
import numpy as np
def get_batch(data, batch_size, block_size, rng):
    if len(data) <= block_size:
        raise ValueError("data too short")
    starts = rng.integers(0, len(data) - block_size, size=batch_size)
    x = np.stack([data[s:s + block_size] for s in starts])
    return x, x.copy()
''', "Returning the inputs themselves as targets: the model learns to copy, not to predict the next token."),
    Wrong("get_batch", "start_past_end", "leave room for the target window", '''
import numpy as np
def get_batch(data, batch_size, block_size, rng):
    if len(data) <= block_size:
        raise ValueError("data too short")
    starts = rng.integers(0, len(data) - block_size + 1, size=batch_size)
    idx = starts[:, None] + np.arange(block_size)
    return data[idx], data[idx + 1]
''', "Drawing starts up to len(data) - block_size: the last window has no next token for its target."),
    Wrong("get_batch", "never_last_window", "ALL valid starts", '''
import numpy as np
def get_batch(data, batch_size, block_size, rng):
    if len(data) <= block_size:
        raise ValueError("data too short")
    starts = rng.integers(0, len(data) - block_size - 1, size=batch_size)
    idx = starts[:, None] + np.arange(block_size)
    return data[idx], data[idx + 1]
''', "Subtracting one too many from the upper end (rng.integers already excludes it): the last window is never seen."),
    Wrong("get_batch", "global_random", "never np.random", '''
import numpy as np
def get_batch(data, batch_size, block_size, rng):
    if len(data) <= block_size:
        raise ValueError("data too short")
    starts = np.random.randint(0, len(data) - block_size, size=batch_size)
    idx = starts[:, None] + np.arange(block_size)
    return data[idx], data[idx + 1]
''', "Drawing from np.random instead of the rng argument: batches cannot be reproduced from a seed."),
    Wrong("get_batch", "one_start_per_batch", "one per row", '''
import numpy as np
def get_batch(data, batch_size, block_size, rng):
    if len(data) <= block_size:
        raise ValueError("data too short")
    s = int(rng.integers(0, len(data) - block_size))
    x = np.tile(data[s:s + block_size], (batch_size, 1))
    y = np.tile(data[s + 1:s + 1 + block_size], (batch_size, 1))
    return x, y
''', "Drawing one start for the whole batch: every row is the same window."),
    Wrong("get_batch", "swapped_inputs_targets", "return (x, y) in this order", '''
import numpy as np
def get_batch(data, batch_size, block_size, rng):
    if len(data) <= block_size:
        raise ValueError("data too short")
    starts = rng.integers(0, len(data) - block_size, size=batch_size)
    idx = starts[:, None] + np.arange(block_size)
    return data[idx + 1], data[idx]
''', "Swapping inputs and targets: the model would learn to predict the previous token."),

    # ------------------------------------------------------------------ cross_entropy
    Wrong("cross_entropy", "mean_over_all_positions", "not by all positions", '''
import torch
def cross_entropy(logits, targets, ignore_index=-100):
    logp = torch.log_softmax(logits, dim=-1)
    keep = targets != ignore_index
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(picked * keep).sum() / targets.numel()
''', "Masking the ignored positions out of the sum but still dividing by all positions: padding shrinks the loss."),
    Wrong("cross_entropy", "exp_without_max", "exp of large logits overflows", '''
import torch
def cross_entropy(logits, targets, ignore_index=-100):
    keep = targets != ignore_index
    e = torch.exp(logits)
    p = e / e.sum(dim=-1, keepdim=True)
    picked = p[keep].gather(-1, targets[keep].unsqueeze(-1)).squeeze(-1)
    return -torch.log(picked).mean()
''', "Exponentiating raw logits: exp(100) is already inf in float32, and the loss becomes NaN."),
    Wrong("cross_entropy", "softmax_over_time", "over the last axis", '''
import torch
def cross_entropy(logits, targets, ignore_index=-100):
    logp = torch.log_softmax(logits, dim=1)
    keep = targets != ignore_index
    return -logp[keep].gather(-1, targets[keep].unsqueeze(-1)).mean()
''', "Normalising over axis 1 (the positions of a (B, T, V) batch) instead of the vocabulary."),
    Wrong("cross_entropy", "sum_not_mean", "not the sum", '''
import torch
def cross_entropy(logits, targets, ignore_index=-100):
    logp = torch.log_softmax(logits, dim=-1)
    keep = targets != ignore_index
    return -logp[keep].gather(-1, targets[keep].unsqueeze(-1)).sum()
''', "Summing instead of averaging: the loss, and the right learning rate, then depend on the batch size."),
    Wrong("cross_entropy", "ignore_index_not_masked", "leave out the positions whose target is ignore_index", '''
import torch
def cross_entropy(logits, targets, ignore_index=-100):
    logp = torch.log_softmax(logits, dim=-1)
    return -logp.gather(-1, targets.unsqueeze(-1)).mean()
''', "Gathering at every target, ignore_index (-100) included: an index error, or a wrong loss."),
    Wrong("cross_entropy", "plus_log_prob", "MINUS the log-probability", '''
import torch
def cross_entropy(logits, targets, ignore_index=-100):
    logp = torch.log_softmax(logits, dim=-1)
    keep = targets != ignore_index
    return logp[keep].gather(-1, targets[keep].unsqueeze(-1)).mean()
''', "Forgetting the minus sign: minimising it would make the right tokens less likely."),
    Wrong("cross_entropy", "returns_python_float", "0-dim tensor", '''
import torch
def cross_entropy(logits, targets, ignore_index=-100):
    logp = torch.log_softmax(logits, dim=-1)
    keep = targets != ignore_index
    return -logp[keep].gather(-1, targets[keep].unsqueeze(-1)).mean().item()
''', "Returning loss.item(): a Python number has no gradient, so loss.backward() is impossible."),

    # ------------------------------------------------------------------ weight_decay_groups
    Wrong("weight_decay_groups", "decays_wpe", "wpe is not decayed", '''
def weight_decay_groups(named_shapes):
    decay = [n for n, s in named_shapes.items() if len(s) >= 2]
    return decay, [n for n in named_shapes if n not in decay]
''', "Decaying every 2-D parameter, the position table wpe included (another common convention, not this course's)."),
    Wrong("weight_decay_groups", "decays_everything", "never decay biases and LayerNorm", '''
def weight_decay_groups(named_shapes):
    wpe = [n for n in named_shapes if n.split(".")[-1] == "wpe"]
    return [n for n in named_shapes if n not in wpe], wpe
''', "Decaying biases and LayerNorm gains too: the decay pulls the gains towards 0 and fights the normalisation."),
    Wrong("weight_decay_groups", "decays_nothing", "decay the weight matrices", '''
def weight_decay_groups(named_shapes):
    return [], list(named_shapes)
''', "Decaying nothing: AdamW becomes Adam, and the weight matrices are not regularised."),
    Wrong("weight_decay_groups", "wpe_exact_name_only", "wpe is not decayed", '''
def weight_decay_groups(named_shapes):
    decay = [n for n, s in named_shapes.items() if len(s) >= 2 and n != "wpe"]
    return decay, [n for n in named_shapes if n not in decay]
''', "Recognising only a top-level `wpe`: a nested `encoder.wpe` is decayed."),
    Wrong("weight_decay_groups", "swapped_lists", "in this order", '''
def weight_decay_groups(named_shapes):
    decay = [n for n, s in named_shapes.items() if len(s) >= 2 and n.split(".")[-1] != "wpe"]
    return [n for n in named_shapes if n not in decay], decay
''', "Returning (no_decay, decay): the decay then hits exactly the wrong parameters."),
    Wrong("weight_decay_groups", "embeddings_not_decayed", "wte is a matrix", '''
def weight_decay_groups(named_shapes):
    decay = [n for n, s in named_shapes.items() if len(s) >= 2 and n.split(".")[-1] not in ("wpe", "wte")]
    return decay, [n for n in named_shapes if n not in decay]
''', "Treating the tied token embedding as a lookup table only: it is also the output layer's matrix."),

    # ------------------------------------------------------------------ lr_at
    Wrong("lr_at", "warmup_starts_at_zero", "the very first step", '''
import math
def lr_at(step, max_lr, min_lr, warmup, total):
    if step < warmup:
        return max_lr * step / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / (total - warmup)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))
''', "Warming up with step / warmup: the first step has learning rate 0 and is wasted."),
    Wrong("lr_at", "decays_to_zero", "not to 0", '''
import math
def lr_at(step, max_lr, min_lr, warmup, total):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / (total - warmup)
    return 0.5 * max_lr * (1 + math.cos(math.pi * progress))
''', "A cosine from max_lr to 0 instead of to min_lr (and then a jump up to min_lr after the end)."),
    Wrong("lr_at", "no_clamp_after_total", "must not rise again", '''
import math
def lr_at(step, max_lr, min_lr, warmup, total):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    progress = (step - warmup) / (total - warmup)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))
''', "No clamp after the end: past `total` the cosine climbs back towards max_lr."),
    Wrong("lr_at", "progress_from_step_zero", "from the end of the warm-up", '''
import math
def lr_at(step, max_lr, min_lr, warmup, total):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = step / total
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))
''', "Measuring the cosine's progress from step 0: the rate drops abruptly when the warm-up ends."),
    Wrong("lr_at", "linear_decay", "half a cosine", '''
def lr_at(step, max_lr, min_lr, warmup, total):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / (total - warmup)
    return max_lr - (max_lr - min_lr) * progress
''', "A linear decay where a cosine was asked for (a schedule of its own, but not this one)."),

    # ------------------------------------------------------------------ adamw_step
    Wrong("adamw_step", "l2_not_decoupled", "don't add weight_decay * p to the gradient", '''
import torch
def adamw_step(params, grads, m, v, step, lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, no_decay=()):
    b1, b2 = betas
    new_p, new_m, new_v = {}, {}, {}
    for k, p in params.items():
        g = grads[k]
        if k not in no_decay:
            g = g + weight_decay * p
        new_m[k] = b1 * m[k] + (1 - b1) * g
        new_v[k] = b2 * v[k] + (1 - b2) * g * g
        m_hat = new_m[k] / (1 - b1 ** step)
        v_hat = new_v[k] / (1 - b2 ** step)
        new_p[k] = p - lr * m_hat / (torch.sqrt(v_hat) + eps)
    return new_p, new_m, new_v
''', "Adding weight_decay * p to the gradient (Adam with L2): Adam's normalisation then rescales the decay."),
    Wrong("adamw_step", "no_bias_correction", "(the bias correction)", '''
import torch
def adamw_step(params, grads, m, v, step, lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, no_decay=()):
    b1, b2 = betas
    new_p, new_m, new_v = {}, {}, {}
    for k, p in params.items():
        g = grads[k]
        new_m[k] = b1 * m[k] + (1 - b1) * g
        new_v[k] = b2 * v[k] + (1 - b2) * g * g
        if k not in no_decay:
            p = p * (1 - lr * weight_decay)
        new_p[k] = p - lr * new_m[k] / (torch.sqrt(new_v[k]) + eps)
    return new_p, new_m, new_v
''', "Skipping the bias correction: the first steps use averages that are still biased towards their zero start."),
    Wrong("adamw_step", "decays_no_decay_params", "get no weight decay at all", '''
import torch
def adamw_step(params, grads, m, v, step, lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, no_decay=()):
    b1, b2 = betas
    new_p, new_m, new_v = {}, {}, {}
    for k, p in params.items():
        g = grads[k]
        new_m[k] = b1 * m[k] + (1 - b1) * g
        new_v[k] = b2 * v[k] + (1 - b2) * g * g
        m_hat = new_m[k] / (1 - b1 ** step)
        v_hat = new_v[k] / (1 - b2 ** step)
        p = p * (1 - lr * weight_decay)
        new_p[k] = p - lr * m_hat / (torch.sqrt(v_hat) + eps)
    return new_p, new_m, new_v
''', "Decaying every parameter, no_decay ignored: LayerNorm gains and biases shrink towards 0."),
    Wrong("adamw_step", "step_counted_from_zero", "step counts from 1", '''
import torch
def adamw_step(params, grads, m, v, step, lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, no_decay=()):
    b1, b2 = betas
    t = step + 1
    new_p, new_m, new_v = {}, {}, {}
    for k, p in params.items():
        g = grads[k]
        new_m[k] = b1 * m[k] + (1 - b1) * g
        new_v[k] = b2 * v[k] + (1 - b2) * g * g
        m_hat = new_m[k] / (1 - b1 ** t)
        v_hat = new_v[k] / (1 - b2 ** t)
        if k not in no_decay:
            p = p * (1 - lr * weight_decay)
        new_p[k] = p - lr * m_hat / (torch.sqrt(v_hat) + eps)
    return new_p, new_m, new_v
''', "Bias-correcting with beta ** (step + 1): the corrections are computed for the next step, not this one."),
    Wrong("adamw_step", "eps_inside_sqrt", "eps is added after the square root", '''
import torch
def adamw_step(params, grads, m, v, step, lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, no_decay=()):
    b1, b2 = betas
    new_p, new_m, new_v = {}, {}, {}
    for k, p in params.items():
        g = grads[k]
        new_m[k] = b1 * m[k] + (1 - b1) * g
        new_v[k] = b2 * v[k] + (1 - b2) * g * g
        m_hat = new_m[k] / (1 - b1 ** step)
        v_hat = new_v[k] / (1 - b2 ** step)
        if k not in no_decay:
            p = p * (1 - lr * weight_decay)
        new_p[k] = p - lr * m_hat / torch.sqrt(v_hat + eps)
    return new_p, new_m, new_v
''', "Putting eps inside the square root: a different optimizer, whose steps shrink for small gradients."),
    Wrong("adamw_step", "decay_without_lr", "scaled by the learning rate", '''
import torch
def adamw_step(params, grads, m, v, step, lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, no_decay=()):
    b1, b2 = betas
    new_p, new_m, new_v = {}, {}, {}
    for k, p in params.items():
        g = grads[k]
        new_m[k] = b1 * m[k] + (1 - b1) * g
        new_v[k] = b2 * v[k] + (1 - b2) * g * g
        m_hat = new_m[k] / (1 - b1 ** step)
        v_hat = new_v[k] / (1 - b2 ** step)
        if k not in no_decay:
            p = p * (1 - weight_decay)
        new_p[k] = p - lr * m_hat / (torch.sqrt(v_hat) + eps)
    return new_p, new_m, new_v
''', "Shrinking by weight_decay instead of lr * weight_decay: with 0.1 every weight loses 10% per step."),
    Wrong("adamw_step", "returns_old_moments", "UPDATED running averages", '''
import torch
def adamw_step(params, grads, m, v, step, lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, no_decay=()):
    b1, b2 = betas
    new_p = {}
    for k, p in params.items():
        g = grads[k]
        mk = b1 * m[k] + (1 - b1) * g
        vk = b2 * v[k] + (1 - b2) * g * g
        if k not in no_decay:
            p = p * (1 - lr * weight_decay)
        new_p[k] = p - lr * (mk / (1 - b1 ** step)) / (torch.sqrt(vk / (1 - b2 ** step)) + eps)
    return new_p, m, v
''', "Returning the old m and v: every step then starts Adam's averages from scratch."),
]

CORRECT = [
    # One start at a time with rng.integers(high): other draws, the same distribution.
    '''
import numpy as np
def get_batch(data, batch_size, block_size, rng):
    data = np.asarray(data)
    n_starts = len(data) - block_size
    if n_starts <= 0:
        raise ValueError("not enough data for one window")
    xs, ys = [], []
    for _ in range(batch_size):
        s = int(rng.integers(n_starts))
        xs.append(data[s:s + block_size])
        ys.append(data[s + 1:s + 1 + block_size])
    return np.stack(xs), np.stack(ys)
''',
    # rng.choice over the valid starts, and one (B, T + 1) gather split in two.
    '''
import numpy as np
def get_batch(data, batch_size, block_size, rng):
    if len(data) < block_size + 1:
        raise ValueError("data too short")
    starts = rng.choice(len(data) - block_size, size=batch_size, replace=True)
    chunk = data[starts[:, None] + np.arange(block_size + 1)]
    return chunk[:, :-1], chunk[:, 1:]
''',
    # logsumexp minus the target's logit, with a float mask instead of boolean indexing.
    '''
import torch
def cross_entropy(logits, targets, ignore_index=-100):
    keep = targets != ignore_index
    safe = torch.where(keep, targets, torch.zeros_like(targets))
    target_logit = torch.gather(logits, -1, safe.unsqueeze(-1)).squeeze(-1)
    nll = torch.logsumexp(logits, dim=-1) - target_logit
    w = keep.to(logits.dtype)
    return (nll * w).sum() / w.sum()
''',
    '''
def weight_decay_groups(named_shapes):
    def decayed(name):
        *_, last = name.split(".")
        return len(named_shapes[name]) > 1 and last != "wpe"
    names = list(named_shapes)
    return [n for n in names if decayed(n)], [n for n in names if not decayed(n)]
''',
    # The cosine written as a weight that falls from 1 to 0.
    '''
import math
def lr_at(step, max_lr, min_lr, warmup, total):
    if step >= total:
        return min_lr
    if warmup > 0 and step < warmup:
        return max_lr * (step + 1) / warmup
    frac = (step - warmup) / (total - warmup)
    w = (math.cos(math.pi * frac) + 1) / 2
    return w * max_lr + (1 - w) * min_lr
''',
    # The textbook form, updating the tensors in place and returning the same dicts.
    '''
import math
import torch
def adamw_step(params, grads, m, v, step, lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, no_decay=()):
    beta1, beta2 = betas
    for name in params:
        g = grads[name]
        m[name].mul_(beta1).add_(g, alpha=1 - beta1)
        v[name].mul_(beta2).add_(g * g, alpha=1 - beta2)
        m_hat = m[name] / (1 - beta1 ** step)
        v_hat = v[name] / (1 - beta2 ** step)
        if name not in no_decay:
            params[name].mul_(1 - lr * weight_decay)
        params[name].sub_(lr * m_hat / (v_hat.sqrt() + eps))
    return params, m, v
''',
]

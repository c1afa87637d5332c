"""Chapter 9 reference: the pieces that train a GPT.

A training loop is five small decisions stacked on top of the model: which windows of
text make a batch (`get_batch`), how wrong a prediction is (`cross_entropy`), which
parameters weight decay may shrink (`weight_decay_groups`), how large a step is at each
moment (`lr_at`), and how one step changes the weights (`adamw_step`).
`models/tiny_gpt.py` trains the course's checkpoint with exactly these functions, so the
model of chapters 5, 6 and 15 comes out of this chapter's code.

`cross_entropy` and `adamw_step` work on torch tensors; `get_batch` on NumPy arrays;
`weight_decay_groups` and `lr_at` on plain Python values.
"""
import math

import numpy as np
import torch


def get_batch(data, batch_size, block_size, rng):
    """A random batch of training windows and, for each, its next-token targets.

    data: a 1-D integer NumPy array of token ids (the whole training text);
    rng: a np.random.Generator, the only source of randomness (never np.random.*), so
    that equal generators give equal batches.
    Draw batch_size start positions s uniformly among ALL valid starts, that is every s
    with s + block_size < len(data) (the target window must fit too), for example with
    rng.integers(0, len(data) - block_size, size=batch_size). For each start return
        x[b] = data[s : s + block_size]            the inputs
        y[b] = data[s + 1 : s + block_size + 1]    the targets: each position's next token
    Returns (x, y): two integer arrays (batch_size, block_size) of data's dtype.
    Raises ValueError if len(data) <= block_size (no window fits).
    """
    data = np.asarray(data)
    if len(data) <= block_size:
        raise ValueError(f"{len(data)} tokens cannot hold a window of {block_size} plus its target")
    starts = np.asarray(rng.integers(0, len(data) - block_size, size=batch_size))
    idx = starts[:, None] + np.arange(block_size)
    return data[idx], data[idx + 1]


def cross_entropy(logits, targets, ignore_index=-100):
    """Mean cross-entropy of next-token predictions, in nats (torch tensors).

    logits: a float tensor (..., V), for a batch (B, T, V); targets: an int64 tensor of
    logits' leading shape, (B, T), holding token ids in [0, V), or ignore_index at
    positions that do not count (padding, for instance).
    At each counted position the loss is -log softmax(logits)[target], that is
    logsumexp(logits) - logits[target]; return its mean over the counted positions
    only (the ignored ones count neither in the sum nor in the number you divide by).
    Compute it stably, with torch.log_softmax or torch.logsumexp over the last axis
    (never log(softmax(...)) or exp of the raw logits: they overflow at logits near 100).
    Use torch operations, so that autograd can differentiate the result.
    Returns a 0-dim tensor of logits' dtype.
    """
    v = logits.shape[-1]
    logp = torch.log_softmax(logits.reshape(-1, v), dim=-1)  # log-probabilities, stable
    t = targets.reshape(-1)
    keep = t != ignore_index
    return -logp[keep, t[keep]].mean()


def weight_decay_groups(named_shapes):
    """Split the parameters into those that AdamW's weight decay shrinks and the rest.

    named_shapes: a dict name -> shape (a tuple of ints), for example
    {"wte": (V, D), "wpe": (P, D), "blocks.0.ln1_g": (D,), "blocks.0.w_q": (D, D), ...}.
    The convention of this course: decay the weights of matrix multiplications, every
    parameter with 2 or more dimensions, the token embedding wte included (it is also
    the output layer, logits = h @ wte.T); never decay biases, LayerNorm gains and shifts
    (1-D), scalars (0-D), nor the position-embedding table, the parameter whose name,
    or the last dot-separated part of it, is "wpe" (a table that is looked up and
    added, never multiplied).
    Returns (decay, no_decay): two lists of names; every name is in exactly one of them
    (the order within a list does not matter).
    """
    decay, no_decay = [], []
    for name, shape in named_shapes.items():
        is_matrix = len(shape) >= 2 and name.split(".")[-1] != "wpe"
        (decay if is_matrix else no_decay).append(name)
    return decay, no_decay


def lr_at(step, max_lr, min_lr, warmup, total):
    """The learning rate of optimizer step `step` (counted from 0): linear warm-up, then
    cosine decay from max_lr to min_lr.

    * warm-up, step < warmup: lr = max_lr * (step + 1) / warmup. It grows linearly,
      the very first step already moves (lr is never 0), and step warmup - 1 is at max_lr;
    * decay, warmup <= step < total: with progress = (step - warmup) / (total - warmup),
      which goes from 0 towards 1, lr = min_lr + (max_lr - min_lr) * (1 + cos(pi * progress)) / 2,
      which is max_lr at step == warmup and falls to min_lr at step == total;
    * from step == total on: lr = min_lr (it stays there).
    A run of `total` steps uses steps 0 .. total - 1. warmup may be 0. Returns a float.
    """
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / (total - warmup)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def adamw_step(params, grads, m, v, step, lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, no_decay=()):
    """One AdamW update of every parameter (torch tensors).

    params, grads, m, v: dicts name -> tensor with the same names and shapes; m and v are
    Adam's running averages of the gradient and of its square (zeros before the first step).
    step: the number of this update, counted from 1 (the bias correction uses beta ** step);
    lr: the learning rate of this step; betas = (beta1, beta2); no_decay: the names that
    get no weight decay. For every name, with p = params[name] and g = grads[name]:
        m     = beta1 * m + (1 - beta1) * g
        v     = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1 ** step),   v_hat = v / (1 - beta2 ** step)
        p     = p * (1 - lr * weight_decay)    decoupled weight decay: it shrinks the weight
                                               itself, it is NOT added to the gradient; and
                                               not at all for the names in no_decay
        p     = p - lr * m_hat / (sqrt(v_hat) + eps)
    Returns (params, m, v) after the step: three dicts with the same names, tensors of
    the inputs' dtype. (Updating the tensors in place and returning them is fine too.)
    """
    beta1, beta2 = betas
    bias1 = 1 - beta1 ** step
    bias2 = 1 - beta2 ** step
    new_params, new_m, new_v = {}, {}, {}
    for name, p in params.items():
        g = grads[name]
        if weight_decay and name not in no_decay:
            p = p * (1 - lr * weight_decay)
        # torch.lerp(m, g, 1 - beta1) is beta1 * m + (1 - beta1) * g, and addcmul adds
        # (1 - beta2) * g * g; both round exactly as torch.optim.AdamW does, so that
        # training with this function reproduces training with torch's optimizer bit for bit.
        new_m[name] = torch.lerp(m[name], g, 1 - beta1)
        new_v[name] = torch.addcmul(v[name] * beta2, g, g, value=1 - beta2)
        denom = new_v[name].sqrt() / bias2 ** 0.5 + eps       # sqrt(v_hat) + eps
        new_params[name] = p - (lr / bias1) * new_m[name] / denom  # lr * m_hat / denom
    return new_params, new_m, new_v

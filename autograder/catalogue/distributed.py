"""Wrong and alternative implementations for chapter 17 (17-distributed)."""
from . import Wrong

# A correct shard_batch under a private name, so that a zero1_step source pasted into a
# notebook (the sample submissions) does not replace the student's own shard_batch.
_SHARD = '''
import numpy as np
def _zero_shard(n, r, p):
    base, extra = divmod(n, p)
    start = r * base + min(r, extra)
    return np.arange(start, start + base + (r < extra))
'''


def _zero(body: str) -> str:
    """A zero1_step whose per-rank loop body is `body` (the sources differ only there)."""
    return _SHARD + '''
def zero1_step(params, grads, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    p, n = params.shape
    new_params, m, v = params.copy(), m.copy(), v.copy()
''' + body


_ADAM_SHARD = '''
        m[r, :k] = beta1 * m[r, :k] + (1 - beta1) * g
        v[r, :k] = beta2 * v[r, :k] + (1 - beta2) * g * g
        m_hat = m[r, :k] / (1 - beta1 ** t)
        v_hat = v[r, :k] / (1 - beta2 ** t)
        w = params[r, idx] * (1 - lr * weight_decay) - lr * m_hat / (np.sqrt(v_hat) + eps)
'''

_RING = '''
import numpy as np
def ring_allreduce(chunks):
    x = np.array(chunks, copy=True)
    p, n = x.shape
    bounds = np.cumsum([0] + [len(c) for c in np.array_split(np.arange(n), p)])
    part = lambda c: slice(bounds[c], bounds[c + 1])
    sent = np.zeros(p, dtype=np.int64)
'''

WRONG = [
    Wrong("shard_batch", "drops_remainder", "must not drop items", '''
import numpy as np
def shard_batch(n_items, rank, world_size):
    size = n_items // world_size
    return np.arange(rank * size, (rank + 1) * size)
''', "Giving every rank n // p items: the n % p items left over are never trained on."),
    Wrong("shard_batch", "same_seed_every_rank", "depend on the rank", '''
import numpy as np
def shard_batch(n_items, rank, world_size):
    rng = np.random.default_rng(0)          # the same seed on every rank
    size = n_items // world_size + (rank < n_items % world_size)
    return np.sort(rng.permutation(n_items)[:size])
''', "Shuffling with the same seed on every rank and taking the first items: every rank gets the "
         "same shard, and the ranks compute the same gradient."),
    Wrong("shard_batch", "strided", "contiguous shards", '''
import numpy as np
def shard_batch(n_items, rank, world_size):
    return np.arange(rank, n_items, world_size)
''', "Every p-th item (what torch's DistributedSampler does) instead of the contiguous shard that "
         "the exercise's convention asks for."),
    Wrong("shard_batch", "last_rank_takes_rest", "differ by at most 1", '''
import numpy as np
def shard_batch(n_items, rank, world_size):
    size = n_items // world_size
    stop = n_items if rank == world_size - 1 else (rank + 1) * size
    return np.arange(rank * size, stop)
''', "Putting the whole remainder on the last rank: it gets up to p - 1 items more and the others wait for it."),
    Wrong("shard_batch", "ceil_size", "differ by at most 1", '''
import numpy as np
def shard_batch(n_items, rank, world_size):
    size = -(-n_items // world_size)
    return np.arange(min(rank * size, n_items), min((rank + 1) * size, n_items))
''', "Shards of ceil(n / p) items: the last ranks get fewer items, or none at all."),

    Wrong("average_gradients", "sum_not_mean", "not the sum", '''
import numpy as np
def average_gradients(grads_per_rank, counts=None):
    g = np.asarray(grads_per_rank)
    total = g.sum(axis=0)
    return np.broadcast_to(total, g.shape).copy()
''', "Summing the ranks' gradients without dividing: the step is p times too large."),
    Wrong("average_gradients", "ignores_counts", "weight each rank by", '''
import numpy as np
def average_gradients(grads_per_rank, counts=None):
    g = np.asarray(grads_per_rank)
    return np.broadcast_to(g.mean(axis=0), g.shape).copy()
''', "A plain mean over ranks when the shards are uneven: the items of a small shard count more."),
    Wrong("average_gradients", "one_result", "every rank must hold the result", '''
import numpy as np
def average_gradients(grads_per_rank, counts=None):
    g = np.asarray(grads_per_rank)
    if counts is None:
        return g.mean(axis=0)
    c = np.asarray(counts, dtype=float)
    return np.tensordot(c / c.sum(), g, axes=1)
''', "Returning one averaged gradient (a reduce to one rank) instead of one copy per rank (an all-reduce)."),
    Wrong("average_gradients", "weighted_over_world_size", "divide the weighted sum by the total", '''
import numpy as np
def average_gradients(grads_per_rank, counts=None):
    g = np.asarray(grads_per_rank)
    c = np.ones(len(g)) if counts is None else np.asarray(counts, dtype=float)
    avg = np.tensordot(c, g, axes=1) / len(g)
    return np.broadcast_to(avg, g.shape).copy()
''', "Weighting by the shard sizes but dividing by the number of ranks instead of the number of items."),

    Wrong("ring_allreduce", "wrong_rotation", "(r - s) mod p", _RING + '''
    for s in range(p - 1):                       # reduce-scatter, chunk index turning the wrong way
        msgs = [(r, (r + s) % p, x[r, part((r + s) % p)].copy()) for r in range(p)]
        for r, c, data in msgs:
            x[(r + 1) % p, part(c)] += data
            sent[r] += data.size
    for s in range(p - 1):
        msgs = [(r, (r + 1 - s) % p, x[r, part((r + 1 - s) % p)].copy()) for r in range(p)]
        for r, c, data in msgs:
            x[(r + 1) % p, part(c)] = data
            sent[r] += data.size
    return x, sent
''', "Turning the chunk index the wrong way (rank r sends chunk (r + s) mod p): partial sums are sent "
         "before they have been added to, and the result misses contributions."),
    Wrong("ring_allreduce", "no_all_gather", "the all-gather", _RING + '''
    for s in range(p - 1):
        msgs = [(r, (r - s) % p, x[r, part((r - s) % p)].copy()) for r in range(p)]
        for r, c, data in msgs:
            x[(r + 1) % p, part(c)] += data
            sent[r] += data.size
    return x, sent
''', "Stopping after the reduce-scatter: each rank holds the complete sum of one chunk only."),
    Wrong("ring_allreduce", "send_everything", "not its whole vector", '''
import numpy as np
def ring_allreduce(chunks):
    x = np.asarray(chunks)
    p, n = x.shape
    total = x.sum(axis=0)                       # every rank receives every other rank's vector
    return np.tile(total, (p, 1)), np.full(p, (p - 1) * n)
''', "The naive all-reduce, every rank sending its whole vector to every other: (p - 1) n elements per "
         "rank instead of 2 (p - 1) / p n, a volume that grows with p."),
    Wrong("ring_allreduce", "mean_not_sum", "don't divide by p", _RING + '''
    for s in range(p - 1):
        msgs = [(r, (r - s) % p, x[r, part((r - s) % p)].copy()) for r in range(p)]
        for r, c, data in msgs:
            x[(r + 1) % p, part(c)] += data
            sent[r] += data.size
    for s in range(p - 1):
        msgs = [(r, (r + 1 - s) % p, x[r, part((r + 1 - s) % p)].copy()) for r in range(p)]
        for r, c, data in msgs:
            x[(r + 1) % p, part(c)] = data
            sent[r] += data.size
    return x / p, sent
''', "Dividing by p inside the all-reduce: the collective adds; averaging is the caller's business."),
    Wrong("ring_allreduce", "counts_one_phase", "both phases", _RING + '''
    for s in range(p - 1):
        msgs = [(r, (r - s) % p, x[r, part((r - s) % p)].copy()) for r in range(p)]
        for r, c, data in msgs:
            x[(r + 1) % p, part(c)] += data
            sent[r] += data.size
    for s in range(p - 1):
        msgs = [(r, (r + 1 - s) % p, x[r, part((r + 1 - s) % p)].copy()) for r in range(p)]
        for r, c, data in msgs:
            x[(r + 1) % p, part(c)] = data
    return x, sent
''', "Counting only the reduce-scatter's messages: the all-gather sends as much again."),
    Wrong("ring_allreduce", "sum_shortcut", "add the way the ring does", '''
import numpy as np
def ring_allreduce(chunks):
    x = np.asarray(chunks)
    p, n = x.shape
    sizes = np.array([len(c) for c in np.array_split(np.arange(n), p)])
    sent = np.array([sum(sizes[(r - s) % p] for s in range(p - 1)) +
                     sum(sizes[(r + 1 - s) % p] for s in range(p - 1)) for r in range(p)])
    return np.tile(x.sum(axis=0), (p, 1)), sent
''', "Computing the sum with np.sum and the counts from the formula: the numbers of a ring, without "
         "the ring, and its rounding gives it away."),

    Wrong("zero1_step", "no_all_gather", "all-gather", _zero('''
    for r in range(p):
        idx = _zero_shard(n, r, p)
        k = len(idx)
        g = grads[:, idx].mean(axis=0)
''' + _ADAM_SHARD + '''
        new_params[r, idx] = w                  # only this rank's own copy
    return new_params, m, v
'''), "Forgetting the all-gather: every rank updates its own shard, and the other shards of its copy "
         "stay stale, so the ranks' models drift apart."),
    Wrong("zero1_step", "local_gradient", "reduce-scatter", _zero('''
    for r in range(p):
        idx = _zero_shard(n, r, p)
        k = len(idx)
        g = grads[r, idx]                       # this rank's gradient only
''' + _ADAM_SHARD + '''
        new_params[:, idx] = w
    return new_params, m, v
'''), "Updating a shard with the owner's own gradient instead of the average over ranks (no reduce-scatter)."),
    Wrong("zero1_step", "sum_gradients", "not the sum", _zero('''
    for r in range(p):
        idx = _zero_shard(n, r, p)
        k = len(idx)
        g = grads[:, idx].sum(axis=0)
''' + _ADAM_SHARD + '''
        new_params[:, idx] = w
    return new_params, m, v
'''), "Summing the gradients instead of averaging them (Adam hides it in the step, not in the moments)."),
    Wrong("zero1_step", "every_rank_every_shard", "updated once per step", _zero('''
    for r in range(p):                          # every rank ...
        for owner in range(p):                  # ... updates every shard
            idx = _zero_shard(n, owner, p)
            k = len(idx)
            g = grads[:, idx].mean(axis=0)
            m[owner, :k] = beta1 * m[owner, :k] + (1 - beta1) * g
            v[owner, :k] = beta2 * v[owner, :k] + (1 - beta2) * g * g
            m_hat = m[owner, :k] / (1 - beta1 ** t)
            v_hat = v[owner, :k] / (1 - beta2 ** t)
            new_params[r, idx] = params[r, idx] * (1 - lr * weight_decay) - lr * m_hat / (np.sqrt(v_hat) + eps)
    return new_params, m, v
'''), "Every rank updating every shard: each shard's moments advance p times per step (and a real "
         "rank would need the whole optimizer state, which ZeRO-1 is there to avoid)."),
    Wrong("zero1_step", "padded_layout", "shard_batch(n, r, p)", '''
import numpy as np
def zero1_step(params, grads, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    p, n = params.shape
    k = -(-n // p)                              # FSDP-style: rank r owns [r k, (r + 1) k)
    new_params, m, v = params.copy(), m.copy(), v.copy()
    for r in range(p):
        idx = np.arange(min(r * k, n), min((r + 1) * k, n))
        j = len(idx)
        g = grads[:, idx].mean(axis=0)
        m[r, :j] = beta1 * m[r, :j] + (1 - beta1) * g
        v[r, :j] = beta2 * v[r, :j] + (1 - beta2) * g * g
        m_hat, v_hat = m[r, :j] / (1 - beta1 ** t), v[r, :j] / (1 - beta2 ** t)
        new_params[:, idx] = params[r, idx] * (1 - lr * weight_decay) - lr * m_hat / (np.sqrt(v_hat) + eps)
    return new_params, m, v
''', "Sharding by padded blocks of ceil(n / p) (FSDP's layout) instead of the exercise's shard_batch "
         "convention: the moments end up in the wrong slots."),
]

CORRECT = [
    '''
import numpy as np
def shard_batch(n_items, rank, world_size):
    if world_size < 1 or rank < 0 or rank >= world_size or n_items < 0:
        raise ValueError("bad rank")
    return np.array_split(np.arange(n_items), world_size)[rank]
''',
    '''
import numpy as np
def average_gradients(grads_per_rank, counts=None):
    g = np.asarray(grads_per_rank)
    p = g.shape[0]
    if counts is None:
        counts = [1] * p
    total, items = np.zeros(g.shape[1:]), 0
    for r in range(p):
        if counts[r] > 0:
            total = total + counts[r] * g[r]
            items += counts[r]
    return np.stack([total / items] * p).astype(g.dtype)
''',
    # Messages as explicit (source, destination, chunk) records, processed step by step.
    '''
import numpy as np
def ring_allreduce(chunks):
    buf = [np.array(row, copy=True) for row in np.asarray(chunks)]
    p = len(buf)
    pieces = [list(np.array_split(b, p)) for b in buf]
    sent = np.zeros(p, dtype=np.int64)
    for s in range(p - 1):
        inbox = [(r, (r + 1) % p, (r - s) % p, pieces[r][(r - s) % p].copy()) for r in range(p)]
        for src, dst, c, data in inbox:
            pieces[dst][c] = pieces[dst][c] + data
            sent[src] += data.size
    for s in range(p - 1):
        inbox = [(r, (r + 1) % p, (r + 1 - s) % p, pieces[r][(r + 1 - s) % p].copy()) for r in range(p)]
        for src, dst, c, data in inbox:
            pieces[dst][c] = data
            sent[src] += data.size
    return np.stack([np.concatenate(pc) for pc in pieces]), sent
''',
    # A flat update of the whole vector, then each rank keeps (and publishes) only its shard.
    '''
import numpy as np
def zero1_step(params, grads, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    params, grads = np.asarray(params), np.asarray(grads)
    p, n = params.shape
    pieces = np.array_split(np.arange(n), p)
    m_new, v_new = np.array(m, copy=True), np.array(v, copy=True)
    shards = []
    for r, idx in enumerate(pieces):
        g = grads[:, idx].sum(axis=0) / p
        mm = beta1 * m_new[r, :len(idx)] + (1 - beta1) * g
        vv = beta2 * v_new[r, :len(idx)] + (1 - beta2) * np.square(g)
        m_new[r, :len(idx)], v_new[r, :len(idx)] = mm, vv
        step = lr * (mm / (1 - beta1 ** t)) / (np.sqrt(vv / (1 - beta2 ** t)) + eps)
        shards.append(params[r, idx] - lr * weight_decay * params[r, idx] - step)
    whole = np.concatenate(shards) if shards else params[0]
    return np.tile(whole, (p, 1)).astype(params.dtype), m_new, v_new
''',
]

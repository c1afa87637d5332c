"""Chapter 17 reference: data parallelism, simulated in NumPy.

A real process group needs several processes that talk over sockets; the grader's sandbox
runs one process, and functions or process groups cannot cross its wire. So these functions
simulate *all the ranks at once*: the first axis of an array is the rank. Row r of a
(p, ...) array is what process r holds, and a function returns what every process holds
after the collective operation. The chapter runs the same algorithms for real, in two
processes, with torch.distributed (models/data_parallel.py).
"""
import numpy as np


def shard_batch(n_items, rank, world_size):
    """The indices of the items of a batch that process `rank` of `world_size` works on.

    The shards are contiguous and in rank order, and together they cover the items
    0, 1, ..., n_items - 1 exactly once. When n_items is not a multiple of world_size, the
    first n_items % world_size ranks get one item more (np.array_split's convention):
    nothing is dropped and nothing is repeated.
    Example: n_items=10, world_size=4 gives rank 0 [0 1 2], rank 1 [3 4 5], rank 2 [6 7],
    rank 3 [8 9]. A rank may get no items at all (n_items < world_size): an empty array.
    Returns an int64 array. Raises ValueError unless world_size >= 1,
    0 <= rank < world_size and n_items >= 0.
    """
    if world_size < 1 or not 0 <= rank < world_size or n_items < 0:
        raise ValueError(f"no rank {rank} of {world_size} for {n_items} items")
    base, extra = divmod(n_items, world_size)
    start = rank * base + min(rank, extra)
    stop = start + base + (1 if rank < extra else 0)
    return np.arange(start, stop, dtype=np.int64)


def average_gradients(grads_per_rank, counts=None):
    """The all-reduce that data parallelism needs, simulated: every rank ends up with the
    gradient of the whole batch.

    grads_per_rank: array (p, ...): row r is the gradient rank r computed on its shard, as the
    mean over the items of its shard. counts: None when every shard has the same number of
    items; otherwise the number of items in each rank's shard, shape (p,).
    The gradient of the whole batch's mean loss is
        sum_r g_r / p                      when counts is None (equal shards), and
        sum_r n_r g_r / sum_r n_r          with counts n_r (uneven shards),
    and a rank with no items (n_r = 0) contributes nothing, whatever its row holds (NaN even).
    Returns an array of the input's shape (p, ...) and dtype in which every row holds that
    gradient: after an all-reduce every rank has the result, not only one of them.
    """
    g = np.asarray(grads_per_rank)
    if counts is None:
        avg = g.mean(axis=0)
    else:
        c = np.asarray(counts, dtype=np.float64)
        live = c > 0
        if not live.any():
            raise ValueError("no rank has any items")
        weights = (c[live] / c[live].sum()).astype(g.dtype)
        avg = np.tensordot(weights, g[live], axes=1)
    return np.broadcast_to(avg, g.shape).astype(g.dtype)


def ring_allreduce(chunks):
    """Ring all-reduce (a sum) of p vectors, simulated step by step.

    chunks: array (p, n): row r is rank r's vector. Every vector is cut into p contiguous
    chunks with np.array_split's convention (the first n % p chunks are one element longer);
    chunk c covers the same positions in every vector. The ranks form a ring: rank r sends
    only to rank (r + 1) mod p. All the sends of one step happen at the same time.

    1. Reduce-scatter, p - 1 steps s = 0, 1, ..., p - 2: every rank r sends its current
       chunk (r - s) mod p to rank (r + 1) mod p, which adds it to its own copy of that chunk.
       Afterwards rank r holds the complete sum of chunk (r + 1) mod p.
    2. All-gather, p - 1 steps s = 0, 1, ..., p - 2: every rank r sends its chunk
       (r + 1 - s) mod p, which is complete, to rank (r + 1) mod p, which replaces its copy.

    Returns (result, sent): result (p, n), the input's dtype, every row the sum over the
    ranks, with each chunk added up in the order of the ring (chunk c: rank c's part, then
    rank c + 1's, ... mod p); sent (p,) int64, how many elements each rank sent in total.
    The input is not modified.
    """
    x = np.array(chunks, copy=True)
    p, n = x.shape
    base, extra = divmod(n, p)
    starts = [c * base + min(c, extra) for c in range(p + 1)]

    def part(c):
        return slice(starts[c], starts[c + 1])

    sent = np.zeros(p, dtype=np.int64)
    for phase in ("reduce-scatter", "all-gather"):
        for s in range(p - 1):
            # What every rank sends in this step, taken before anyone receives.
            first = -s if phase == "reduce-scatter" else 1 - s
            messages = [(r, (r + first) % p) for r in range(p)]
            payload = [x[r, part(c)].copy() for r, c in messages]
            for (r, c), data in zip(messages, payload):
                dst = (r + 1) % p
                if phase == "reduce-scatter":
                    x[dst, part(c)] += data
                else:
                    x[dst, part(c)] = data
                sent[r] += data.size
    return x, sent


def zero1_step(params, grads, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    """One AdamW step with ZeRO-1 (the optimizer state sharded over the ranks), simulated
    for all p ranks at once.

    params: (p, n): every rank's copy of the flat parameter vector (the rows are equal).
    grads: (p, n): the gradient each rank computed on its own shard of the batch (shards of
    equal size, so the whole batch's gradient is the mean over ranks).
    m, v: (p, k) with k = ceil(n / p): the AdamW moments. Rank r keeps them only for the
    parameters it owns, the indices shard_batch(n, r, p), in m[r, :len(indices)]; a shorter
    row's last slot is unused padding and stays 0.
    t: the number of this step, from 1 (for the bias correction).
    Every rank r:
      1. (reduce-scatter) receives the mean over the ranks of the gradients of its indices;
      2. updates only its own moments: m = beta1 m + (1 - beta1) g, v = beta2 v + (1 - beta2) g**2;
      3. updates only its own parameters, with torch.optim.AdamW's formula:
             w = w * (1 - lr * weight_decay) - lr * m_hat / (sqrt(v_hat) + eps),
         m_hat = m / (1 - beta1**t), v_hat = v / (1 - beta2**t);
      4. (all-gather) receives every other rank's updated parameters, so that all the ranks
         hold the whole updated vector again.
    Returns (new_params (p, n), new_m (p, k), new_v (p, k)), new arrays of the inputs' dtype;
    the inputs are not modified.
    """
    params, grads = np.asarray(params), np.asarray(grads)
    p, n = params.shape
    new_params, new_m, new_v = params.copy(), np.array(m, copy=True), np.array(v, copy=True)
    updated = []
    for r in range(p):                                       # each rank, its own shard only
        idx = shard_batch(n, r, p)
        k = len(idx)
        g = grads[:, idx].mean(axis=0)                       # reduce-scatter (averaged)
        new_m[r, :k] = beta1 * new_m[r, :k] + (1 - beta1) * g
        new_v[r, :k] = beta2 * new_v[r, :k] + (1 - beta2) * g * g
        m_hat = new_m[r, :k] / (1 - beta1 ** t)
        v_hat = new_v[r, :k] / (1 - beta2 ** t)
        w = params[r, idx] * (1 - lr * weight_decay) - lr * m_hat / (np.sqrt(v_hat) + eps)
        updated.append((idx, w))
    for idx, w in updated:                                   # all-gather
        new_params[:, idx] = w
    return new_params, new_m, new_v

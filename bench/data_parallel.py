"""Benchmark: data-parallel training of the course's GPT in 1 and 2 processes (chapter 17).

    python bench/data_parallel.py           # writes bench/results/data_parallel.json (about a minute)
    python bench/data_parallel.py --quick   # fewer steps, to try the script; writes nothing

Every process uses one thread, so that 1 process uses one core and 2 processes two cores; the
process group is gloo on 127.0.0.1 (on a CUDA machine it would be NCCL, one GPU per process:
see models/data_parallel.py). Measured:

* time per training step (the fastest of the timed steps, and the median) of
  DistributedDataParallel with AdamW, the global batch fixed
  (strong scaling: 2 processes take half the batch each) and the batch per process fixed
  (weak scaling: 2 processes do twice the work per step);
* the same steps without gradient synchronisation (DDP's no_sync), which is the compute alone;
* all_reduce of float32 vectors from 1 K to 4 M elements between the 2 processes: the time
  (fastest and median of the repetitions),
  and the "bus bandwidth" 2 (p - 1) / p * bytes / time that a ring all-reduce moves per rank.

The numbers describe the machine the script ran on (recorded in the JSON, with its load
average): on a small shared CPU they are noisy, and nothing like a GPU cluster's.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from models import data_parallel as dp  # noqa: E402

RESULTS = REPO / "bench" / "results"
MODEL = dict(n_layer=4, n_head=4, d_model=128, block_size=64, dtype="float32", seed=0, n_stories=300,
             lr=3e-3, betas=(0.9, 0.99), weight_decay=0.1)
BATCH = 16                       # sequences of 64 tokens: the global batch (strong), per rank (weak)
SIZES = [2 ** k for k in range(10, 23, 2)]   # all_reduce sizes, float32 elements (1 K .. 4 M)


def _steps(model, opt, data, cfg, rank, world, n_steps, sync=True):
    """Seconds per step (after one warm-up step): the fastest step, the one least disturbed by
    whatever else the machine is doing, and the median."""
    times = []
    for step in range(n_steps + 1):
        x, y = dp.global_batch(data, step, cfg)
        xs, ys = dp.shard(x, rank, world), dp.shard(y, rank, world)
        dist.barrier()
        t0 = time.perf_counter()
        if sync:
            loss = dp.token_loss(model, xs, ys)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        else:
            with model.no_sync():
                loss = dp.token_loss(model, xs, ys)
                opt.zero_grad(set_to_none=True)
                loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return min(times[1:]), statistics.median(times[1:])


def worker(rank, world, port, n_steps, reps, out):
    from torch.nn.parallel import DistributedDataParallel as DDP
    torch.set_num_threads(1)
    dp.setup(rank, world, port)
    res = {}
    for mode in ("strong", "weak"):
        batch = BATCH if mode == "strong" else BATCH * world
        cfg = dict(dp.CONFIG, **MODEL, batch_size=batch)
        data, vocab = dp.corpus(cfg)
        model = DDP(dp.new_model(vocab, cfg))
        opt = dp.new_optimizer(model.parameters(), cfg)
        step_s, step_median_s = _steps(model, opt, data, cfg, rank, world, n_steps)
        free_s, free_median_s = _steps(model, opt, data, cfg, rank, world, n_steps, sync=False)
        res[mode] = {"global_batch": batch, "tokens_per_step": batch * cfg["block_size"],
                     "step_s": step_s, "step_median_s": step_median_s,
                     "compute_only_s": free_s, "compute_only_median_s": free_median_s}
        res["n_params"] = sum(p.numel() for p in model.parameters())
    sweep = []
    for size in (SIZES[0], SIZES[-1]) * 3:        # warm up the connection and the buffers
        dist.all_reduce(torch.ones(size))
    for size in SIZES:
        buf = torch.ones(size)
        times = []
        for _ in range(reps + 1):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(buf)
            times.append(time.perf_counter() - t0)
        sweep.append({"elements": size, "bytes": 4 * size, "seconds": min(times[1:]),
                      "median_seconds": statistics.median(times[1:])})
    res["allreduce"] = sweep
    if rank == 0:
        with open(out, "wb") as f:
            pickle.dump(res, f)
    dist.barrier()
    dist.destroy_process_group()


def measure(world, n_steps, reps):
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.pkl")
        mp.spawn(worker, args=(world, dp.free_port(), n_steps, reps, out), nprocs=world, join=True)
        with open(out, "rb") as f:
            return pickle.load(f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps; print, write nothing")
    args = parser.parse_args(argv)
    n_steps, reps = (3, 3) if args.quick else (12, 10)
    load_before = os.getloadavg()
    t0 = time.time()
    runs = {str(world): measure(world, n_steps, reps) for world in (1, 2)}
    facts = {
        "what": "DDP training step of TinyGPT (4 blocks, width 128, 64 tokens) and all_reduce, gloo, "
                "1 thread per process, 1 vs 2 processes",
        "date": datetime.date.today().isoformat(),
        "machine": {"platform": platform.platform(), "machine": platform.machine(),
                    "processor": platform.processor() or "unknown", "cpu_count": os.cpu_count(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "backend": "gloo", "steps_timed": n_steps, "allreduce_reps": reps,
        "seconds": round(time.time() - t0, 1),
        "runs": runs,
    }
    print(json.dumps({k: v for k, v in facts.items() if k != "runs"}, indent=1))
    for world, r in runs.items():
        for mode in ("strong", "weak"):
            m = r[mode]
            print(f"p={world} {mode:6s}: {m['step_s'] * 1e3:7.1f} ms/step, compute only "
                  f"{m['compute_only_s'] * 1e3:7.1f} ms, {m['tokens_per_step'] / m['step_s']:8.0f} tokens/s")
    for row in runs["2"]["allreduce"]:
        print(f"all_reduce {row['bytes'] / 1e6:8.3f} MB: {row['seconds'] * 1e3:8.3f} ms")
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / "data_parallel.json"
        path.write_text(json.dumps(facts, indent=1) + "\n")
        print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()

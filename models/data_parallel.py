"""Data-parallel training of the course's GPT with torch.distributed: the code of chapter 17.

Three ways to train the same small GPT on the same batches, which must give the same model:

* `train_single`: one process, the whole batch (the yardstick);
* `hand_dp`: data parallelism by hand: every rank takes its shard of the batch, computes
  gradients, an all-reduce adds them up, and every rank steps its own copy of the model;
* `ddp`: the same with `DistributedDataParallel` (bucketing, communication overlapped with the
  backward pass), optionally with `ZeroRedundancyOptimizer` (ZeRO-1: each rank keeps the AdamW
  state of only some parameters).

The functions run on the CPU with the `gloo` backend and on GPUs with NCCL, one process per GPU,
unchanged. Started from Python (a notebook, a test), `run` spawns the processes with
`torch.multiprocessing.spawn` (the function each process runs must be importable by name,
which is why it lives in this module and not in a notebook). From a shell:

    python -m models.data_parallel                          # spawns 2 processes (gloo on a CPU)
    torchrun --nproc-per-node=2 -m models.data_parallel     # torchrun starts them (NCCL on GPUs)

Both print the largest difference between each distributed run and single-process training.
"""
from __future__ import annotations

import argparse
import os
import pickle
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from models.stories import corpus_text
from models.tiny_gpt import CharTokenizer, TinyGPT

# A tiny GPT: two blocks of width 32 train a step in milliseconds on one core, so that a page
# and a test can afford three trainings in two processes; the code does not depend on the size.
CONFIG = dict(n_layer=2, n_head=2, d_model=32, block_size=32, batch_size=8, steps=16,
              lr=3e-3, betas=(0.9, 0.99), weight_decay=0.1, seed=0, n_stories=300,
              dtype="float32", threads=1, bucket_cap_mb=0.03)


# ------------------------------------------------------------------ data, model, optimizer

def corpus(cfg: dict = CONFIG) -> tuple[torch.Tensor, int]:
    """The token ids of a small story corpus (deterministic, no download) and the vocabulary size."""
    text = corpus_text(cfg["n_stories"])
    tok = CharTokenizer.from_text(text)
    return torch.tensor(tok.encode(text), dtype=torch.long), len(tok.vocab)


def global_batch(data: torch.Tensor, step: int, cfg: dict = CONFIG) -> tuple[torch.Tensor, torch.Tensor]:
    """Step `step`'s whole batch (inputs, targets), each (batch_size, block_size). Every rank
    draws the same one (the generator is seeded by the step) and keeps only its shard."""
    gen = torch.Generator().manual_seed(1000 * cfg["seed"] + step)
    t = cfg["block_size"]
    starts = torch.randint(len(data) - t - 1, (cfg["batch_size"],), generator=gen)
    chunk = data[starts[:, None] + torch.arange(t + 1)]
    return chunk[:, :-1], chunk[:, 1:]


def shard(x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank `rank`'s rows of a batch: contiguous, the first len(x) % world_size ranks one row
    more (torch.tensor_split's convention, the exercise's shard_batch); nothing is dropped."""
    return x.tensor_split(world_size)[rank]


def new_model(vocab_size: int, cfg: dict = CONFIG, device="cpu") -> TinyGPT:
    """The GPT of chapters 5 and 9 at a tiny size, initialised from cfg['seed']: every rank
    that calls this builds the same model."""
    torch.manual_seed(cfg["seed"])
    model = TinyGPT(vocab_size, cfg["n_layer"], cfg["n_head"], cfg["d_model"], cfg["block_size"])
    return model.to(device=device, dtype=getattr(torch, cfg["dtype"]))


def new_optimizer(params, cfg: dict = CONFIG) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg["lr"], betas=cfg["betas"], weight_decay=cfg["weight_decay"])


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    """Every parameter, flattened into one float64 CPU vector (to compare models)."""
    return torch.cat([p.detach().flatten().double().cpu() for p in model.parameters()])


def token_loss(model, x, y, reduction="mean"):
    logits = model(x)
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction=reduction)


def train_single(cfg: dict = CONFIG, device="cpu") -> dict:
    """One process, the whole batch at every step: what data parallelism must reproduce."""
    data, vocab = corpus(cfg)
    model = new_model(vocab, cfg, device)
    opt = new_optimizer(model.parameters(), cfg)
    losses = []
    for step in range(cfg["steps"]):
        x, y = (t.to(device) for t in global_batch(data, step, cfg))
        loss = token_loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return {"losses": losses, "params": flat_params(model)}


# ------------------------------------------------------------------ processes

def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(rank: int, world_size: int, port: int | None = None) -> torch.device:
    """Join the process group; return this process's device.

    NCCL and one GPU per process when CUDA is there, else gloo on the CPU. Under torchrun the
    rendezvous comes from its environment variables (MASTER_ADDR, MASTER_PORT, RANK, ...);
    spawned by `run`, from 127.0.0.1:port.
    """
    if torch.cuda.is_available():
        backend = "nccl"
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        backend, device = "gloo", torch.device("cpu")
    if port is None:
        dist.init_process_group(backend, rank=rank, world_size=world_size)   # env:// (torchrun)
    else:
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world_size)
    return device


def hand_dp(cfg: dict = CONFIG, device="cpu") -> dict:
    """Data parallelism by hand, in an initialised process group.

    Each rank's loss is the *sum* of its tokens' losses divided by the number of tokens in the
    whole batch, so that adding the ranks' gradients (all_reduce's SUM) gives exactly the
    gradient of the whole batch's mean loss, even when the shards are of unequal size.
    """
    rank, world, device = dist.get_rank(), dist.get_world_size(), torch.device(device)
    data, vocab = corpus(cfg)
    model = new_model(vocab, cfg, device)
    opt = new_optimizer(model.parameters(), cfg)
    losses = []
    for step in range(cfg["steps"]):
        x, y = global_batch(data, step, cfg)
        n_tokens = y.numel()                                   # in the whole batch, all ranks
        xs, ys = shard(x, rank, world).to(device), shard(y, rank, world).to(device)
        loss_sum = token_loss(model, xs, ys, reduction="sum")
        opt.zero_grad(set_to_none=True)
        (loss_sum / n_tokens).backward()
        for p in model.parameters():
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)      # sum of the ranks' gradients
        opt.step()                                             # every rank, the same step
        total = loss_sum.detach().reshape(1)
        dist.all_reduce(total)
        losses.append(total.item() / n_tokens)
    return {"losses": losses, "params": flat_params(model)}


def ddp(cfg: dict = CONFIG, device="cpu", zero: bool = False, trace_step: int | None = None) -> dict:
    """The same training with DistributedDataParallel (and ZeRO-1 when `zero`).

    DDP averages the ranks' gradients (their sum divided by the world size), which equals the
    whole batch's gradient when every shard has the same number of tokens. With `trace_step`,
    the backward pass of that step records when each parameter's gradient was ready and when
    each bucket's all-reduce was launched (through a communication hook).
    """
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as DDP

    rank, world, device = dist.get_rank(), dist.get_world_size(), torch.device(device)
    if cfg["batch_size"] % world:
        raise ValueError("DDP averages the ranks' gradients: give every rank the same number of rows")
    data, vocab = corpus(cfg)
    plain = new_model(vocab, cfg, device)
    model = DDP(plain, device_ids=[device] if device.type == "cuda" else None,
                bucket_cap_mb=cfg["bucket_cap_mb"])
    if zero:
        opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.AdamW,
                                      lr=cfg["lr"], betas=cfg["betas"], weight_decay=cfg["weight_decay"])
    else:
        opt = new_optimizer(model.parameters(), cfg)

    names = {id(p): n for n, p in plain.named_parameters()}
    trace = {"ready": [], "buckets": [], "on": False}
    if trace_step is not None:
        def logging_hook(state, bucket):
            if trace["on"]:
                trace["buckets"].append({"index": bucket.index(), "t": time.perf_counter(),
                                         "numel": bucket.buffer().numel(),
                                         "params": [names[id(p)] for p in bucket.parameters()]})
            return default_hooks.allreduce_hook(state, bucket)
        model.register_comm_hook(dist.group.WORLD, logging_hook)
        def ready_hook(name):
            def hook(p):
                if trace["on"]:
                    trace["ready"].append((name, time.perf_counter()))
            return hook
        for n, p in plain.named_parameters():
            p.register_post_accumulate_grad_hook(ready_hook(n))

    losses = []
    for step in range(cfg["steps"]):
        x, y = global_batch(data, step, cfg)
        xs, ys = shard(x, rank, world).to(device), shard(y, rank, world).to(device)
        loss = token_loss(model, xs, ys)
        opt.zero_grad(set_to_none=True)
        trace["on"] = step == trace_step
        t0 = time.perf_counter()
        loss.backward()            # DDP's hooks all-reduce the buckets during the backward
        t1 = time.perf_counter()
        if trace["on"]:
            trace.update(start=t0, end=t1)
            trace["on"] = False
        opt.step()
        total = loss.detach().reshape(1)
        dist.all_reduce(total)
        losses.append(total.item() / world)
    out = {"losses": losses, "params": flat_params(plain)}
    if trace_step is not None:
        out["trace"] = {k: v for k, v in trace.items() if k != "on"}
    if zero:
        # The AdamW state this rank holds (exp_avg and exp_avg_sq of its parameters).
        held = sum(t.numel() for s in opt.optim.state.values() for t in s.values()
                   if torch.is_tensor(t) and t.dim() > 0)
        out["state_numel"] = [None] * world
        dist.all_gather_object(out["state_numel"], held)
        out["n_params"] = sum(p.numel() for p in plain.parameters())
    return out


JOBS = {"hand_dp": lambda cfg, device: hand_dp(cfg, device),
        "ddp": lambda cfg, device: ddp(cfg, device, trace_step=1),
        "zero": lambda cfg, device: ddp(cfg, device, zero=True)}


def worker(rank: int, world_size: int, port: int | None, jobs: list[tuple[str, dict]], out: str | None):
    """What each process runs: join the group, run the jobs, rank 0 writes the results."""
    torch.set_num_threads(CONFIG["threads"])
    device = setup(rank, world_size, port)
    try:
        results = []
        for name, cfg in jobs:
            t0 = time.perf_counter()
            result = JOBS[name](dict(CONFIG, **cfg), device)
            result["seconds"] = time.perf_counter() - t0
            results.append(result)
        if rank == 0 and out is not None:
            with open(out, "wb") as f:
                pickle.dump({"world_size": world_size, "backend": dist.get_backend(),
                             "device": str(device), "results": results}, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run(jobs=(("hand_dp", {}), ("ddp", {}), ("zero", {})), world_size: int = 2) -> dict:
    """Spawn `world_size` processes that run `jobs` (name, config overrides) one after the
    other; return rank 0's results: {"world_size", "backend", "device", "results": [...]}."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "results.pkl")
        mp.spawn(worker, args=(world_size, free_port(), list(jobs), out), nprocs=world_size, join=True)
        with open(out, "rb") as f:
            return pickle.load(f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2, help="processes to spawn (without torchrun)")
    args = parser.parse_args(argv)
    jobs = [("hand_dp", {}), ("ddp", {}), ("zero", {})]
    if "RANK" in os.environ:          # started by torchrun: this process is one rank
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "results.pkl") if rank == 0 else None
            worker(rank, world, None, jobs, out)
            if rank != 0:
                return
            with open(out, "rb") as f:
                done = pickle.load(f)
    else:
        done = run(jobs, args.nproc)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    single = train_single(CONFIG, device)
    print(f"{done['world_size']} processes, backend {done['backend']}, device {done['device']}")
    for (name, _), res in zip(jobs, done["results"]):
        dp = (res["params"] - single["params"]).abs().max().item()
        dl = max(abs(a - b) for a, b in zip(res["losses"], single["losses"]))
        print(f"{name:8s} max |param - single| = {dp:.2e}   max |loss - single| = {dl:.2e}")


if __name__ == "__main__":
    main()

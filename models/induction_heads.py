"""Chapter 18: train a small attention-only transformer until an induction head forms.

The data are random token sequences in which a random stretch is repeated: a stretch of
m tokens (m between 4 and 16) at a random place is copied right after itself. Nothing else
in the data can be predicted, so the only way to lower the loss is to notice, at the second
copy, "this token came before, and last time it was followed by X": the induction mechanism
(Olsson et al., 2022). Because the length and the place of the repeat change from sequence
to sequence, a head that attends to a fixed offset cannot do it.

The model is the course's GPT (`models/gpt.py`) with the MLPs taken out and an untied
unembedding (see AttentionOnlyGPT): 2 layers of 4 heads, width 64, with its LayerNorms and
learned positions. Every eval_every steps the script measures, with the NumPy forward pass
of chapter 18 (`solutions/reference/looking_inside.py`), on a fixed batch of sequences whose
second half repeats the first:
  * the loss on the first and on the repeated half, and their gap (`induction_loss_gap`);
  * every head's prefix-matching score (`prefix_matching_score`) and its previous-token
    score (the mean attention from each position to the one before it).

Writes models/induction-heads.npz (float32 weights, < 1 MB) and models/induction-heads.json
(the model's shape, the training log, the machine, the versions and the date). Seeded: with
the same PyTorch and CPU kind it reproduces the committed files. About 30 s on one core:

    nice .venv/bin/python -m models.induction_heads
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.gpt import GPT, Block, GPTConfig, layer_norm  # noqa: E402
from solutions.reference.looking_inside import (induction_loss_gap, prefix_matching_score,  # noqa: E402
                                                repeated_sequences, run_with_cache, token_losses)

HERE = Path(__file__).resolve().parent
NPZ = HERE / "induction-heads.npz"

CONFIG = dict(vocab_size=48, n_layer=2, n_head=4, d_model=64, block_size=32,
              min_repeat=4, max_repeat=16, steps=1500, batch_size=64, lr=1e-3, weight_decay=0.01,
              warmup=50, tied=False, seed=18, eval_every=20, eval_batch=64, eval_half=12, threads=1)
MLP_KEYS = ("ln2_g", "ln2_b", "w_fc", "b_fc", "w_proj", "b_proj")


class AttentionOnlyBlock(Block):
    """The course's block without its MLP: x + attn(ln1(x))."""

    def __init__(self, d: int, n_head: int, n_layer: int):
        super().__init__(d, n_head, n_layer)
        for name in MLP_KEYS:
            delattr(self, name)

    def forward(self, x):
        return x + self.attention(layer_norm(x, self.ln1_g, self.ln1_b))


class AttentionOnlyGPT(GPT):
    """The course's GPT with attention-only blocks and, unless `tied`, its own unembedding
    w_u (D, V) instead of wte.T.

    Why untied: with tied weights the token's own embedding, which stays in the residual
    stream, pushes up the logit of that same token, a bad guess on random data that the
    model must first learn to cancel. In our runs the tied model, everything else equal, was
    still on a plateau after 3,000 steps (it had learned only that tokens seen earlier in the
    sequence are likelier; best prefix-matching score below 0.2; `--tied --steps 3000`
    shows it), while the untied one forms its induction heads within about 500.
    """
    block_class = AttentionOnlyBlock

    def __init__(self, config: GPTConfig, tied: bool = False):
        super().__init__(config)
        self.tied = tied
        if not tied:
            self.w_u = torch.nn.Parameter(torch.randn(config.d_model, config.vocab_size) * 0.02)

    def forward(self, ids):
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        x = layer_norm(x, self.lnf_g, self.lnf_b)
        return x @ self.wte.T if self.tied else x @ self.w_u


def batch(rng, cfg: dict, n: int) -> np.ndarray:
    """n training sequences of random tokens, in each of which a stretch of m tokens (m drawn
    between min_repeat and max_repeat) at a random place is repeated right after itself."""
    t = cfg["block_size"]
    seqs = rng.integers(0, cfg["vocab_size"], size=(n, t))
    for row in seqs:
        m = int(rng.integers(cfg["min_repeat"], cfg["max_repeat"] + 1))
        s = int(rng.integers(0, t - 2 * m + 1))
        row[s + m:s + 2 * m] = row[s:s + m]
    return seqs


def numpy_params(model: GPT) -> dict:
    """The weights as chapter 5's nested dict (attention-only blocks: no MLP keys)."""
    flat = {name: p.detach().double().numpy() for name, p in model.named_parameters()}
    params = {name: flat[name] for name in ("wte", "wpe", "lnf_g", "lnf_b", "w_u") if name in flat}
    params["blocks"] = [{k.split(".", 2)[2]: a for k, a in flat.items() if k.startswith(f"blocks.{i}.")}
                        for i in range(len(model.blocks))]
    return params


def measure(params: dict, n_head: int, ids: np.ndarray) -> dict:
    """Loss on each half, their gap, and every head's prefix-matching and previous-token scores."""
    half = ids.shape[-1] // 2
    logits, cache = run_with_cache(ids, params, n_head)
    losses = token_losses(logits, ids)                                   # (B, 2 half - 1)
    weights = cache["weights"]                                           # (L, B, H, T, T)
    prefix = np.mean([prefix_matching_score(weights[:, b], ids[b]) for b in range(len(ids))], axis=0)
    previous = np.diagonal(weights, offset=-1, axis1=-2, axis2=-1).mean(axis=(1, -1))
    return {"loss_first": float(losses[:, :half - 1].mean()), "loss_repeat": float(losses[:, half - 1:].mean()),
            "gap": float(induction_loss_gap(losses, half).mean()),
            "prefix": np.round(prefix, 4).tolist(), "previous": np.round(previous, 4).tolist()}


def train(cfg: dict = CONFIG, quiet: bool = False):
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    rng = np.random.default_rng(cfg["seed"])
    eval_ids = repeated_sequences(np.random.default_rng(cfg["seed"] + 1), cfg["eval_batch"], cfg["eval_half"],
                                  cfg["vocab_size"])
    model = AttentionOnlyGPT(GPTConfig(cfg["vocab_size"], cfg["n_layer"], cfg["n_head"], cfg["d_model"],
                                       cfg["block_size"]), cfg["tied"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg["warmup"]))
    log = {"step": [], "train_loss": [], "loss_first": [], "loss_repeat": [], "gap": [], "prefix": [],
           "previous": []}
    running = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    for step in range(cfg["steps"] + 1):
        if step % cfg["eval_every"] == 0:
            m = measure(numpy_params(model), cfg["n_head"], eval_ids)
            log["step"].append(step)
            log["train_loss"].append(round(float(np.mean(running)), 4) if running else None)
            for key in ("loss_first", "loss_repeat", "gap"):
                log[key].append(round(m[key], 4))
            log["prefix"].append(m["prefix"])
            log["previous"].append(m["previous"])
            running = []
            if not quiet and step % (8 * cfg["eval_every"]) == 0:
                best = float(np.max(m["prefix"]))
                print(f"step {step:5d}  first half {m['loss_first']:.3f}  repeated half {m['loss_repeat']:.3f}  "
                      f"best prefix score {best:.2f}  {time.perf_counter() - t0:5.1f} s", flush=True)
        if step == cfg["steps"]:
            break
        ids = torch.from_numpy(batch(rng, cfg, cfg["batch_size"]))
        logits = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running.append(loss.item())
    facts = {"seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(time.process_time() - cpu0, 1)}
    return model.eval(), log, facts


def machine() -> dict:
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__}


def export(model: GPT, log: dict, facts: dict, cfg: dict, npz: Path) -> None:
    np.savez(npz, **model.arrays())
    c = model.config
    meta = dict(kind="attention-only GPT (models/gpt.py without MLPs" + (")" if cfg["tied"] else
                                                                         ", untied unembedding w_u)"), vocab_size=c.vocab_size,
                n_layer=c.n_layer, n_head=c.n_head, d_model=c.d_model, block_size=c.block_size,
                n_params=int(sum(p.numel() for p in model.parameters())),
                data=(f"random tokens (vocabulary {cfg['vocab_size']}) with one stretch of "
                      f"{cfg['min_repeat']}-{cfg['max_repeat']} tokens repeated right after itself, "
                      "at a random place"),
                eval=f"{cfg['eval_batch']} sequences of 2 x {cfg['eval_half']} tokens, the second half "
                     "a copy of the first",
                config=cfg, training=facts, run=machine(), log=log)
    npz.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=CONFIG["steps"])
    parser.add_argument("--tied", action="store_true", help="tie the unembedding to wte (it stays on the plateau)")
    parser.add_argument("--out", default=str(NPZ), help="the .npz to write (the .json goes beside it)")
    args = parser.parse_args(argv)
    cfg = dict(CONFIG, steps=args.steps, tied=args.tied)
    model, log, facts = train(cfg)
    npz = Path(args.out)
    export(model, log, facts, cfg, npz)
    print(f"trained {cfg['steps']} steps in {facts['seconds']} s; gap {log['gap'][-1]:.3f} nats; "
          f"wrote {npz} ({npz.stat().st_size / 1e6:.2f} MB) and {npz.with_suffix('.json').name}")


if __name__ == "__main__":
    main()

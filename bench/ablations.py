"""Ablations of chapter 9: what each piece of the GPT is worth, measured as loss curves.

    python bench/ablations.py            # writes bench/results/ablations.json (a few CPU minutes)
    python bench/ablations.py --steps 20 --out /tmp/ablations.json   # a quick run, to see that it works

Five models train on the same story corpus (`models/stories.py`) with the same batches, the
same schedule and the same seed, with chapter 9's training step (`models.tiny_gpt.train_step`,
which calls chapter 9's get_batch, cross_entropy, weight_decay_groups, lr_at and adamw_step):

* baseline: the course's GPT (`models/gpt.py`), small;
* no_positions: without the position embedding (attention alone cannot tell the order of its inputs);
* one_head: one attention head of the full width instead of four;
* no_residual: every sublayer's output replaces the stream instead of being added to it;
* post_norm: LayerNorm after each residual addition (the original transformer's order) instead of before.

Every `eval_every` steps each model's loss is measured on the same held-out windows. The
result file records the curves, the configuration, the seconds each run took, and where and
when it ran; chapter 9's page plots it (too slow to run at every build of the book).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.gpt import GPT, Block, CharTokenizer, GPTConfig, layer_norm  # noqa: E402
from models.stories import corpus_text  # noqa: E402
from models.tiny_gpt import TrainState, evaluate, train_step  # noqa: E402

CONFIG = dict(n_layer=4, n_head=4, d_model=64, block_size=64, batch_size=16, steps=600,
              lr=3e-3, min_lr=3e-4, warmup=50, weight_decay=0.1, n_stories=2000, corpus_seed=2024,
              seed=0, eval_every=50, eval_windows=256, threads=1)


class NoPositionsGPT(GPT):
    """Token embeddings only: nothing tells a position where it is (chapter 2's permutation
    equivariance, broken only by the causal mask)."""

    def __init__(self, config):
        super().__init__(config)
        self.wpe = None   # drawn by GPT.__init__ (keeping the other draws equal), then removed

    def embed(self, ids):
        return self.wte[ids]


class NoResidualBlock(Block):
    def forward(self, x):
        x = self.attention(layer_norm(x, self.ln1_g, self.ln1_b))
        return self.mlp_hidden(layer_norm(x, self.ln2_g, self.ln2_b)) @ self.w_proj + self.b_proj


class NoResidualGPT(GPT):
    block_class = NoResidualBlock


class PostNormBlock(Block):
    def forward(self, x):
        x = layer_norm(x + self.attention(x), self.ln1_g, self.ln1_b)
        return layer_norm(x + self.mlp_hidden(x) @ self.w_proj + self.b_proj, self.ln2_g, self.ln2_b)


class PostNormGPT(GPT):
    block_class = PostNormBlock


def variants(cfg: dict, vocab_size: int) -> dict:
    """name -> (model class, its config)."""
    base = GPTConfig(vocab_size, cfg["n_layer"], cfg["n_head"], cfg["d_model"], cfg["block_size"])
    return {"baseline": (GPT, base),
            "no_positions": (NoPositionsGPT, base),
            "one_head": (GPT, GPTConfig(vocab_size, cfg["n_layer"], 1, cfg["d_model"], cfg["block_size"])),
            "no_residual": (NoResidualGPT, base),
            "post_norm": (PostNormGPT, base)}


def run(cfg: dict, names=None, quiet=False) -> dict:
    torch.set_num_threads(cfg["threads"])
    text = corpus_text(cfg["n_stories"], cfg["corpus_seed"])
    tok = CharTokenizer.from_text(text)
    data = np.array(tok.encode(text), dtype=np.int64)
    n_val = len(data) // 10
    train_data, val_data = data[:-n_val], data[-n_val:]
    results = {}
    for name, (cls, config) in variants(cfg, len(tok.vocab)).items():
        if names and name not in names:
            continue
        torch.manual_seed(cfg["seed"])
        model = cls(config)
        state = TrainState.start(model, np.random.default_rng(cfg["seed"]))
        curve = {"step": [], "train": [], "val_step": [], "val": []}
        running = []
        t0 = time.perf_counter()
        for step in range(1, cfg["steps"] + 1):
            model.train()
            running.append(train_step(model, state, train_data, cfg))
            if step % cfg["eval_every"] == 0 or step == 1:
                curve["step"].append(step)
                curve["train"].append(round(float(np.mean(running)), 4))
                running = []
                model.eval()
                val = evaluate(model, val_data, cfg["block_size"], np.random.default_rng(12345),
                               cfg["eval_windows"])
                curve["val_step"].append(step)
                curve["val"].append(round(val, 4))
        seconds = time.perf_counter() - t0
        n_params = sum(p.numel() for p in model.parameters())
        results[name] = dict(curve, seconds=round(seconds, 1), n_params=n_params)
        if not quiet:
            print(f"{name:13s} train {curve['train'][-1]:.3f}  val {curve['val'][-1]:.3f}  "
                  f"({n_params:,} parameters, {seconds:.0f} s)", flush=True)
    return results


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=CONFIG["steps"])
    parser.add_argument("--out", default=str(RESULTS / "ablations.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cfg = dict(CONFIG, steps=args.steps, eval_every=min(CONFIG["eval_every"], args.steps))
    t0 = time.perf_counter()
    results = run(cfg)
    out = {"what": "chapter 9 ablations: train and held-out loss (nats per character) of five variants",
           "device": f"{cpu_name()}, {cfg['threads']} thread(s)",
           "date": datetime.date.today().isoformat(), "torch": torch.__version__,
           "python": platform.python_version(), "seconds": round(time.perf_counter() - t0, 1),
           "config": cfg, "variants": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

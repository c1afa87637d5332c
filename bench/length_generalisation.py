"""Length generalisation: learned vs sinusoidal vs rotary positions (chapter 10).

Trains small character-level GPTs on the course's story corpus (`models/stories.py`) with
sequences of TRAIN_LEN characters, then measures the loss at every position of held-out
sequences EVAL_LEN characters long, four times longer than any sequence seen in training.
The models are identical except for how they learn where a token is:

* ``learned``:    a trained table of position vectors added to the token embeddings
                  (GPT-2, and this course's TinyGPT). The table has EVAL_LEN rows, but only the
                  first TRAIN_LEN are ever trained: the others keep their random initial values;
* ``sinusoidal``: the fixed sin/cos vectors of chapter 3 added to the token embeddings (times one
                  learned amplitude, so that they neither drown nor vanish next to the embeddings);
* ``rope``:       rotary embeddings (chapter 10) applied to the queries and keys of every
                  attention layer, the interleaved-pair convention of `rope_angles`;
* ``none``:       no position information at all (causal attention alone, a baseline).

The experiment has its own minimal model rather than `models.tiny_gpt.TinyGPT`, because TinyGPT
has learned positions built in (a `wpe` table of block_size rows and an error beyond it); here the
position scheme is the one thing that varies, so it is a switch. Otherwise the model is TinyGPT's
architecture (pre-norm blocks, a 4x GELU MLP, a tied unembedding), smaller.

Writes `bench/results/length_generalisation.json` (committed; the chapter's page plots it).
Run from the repository root (about five minutes on one CPU core; a GPU is used when present):

    nice .venv/bin/python bench/length_generalisation.py
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))     # run as a script from anywhere: import the course's packages

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from models.stories import corpus_text  # noqa: E402
from solutions.reference.modern_pieces import rope_angles  # noqa: E402
from solutions.reference.self_attention import sinusoidal_positions  # noqa: E402

OUT = REPO / "bench" / "results" / "length_generalisation.json"

SCHEMES = ("learned", "sinusoidal", "rope", "none")
CONFIG = dict(train_len=64, eval_len=256, n_layer=2, n_head=4, d_model=64, steps=600, batch_size=24,
              lr=3e-3, min_lr=3e-4, warmup=100, weight_decay=0.1, seeds=(0, 1), eval_windows=256,
              holdout=0.1, rope_base=10000.0)


class Block(nn.Module):
    """Pre-norm block: x + attn(ln1(x)), then + mlp(ln2(x)); RoPE on q and k when given angles."""

    def __init__(self, d, n_head):
        super().__init__()
        self.n_head = n_head
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x, rot=None):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (y.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for y in (q, k, v))
        if rot is not None:
            q, k = rotate(q, rot), rotate(k, rot)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


def rotate(x, rot):
    """RoPE in its complex-number form: feature pairs (2i, 2i+1) as complex numbers, times e^{i phi}.
    x: (B, H, T, d); rot: complex (T, d/2) = exp(1j * angles)."""
    z = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2).contiguous())
    return torch.view_as_real(z * rot[: x.shape[-2]]).flatten(-2).type_as(x)


class PositionGPT(nn.Module):
    def __init__(self, vocab, scheme, cfg):
        super().__init__()
        d, n = cfg["d_model"], cfg["eval_len"]
        self.scheme = scheme
        self.wte = nn.Parameter(torch.randn(vocab, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, cfg["n_head"]) for _ in range(cfg["n_layer"]))
        self.lnf = nn.LayerNorm(d)
        if scheme == "learned":
            self.wpe = nn.Parameter(torch.randn(n, d) * 0.02)
        if scheme == "sinusoidal":
            # Fixed sin/cos vectors (entries in [-1, 1]) times one learned amplitude, which starts at
            # the scale of the token embeddings: unscaled, the positions would drown the tokens.
            self.register_buffer("sin_table", torch.tensor(sinusoidal_positions(n, d), dtype=torch.float32))
            self.pe_scale = nn.Parameter(torch.tensor(0.02))
        if scheme == "rope":
            angles = torch.tensor(rope_angles(n, d // cfg["n_head"], base=cfg["rope_base"]))
            self.register_buffer("rot", torch.polar(torch.ones_like(angles), angles).to(torch.complex64))

    def forward(self, ids):
        t = ids.shape[-1]
        x = self.wte[ids]
        if self.scheme == "learned":
            x = x + self.wpe[:t]
        if self.scheme == "sinusoidal":
            x = x + self.pe_scale * self.sin_table[:t]
        rot = self.rot if self.scheme == "rope" else None
        for block in self.blocks:
            x = block(x, rot)
        return self.lnf(x) @ self.wte.T


def lr_at(step, cfg):
    if step < cfg["warmup"]:
        return cfg["lr"] * (step + 1) / cfg["warmup"]
    progress = (step - cfg["warmup"]) / max(1, cfg["steps"] - cfg["warmup"])
    return cfg["min_lr"] + 0.5 * (cfg["lr"] - cfg["min_lr"]) * (1 + math.cos(math.pi * progress))


def batches(data, length, batch, gen):
    starts = torch.randint(0, len(data) - length - 1, (batch,), generator=gen)
    x = torch.stack([data[s:s + length] for s in starts])
    y = torch.stack([data[s + 1:s + length + 1] for s in starts])
    return x, y


def train_and_eval(scheme, seed, train, held, vocab, cfg, device):
    torch.manual_seed(seed)
    model = PositionGPT(vocab, scheme, cfg).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and n not in ("wte", "wpe")]
    rest = [p for n, p in model.named_parameters() if not (p.dim() == 2 and n not in ("wte", "wpe"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg["lr"], betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(1000 + seed)
    t0 = time.perf_counter()
    model.train()
    for step in range(cfg["steps"]):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        x, y = batches(train, cfg["train_len"], cfg["batch_size"], gen)
        logits = model(x.to(device))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.to(device).reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    train_s = time.perf_counter() - t0
    # Evaluation: the loss at each position of held-out windows of eval_len characters, the same
    # windows for every model (a fixed generator).
    model.eval()
    egen = torch.Generator().manual_seed(99)
    x, y = batches(held, cfg["eval_len"], cfg["eval_windows"], egen)
    per_pos = torch.zeros(cfg["eval_len"])
    with torch.no_grad():
        for i in range(0, len(x), 64):
            logits = model(x[i:i + 64].to(device)).float()
            nll = F.cross_entropy(logits.transpose(1, 2), y[i:i + 64].to(device), reduction="none")
            per_pos += nll.sum(0).cpu()
    per_pos /= len(x)
    return per_pos.numpy(), loss.item(), train_s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=CONFIG["steps"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    cfg = dict(CONFIG, steps=args.steps)
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    text = corpus_text()
    vocab = sorted(set(text))
    data = torch.tensor(np.searchsorted(np.array(vocab), np.array(list(text))), dtype=torch.long)
    cut = int(len(data) * (1 - cfg["holdout"]))
    train, held = data[:cut], data[cut:]
    results = {}
    t_all = time.perf_counter()
    for scheme in SCHEMES:
        curves, finals, times = [], [], []
        for seed in cfg["seeds"]:
            curve, final, secs = train_and_eval(scheme, seed, train, held, len(vocab), cfg, device)
            curves.append(curve.round(5).tolist())
            finals.append(round(final, 5))
            times.append(round(secs, 2))
            print(f"{scheme:10s} seed {seed}: final train loss {final:.3f}, held-out loss at positions "
                  f"< {cfg['train_len']}: {curve[:cfg['train_len']].mean():.3f}, beyond: "
                  f"{curve[cfg['train_len']:].mean():.3f} ({secs:.1f} s)", flush=True)
        results[scheme] = {"per_position_loss": curves, "final_train_loss": finals, "train_seconds": times}
    out = {
        "what": "held-out loss per position of character-level GPTs trained on sequences of train_len "
                "characters, evaluated on sequences of eval_len characters (bench/length_generalisation.py)",
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        "vocab_size": len(vocab), "train_chars": int(cut), "heldout_chars": int(len(data) - cut),
        "results": results,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {args.threads} thread{'s' * (args.threads != 1)})",
        "date": datetime.date.today().isoformat(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "total_seconds": round(time.perf_counter() - t_all, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out} in {out['total_seconds']} s")


if __name__ == "__main__":
    main()

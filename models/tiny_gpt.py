"""A tiny character-level GPT, trained on CPU in a few minutes: the checkpoint of chapter 5.

Everything here is reproducible from this file alone, with no download:

* the corpus: short children's stories written by a deterministic generator
  (`models/stories.py`), so the text is simple enough for a small model to learn quickly and
  regular enough that we can measure whether a sample "looks like the corpus";
* the tokenizer: one token per character (`CharTokenizer`);
* the model (`TinyGPT`): exactly the NumPy math of chapters 3-5 (pre-norm blocks,
  attention without bias, a 4x MLP with bias and tanh-GELU, LayerNorm with eps=1e-5,
  learned positions, and an unembedding tied to the token embedding: logits = h @ wte.T).
  Its parameters have the names and layouts of the NumPy parameter dicts (x @ w);
* training with AdamW and fixed seeds; export to `models/tiny-gpt.npz` (float32 arrays
  `wte`, `wpe`, `lnf_g`, `lnf_b`, `blocks.{i}.{name}`) and `models/tiny-gpt.json`
  (the vocabulary, the shape of the model, and facts about its training).

Run from the repository root (this is what `make checkpoint` does):

    .venv/bin/python -m models.tiny_gpt
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

# On a busy machine, OpenMP threads that spin while they wait for each other make training
# several times slower; passive waiting costs nothing when the cores are free.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from models.stories import CORPUS_SEED, N_STORIES, corpus_text  # noqa: E402

HERE = Path(__file__).resolve().parent
NPZ = HERE / "tiny-gpt.npz"
JSON = HERE / "tiny-gpt.json"

CONFIG = dict(n_layer=4, n_head=4, d_model=128, block_size=128,
              steps=800, batch_size=24, lr=3e-3, min_lr=3e-4, warmup=100, weight_decay=0.1,
              n_stories=N_STORIES, corpus_seed=CORPUS_SEED, seed=1234, threads=2, log_every=25)

BLOCK_KEYS = ("ln1_g", "ln1_b", "w_q", "w_k", "w_v", "w_o",
              "ln2_g", "ln2_b", "w_fc", "b_fc", "w_proj", "b_proj")


# ------------------------------------------------------------------ the tokenizer

class CharTokenizer:
    """One token per character; the vocabulary is a sorted list of characters."""

    def __init__(self, vocab: list[str]):
        self.vocab = list(vocab)
        self.index = {c: i for i, c in enumerate(self.vocab)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    def encode(self, text: str) -> list[int]:
        return [self.index[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in ids)


# ------------------------------------------------------------------ the model

def layer_norm(x, g, b, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased variance, eps inside the sqrt
    return (x - mean) / torch.sqrt(var + eps) * g + b


class Block(nn.Module):
    """Pre-norm block: x + attn(ln1(x)), then + mlp(ln2(x)). Weights used as x @ w."""

    def __init__(self, d: int, n_head: int, n_layer: int):
        super().__init__()
        self.n_head = n_head
        std, proj_std = 0.02, 0.02 / math.sqrt(2 * n_layer)
        self.ln1_g, self.ln1_b = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))
        self.w_q = nn.Parameter(torch.randn(d, d) * std)
        self.w_k = nn.Parameter(torch.randn(d, d) * std)
        self.w_v = nn.Parameter(torch.randn(d, d) * std)
        self.w_o = nn.Parameter(torch.randn(d, d) * proj_std)
        self.ln2_g, self.ln2_b = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))
        self.w_fc = nn.Parameter(torch.randn(d, 4 * d) * std)
        self.b_fc = nn.Parameter(torch.zeros(4 * d))
        self.w_proj = nn.Parameter(torch.randn(4 * d, d) * proj_std)
        self.b_proj = nn.Parameter(torch.zeros(d))

    def attention(self, x):
        *lead, t, d = x.shape
        h = self.n_head

        def split(y):  # (..., T, D) -> (..., H, T, D/H)
            return y.reshape(*lead, t, h, d // h).transpose(-2, -3)

        q, k, v = split(x @ self.w_q), split(x @ self.w_k), split(x @ self.w_v)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        weights = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        return (weights @ v).transpose(-2, -3).reshape(*lead, t, d) @ self.w_o

    def forward(self, x):
        x = x + self.attention(layer_norm(x, self.ln1_g, self.ln1_b))
        h = layer_norm(x, self.ln2_g, self.ln2_b)
        return x + F.gelu(h @ self.w_fc + self.b_fc, approximate="tanh") @ self.w_proj + self.b_proj


class TinyGPT(nn.Module):
    def __init__(self, vocab_size: int, n_layer: int, n_head: int, d_model: int, block_size: int):
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Parameter(torch.randn(vocab_size, d_model) * 0.02)
        self.wpe = nn.Parameter(torch.randn(block_size, d_model) * 0.01)
        self.blocks = nn.ModuleList(Block(d_model, n_head, n_layer) for _ in range(n_layer))
        self.lnf_g, self.lnf_b = nn.Parameter(torch.ones(d_model)), nn.Parameter(torch.zeros(d_model))

    def forward(self, ids):
        """ids (..., T) of int64 -> logits (..., T, vocab_size)."""
        t = ids.shape[-1]
        if t > self.block_size:
            raise ValueError(f"sequence of {t} tokens is longer than block_size {self.block_size}")
        x = self.wte[ids] + self.wpe[:t]
        for block in self.blocks:
            x = block(x)
        return layer_norm(x, self.lnf_g, self.lnf_b) @ self.wte.T  # tied unembedding

    def arrays(self) -> dict[str, np.ndarray]:
        """Every parameter as a float32 array under its flat checkpoint name."""
        return {name: p.detach().cpu().float().numpy() for name, p in self.named_parameters()}

    @classmethod
    def load(cls, npz=NPZ, config=JSON, dtype=torch.float32) -> "TinyGPT":
        cfg = json.loads(Path(config).read_text())
        model = cls(len(cfg["vocab"]), cfg["n_layer"], cfg["n_head"], cfg["d_model"], cfg["block_size"])
        with np.load(npz) as arrays:
            state = {name: torch.from_numpy(arrays[name]) for name in arrays.files}
        model.load_state_dict(state, strict=True)
        return model.to(dtype).eval()


# ------------------------------------------------------------------ training

def lr_at(step: int, cfg: dict) -> float:
    """Linear warm-up, then cosine decay from lr to min_lr."""
    if step < cfg["warmup"]:
        return cfg["lr"] * (step + 1) / cfg["warmup"]
    progress = (step - cfg["warmup"]) / max(1, cfg["steps"] - cfg["warmup"])
    return cfg["min_lr"] + 0.5 * (cfg["lr"] - cfg["min_lr"]) * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def generate(model: TinyGPT, tok: CharTokenizer, prompt: str, n: int, temperature: float = 0.0,
             seed: int = 0) -> str:
    """Continue `prompt` by `n` characters (greedy when temperature == 0)."""
    gen = torch.Generator().manual_seed(seed)
    ids = tok.encode(prompt)
    for _ in range(n):
        logits = model(torch.tensor(ids[-model.block_size:]))[-1].double()
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            nxt = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen))
        ids.append(nxt)
    return tok.decode(ids)


def train(cfg: dict = CONFIG, quiet: bool = False):
    torch.set_num_threads(cfg["threads"])
    torch.set_flush_denormal(True)
    torch.manual_seed(cfg["seed"])
    text = corpus_text(cfg["n_stories"], cfg["corpus_seed"])
    tok = CharTokenizer.from_text(text)
    data = torch.tensor(tok.encode(text), dtype=torch.long)
    n_val = len(data) // 20
    train_data, val_data = data[:-n_val], data[-n_val:]
    model = TinyGPT(len(tok.vocab), cfg["n_layer"], cfg["n_head"], cfg["d_model"], cfg["block_size"])
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and n != "wpe"]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n == "wpe"]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg["lr"], betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(cfg["seed"])
    T, B = cfg["block_size"], cfg["batch_size"]

    def batch(source):
        starts = torch.randint(len(source) - T - 1, (B,), generator=gen)
        idx = starts[:, None] + torch.arange(T + 1)
        chunk = source[idx]
        return chunk[:, :-1], chunk[:, 1:]

    curve_steps, curve_loss, running = [], [], []
    t0, cpu0 = time.perf_counter(), time.process_time()
    model.train()
    for step in range(cfg["steps"]):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        x, y = batch(train_data)
        loss = F.cross_entropy(model(x).reshape(-1, len(tok.vocab)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running.append(loss.item())
        if (step + 1) % cfg["log_every"] == 0 or step == 0:
            curve_steps.append(step + 1)
            curve_loss.append(round(float(np.mean(running)), 4))
            running = []
            if not quiet and ((step + 1) % (10 * cfg["log_every"]) == 0 or step == 0):
                print(f"step {step + 1:5d}  loss {curve_loss[-1]:.3f}  "
                      f"{time.perf_counter() - t0:6.1f} s", flush=True)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    model.eval()
    with torch.no_grad():
        vgen = torch.Generator().manual_seed(0)
        starts = torch.randint(len(val_data) - T - 1, (64,), generator=vgen)
        chunk = val_data[starts[:, None] + torch.arange(T + 1)]
        val_loss = F.cross_entropy(model(chunk[:, :-1]).reshape(-1, len(tok.vocab)),
                                   chunk[:, 1:].reshape(-1)).item()
    facts = dict(steps=cfg["steps"], batch_size=B, tokens_seen=cfg["steps"] * B * T,
                 final_train_loss=curve_loss[-1], val_loss=round(val_loss, 4),
                 seed=cfg["seed"], corpus_seed=cfg["corpus_seed"], n_stories=cfg["n_stories"],
                 corpus_chars=len(text), threads=cfg["threads"], seconds=round(seconds, 1),
                 cpu_seconds=round(cpu_seconds, 1),
                 optimizer=f"AdamW(lr={cfg['lr']} cosine to {cfg['min_lr']}, warmup {cfg['warmup']}, "
                           f"betas=(0.9, 0.99), weight_decay={cfg['weight_decay']}, clip 1.0)",
                 torch=torch.__version__,
                 loss_curve={"step": curve_steps, "loss": curve_loss})
    return model, tok, facts


def export(model: TinyGPT, tok: CharTokenizer, facts: dict, cfg: dict = CONFIG,
           npz=NPZ, config=JSON) -> None:
    arrays = model.arrays()
    np.savez(npz, **arrays)
    n_params = int(sum(a.size for a in arrays.values()))
    meta = dict(vocab=tok.vocab, n_layer=cfg["n_layer"], n_head=cfg["n_head"], d_model=cfg["d_model"],
                block_size=cfg["block_size"], n_params=n_params,
                corpus="models/stories.py: corpus_text(n_stories, corpus_seed), one story per line",
                training=facts)
    Path(config).write_text(json.dumps(meta, indent=1) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=CONFIG["steps"])
    parser.add_argument("--out", default=str(NPZ), help="the .npz to write (the .json goes beside it)")
    args = parser.parse_args(argv)
    cfg = dict(CONFIG, steps=args.steps)
    model, tok, facts = train(cfg)
    npz = Path(args.out)
    export(model, tok, facts, cfg, npz, npz.with_suffix(".json"))
    print(f"trained {facts['steps']} steps in {facts['seconds']} s ({facts['cpu_seconds']} s of CPU time); train loss {facts['final_train_loss']}, "
          f"val loss {facts['val_loss']}; wrote {npz} ({npz.stat().st_size / 1e6:.2f} MB)")
    print(generate(model, tok, "Once upon a time, there was a ", 200))


if __name__ == "__main__":
    main()

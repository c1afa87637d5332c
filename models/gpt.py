"""The course's GPT as a PyTorch module: chapter 5's NumPy model, written with `torch`.

One architecture runs through the whole course (chapters 5, 6, 9, 15, ...), and this
module is its PyTorch form. The math is exactly that of the NumPy reference
(`solutions/reference/gpt_numpy.py`):

* pre-norm blocks: ``x = x + attn(ln1(x))``, then ``x = x + mlp(ln2(x))``;
* causal multi-head attention without biases, scaled by ``1/sqrt(d_head)``;
* a 4x MLP with biases and the tanh approximation of GELU;
* LayerNorm with the biased variance and ``eps = 1e-5`` inside the square root;
* learned position embeddings, and an unembedding tied to the token embedding:
  ``logits = ln_f(x) @ wte.T``.

The parameters have the names and layouts of the NumPy parameter dicts: every weight is
used as ``x @ w`` (shape ``(in, out)``, not ``nn.Linear``'s ``(out, in)``), and a flat
name such as ``blocks.0.w_q`` is ``params["blocks"][0]["w_q"]`` there. So a checkpoint is
nothing but these arrays: ``models/tiny-gpt.npz`` (float32 arrays under their flat names)
and a ``.json`` beside it with the vocabulary and the model's shape. `GPT.load` reads one,
`GPT.save` writes one, and `GPT.from_numpy` / `GPT.to_numpy` convert to and from
chapter 5's nested dict.

Training lives elsewhere: chapter 9's pieces in `solutions/reference/gpt_training.py`,
put together by `models/tiny_gpt.py` (`make checkpoint`).
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BLOCK_KEYS = ("ln1_g", "ln1_b", "w_q", "w_k", "w_v", "w_o",
              "ln2_g", "ln2_b", "w_fc", "b_fc", "w_proj", "b_proj")


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """The shape of a model: everything needed to build it before loading weights."""
    vocab_size: int
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    block_size: int = 128  # the context window: the number of learned positions

    @classmethod
    def from_json(cls, meta: dict) -> "GPTConfig":
        """From a checkpoint's .json (whose vocabulary gives vocab_size)."""
        return cls(len(meta["vocab"]), meta["n_layer"], meta["n_head"], meta["d_model"],
                   meta["block_size"])


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


def layer_norm(x, g, b, eps=1e-5):
    """LayerNorm over the last axis, as in chapter 4: biased variance, eps inside the sqrt."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * g + b


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(ln1(x)), then + mlp(ln2(x)).

    Initialisation as in GPT-2: weights N(0, 0.02), the two projections that write into
    the residual stream (w_o, w_proj) scaled down by sqrt(2 * n_layer), biases zero,
    LayerNorm gains one.
    """

    def __init__(self, d: int, n_head: int, n_layer: int):
        super().__init__()
        self.n_head = n_head
        std, proj_std = 0.02, 0.02 / math.sqrt(2 * n_layer)
        # (The order of these lines is the order of the random draws: changing it
        # changes every initial weight, and so the committed checkpoint.)
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
        """Causal multi-head self-attention of x (..., T, D), output projection included."""
        *lead, t, d = x.shape
        h = self.n_head

        def split(y):  # (..., T, D) -> (..., H, T, D/H)
            return y.reshape(*lead, t, h, d // h).transpose(-2, -3)

        q, k, v = split(x @ self.w_q), split(x @ self.w_k), split(x @ self.w_v)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        weights = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        return (weights @ v).transpose(-2, -3).reshape(*lead, t, d) @ self.w_o

    def mlp_hidden(self, x):
        """The MLP's wide hidden layer, gelu(x @ w_fc + b_fc); w_proj and b_proj follow."""
        return F.gelu(x @ self.w_fc + self.b_fc, approximate="tanh")

    def forward(self, x):
        x = x + self.attention(layer_norm(x, self.ln1_g, self.ln1_b))
        h = layer_norm(x, self.ln2_g, self.ln2_b)
        return x + self.mlp_hidden(h) @ self.w_proj + self.b_proj


class GPT(nn.Module):
    """The GPT of chapter 5: ids (..., T) -> logits (..., T, vocab_size)."""

    block_class = Block  # a variant of the model can swap the block (bench/ablations.py does)

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        d = config.d_model
        self.wte = nn.Parameter(torch.randn(config.vocab_size, d) * 0.02)
        self.wpe = nn.Parameter(torch.randn(config.block_size, d) * 0.01)
        self.blocks = nn.ModuleList(self.block_class(d, config.n_head, config.n_layer)
                                    for _ in range(config.n_layer))
        self.lnf_g, self.lnf_b = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))

    def embed(self, ids):
        """Token embedding plus position embedding: (..., T) -> (..., T, D)."""
        t = ids.shape[-1]
        if t > self.block_size:
            raise ValueError(f"sequence of {t} tokens is longer than block_size {self.block_size}")
        return self.wte[ids] + self.wpe[:t]

    def forward(self, ids):
        """ids (..., T) of int64 -> logits (..., T, vocab_size)."""
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return layer_norm(x, self.lnf_g, self.lnf_b) @ self.wte.T  # tied unembedding

    # -------------------------------------------------------------- the checkpoint format

    def arrays(self) -> dict[str, np.ndarray]:
        """Every parameter as a float32 array under its flat checkpoint name."""
        return {name: p.detach().cpu().float().numpy() for name, p in self.named_parameters()}

    def to_numpy(self, dtype=np.float64) -> dict:
        """The parameters as chapter 5's nested dict (wte, wpe, lnf_g, lnf_b, blocks=[...])."""
        flat = {name: p.detach().cpu().numpy().astype(dtype) for name, p in self.named_parameters()}
        params = {name: flat[name] for name in ("wte", "wpe", "lnf_g", "lnf_b")}
        params["blocks"] = [{key: flat[f"blocks.{i}.{key}"] for key in BLOCK_KEYS}
                            for i in range(len(self.blocks))]
        return params

    @classmethod
    def from_numpy(cls, params: dict, n_head: int, dtype=torch.float64) -> "GPT":
        """A module holding chapter 5's nested parameter dict (copied, in `dtype`)."""
        v, d = params["wte"].shape
        config = GPTConfig(v, len(params["blocks"]), n_head, d, params["wpe"].shape[0])
        flat = {name: params[name] for name in ("wte", "wpe", "lnf_g", "lnf_b")}
        for i, block in enumerate(params["blocks"]):
            flat.update({f"blocks.{i}.{key}": block[key] for key in BLOCK_KEYS})
        model = cls(config)
        model.load_state_dict({k: torch.tensor(np.asarray(a)) for k, a in flat.items()}, strict=True)
        return model.to(dtype).eval()

    @classmethod
    def load(cls, npz, config=None, dtype=torch.float32) -> "GPT":
        """Read a checkpoint: the .npz of flat arrays and its .json (default: beside it)."""
        npz = Path(npz)
        meta = json.loads(Path(config or npz.with_suffix(".json")).read_text())
        model = cls(GPTConfig.from_json(meta))
        with np.load(npz) as arrays:
            state = {name: torch.from_numpy(arrays[name]) for name in arrays.files}
        model.load_state_dict(state, strict=True)
        return model.to(dtype).eval()

    def save(self, npz, vocab: list[str], config=None, **facts) -> None:
        """Write the checkpoint: float32 arrays to `npz`; the vocabulary, the model's shape
        and any further `facts` (JSON-serialisable) to `config` (default: the .json beside it)."""
        npz = Path(npz)
        arrays = self.arrays()
        np.savez(npz, **arrays)
        c = self.config
        meta = dict(vocab=list(vocab), n_layer=c.n_layer, n_head=c.n_head, d_model=c.d_model,
                    block_size=c.block_size, n_params=int(sum(a.size for a in arrays.values())), **facts)
        Path(config or npz.with_suffix(".json")).write_text(json.dumps(meta, indent=1) + "\n")


@torch.no_grad()
def generate(model: GPT, tok: CharTokenizer, prompt: str, n: int, temperature: float = 0.0,
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

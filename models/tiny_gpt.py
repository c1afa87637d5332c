"""A tiny character-level GPT, trained on CPU in a few minutes: the checkpoint of chapter 5.

Everything here is reproducible from this file alone, with no download:

* the corpus: short children's stories written by a deterministic generator
  (`models/stories.py`), so the text is simple enough for a small model to learn quickly and
  regular enough that we can measure whether a sample "looks like the corpus";
* the tokenizer: one token per character (`CharTokenizer`);
* the model: the course's GPT (`models/gpt.py`), exactly the NumPy math of chapters 3-5,
  with the parameter names and layouts of the NumPy parameter dicts (x @ w);
* the training: chapter 9's functions (`solutions/reference/gpt_training.py`: get_batch,
  cross_entropy, weight_decay_groups, lr_at, adamw_step) with fixed seeds, plus PyTorch's
  gradient clipping; export to `models/tiny-gpt.npz` (float32 arrays `wte`, `wpe`, `lnf_g`,
  `lnf_b`, `blocks.{i}.{name}`) and `models/tiny-gpt.json` (the vocabulary, the shape of
  the model, and facts about its training).

Run from the repository root (this is what `make checkpoint` does):

    .venv/bin/python -m models.tiny_gpt

The first version of this script used PyTorch's own cross-entropy, AdamW and batch sampling;
chapter 9's functions round exactly as those did, so on one CPU thread the two versions
compute the same run bit for bit (checked over 30 steps, warm-up and cosine included).

Training runs on one CPU thread (`CONFIG["threads"]`): with several, PyTorch's CPU kernels
sum in an order that varies from run to run, and the weights drift apart in the last bits.
On one thread, two runs write identical arrays, whatever the machine's load;
`make checkpoint-check` retrains into a temporary folder and compares every array with the
committed checkpoint, bit for bit. (Another CPU family or PyTorch version may choose other
kernels and round differently; the check then says which arrays differ and by how much.)
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

# On a busy machine, OpenMP threads that spin while they wait for each other make training
# several times slower; passive waiting costs nothing when the cores are free.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.gpt import BLOCK_KEYS, GPT, Block, CharTokenizer, GPTConfig, generate, layer_norm  # noqa: E402,F401
from models.stories import CORPUS_SEED, N_STORIES, corpus_text  # noqa: E402
from solutions.reference.gpt_training import (adamw_step, cross_entropy, get_batch,  # noqa: E402
                                              lr_at, weight_decay_groups)

HERE = Path(__file__).resolve().parent
NPZ = HERE / "tiny-gpt.npz"
JSON = HERE / "tiny-gpt.json"

CONFIG = dict(n_layer=4, n_head=4, d_model=128, block_size=128,
              steps=800, batch_size=24, lr=3e-3, min_lr=3e-4, warmup=100, weight_decay=0.1,
              n_stories=N_STORIES, corpus_seed=CORPUS_SEED, seed=1234, threads=1, log_every=25)
BETAS, EPS, CLIP = (0.9, 0.99), 1e-8, 1.0


class TinyGPT(GPT):
    """The course's GPT (models/gpt.py) under chapter 5's name and constructor."""

    def __init__(self, vocab_size: int, n_layer: int, n_head: int, d_model: int, block_size: int):
        super().__init__(GPTConfig(vocab_size, n_layer, n_head, d_model, block_size))

    @classmethod
    def load(cls, npz=NPZ, config=JSON, dtype=torch.float32) -> GPT:
        return GPT.load(npz, config, dtype)


class TorchIntegers:
    """`rng.integers(low, high, size)`, as get_batch calls it, drawn from a seeded
    torch.Generator: the committed checkpoint's batches came from torch's generator."""

    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(seed)

    def integers(self, low, high, size):
        return torch.randint(low, high, (size,), generator=self.gen).numpy()


@dataclasses.dataclass
class TrainState:
    """What a run needs besides the weights to go on exactly where it stopped."""
    m: dict            # AdamW's running average of each parameter's gradient ...
    v: dict            # ... and of its square
    rng: object        # the batch sampler's generator
    step: int = 0      # updates done so far
    grad_norm: float = 0.0  # the last step's gradient norm, before clipping

    @classmethod
    def start(cls, model: GPT, rng) -> "TrainState":
        zeros = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
        return cls({k: z.clone() for k, z in zeros.items()}, zeros, rng)


def train_step(model: GPT, state: TrainState, data: np.ndarray, cfg: dict) -> float:
    """One step of chapter 9's loop; returns the batch's loss (before the update).

    The learning rate of this step, a batch of windows, the loss, its gradients (clipped to
    a total norm of CLIP), and one AdamW update that skips the no-decay parameters.
    """
    lr = lr_at(state.step, cfg["lr"], cfg["min_lr"], cfg["warmup"], cfg["steps"])
    x, y = (torch.from_numpy(a) for a in get_batch(data, cfg["batch_size"], cfg["block_size"], state.rng))
    loss = cross_entropy(model(x), y)
    model.zero_grad(set_to_none=True)
    loss.backward()
    state.grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP))
    named = dict(model.named_parameters())
    _, no_decay = weight_decay_groups({name: tuple(p.shape) for name, p in named.items()})
    with torch.no_grad():
        params = {name: p.detach() for name, p in named.items()}
        grads = {name: p.grad for name, p in named.items()}
        new, state.m, state.v = adamw_step(params, grads, state.m, state.v, state.step + 1, lr, BETAS, EPS,
                                           cfg["weight_decay"], no_decay)
        for name, p in named.items():
            p.copy_(new[name])
    state.step += 1
    return loss.item()


@torch.no_grad()
def evaluate(model: GPT, data: np.ndarray, block_size: int, rng, batch_size: int = 64) -> float:
    """The mean loss on one batch of `batch_size` windows of `data` drawn with `rng`."""
    x, y = (torch.from_numpy(a) for a in get_batch(data, batch_size, block_size, rng))
    return cross_entropy(model(x), y).item()


def save_training(path, model: GPT, state: TrainState) -> None:
    """Everything needed to resume: the weights, Adam's m and v, the step and the rng's state
    (a np.random.Generator's). Resuming from it continues exactly as if never stopped."""
    torch.save({"params": model.state_dict(), "m": state.m, "v": state.v, "step": state.step,
                "rng": state.rng.bit_generator.state}, path)


def load_training(path, model: GPT) -> TrainState:
    """Load what save_training wrote into `model` and return the state to continue with."""
    saved = torch.load(path)
    model.load_state_dict(saved["params"])
    rng = np.random.default_rng()
    rng.bit_generator.state = saved["rng"]
    return TrainState(saved["m"], saved["v"], rng, saved["step"])


def train(cfg: dict = CONFIG, quiet: bool = False):
    torch.set_num_threads(cfg["threads"])
    torch.set_flush_denormal(True)
    torch.manual_seed(cfg["seed"])
    text = corpus_text(cfg["n_stories"], cfg["corpus_seed"])
    tok = CharTokenizer.from_text(text)
    data = np.array(tok.encode(text), dtype=np.int64)
    n_val = len(data) // 20
    # (The first version of this script never drew the last possible window of each split;
    # dropping the last token keeps its batches, and so its checkpoint, exactly.)
    train_data, val_data = data[:-n_val][:-1], data[-n_val:][:-1]
    model = TinyGPT(len(tok.vocab), cfg["n_layer"], cfg["n_head"], cfg["d_model"], cfg["block_size"])
    state = TrainState.start(model, TorchIntegers(cfg["seed"]))
    T, B = cfg["block_size"], cfg["batch_size"]

    curve_steps, curve_loss, running = [], [], []
    t0, cpu0 = time.perf_counter(), time.process_time()
    model.train()
    for step in range(cfg["steps"]):
        running.append(train_step(model, state, train_data, cfg))
        if (step + 1) % cfg["log_every"] == 0 or step == 0:
            curve_steps.append(step + 1)
            curve_loss.append(round(float(np.mean(running)), 4))
            running = []
            if not quiet and ((step + 1) % (10 * cfg["log_every"]) == 0 or step == 0):
                print(f"step {step + 1:5d}  loss {curve_loss[-1]:.3f}  "
                      f"{time.perf_counter() - t0:6.1f} s", flush=True)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    model.eval()
    val_loss = evaluate(model, val_data, T, TorchIntegers(0))
    facts = dict(steps=cfg["steps"], batch_size=B, tokens_seen=cfg["steps"] * B * T,
                 final_train_loss=curve_loss[-1], val_loss=round(val_loss, 4),
                 seed=cfg["seed"], corpus_seed=cfg["corpus_seed"], n_stories=cfg["n_stories"],
                 corpus_chars=len(text), threads=cfg["threads"], seconds=round(seconds, 1),
                 cpu_seconds=round(cpu_seconds, 1),
                 optimizer=f"AdamW(lr={cfg['lr']} cosine to {cfg['min_lr']}, warmup {cfg['warmup']}, "
                           f"betas={BETAS}, weight_decay={cfg['weight_decay']}, clip {CLIP})",
                 torch=torch.__version__,
                 loss_curve={"step": curve_steps, "loss": curve_loss})
    return model, tok, facts


def export(model: GPT, tok: CharTokenizer, facts: dict, cfg: dict = CONFIG,
           npz=NPZ, config=JSON) -> None:
    model.save(npz, tok.vocab, config=config,
               corpus="models/stories.py: corpus_text(n_stories, corpus_seed), one story per line",
               training=facts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=CONFIG["steps"])
    parser.add_argument("--out", default=str(NPZ), help="the .npz to write (the .json goes beside it)")
    parser.add_argument("--check", action="store_true",
                        help="retrain into a temporary folder and compare with the committed checkpoint")
    args = parser.parse_args(argv)
    if args.check:
        return check_reproduces(args.steps)
    cfg = dict(CONFIG, steps=args.steps)
    model, tok, facts = train(cfg)
    npz = Path(args.out)
    export(model, tok, facts, cfg, npz, npz.with_suffix(".json"))
    print(f"trained {facts['steps']} steps in {facts['seconds']} s ({facts['cpu_seconds']} s of CPU time); "
          f"train loss {facts['final_train_loss']}, val loss {facts['val_loss']}; "
          f"wrote {npz} ({npz.stat().st_size / 1e6:.2f} MB)")
    print(generate(model, tok, "Once upon a time, there was a ", 200))


def check_reproduces(steps: int = CONFIG["steps"]) -> int:
    """Retrain and compare every array with models/tiny-gpt.npz: 0 if all are identical."""
    import tempfile
    if not NPZ.is_file():
        print(f"{NPZ} is missing: run `make checkpoint` first")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "tiny-gpt.npz"
        main(["--steps", str(steps), "--out", str(fresh)])
        new, old = np.load(fresh), np.load(NPZ)
        differ = {k: float(np.abs(new[k].astype(np.float64) - old[k]).max()) if new[k].shape == old[k].shape
                  else float("inf") for k in old.files if k not in new.files or not np.array_equal(new[k], old[k])}
        differ.update({k: float("inf") for k in new.files if k not in old.files})
    if differ:
        print(f"NOT reproduced: {len(differ)} of {len(old.files)} arrays differ (largest differences: "
              + ", ".join(f"{k} {v:.3g}" for k, v in sorted(differ.items(), key=lambda kv: -kv[1])[:5]) + ")")
        return 1
    print(f"reproduced: all {len(old.files)} arrays of {NPZ.name} are identical, bit for bit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

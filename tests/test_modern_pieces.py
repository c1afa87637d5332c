"""Chapter 10 beyond the graded checks: the claims of the page and the experiment's script."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from solutions.reference.modern_pieces import apply_rope, grouped_query_attention, rms_norm, rope_angles

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "length_generalisation.json"


def test_halves_convention_is_a_permutation_of_interleaved():
    """The page: 'rotate half' is the same RoPE with the features permuted."""
    rng = np.random.default_rng(0)
    t, d = 7, 12
    x, angles = rng.standard_normal((2, t, d)), rope_angles(t, d)
    # interleaved feature 2i <-> halves feature i, 2i+1 <-> i + d/2
    perm = np.concatenate([np.arange(0, d, 2), np.arange(1, d, 2)])
    xh = x[..., perm]
    a, b = xh[..., : d // 2], xh[..., d // 2:]
    halves = np.concatenate([a * np.cos(angles) - b * np.sin(angles), a * np.sin(angles) + b * np.cos(angles)], -1)
    np.testing.assert_allclose(halves, apply_rope(x, angles)[..., perm], atol=1e-12)


def test_rope_scores_are_relative_for_many_frequencies_and_bases():
    rng = np.random.default_rng(1)
    for d, base in [(8, 100.0), (64, 10000.0), (128, 500000.0)]:
        t = 20
        q, k = rng.standard_normal(d), rng.standard_normal(d)
        a = rope_angles(t, d, base)
        s = apply_rope(np.tile(q, (t, 1)), a) @ apply_rope(np.tile(k, (t, 1)), a).T
        for off in range(-t + 1, t):
            assert np.ptp(np.diagonal(s, off)) < 1e-9


def test_reference_keeps_float32():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 5, 8)).astype(np.float32)
    assert apply_rope(x, rope_angles(5, 8)).dtype == np.float32
    assert rms_norm(x, np.ones(8, np.float32)).dtype == np.float32
    assert grouped_query_attention(x, x[:, :1], x[:, :1]).dtype == np.float32


def test_bench_rope_equals_the_reference():
    """The experiment's complex-number RoPE (PyTorch) is the chapter's apply_rope."""
    torch = pytest.importorskip("torch")
    from bench.length_generalisation import rotate
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 9, 16))
    angles = rope_angles(9, 16)
    rot = torch.polar(torch.ones(angles.shape, dtype=torch.float64), torch.tensor(angles)).to(torch.complex64)
    got = rotate(torch.tensor(x, dtype=torch.float32), rot).numpy()
    np.testing.assert_allclose(got, apply_rope(x, angles), rtol=1e-5, atol=1e-5)


def test_committed_results_match_the_script():
    """bench/results/length_generalisation.json: every scheme and seed, one loss per position."""
    from bench.length_generalisation import CONFIG, SCHEMES
    bench = json.loads(RESULTS.read_text())
    cfg = bench["config"]
    assert set(bench["results"]) == set(SCHEMES)
    assert {k: cfg[k] for k in ("train_len", "eval_len", "n_layer", "n_head", "d_model")} == \
        {k: CONFIG[k] for k in ("train_len", "eval_len", "n_layer", "n_head", "d_model")}
    for r in bench["results"].values():
        assert len(r["per_position_loss"]) == len(cfg["seeds"])
        assert all(len(c) == cfg["eval_len"] and all(math.isfinite(v) for v in c) for c in r["per_position_loss"])
    for key in ("device", "date", "versions"):
        assert bench[key]

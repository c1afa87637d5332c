"""Chapter 11's reference formulas: properties that the graded checks do not spell out
(the page relies on them), and the catalogue's alternative correct version agreeing with the
reference on many random configs. Plain arithmetic: well under a second."""
import numpy as np

from autograder.catalogue import inference_arithmetic as catalogue
from solutions.reference.inference_arithmetic import (arithmetic_intensity, flops_per_token,
                                                      generation_time_lower_bound, kv_cache_bytes,
                                                      roofline_time)

BIG = {"n_layers": 64, "d_model": 8192, "n_heads": 64, "vocab_size": 65536}


def _random_config(rng):
    head_dim = int(rng.choice([8, 16, 64, 128]))
    n_heads = int(rng.choice([1, 2, 4, 8, 16]))
    config = {"n_layers": int(rng.integers(1, 40)), "d_model": n_heads * head_dim, "n_heads": n_heads,
              "vocab_size": int(rng.integers(2, 50000))}
    if rng.random() < 0.7:
        config["n_kv_heads"] = int(rng.choice([k for k in range(1, n_heads + 1) if n_heads % k == 0]))
    if rng.random() < 0.5:
        config["d_ff"] = int(rng.integers(1, 5000))
    return config


def test_the_worked_examples_of_the_page():
    assert kv_cache_bytes(BIG, 1, 1, 2) == 2 * 2 ** 20            # 2 * 64 * 8192 * 2 bytes
    assert kv_cache_bytes(dict(BIG, n_kv_heads=8), 1, 1, 2) == 2 ** 18
    assert round(arithmetic_intensity(312e12, 1.5e12)) == 208
    assert round(arithmetic_intensity(989e12, 3.35e12)) == 295
    assert 51.5e9 < (flops_per_token(BIG, 1) - 4 * 64 * 8192) / 2 < 52.1e9


def test_prefill_sum_has_the_closed_form_of_the_page():
    # sum_{t=1..T} F(t) = 2 N T + 2 L d T (T + 1)
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = _random_config(rng)
        T = int(rng.integers(1, 300))
        n = (flops_per_token(c, 1) - 4 * c["n_layers"] * c["d_model"]) // 2
        total = sum(flops_per_token(c, t) for t in range(1, T + 1))
        assert total == 2 * n * T + 2 * c["n_layers"] * c["d_model"] * T * (T + 1)


def test_generation_bound_is_additive_and_one_token_is_the_prefill():
    rng = np.random.default_rng(1)
    for _ in range(10):
        c = _random_config(rng)
        p, n, b = int(rng.integers(1, 100)), int(rng.integers(2, 50)), int(rng.integers(1, 64))
        peak, bw = 10 ** rng.uniform(11, 15), 10 ** rng.uniform(10, 13)
        one = generation_time_lower_bound(c, p, 1, b, 2, peak, bw)
        weights = (flops_per_token(c, 1) - 4 * c["n_layers"] * c["d_model"]) // 2 * 2
        prefill = roofline_time(b * sum(flops_per_token(c, t) for t in range(1, p + 1)),
                                weights + kv_cache_bytes(c, p, b, 2), peak, bw)
        assert np.isclose(one, prefill, rtol=1e-12)
        more = generation_time_lower_bound(c, p, n, b, 2, peak, bw)
        step = roofline_time(b * flops_per_token(c, p + n), weights + kv_cache_bytes(c, p + n, b, 2), peak, bw)
        assert np.isclose(generation_time_lower_bound(c, p, n + 1, b, 2, peak, bw), more + step, rtol=1e-12)


def test_the_alternative_correct_version_agrees_everywhere():
    ns = {}
    exec(catalogue.CORRECT[0], ns)
    rng = np.random.default_rng(2)
    for _ in range(30):
        c = _random_config(rng)
        t, b = int(rng.integers(1, 5000)), int(rng.integers(0, 100))
        assert ns["flops_per_token"](c, t) == flops_per_token(c, t)
        assert ns["kv_cache_bytes"](c, t, b, 2) == kv_cache_bytes(c, t, b, 2)
        args = (c, int(rng.integers(1, 60)), int(rng.integers(1, 30)), b + 1, 2, 1e13, 1e11)
        assert np.isclose(ns["generation_time_lower_bound"](*args), generation_time_lower_bound(*args),
                          rtol=1e-12)

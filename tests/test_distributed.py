"""Chapter 17: data parallelism for real, in two processes (gloo on 127.0.0.1), equals training
in one process; and the NumPy reference agrees with torch and with the ring's arithmetic.

One spawn of two processes runs every distributed job (starting processes that import torch
is most of the cost); the module fixture shares its results between the tests.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models import data_parallel as dp  # noqa: E402
from solutions.reference import distributed as ref  # noqa: E402

STEPS = 6
EVEN = {"steps": STEPS}                         # 8 sequences: 4 per rank
UNEVEN = {"steps": STEPS, "batch_size": 7}      # 4 + 3 sequences


@pytest.fixture(scope="module")
def runs():
    torch.set_num_threads(1)
    done = dp.run([("hand_dp", EVEN), ("hand_dp", UNEVEN), ("ddp", EVEN), ("zero", EVEN)], world_size=2)
    single = {"even": dp.train_single(dict(dp.CONFIG, **EVEN)),
              "uneven": dp.train_single(dict(dp.CONFIG, **UNEVEN))}
    return done, single


def _same_training(result, single):
    assert len(result["losses"]) == len(single["losses"]) == STEPS
    for a, b in zip(result["losses"], single["losses"]):
        assert abs(a - b) <= 1e-6 * max(1.0, abs(b)), (result["losses"], single["losses"])
    diff = (result["params"] - single["params"]).abs().max().item()
    assert diff <= 1e-6, diff
    assert single["losses"][-1] < single["losses"][0]        # it did train


def test_two_gloo_processes_ran(runs):
    done, _ = runs
    assert done["world_size"] == 2 and done["backend"] == "gloo"


def test_hand_written_data_parallel_equals_single_process(runs):
    done, single = runs
    _same_training(done["results"][0], single["even"])


def test_hand_written_data_parallel_with_uneven_shards(runs):
    done, single = runs
    _same_training(done["results"][1], single["uneven"])


def test_ddp_equals_single_process_and_buckets_overlap_backward(runs):
    done, single = runs
    res = done["results"][2]
    _same_training(res, single["even"])
    trace = res["trace"]
    n_params = len(list(dp.new_model(10).parameters()))
    assert len(trace["ready"]) == n_params and len(trace["buckets"]) >= 2
    # Every parameter in exactly one bucket; the first bucket is launched before the backward ends
    # (it holds the last layers' gradients, which the backward produces first).
    names = [n for b in trace["buckets"] for n in b["params"]]
    assert sorted(names) == sorted(n for n, _ in trace["ready"])
    first = min(b["t"] for b in trace["buckets"])
    assert first < max(t for _, t in trace["ready"]) <= trace["end"]


def test_zero1_optimizer_equals_adamw_and_halves_its_state(runs):
    done, single = runs
    res = done["results"][3]
    _same_training(res, single["even"])
    assert sum(res["state_numel"]) == 2 * res["n_params"]      # exp_avg + exp_avg_sq, split over ranks
    assert max(res["state_numel"]) < 0.6 * 2 * res["n_params"]


def test_reference_ring_volume_and_sum():
    rng = np.random.default_rng(0)
    for p in (1, 2, 3, 4, 8):
        for n in (8 * p, 8 * p + 3):
            x = rng.standard_normal((p, n))
            result, sent = ref.ring_allreduce(x)
            np.testing.assert_allclose(result, np.tile(x.sum(0), (p, 1)), rtol=1e-12, atol=1e-12)
            assert sent.sum() == 2 * (p - 1) * n                  # 2 (p - 1) / p * n per rank on average
            assert sent.max() - sent.min() <= 2


def test_reference_shards_match_torch_tensor_split():
    for n in range(0, 30):
        for p in range(1, 7):
            parts = torch.arange(n).tensor_split(p)
            for r in range(p):
                assert ref.shard_batch(n, r, p).tolist() == parts[r].tolist()


def test_reference_zero1_equals_torch_adamw():
    rng = np.random.default_rng(1)
    p, n = 3, 11
    w = rng.standard_normal(n)
    params = np.tile(w, (p, 1))
    m = v = np.zeros((p, -(-n // p)))
    tw = torch.tensor(w, requires_grad=True)
    opt = torch.optim.AdamW([tw], lr=0.01, betas=(0.9, 0.99), weight_decay=0.1)
    for t in range(1, 5):
        grads = rng.standard_normal((p, n))
        params, m, v = ref.zero1_step(params, grads, m, v, t, 0.01, beta2=0.99, weight_decay=0.1)
        tw.grad = torch.tensor(grads.mean(0))
        opt.step()
    np.testing.assert_allclose(params, np.tile(tw.detach().numpy(), (p, 1)), rtol=1e-12, atol=1e-12)

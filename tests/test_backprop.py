"""Chapter 7's reference backward functions against torch.autograd (float64, random inputs with
batch axes), and the given numerical_gradient against a known derivative. Not graded: these
keep the answer key honest."""
import math

import numpy as np
import pytest

from solutions.reference import backprop as ref

torch = pytest.importorskip("torch")
F = torch.nn.functional
TOL = 1e-10


def _autograd(forward, arrays, upstream):
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    (forward(*ts) * torch.as_tensor(upstream, dtype=torch.float64)).sum().backward()
    return [t.grad.numpy() for t in ts]


def _close(ours, theirs):
    assert len(ours) == len(theirs)
    for a, t in zip(ours, theirs):
        assert a.shape == t.shape
        assert np.abs(a - t).max() <= TOL * max(1.0, np.abs(t).max())


def _head(x, w_q, w_k, w_v):
    t = x.shape[-2]
    s = (x @ w_q) @ (x @ w_k).transpose(-1, -2) / math.sqrt(w_q.shape[-1])
    s = s.masked_fill(~torch.tril(torch.ones(t, t, dtype=torch.bool)), float("-inf"))
    return torch.softmax(s, dim=-1) @ (x @ w_v)


@pytest.mark.parametrize("lead", [(), (3,), (2, 4)])
def test_reference_matches_autograd(lead):
    rng = np.random.default_rng(len(lead))
    d, d_out, v, t = 6, 4, 7, 5
    x = rng.standard_normal(lead + (d,))
    w, b = rng.standard_normal((d, d_out)), rng.standard_normal(d_out)
    dy = rng.standard_normal(lead + (d_out,))
    _close(ref.linear_backward(dy, x, w), _autograd(lambda a, c, e: a @ c + e, [x, w, b], dy)[:3])

    z, dp = rng.standard_normal(lead + (v,)) * 2, rng.standard_normal(lead + (v,))
    _close([ref.softmax_backward(dp, ref.softmax(z))], _autograd(lambda a: torch.softmax(a, -1), [z], dp))

    targets = rng.integers(0, v, lead)
    mean_ce = lambda a: F.cross_entropy(a.reshape(-1, v), torch.tensor(targets).reshape(-1))  # noqa: E731
    _close([ref.cross_entropy_backward(z, targets)], _autograd(mean_ce, [z], 1.0))
    assert abs(ref.cross_entropy(z, targets) - mean_ce(torch.tensor(z)).item()) < 1e-12

    dx = rng.standard_normal(x.shape)
    _close([ref.gelu_backward(dx, x * 3)], _autograd(lambda a: F.gelu(a, approximate="tanh"), [x * 3], dx))

    gamma, beta = 1 + 0.3 * rng.standard_normal(d), rng.standard_normal(d)
    _close(ref.layer_norm_backward(dx, x, gamma),
           _autograd(lambda a, c, e: F.layer_norm(a, (d,), c, e, eps=1e-5), [x, gamma, beta], dx))

    xs = rng.standard_normal(lead + (t, d))
    w_q, w_k, w_v = rng.standard_normal((d, 3)), rng.standard_normal((d, 3)), rng.standard_normal((d, 2))
    dout = rng.standard_normal(lead + (t, 2))
    _close(ref.attention_head_backward(dout, xs, w_q, w_k, w_v), _autograd(_head, [xs, w_q, w_k, w_v], dout))
    assert np.abs(ref.attention_head(xs, w_q, w_k, w_v) - _head(*map(torch.tensor, (xs, w_q, w_k, w_v))).numpy()
                  ).max() < 1e-12


def test_numerical_gradient_of_a_known_function():
    x = np.array([[0.5, -1.0], [2.0, 0.1]])
    num = ref.numerical_gradient(lambda a: float(np.sum(np.sin(a) * a)), x)
    assert np.allclose(num, np.cos(x) * x + np.sin(x), rtol=1e-8, atol=1e-9)
    assert num.dtype == np.float64


def test_float32_inputs_keep_their_dtype():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 6)).astype(np.float32)
    w = [rng.standard_normal((6, 3)).astype(np.float32) for _ in range(3)]
    for g in ref.attention_head_backward(rng.standard_normal((2, 4, 3)).astype(np.float32), x, *w):
        assert g.dtype == np.float32
    for g in ref.layer_norm_backward(x, x, np.ones(6, np.float32)):
        assert g.dtype == np.float32
    assert ref.gelu_backward(x, x).dtype == np.float32
    assert ref.cross_entropy_backward(x, np.zeros((2, 4), int)).dtype == np.float32

"""The wire format between the sandboxed worker and the trusted grader."""
import io
import pickle

import numpy as np
import pytest

from autograder import worker as wire


def roundtrip(value):
    blobs = []
    return wire.decode(wire.encode(value, blobs), blobs)


def test_values_roundtrip():
    value = {"a": [np.arange(3.0), {"b": (1, 2.5, None, True, "s")}], "c": np.float32(2)}
    out = roundtrip(value)
    assert np.array_equal(out["a"][0], np.arange(3.0))
    assert out["a"][1]["b"] == (1, 2.5, None, True, "s")
    assert out["c"].dtype == np.float32


def test_generators_cross_with_their_exact_state():
    rng = np.random.default_rng(123)
    rng.random(7)
    copy = roundtrip(rng)
    assert copy.random(5).tolist() == rng.random(5).tolist()


def test_subclasses_become_plain_arrays():
    class Liar(np.ndarray):
        def __eq__(self, other):
            return True
    out = roundtrip(np.zeros(3).view(Liar))
    assert type(out) is np.ndarray


def test_object_arrays_and_pickles_are_refused():
    with pytest.raises(TypeError):
        wire.encode(np.array([object()], dtype=object), [])
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        wire.decode({"array": 0}, [buf.getvalue()])
    with pytest.raises(ValueError):
        wire.decode({"array": 0}, [pickle.dumps(np.zeros(3))])


@pytest.mark.parametrize("tree", [[], {"py": [1]}, {"array": 5}, {"tuple": 3}, {"dict": []}, {"x": 1}])
def test_malformed_trees_are_refused(tree):
    with pytest.raises(ValueError):
        wire.decode(tree, [])


def test_unsupported_objects_are_named_not_crossed():
    out = roundtrip(lambda: 1)
    assert isinstance(out, wire.Unsupported) and out.type_name == "function"


def _random_view(rng, torch):
    """A tensor viewed through a random chain of transposes, strided slices and expands."""
    t = torch.randn(*[int(n) for n in rng.integers(1, 6, size=int(rng.integers(1, 5)))], dtype=torch.float64)
    for _ in range(int(rng.integers(0, 4))):
        kind = rng.integers(0, 4)
        if kind == 0 and t.dim() >= 2:
            a, b = rng.choice(t.dim(), 2, replace=False)
            t = t.transpose(int(a), int(b))
        elif kind == 1:
            d = int(rng.integers(0, t.dim()))
            t = t.narrow(d, 0, max(1, t.shape[d] // 2)) if rng.random() < 0.5 else t[(slice(None),) * d + (slice(None, None, 2),)]
        elif kind == 2:
            d = int(rng.integers(0, t.dim() + 1))
            t = t.unsqueeze(d).expand(*t.shape[:d], int(rng.integers(1, 4)), *t.shape[d:])
        else:
            t = t.permute(*[int(i) for i in rng.permutation(t.dim())])
    return t


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_every_strided_layout_roundtrips(dtype):
    """Values, shape, strides and contiguity survive, on both sides of the wire (issue: a
    transposed gradient was decoded with its axes swapped, and an expanded one as dense)."""
    import torch
    rng = np.random.default_rng(7)
    for _ in range(200):
        t = _random_view(rng, torch).to(getattr(torch, dtype))
        blobs = []
        tree = wire.encode(t, blobs)
        as_tensor = wire.decode(tree, blobs, torch_tensors=True)
        as_array = wire.decode(tree, blobs)
        assert as_tensor.dtype == t.dtype and as_tensor.shape == t.shape
        assert torch.equal(as_tensor, t)
        assert np.array_equal(as_array, t.float().numpy() if dtype == "bfloat16" else t.numpy())
        if t.numel():
            strides = lambda x: [st for n, st in zip(x.shape, x.stride()) if n > 1]  # size-1 dims: any
            assert strides(as_tensor) == strides(t) and as_tensor.is_contiguous() == t.is_contiguous()


@pytest.mark.parametrize("layout", [{"shape": [3, 3], "strides": [3, 1]}, {"shape": [2], "strides": [-1]},
                                    {"shape": [2, 2], "strides": [1]}, "x", {"shape": [2 ** 50], "strides": [0]}])
def test_layouts_outside_their_data_are_refused(layout):
    blobs = []
    tree = wire.encode(np.arange(4.0), blobs)
    with pytest.raises(ValueError):
        wire.decode({"tensor": tree["array"], "dtype": "float64", "layout": layout}, blobs, torch_tensors=True)

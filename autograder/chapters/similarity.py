"""Chapter 1 (01-similarity): embeddings, similarity and a stable softmax."""
import numpy as np

from ..framework import (Chapter, assert_close, assert_dtype, assert_finite, assert_raises,
                         assert_shape, as_result_array, attempt, ensure, rng_for)

chapter = Chapter("01-similarity", reference="similarity",
                  functions=["embed", "similarity_matrix", "cosine_similarity", "softmax"],
                  sample_scores=(12, 8, 0, 3, 9),
                  sample_mistakes={"softmax": "unstable", "embed": "negative_ids_wrap"},
                  sample_loop=("cell", "similarity_matrix"))
test = chapter.test

# ------------------------------------------------------------------ embed

NEGATIVE_ID_HINT = ("negative ids must raise IndexError: NumPy's negative indexing silently "
                    "returns rows from the end of the table")


@test("embed_visible", "embed")
def embed_visible(embed):
    """Looks up rows, keeps the ids' shape and the table's dtype, rejects bad ids."""
    table = np.arange(15, dtype=np.float64).reshape(5, 3)
    out = as_result_array(attempt(lambda: embed(np.array([4, 0, 4]), table), "embed([4, 0, 4], table)",
                                  "index the rows (first axis) of the table: one row per id"),
                          "embed([4, 0, 4], table)")
    assert_shape(out, (3, 3), "embed([4, 0, 4], table)",
                 "index the rows (first axis) of the table: one row of length d per id")
    assert_close(out, [[12, 13, 14], [0, 1, 2], [12, 13, 14]], "embed([4, 0, 4], table)",
                 "row i of the table is the vector of token i")
    grid = embed(np.array([[1, 2, 3], [0, 0, 4]]), table)
    assert_shape(as_result_array(grid, "embed(ids of shape (2, 3))"), (2, 3, 3),
                 "embed(ids of shape (2, 3))",
                 "keep the shape of token_ids and add the embedding axis at the end; don't flatten")
    assert_dtype(embed(np.array([1]), table.astype(np.float32)), np.float32,
                 "embed with a float32 table",
                 "keep the table's dtype: a one-hot matrix product or a float64 cast changes it")
    assert_raises(lambda: embed(np.array([5]), table), "IndexError", "embed with id 5 of 5",
                  "ids must be < vocab_size")
    assert_raises(lambda: embed(np.array([-1]), table), "IndexError", "embed with id -1",
                  NEGATIVE_ID_HINT)


@test("embed_random", "embed", hidden=True)
def embed_random(embed, ref):
    """Random tables and id arrays of several shapes and dtypes."""
    rng = rng_for("embed_random")
    for dtype in (np.float64, np.float32):
        for shape in [(7,), (2, 5), (3, 1, 4)]:
            table = rng.standard_normal((11, 6)).astype(dtype)
            ids = rng.integers(0, 11, size=shape)
            assert_close(embed(ids, table), ref.embed(ids, table), f"embed(ids {shape}, {np.dtype(dtype)} table)",
                         "keep the ids' shape and add the embedding axis last")


@test("embed_edge", "embed", hidden=True)
def embed_edge(embed, ref):
    """One token, a scalar id, the last id, and out-of-range ids."""
    table = rng_for("embed_edge").standard_normal((4, 2))
    assert_close(embed(np.array([3]), table), ref.embed(np.array([3]), table), "embed([3])")
    assert_close(embed(np.array(2), table), ref.embed(np.array(2), table), "embed(scalar id 2)",
                 "a 0-d id array gives one vector of shape (d,)")
    assert_raises(lambda: embed(np.array([[0, -2]]), table), "IndexError", "embed with id -2",
                  NEGATIVE_ID_HINT)
    assert_raises(lambda: embed(np.array([0, 4]), table), "IndexError", "embed with id 4 of 4")


# ------------------------------------------------------------------ similarity_matrix

PAIRWISE_HINT = "pairwise: entry [i, j] is a[i] . b[j], so the result has shape (n, m)"


def _pairwise_shape(out, a, b, what):
    out = as_result_array(out, what)
    n, m = a.shape[0], b.shape[0]
    if out.shape == (m, n) and n != m:
        raise_hint = "entry [i, j] pairs a[i] with b[j]; you returned the transpose (use a @ b.T)"
        assert_shape(out, (n, m), what, raise_hint)
    assert_shape(out, (n, m), what, PAIRWISE_HINT + "; multiply a by b transposed")
    return out


@test("similarity_matrix_visible", "similarity_matrix")
def similarity_matrix_visible(similarity_matrix):
    """A hand-computed 2x1 case, the (n, m) shape, and symmetry for a = b."""
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[3.0, 4.0]])
    out = _pairwise_shape(similarity_matrix(a, b), a, b, "similarity_matrix(a (2x2), b (1x2))")
    assert_close(out, [[3.0], [8.0]], "similarity_matrix(a, b)",
                 "dot products, not cosines: don't divide by the norms")
    x = np.arange(12.0).reshape(3, 4) - 5
    y = np.ones((5, 4))
    _pairwise_shape(similarity_matrix(x, y), x, y, "similarity_matrix(a (3x4), b (5x4))")
    s = as_result_array(similarity_matrix(x, x), "similarity_matrix(x, x)")
    assert_close(s, s.T, "similarity_matrix(x, x) should be symmetric")


@test("similarity_matrix_random", "similarity_matrix", hidden=True)
def similarity_matrix_random(similarity_matrix, ref):
    """Random matrices in float64 and float32."""
    rng = rng_for("similarity_matrix_random")
    for dtype in (np.float64, np.float32):
        a = rng.standard_normal((6, 8)).astype(dtype)
        b = rng.standard_normal((9, 8)).astype(dtype) * 3
        out = _pairwise_shape(similarity_matrix(a, b), a, b, f"similarity_matrix ({np.dtype(dtype)})")
        assert_close(out, ref.similarity_matrix(a, b), f"similarity_matrix ({np.dtype(dtype)})",
                     "dot products, not cosines: don't divide by the norms")


@test("similarity_matrix_edge", "similarity_matrix", hidden=True)
def similarity_matrix_edge(similarity_matrix, ref):
    """One row each, and large magnitudes."""
    rng = rng_for("similarity_matrix_edge")
    a, b = rng.standard_normal((1, 3)), rng.standard_normal((1, 3))
    assert_close(_pairwise_shape(similarity_matrix(a, b), a, b, "similarity_matrix(1 row, 1 row)"),
                 ref.similarity_matrix(a, b), "similarity_matrix(1 row, 1 row)")
    a, b = a * 1e6, rng.standard_normal((4, 3)) * 1e6
    assert_close(_pairwise_shape(similarity_matrix(a, b), a, b, "similarity_matrix(large)"),
                 ref.similarity_matrix(a, b), "similarity_matrix(large values)")


# ------------------------------------------------------------------ cosine_similarity

ZERO_ROW_HINT = "a zero vector has no direction: clamp the norm below by eps so 0/0 never happens"


@test("cosine_similarity_visible", "cosine_similarity")
def cosine_similarity_visible(cosine_similarity):
    """Parallel, orthogonal and opposite vectors; length does not matter; zero rows give 0."""
    x = np.array([[1.0, 2.0, 2.0], [0.5, -1.0, 3.0]])
    y = np.array([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0], [-3.0, 2.0, 0.5]])
    base = as_result_array(cosine_similarity(x, y), "cosine_similarity(x, y)")
    assert_close(cosine_similarity(x * np.array([[10.0], [0.1]]), y), base,
                 "rescaling the rows of a changed the result",
                 "divide by the norm of each row of a (axis=-1), so length cancels")
    assert_close(cosine_similarity(x, y * np.array([[7.0], [0.2], [3.0]])), base,
                 "rescaling the rows of b changed the result",
                 "normalise the rows of b too, not only a")
    a = np.array([[1.0, 0.0], [0.0, 1.0], [-2.0, 0.0]])
    b = np.array([[3.0, 0.0]])
    out = _pairwise_shape(cosine_similarity(a, b), a, b, "cosine_similarity(a, b)")
    assert_close(out, [[1.0], [0.0], [-1.0]], "cosine_similarity of parallel/orthogonal/opposite rows",
                 "divide each dot product by the lengths of both vectors (norm of each row)")
    z = cosine_similarity(np.zeros((1, 3)), y)
    assert_finite(as_result_array(z, "cosine_similarity with a zero row"),
                  "cosine_similarity with a zero row", ZERO_ROW_HINT)
    assert_close(z, np.zeros((1, 3)), "cosine_similarity with a zero row", ZERO_ROW_HINT)


@test("cosine_similarity_random", "cosine_similarity", hidden=True)
def cosine_similarity_random(cosine_similarity, ref):
    """Random matrices in float64 and float32, rows of very different lengths."""
    rng = rng_for("cosine_similarity_random")
    for dtype in (np.float64, np.float32):
        a = (rng.standard_normal((5, 7)) * rng.uniform(0.01, 100, (5, 1))).astype(dtype)
        b = (rng.standard_normal((8, 7)) * rng.uniform(0.01, 100, (8, 1))).astype(dtype)
        out = _pairwise_shape(cosine_similarity(a, b), a, b, f"cosine_similarity ({np.dtype(dtype)})")
        assert_close(out, ref.cosine_similarity(a, b), f"cosine_similarity ({np.dtype(dtype)})",
                     "normalise each row of a and of b by its own norm (axis=-1)")


@test("cosine_similarity_edge", "cosine_similarity", hidden=True)
def cosine_similarity_edge(cosine_similarity, ref):
    """Zero rows on both sides, huge and tiny magnitudes."""
    rng = rng_for("cosine_similarity_edge")
    a = np.vstack([np.zeros(4), rng.standard_normal(4) * 1e150, rng.standard_normal(4) * 1e-150])
    b = np.vstack([rng.standard_normal(4), np.zeros(4)])
    out = as_result_array(cosine_similarity(a, b), "cosine_similarity(zero, huge and tiny rows)")
    assert_finite(out, "cosine_similarity(zero, huge and tiny rows)", ZERO_ROW_HINT)
    assert_close(out, ref.cosine_similarity(a, b), "cosine_similarity(zero, huge and tiny rows)",
                 "normalise each vector before the product (a / |a|) so huge values don't overflow")


# ------------------------------------------------------------------ softmax

STABLE_HINT = "subtract the maximum along the axis before np.exp, so exp never overflows"
AXIS_HINT = "normalise along the `axis` argument (sum with axis=axis, keepdims=True)"
TEMPERATURE_HINT = "divide the logits by the temperature before the exponential: softmax(x / T)"


def _check_distribution(p, shape, axis, what, sum_hint=AXIS_HINT):
    p = as_result_array(p, what)
    assert_shape(p, shape, what, "softmax keeps the input's shape")
    assert_finite(p, what, STABLE_HINT)
    ensure((p >= 0).all(), f"{what}: negative probabilities", "exp is never negative")
    sums = p.sum(axis=axis)
    ensure(np.allclose(sums, 1.0, atol=1e-5), f"{what}: slices along axis {axis} sum to "
           f"{np.round(sums.ravel()[:3], 4).tolist()}..., not 1", sum_hint)
    return p


@test("softmax_visible", "softmax")
def softmax_visible(softmax):
    """A hand-computed value, large logits, the axis argument, temperature and dtype."""
    p = _check_distribution(softmax(np.array([1.0, 2.0, 3.0])), (3,), -1, "softmax([1, 2, 3])")
    assert_close(p, [0.09003057317038046, 0.24472847105479767, 0.6652409557748219],
                 "softmax([1, 2, 3])", "exponentiate, then divide by the sum of the exponentials",
                 rtol=1e-6, atol=1e-9)
    p = _check_distribution(softmax(np.array([1000.0, 1000.0, 999.0])), (3,), -1,
                            "softmax([1000, 1000, 999])")
    e = np.exp(-1.0)
    assert_close(p, [1 / (2 + e), 1 / (2 + e), e / (2 + e)], "softmax([1000, 1000, 999])", STABLE_HINT)
    x = np.array([[1.0, 5.0], [2.0, 3.0], [0.0, 0.0]])
    _check_distribution(softmax(x, axis=0), (3, 2), 0, "softmax(x of shape (3, 2), axis=0)")
    _check_distribution(softmax(x), (3, 2), -1, "softmax(x of shape (3, 2)) (default axis=-1)")
    p = _check_distribution(softmax(np.array([0.0, 2 * np.log(2.0)]), temperature=2.0), (2,), -1,
                            "softmax([0, 2 ln 2], temperature=2)", TEMPERATURE_HINT)
    assert_close(p, [1 / 3, 2 / 3], "softmax([0, 2 ln 2], temperature=2)", TEMPERATURE_HINT)
    assert_dtype(softmax(np.array([1.0, 2.0], dtype=np.float32)), np.float32,
                 "softmax of a float32 array")


def _temperature_case(softmax, ref, x, t, axis):
    what = f"softmax(x of shape {x.shape}, temperature={t}, axis={axis}) [{x.dtype}]"
    p = _check_distribution(softmax(x, temperature=t, axis=axis), x.shape, axis, what)
    hint = TEMPERATURE_HINT if t != 1.0 else "exponentiate, then divide by the sum"
    assert_close(p, ref.softmax(x, temperature=t, axis=axis), what, hint)


@test("softmax_random", "softmax", hidden=True)
def softmax_random(softmax, ref):
    """Random logits of several shapes, axes and temperatures, in float64 and float32."""
    rng = rng_for("softmax_random")
    for dtype in (np.float64, np.float32):
        for shape, axis, t in [((5,), -1, 1.0), ((4, 6), -1, 0.5), ((4, 6), 0, 2.0),
                               ((2, 3, 5), 1, 1.0), ((2, 3, 5), -1, 3.0)]:
            x = (rng.standard_normal(shape) * 3).astype(dtype)
            _temperature_case(softmax, ref, x, t, axis)


@test("softmax_edge", "softmax", hidden=True)
def softmax_edge(softmax, ref):
    """Huge logits, -inf entries, one element, tiny temperatures."""
    rng = rng_for("softmax_edge")
    for dtype in (np.float64, np.float32):
        x = (rng.standard_normal((3, 4)) * 1e4).astype(dtype)
        _temperature_case(softmax, ref, x, 1.0, -1)
        _temperature_case(softmax, ref, np.array([[-np.inf, 0.0, 1.0]], dtype=dtype), 1.0, -1)
        _temperature_case(softmax, ref, np.array([7.0], dtype=dtype), 1.0, -1)
        _temperature_case(softmax, ref, rng.standard_normal((2, 5)).astype(dtype), 0.01, -1)

"""Wrong and alternative implementations for chapter 1 (01-similarity)."""
from . import Wrong

WRONG = [
    Wrong("embed", "negative_ids_wrap", "negative indexing", '''
import numpy as np
def embed(token_ids, table):
    return table[np.asarray(token_ids)]
''', "Indexing without a range check: id -1 silently returns the last row."),
    Wrong("embed", "columns", "index the rows", '''
import numpy as np
def embed(token_ids, table):
    ids = np.asarray(token_ids)
    if (ids < 0).any() or (ids >= table.shape[0]).any():
        raise IndexError("bad id")
    return table[:, ids].T
''', "Indexing the columns of the table instead of its rows."),
    Wrong("embed", "flattened", "don't flatten", '''
import numpy as np
def embed(token_ids, table):
    ids = np.asarray(token_ids).ravel()
    if (ids < 0).any() or (ids >= table.shape[0]).any():
        raise IndexError("bad id")
    return table[ids]
''', "Flattening the ids, which loses the batch shape."),
    Wrong("embed", "one_hot_float64", "keep the table's dtype", '''
import numpy as np
def embed(token_ids, table):
    ids = np.asarray(token_ids)
    if (ids < 0).any() or (ids >= table.shape[0]).any():
        raise IndexError("bad id")
    return np.eye(table.shape[0])[ids] @ table.astype(np.float64)
''', "A one-hot product in float64, which upcasts a float32 table (and wastes work)."),

    Wrong("similarity_matrix", "transposed", "you returned the transpose", '''
def similarity_matrix(a, b):
    return b @ a.T
''', "Returning b @ a.T, the transpose of the answer."),
    Wrong("similarity_matrix", "rowwise", "pairwise", '''
def similarity_matrix(a, b):
    return (a * b).sum(axis=-1)
''', "Pairing row i with row i only, instead of every row with every row."),
    Wrong("similarity_matrix", "normalised", "not cosines", '''
import numpy as np
def similarity_matrix(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T
''', "Normalising the vectors: that is the cosine similarity, not the dot product."),
    Wrong("similarity_matrix", "outer", "multiply a by b transposed", '''
import numpy as np
def similarity_matrix(a, b):
    return np.outer(a, b)
''', "Using np.outer, which flattens both matrices into one giant table."),

    Wrong("cosine_similarity", "no_norm", "so length cancels", '''
def cosine_similarity(a, b, eps=1e-12):
    return a @ b.T
''', "Forgetting to divide by the norms: that is the plain dot product."),
    Wrong("cosine_similarity", "only_a", "rows of b too", '''
import numpy as np
def cosine_similarity(a, b, eps=1e-12):
    return (a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), eps)) @ b.T
''', "Normalising only one side."),
    Wrong("cosine_similarity", "zero_row_nan", "clamp the norm", '''
import numpy as np
def cosine_similarity(a, b, eps=1e-12):
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    return (a @ b.T) / (na * nb.T)
''', "Dividing by a zero norm: a zero vector gives NaN."),
    Wrong("cosine_similarity", "wrong_axis", "axis=-1", '''
import numpy as np
def cosine_similarity(a, b, eps=1e-12):
    a = a / np.maximum(np.linalg.norm(a, axis=0, keepdims=True), eps)
    b = b / np.maximum(np.linalg.norm(b, axis=0, keepdims=True), eps)
    return a @ b.T
''', "Taking norms over axis 0 (columns) instead of each row."),

    Wrong("softmax", "unstable", "subtract the maximum", '''
import numpy as np
def softmax(x, temperature=1.0, axis=-1):
    e = np.exp(x / temperature)
    return e / e.sum(axis=axis, keepdims=True)
''', "Exponentiating raw logits: exp(1000) overflows to inf and the result is NaN."),
    Wrong("softmax", "ignores_axis", "along the `axis` argument", '''
import numpy as np
def softmax(x, temperature=1.0, axis=-1):
    z = x / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
''', "Ignoring the axis argument and always normalising the last axis."),
    Wrong("softmax", "global_sum", "along the `axis` argument", '''
import numpy as np
def softmax(x, temperature=1.0, axis=-1):
    z = x / temperature
    e = np.exp(z - z.max())
    return e / e.sum()
''', "Normalising over the whole array instead of each slice."),
    Wrong("softmax", "temperature_multiplies", "divide the logits by the temperature", '''
import numpy as np
def softmax(x, temperature=1.0, axis=-1):
    z = x * temperature
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
''', "Multiplying by the temperature: high temperature then sharpens instead of flattening."),
    Wrong("softmax", "temperature_after", "divide the logits by the temperature", '''
import numpy as np
def softmax(x, temperature=1.0, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)) ** (1.0 / temperature)
''', "Applying the temperature to the probabilities after the softmax."),
    Wrong("softmax", "float64_upcast", "keep the input's dtype", '''
import numpy as np
def softmax(x, temperature=1.0, axis=-1):
    z = np.asarray(x, dtype=np.float64) / temperature
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
''', "Computing in float64 and returning float64 for float32 input."),
]

CORRECT = [
    '''
import numpy as np
def embed(token_ids, table):
    flat = np.asarray(token_ids).reshape(-1)
    for t in flat:
        if not 0 <= t < len(table):
            raise IndexError(f"token id {t} out of range")
    rows = np.stack([table[t] for t in flat]) if flat.size else table[:0]
    return rows.reshape(np.shape(token_ids) + (table.shape[1],))
''',
    '''
import numpy as np
def similarity_matrix(a, b):
    return np.einsum("nd,md->nm", a, b)
''',
    '''
import numpy as np
def cosine_similarity(a, b, eps=1e-12):
    def unit(m):
        n = np.sqrt((m * m).sum(axis=1, keepdims=True))
        return m / np.where(n < eps, eps, n)
    return np.einsum("nd,md->nm", unit(a), unit(b))
''',
    '''
import numpy as np
def softmax(x, temperature=1.0, axis=-1):
    x = np.moveaxis(np.asarray(x), axis, -1)
    shifted = (x - x.max(axis=-1, keepdims=True)) / x.dtype.type(temperature)
    log_z = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return np.moveaxis(np.exp(shifted - log_z), -1, axis)
''',
]

"""The sandboxed worker: runs a student's code cells and calls their functions.

This file runs inside the sandbox, so it imports nothing from `autograder` (the
sandbox cannot see the package, its hidden tests or the reference). The trusted
grader talks to it over stdin/stdout with length-prefixed frames:

    request  = header (JSON) + blobs      reply = header (JSON) + blobs

Values cross as JSON trees whose arrays travel as ``.npy`` bytes (never pickles),
so whatever the student returns, the trusted side only ever sees plain numbers.
The same encode/decode functions serve the trusted side (imported from here), so
both ends agree on the format by construction.
"""
import io
import json
import os
import struct
import sys
import traceback

MAX_FRAME = 256 * 1024 * 1024  # a reply larger than this is refused


# ------------------------------------------------------------------ framing

def _write_all(fd, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_exact(fd, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd) -> bytes:
    (n,) = struct.unpack(">Q", read_exact(fd, 8))
    if n > MAX_FRAME:
        raise ValueError(f"frame of {n} bytes is over the {MAX_FRAME} byte limit")
    return read_exact(fd, n)


def frames(header: dict, blobs=()) -> bytes:
    """A whole message as bytes: the header frame, then one frame per blob."""
    parts = [json.dumps(dict(header, blobs=len(blobs))).encode()] + list(blobs)
    return b"".join(struct.pack(">Q", len(p)) + p for p in parts)


def send_message(fd, header: dict, blobs=()) -> None:
    _write_all(fd, frames(header, blobs))


def receive_message(fd):
    header = json.loads(read_frame(fd).decode())
    if not isinstance(header, dict) or not isinstance(header.get("blobs"), int):
        raise ValueError("malformed message header")
    blobs = [read_frame(fd) for _ in range(header["blobs"])]
    return header, blobs


# ------------------------------------------------------------------ values

def encode(value, blobs: list):
    """A JSON tree for `value`; arrays are appended to `blobs` as .npy bytes."""
    import numpy as np

    if value is None or isinstance(value, (bool, str)):
        return {"py": value}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"float": repr(float(value))} if isinstance(value, float) else {"int": str(int(value))}
    if isinstance(value, tuple):
        return {"tuple": [encode(v, blobs) for v in value]}
    if isinstance(value, dict):
        return {"dict": {str(k): encode(v, blobs) for k, v in value.items()}}
    if isinstance(value, np.random.Generator):  # its exact state, so both sides draw the same numbers
        state = value.bit_generator.state
        if state.get("bit_generator") != "PCG64":
            return {"unsupported": "Generator"}
        return {"rng": json.loads(json.dumps(state))}
    if isinstance(value, list):
        try:  # a list of numbers is an array-like answer
            arr = np.asarray(value)
            if arr.dtype.kind in "biufc":
                return encode(arr, blobs)
        except Exception:
            pass
        return {"list": [encode(v, blobs) for v in value]}
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return _encode_tensor(value.detach().cpu(), blobs)
    if isinstance(value, np.generic):
        return encode(np.asarray(value), blobs)
    if isinstance(value, np.ndarray):
        return {"array": _add_array(value, blobs)}
    return {"unsupported": type(value).__name__}


def _encode_tensor(tensor, blobs: list):
    """A tensor with its exact layout: the span of storage it views, its shape and strides.
    Kernels must handle (or refuse) transposed, sliced and expanded (stride-0) inputs, as
    autograd hands them over, so the layout crosses the wire as well as the values."""
    import numpy as np
    import torch

    dtype = str(tensor.dtype).replace("torch.", "")
    shape, strides = list(tensor.shape), list(tensor.stride())
    if tensor.is_contiguous() or tensor.numel() == 0 or min(strides, default=0) < 0:
        flat = tensor.contiguous()
        layout = None
    else:
        span = 1 + sum((n - 1) * st for n, st in zip(shape, strides))
        if span > 4 * tensor.numel() + 1024:  # a sparse view of a huge buffer: values only
            flat, layout = tensor.contiguous(), None
        else:
            flat = torch.as_strided(tensor, (span,), (1,)).clone()
            layout = {"shape": shape, "strides": strides}
    if dtype == "bfloat16":  # numpy has no bfloat16: float32 holds it exactly
        flat = flat.float()
    tree = {"tensor": _add_array(np.array(flat.numpy(), copy=True), blobs), "dtype": dtype}
    if layout:
        tree["layout"] = layout
    return tree


def _strided(arr, layout):
    """`arr` (the flat span) viewed with `layout`'s shape and strides, after checking that
    every element it names lies inside the span."""
    import numpy as np

    if not isinstance(layout, dict):
        raise ValueError("malformed layout")
    shape, strides = layout.get("shape"), layout.get("strides")
    if not (isinstance(shape, list) and isinstance(strides, list) and len(shape) == len(strides)
            and all(isinstance(x, int) and 0 <= x < 2**40 for x in shape + strides)
            and arr.ndim == 1):
        raise ValueError("malformed layout")
    last = sum((n - 1) * st for n, st in zip(shape, strides)) if all(shape) else -1
    if last >= arr.size:
        raise ValueError("layout outside its data")
    return np.lib.stride_tricks.as_strided(arr, tuple(shape), tuple(st * arr.itemsize for st in strides))


def _add_array(arr, blobs: list) -> int:
    import numpy as np

    # Copy into a fresh base-class array: subclasses and views lose their behaviour.
    plain = np.array(arr, copy=True, subok=False)
    if plain.dtype.kind not in "biufc":
        raise TypeError(f"arrays of dtype {plain.dtype} cannot be graded")
    buf = io.BytesIO()
    np.save(buf, plain, allow_pickle=False)
    blobs.append(buf.getvalue())
    return len(blobs) - 1


class Unsupported:
    """Stands for a returned object that cannot cross the boundary."""

    def __init__(self, type_name):
        self.type_name = type_name

    def __repr__(self):
        return f"<unsupported {self.type_name}>"


def decode(tree, blobs, torch_tensors=False):
    """Rebuild a value from `encode`'s tree; strict, since the other side may lie."""
    import numpy as np

    if not isinstance(tree, dict) or len(tree) not in (1, 2, 3):
        raise ValueError("malformed value")
    if "py" in tree:
        value = tree["py"]
        if value is not None and not isinstance(value, (bool, str)):
            raise ValueError("malformed scalar")
        return value
    if "int" in tree:
        return int(str(tree["int"]))
    if "float" in tree:
        return float(str(tree["float"]))
    if "tuple" in tree:
        return tuple(decode(v, blobs, torch_tensors) for v in _items(tree["tuple"]))
    if "list" in tree:
        return [decode(v, blobs, torch_tensors) for v in _items(tree["list"])]
    if "dict" in tree:
        if not isinstance(tree["dict"], dict):
            raise ValueError("malformed mapping")
        return {str(k): decode(v, blobs, torch_tensors) for k, v in tree["dict"].items()}
    if "rng" in tree:
        rng = np.random.Generator(np.random.PCG64())
        rng.bit_generator.state = tree["rng"]
        return rng
    if "array" in tree:
        return _load_array(blobs, tree["array"])
    if "tensor" in tree:
        arr = _load_array(blobs, tree["tensor"])
        dtype = str(tree.get("dtype"))
        layout = tree.get("layout")
        if not torch_tensors:
            return _strided(arr, layout).copy() if layout is not None else arr
        import torch
        t = torch.from_numpy(arr)
        t = t.to(getattr(torch, dtype)) if isinstance(getattr(torch, dtype, None), torch.dtype) else t
        if layout is not None:
            _strided(arr, layout)  # validates
            t = torch.as_strided(t, layout["shape"], layout["strides"])
        return t
    if "unsupported" in tree:
        return Unsupported(str(tree["unsupported"])[:100])
    raise ValueError("malformed value")


def _items(items):
    if not isinstance(items, list):
        raise ValueError("malformed sequence")
    return items


def _load_array(blobs, index):
    import numpy as np

    if not isinstance(index, int) or not 0 <= index < len(blobs):
        raise ValueError("malformed array reference")
    arr = np.load(io.BytesIO(blobs[index]), allow_pickle=False)
    if type(arr) is not np.ndarray or arr.dtype.kind not in "biufc" or arr.dtype.names:
        raise ValueError("not a plain numeric array")
    return arr


# ------------------------------------------------------------------ worker

class _FakeIPython:
    """Enough of IPython for cells with magics: they become no-ops."""

    def run_line_magic(self, *args, **kwargs):
        return None

    def run_cell_magic(self, *args, **kwargs):
        return None

    def system(self, *args, **kwargs):
        return None

    getoutput = system


def _transform(source: str) -> str:
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except Exception:
        return source
    try:
        return TransformerManager().transform_cell(source)
    except Exception:
        return source


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) and exc.errno in (27, 28):  # EFBIG, ENOSPC
        text += " (the output or disk limit was reached)"
    return text[:2000]


def _where(exc: BaseException) -> str:
    """The last line of the student's own code that raised, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell")]
    if not frames:
        return ""
    f = frames[-1]
    line = (f.line or "").strip()
    return f"{f.filename[1:-1]}, line {f.lineno}" + (f": {line}"[:200] if line else "")


def serve(inp: int, out: int) -> None:
    namespace = {"__name__": "__main__", "get_ipython": _FakeIPython}
    while True:
        try:
            header, blobs = receive_message(inp)
        except EOFError:
            return
        op = header.get("op")
        rid = header.get("id")  # echoed, so the grader knows a reply answers its request
        if op == "run_cell":
            try:
                code = compile(_transform(header["source"]), f"<cell {header['index']}>", "exec")
                exec(code, namespace)
                reply = {"ok": True}
            except BaseException as exc:  # SystemExit and KeyboardInterrupt too
                reply = {"ok": False, "error": _error_text(exc), "where": _where(exc)}
            _flush()
            send_message(out, dict(reply, id=rid))
        elif op == "call":
            reply_blobs = []
            try:
                fn = namespace.get(header["fn"])
                if fn is None:
                    raise NameError(f"name '{header['fn']}' is not defined")
                if not callable(fn):
                    raise TypeError(f"'{header['fn']}' is not a function")
                args = decode(header["args"], blobs, torch_tensors=True)
                kwargs = {str(k): decode(v, blobs, torch_tensors=True)
                          for k, v in header["kwargs"].items()}
                result = fn(*args, **kwargs)
                reply = {"ok": True, "result": encode(result, reply_blobs)}
            except BaseException as exc:
                reply_blobs = []
                reply = {"ok": False, "error_type": type(exc).__name__, "error": _error_text(exc)}
            _flush()
            send_message(out, dict(reply, id=rid), reply_blobs)
        elif op == "defined":
            send_message(out, {"ok": True, "id": rid, "names": [n for n in header["names"]
                                                     if callable(namespace.get(n))]})
        else:
            send_message(out, {"ok": False, "id": rid, "error": f"unknown op {op!r}"})


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def main() -> None:
    # Keep the protocol pipes on private descriptors and point the student's
    # stdin/stdout/stderr elsewhere, so prints cannot corrupt the protocol.
    inp, out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    log = os.open(os.environ.get("WORKER_OUTPUT", os.devnull), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)
    sys.stderr = sys.stdout
    try:
        import signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full disk raises, not kills
    except Exception:
        pass
    serve(inp, out)


if __name__ == "__main__":
    main()

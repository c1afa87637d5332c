"""Hostile and malformed submissions, each with its expected score and message.

Every case is built from the released chapter-1 notebook (12 points): `answers`
replaces answer cells, `extra` inserts cells at the top, `edit` changes the notebook
freely, `raw` replaces the file's bytes, `layout` changes the folder structure.
"""
import copy
import dataclasses
import inspect
import json
import textwrap

from autograder import reference

SLUG = "01-similarity"
_ref = reference.load("similarity")
CORRECT = {fn: textwrap.dedent(inspect.getsource(getattr(_ref, fn)))
           for fn in ("embed", "similarity_matrix", "cosine_similarity", "softmax")}
ZEROS_SOFTMAX = "import numpy as np\ndef softmax(x, temperature=1.0, axis=-1):\n    return np.zeros_like(x)\n"


@dataclasses.dataclass
class Case:
    name: str
    score: float
    message: str                 # must appear in a verdict message, cell error, note or error
    answers: dict = dataclasses.field(default_factory=dict)
    extra: list = dataclasses.field(default_factory=list)
    edit: object = None          # fn(nb) -> None
    raw: bytes | None = None
    layout: str = ""             # "", "renamed", "wrong-folder", "empty", "stray", "unknown"
    sparse_size: int = 0


def _test_cell(nb, gid):
    return next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == gid)


def _edit_source(gid, text):
    def edit(nb):
        _test_cell(nb, gid)["source"] = text
    return edit


def _delete(gid):
    def edit(nb):
        nb["cells"].remove(_test_cell(nb, gid))
    return edit


def _duplicate(gid):
    def edit(nb):
        cell = _test_cell(nb, gid)
        nb["cells"].insert(nb["cells"].index(cell), copy.deepcopy(cell))
    return edit


def _move_to_top(gid):
    def edit(nb):
        cell = _test_cell(nb, gid)
        nb["cells"].remove(cell)
        nb["cells"].insert(0, cell)
    return edit


def _points(gid):
    def edit(nb):
        _test_cell(nb, gid)["metadata"]["nbgrader"]["points"] = 100
    return edit


def _strip_metadata(nb):
    for cell in nb["cells"]:
        cell["metadata"] = {}


LYING_ARRAY = '''import numpy as np
class Liar(np.ndarray):
    def __eq__(self, other): return np.ones(np.shape(self), bool)
    def __array_finalize__(self, obj): pass
def softmax(x, temperature=1.0, axis=-1):
    return np.zeros_like(x).view(Liar)
'''
LYING_OBJECT = '''class Anything:
    def __eq__(self, other): return True
    def __array__(self, *a, **k): raise RuntimeError("no")
    def __len__(self): return 3
def softmax(x, temperature=1.0, axis=-1):
    return Anything()
'''
NETWORK = CORRECT["softmax"] + '''
import socket, os
def _probe():
    s = socket.socket()
    s.settimeout(1)
    s.connect(("127.0.0.1", int(os.environ.get("PROBE_PORT", "{port}"))))
    return True
try:
    _probe()
    def softmax(x, temperature=1.0, axis=-1):
        return x * 0
except OSError:
    pass
'''

CASES = [
    Case("patch_numpy_testing", 9, "not 1", answers={"softmax": ZEROS_SOFTMAX}, extra=[
        "import numpy as np\nnp.testing.assert_allclose = lambda *a, **k: None\n"
        "np.allclose = lambda *a, **k: True\nnp.isclose = lambda a, b, **k: np.ones(np.shape(a), bool)"]),
    Case("patch_builtins", 9, "not 1", answers={"softmax": ZEROS_SOFTMAX}, extra=[
        "import builtins\nbuiltins.isinstance = lambda *a: True\nbuiltins.all = lambda *a: True"]),
    Case("redefine_check", 9, "not 1", answers={"softmax": ZEROS_SOFTMAX}, extra=[
        "import autograder\nautograder.check = lambda *a, **k: print('passed')"]),
    Case("patch_autograder_by_path", 9, "No module named 'autograder'", answers={"softmax": ZEROS_SOFTMAX}, extra=[
        "import autograder.framework as f\nf.assert_close = lambda *a, **k: None"]),
    Case("prints_passed", 9, "not 1", answers={"softmax": ZEROS_SOFTMAX.replace(
        "    return", "    print('\u2714 softmax_visible: passed')\n    return")}),
    Case("lying_ndarray_subclass", 9, "not 1", answers={"softmax": LYING_ARRAY}),
    Case("lying_object", 9, "expected a numeric NumPy array", answers={"softmax": LYING_OBJECT}),
    Case("sys_exit_cell", 12, "SystemExit", extra=["import sys\nsys.exit(0)"]),
    Case("raise_keyboard_interrupt", 12, "KeyboardInterrupt", extra=["raise KeyboardInterrupt"]),
    Case("os_exit_cell", 12, "exited the process", extra=["import os\nos._exit(0)"]),
    Case("os_exit_in_function", 9, "stopped the worker", answers={
        "softmax": "import os\ndef softmax(x, temperature=1.0, axis=-1):\n    os._exit(3)\n"}),
    Case("import_reference", 9, "softmax is not defined", answers={
        "softmax": "from solutions.reference.similarity import softmax\n"}),
    Case("read_reference_file", 9, "softmax is not defined", answers={
        "softmax": "exec(open('{repo}/solutions/reference/similarity.py').read())\n"}),
    Case("read_hidden_tests", 12, "No such file", extra=[
        "print(open('{repo}/autograder/chapters/similarity.py').read())"]),
    Case("read_gradebook_and_others", 12, "No such file", extra=[
        "import os\nprint(os.listdir('{repo}/.grader'))"]),
    Case("network", 12, "", answers={"softmax": NETWORK}),
    Case("write_outside_scratch", 12, "", extra=[
        "for p in ['{repo}/PWNED', '/tmp/PWNED-{token}', '/root/PWNED-{token}']:\n"
        "    try:\n        open(p, 'w').write('x')\n    except OSError:\n        pass"]),
    Case("fork_bomb", 12, "time limit per cell", extra=[
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"]),
    Case("memory_hog", 12, "MemoryError", extra=["x = bytearray(10**11)"]),
    Case("output_flood", 12, "output or disk limit", extra=["while True:\n    print('x' * 100000)"]),
    Case("disk_fill", 12, "output or disk limit", extra=[
        "with open('big', 'wb') as f:\n    for _ in range(1000):\n        f.write(b'0' * 2**20)"]),
    # One student must never cost the class its grades (the pipe, the disk):
    Case("fake_reply_on_pipe", 12, "did not answer the grader's request", extra=[
        "import json, os, struct, time\nfake = json.dumps({'ok': True, 'blobs': 0}).encode()\n"
        "for fd in range(3, 12):\n    try:\n        os.write(fd, struct.pack('>Q', len(fake)) + fake)\n"
        "    except OSError:\n        pass\ntime.sleep(1000)"]),
    Case("reply_header_bomb", 12, "oversized reply", extra=[
        "import os, struct, time\nfor fd in range(3, 12):\n    try:\n"
        "        os.write(fd, struct.pack('>Q', 250 * 2**20) + b'{' * 65536)\n    except OSError:\n"
        "        pass\ntime.sleep(1000)"]),
    Case("scratch_flood", 12, "output or disk limit", extra=[
        "import os\nfor i in range(200):\n    with open(f'flood{i}', 'wb') as f:\n"
        "        f.write(b'0' * 5 * 2**20)"]),
    Case("escape_codes_in_error", 12, "fake row", extra=[
        "raise ValueError('\\r\\x1b[2Kmallory  01-similarity   12 / 12  fake row')"]),
    Case("infinite_loop_in_function", 9, "did not return", answers={
        "softmax": "def softmax(x, temperature=1.0, axis=-1):\n    while True:\n        pass\n"}),
    Case("edited_test_cell", 11, "was edited",
         edit=_edit_source("softmax_visible", "print('\u2714 softmax_visible: passed')")),
    Case("deleted_test_cell", 11, "was deleted", edit=_delete("embed_random")),
    Case("duplicated_test_cell", 11, "appears 2 times", edit=_duplicate("softmax_edge")),
    Case("moved_test_cell", 11, "was moved", edit=_move_to_top("softmax_visible")),
    Case("edited_points", 11, "metadata was edited", edit=_points("cosine_similarity_visible")),
    Case("no_nbgrader_metadata", 0, "no graded cells", edit=_strip_metadata),
    Case("not_json", 0, "not valid JSON", raw=b"print('hello')\n"),
    Case("json_not_notebook", 0, "not a Jupyter notebook", raw=b"[1, 2, 3]"),
    Case("old_nbformat", 0, "too old", raw=json.dumps({"nbformat": 3, "worksheets": [{"cells": []}]}).encode()),
    Case("not_utf8", 0, "not UTF-8", raw=b'{"cells": "\xff\xfe"}'),
    Case("deeply_nested", 0, "", raw=b"[" * 100000 + b"]" * 100000),
    Case("huge_notebook", 0, "the limit is 20 MB", sparse_size=200 * 2**20),
    Case("wrong_folder", 0, "is the 02-toy-attention notebook", layout="wrong-folder"),
    Case("renamed_notebook", 12, "was renamed", layout="renamed"),
    Case("empty_folder", 0, "empty folder", layout="empty"),
    Case("unknown_assignment", 0, "unknown assignment folder", layout="unknown"),
    Case("stray_files", 12, "ignored files", layout="stray"),
    # Legitimate but unusual styles: full marks.
    Case("helpers_and_extra_cells", 12, "", answers={
        "softmax": "import numpy as np\ndef _shift(z, axis):\n    return z - z.max(axis=axis, keepdims=True)\n\n"
                   "def softmax(logits, temperature=1.0, axis=-1):\n    e = np.exp(_shift(logits / np.asarray("
                   "temperature, logits.dtype), axis))\n    return e / e.sum(axis=axis, keepdims=True)\n"},
         extra=["# my scratch work\nimport numpy as np\nprint(np.arange(3))", "%timeit sum(range(10))"]),
    Case("float32_inside", 12, "", answers={
        "similarity_matrix": "import numpy as np\ndef similarity_matrix(a, b):\n"
                             "    return np.einsum('ik,jk->ij', a, b, dtype=a.dtype)\n"}),
]

"""The hostile corpus (tests/hostile_corpus.py) graded as one batch: exact scores,
the reason in each case, nothing written outside the sandbox, no network."""
import json
import os
import socket
import threading
import uuid

import pytest

from autograder.batch import Batch
from autograder.grading import Result
from conftest import FAST, REPO, released
from hostile_corpus import CASES, CORRECT, SLUG

TOKEN = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def listener():
    """A local TCP server: a sandboxed submission must not reach it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    hits = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            hits.append(1)
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], hits
    server.close()


def _notebook(case, port):
    nb = released(SLUG)
    answers = dict(CORRECT, **case.answers)
    fill = {"{repo}": str(REPO), "{token}": TOKEN, "{port}": str(port)}
    for cell in nb["cells"]:
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell["source"] = answers[gid]
            for k, v in fill.items():
                cell["source"] = cell["source"].replace(k, v)
    for i, src in enumerate(case.extra):
        src = src.replace("{repo}", str(REPO)).replace("{token}", TOKEN).replace("{port}", str(port))
        nb["cells"].insert(1 + i, {"cell_type": "code", "metadata": {}, "source": src,
                                   "outputs": [], "execution_count": None})
    if case.edit:
        case.edit(nb)
    return nb


def _write(root, case, port):
    folder = root / case.name / SLUG
    if case.layout == "empty":
        (root / case.name).mkdir(parents=True)
        return
    if case.layout == "unknown":
        folder = root / case.name / "99-nonsense"
    folder.mkdir(parents=True)
    name = "my-work.ipynb" if case.layout == "renamed" else f"{SLUG}.ipynb"
    path = folder / name
    if case.layout == "wrong-folder":
        path.write_text(json.dumps(released("02-toy-attention")))
    elif case.raw is not None:
        path.write_bytes(case.raw)
    elif case.sparse_size:
        with open(path, "wb") as f:
            f.truncate(case.sparse_size)
    else:
        path.write_text(json.dumps(_notebook(case, port)))
    if case.layout == "stray":
        (folder / "notes.txt").write_text("hello")


def _text(result: Result) -> str:
    return "\n".join([result.error] + result.notes + result.cell_errors + [v.message for v in result.verdicts])


@pytest.fixture(scope="module")
def graded(tmp_path_factory, listener, sandboxed):
    port, _ = listener
    root = tmp_path_factory.mktemp("submitted")
    for case in CASES:
        _write(root, case, port)
    results = Batch(root, tmp_path_factory.mktemp("work"), FAST, True, jobs=2, out=lambda s: None).run()
    return {r.student: r for r in results}


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_case(case, graded):
    result = graded[case.name]
    assert result.score == case.score, _text(result)
    assert case.message in _text(result)
    assert "Traceback" not in _text(result)


def test_nothing_escaped(graded, listener):
    _, hits = listener
    assert hits == [], "a sandboxed submission reached a server on 127.0.0.1"
    assert not (REPO / "PWNED").exists()
    assert not os.path.exists(f"/tmp/PWNED-{TOKEN}")
    assert not os.path.exists(f"/root/PWNED-{TOKEN}")


def test_the_network_probe_would_have_noticed(listener, tmp_path):
    """The network case can fail: run unsandboxed, the probe reaches the listener."""
    from autograder.grading import grade_notebook
    from autograder.chapters import chapter
    port, hits = listener
    case = next(c for c in CASES if c.name == "network")
    path = tmp_path / f"{SLUG}.ipynb"
    path.write_text(json.dumps(_notebook(case, port)))
    before = len(hits)
    result = grade_notebook(path, chapter(SLUG), "probe", FAST, sandboxed=False)
    assert len(hits) > before and result.score < 12

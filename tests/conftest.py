import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Triton kernels run in-process on CPU tensors (catalogue tests call them directly); the
# interpreter must be chosen before triton is first imported.
os.environ["TRITON_INTERPRET"] = "1"

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autograder.sandbox import Limits, isolation_status  # noqa: E402

# CPU seconds: a correct call takes well under a second; the looping samples stop sooner.
FAST = Limits(cell_seconds=5, call_seconds=3, submission_seconds=60)


@pytest.fixture(scope="session")
def sandboxed():
    ok, why = isolation_status()
    if not ok and (os.environ.get("CI") or shutil.which("bwrap")):
        # Under CI, or with bubblewrap installed, a sandbox that cannot run is a failure.
        pytest.fail(f"the grader's sandbox is unavailable ({why}); on Debian: apt-get install bubblewrap")
    if not ok:
        pytest.skip(f"SANDBOX TESTS SKIPPED: {why} (make test installs bubblewrap when run as root; "
                    "under CI these tests fail instead)")
    return True


def released(slug):
    return json.loads((REPO / "exercises" / slug / f"{slug}.ipynb").read_text())


def write_nb(path: Path, nb) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path


@pytest.fixture(scope="session")
def built_site(tmp_path_factory):
    """Build the website once per test run: (the finished process, the html folder).

    Under xdist every worker that needs it asks; the first builds, under a lock, and the
    others read its result (pytest 9 with xdist 3.8 ignores `xdist_group`, so the tests that
    use the site land on both workers, and each used to build the whole book)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    root = tmp_path_factory.getbasetemp().parent / f"site-{run}" if run else tmp_path_factory.mktemp("site")
    root.mkdir(parents=True, exist_ok=True)
    record = root / "build.json"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            jb = Path(sys.executable).parent / "jupyter-book"
            done = subprocess.run([str(jb), "build", str(REPO), "--path-output", str(root),
                                   "--warningiserror", "--nitpick", "--keep-going"],
                                  capture_output=True, text=True, timeout=900)
            record.write_text(json.dumps({"args": done.args, "returncode": done.returncode,
                                          "stdout": done.stdout, "stderr": done.stderr}))
        data = json.loads(record.read_text())
    done = subprocess.CompletedProcess(data["args"], data["returncode"], data["stdout"], data["stderr"])
    return done, root / "_build" / "html"


# ---------------------------------------------------------------- one chapter at a time

def pytest_addoption(parser):
    parser.addoption("--chapter", default=None, metavar="NN-slug",
                     help="run only the tests of one chapter (its checks, catalogue, release, "
                          "samples and page): `make test-chapter CH=NN-slug`")


def pytest_configure(config):
    config.addinivalue_line("markers", "chapter_only: runs only with --chapter (the whole suite "
                                       "covers the same ground in one go)")


def only_chapter():
    """The --chapter slug, or None: tests that loop over chapters narrow to it."""
    return os.environ.get("COURSE_ONLY_CHAPTER") or None


def pytest_collection_modifyitems(config, items):
    slug = config.getoption("--chapter")
    if not slug:
        deselected = [i for i in items if i.get_closest_marker("chapter_only")]
        items[:] = [i for i in items if not i.get_closest_marker("chapter_only")]
        config.hook.pytest_deselected(items=deselected)
        return
    from autograder.chapters import chapter
    module = chapter(slug).reference   # raises with the known slugs for a typo
    os.environ["COURSE_ONLY_CHAPTER"] = slug

    def mine(item):
        ids = item.nodeid
        return (f"[{slug}" in ids or f"-{slug}-" in ids or f"[{slug}-" in ids
                or item.fspath.basename == f"test_{module}.py"
                or item.get_closest_marker("chapter_only") is not None)
    keep = [i for i in items if mine(i)]
    config.hook.pytest_deselected(items=[i for i in items if not mine(i)])
    items[:] = keep

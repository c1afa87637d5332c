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


# ---------------------------------------------------------------- the website, built once

# `make test` sets COURSE_SITE to a folder: the first pytest process starts the book build there
# in the background at once (it takes minutes of one core, and overlaps the other tests instead
# of stalling a worker), and a later session with unchanged sources (the browser tests) reuses it.
SITE_ENV = "COURSE_SITE"


def site_sources_digest() -> str:
    """A hash of every file the pages can read (the repository's files but the tests, and
    nothing git ignores): a changed source means a new build."""
    import hashlib
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO,
                            capture_output=True)
    if listed.returncode == 0:
        names = [os.fsdecode(f) for f in listed.stdout.split(b"\0") if f]
    else:   # not a git checkout (a copy of the course): every file but the generated ones
        skip = {".git", ".venv", "node_modules", "_build", ".grader", ".pytest_cache", "__pycache__"}
        names = []
        for folder, dirs, files in os.walk(REPO):
            dirs[:] = [d for d in dirs if d not in skip]
            names += [os.path.relpath(os.path.join(folder, f), REPO) for f in files]
    h = hashlib.sha256()
    for name in sorted(n for n in names if not n.startswith(("tests/", ".ci/"))):
        path = REPO / name
        if path.is_file():
            h.update(os.fsencode(name) + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _build_command(root: Path) -> list[str]:
    jb = Path(sys.executable).parent / "jupyter-book"
    return [str(jb), "build", str(REPO), "--path-output", str(root),
            "--warningiserror", "--nitpick", "--keep-going"]


def start_site_build(root: Path) -> None:
    """Start building the book into `root` unless a build of these sources is there; a small
    detached script writes build.json (returncode and output) when it ends."""
    root.mkdir(parents=True, exist_ok=True)
    digest = site_sources_digest()
    record = root / "build.json"
    if record.exists() and json.loads(record.read_text()).get("digest") == digest:
        return
    record.unlink(missing_ok=True)
    script = (
        "import json, subprocess, sys\n"
        "args, record, digest = json.loads(sys.argv[1])\n"
        "try:\n"
        "    done = subprocess.run(args, capture_output=True, text=True, timeout=1500)\n"
        "    data = dict(returncode=done.returncode, stdout=done.stdout, stderr=done.stderr)\n"
        "except Exception as e:\n"
        "    data = dict(returncode=-1, stdout='', stderr=f'the build could not run: {e!r}')\n"
        "data.update(args=args, digest=digest)\n"
        "open(record + '.part', 'w').write(json.dumps(data))\n"
        "import os; os.replace(record + '.part', record)\n")
    subprocess.Popen([sys.executable, "-c", script,
                      json.dumps([_build_command(root), str(record), digest])],
                     cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


def wait_for_site_build(root: Path, timeout: float = 1800) -> dict:
    import time
    record = root / "build.json"
    deadline = time.monotonic() + timeout
    while not record.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the book build in {root} did not finish in {timeout:.0f} s")
        time.sleep(1)
    return json.loads(record.read_text())


def pytest_sessionstart(session):
    # Only the first process (the xdist controller, or pytest without xdist) starts the build.
    folder = os.environ.get(SITE_ENV)
    if folder and not hasattr(session.config, "workerinput"):
        start_site_build(Path(folder).resolve())


@pytest.fixture(scope="session")
def built_site(tmp_path_factory):
    """The website, built once per test run: (the finished process, the html folder).

    Under `make test` (COURSE_SITE set) the build started with the session; otherwise the
    first worker that needs it builds it under a lock and the others read its result."""
    folder = os.environ.get(SITE_ENV)
    if folder:
        root = Path(folder).resolve()
        data = wait_for_site_build(root)
    else:
        def build(folder):
            done = subprocess.run(_build_command(folder), capture_output=True, text=True, timeout=1500)
            return {"args": done.args, "returncode": done.returncode, "stdout": done.stdout,
                    "stderr": done.stderr}
        root, data = once_per_run(tmp_path_factory, "site", build)
    done = subprocess.CompletedProcess(data["args"], data["returncode"], data["stdout"], data["stderr"])
    return done, root / "_build" / "html"


# ---------------------------------------------------------------- computed once per run

def once_per_run(tmp_path_factory, name: str, compute):
    """`compute(folder) -> JSON-able` runs once per test run, whichever xdist worker asks
    first (the others wait under a lock and read its result): for expensive fixtures that
    several tests read, such as grading the whole class of samples."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    root = tmp_path_factory.getbasetemp().parent / f"{name}-{run}" if run else tmp_path_factory.mktemp(name)
    root.mkdir(parents=True, exist_ok=True)
    record = root / "result.json"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            record.write_text(json.dumps(compute(root)))
    return root, json.loads(record.read_text())


@pytest.fixture(scope="session")
def graded_class(sandboxed, tmp_path_factory):
    """Every bundled sample graded once per test run, two at a time: (the work folder, the
    results). Tests read it; a test that grades again works on a copy (`copy_of`)."""
    def grade(root):
        from autograder.batch import SAMPLES, Batch
        batch = Batch(SAMPLES, root / "work", FAST, True, jobs=2, out=lambda s: None)
        return {"results": [r.to_json() for r in batch.run()], "brief": batch.brief}
    root, data = once_per_run(tmp_path_factory, "graded-class", grade)
    from autograder.grading import Result
    return root / "work", [Result.from_json(d) for d in data["results"]], data["brief"]


def copy_of(work, tmp_path):
    shutil.copytree(work, tmp_path / "work", ignore=shutil.ignore_patterns(".lock"))
    return tmp_path / "work"


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
    # The tests that read the built website run last: the build (minutes, started with the
    # session under `make test`) then overlaps the other tests instead of idling a worker.
    items.sort(key=lambda item: "built_site" in getattr(item, "fixturenames", ()))
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

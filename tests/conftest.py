import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autograder.sandbox import Limits, isolation_status  # noqa: E402

FAST = Limits(cell_seconds=3, call_seconds=3, submission_seconds=30)


@pytest.fixture(scope="session")
def sandboxed():
    ok, why = isolation_status()
    if not ok and sys.platform.startswith("linux"):
        pytest.fail(f"the grader's sandbox is unavailable ({why}); on Debian: apt-get install bubblewrap")
    if not ok:
        pytest.skip(f"kernel sandbox tests need Linux: {why}")
    return True


def released(slug):
    return json.loads((REPO / "exercises" / slug / f"{slug}.ipynb").read_text())


def write_nb(path: Path, nb) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path

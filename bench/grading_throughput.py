"""Benchmark: the grader's per-submission overhead and its parallel speed-up.

    .venv/bin/python bench/grading_throughput.py [--copies 16]

Per-submission overhead = the marginal time one more correct submission adds to a
batch (sandboxed worker, trusted checks, feedback, gradebook), minus the time its code
and tests take when run directly in this process. Start-up = the fixed cost of a
batch (sandbox probe, gradebook, grader digest). Throughput = a batch of copies
graded with --jobs 1 and --jobs 2.
Prints the machine, versions and date beside the numbers.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from autograder.batch import SAMPLES, Batch  # noqa: E402
from autograder.chapters import all_chapters  # noqa: E402
from autograder.notebooks import plan, read_notebook  # noqa: E402
from autograder.proxies import LocalFunction  # noqa: E402
from autograder.runner import run_test  # noqa: E402
from autograder.sandbox import Limits, isolation_status  # noqa: E402
from autograder.grading import RELEASE  # noqa: E402


def direct_seconds(path: Path, chapter) -> float:
    """Run the notebook's code and all tests in this process: the floor."""
    nb = read_notebook(path)
    released = read_notebook(RELEASE / chapter.slug / f"{chapter.slug}.ipynb")
    start = time.perf_counter()
    ns: dict = {}
    for _, src in plan(released, nb, set(chapter.tests)).code_cells:
        exec(compile(src, "<cell>", "exec"), ns)
    for test in chapter.tests.values():
        run_test(test, LocalFunction(test.function, ns[test.function]), chapter.reference)
    return time.perf_counter() - start


def batch_seconds(root: Path, jobs: int, sandboxed: bool) -> float:
    work = Path(tempfile.mkdtemp())
    start = time.perf_counter()
    Batch(root, work, Limits(), sandboxed, jobs=jobs, out=lambda s: None).run()
    elapsed = time.perf_counter() - start
    shutil.rmtree(work)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=16, help="students in the throughput batch")
    args = parser.parse_args()
    sandboxed, why = isolation_status()
    chapters = {c.slug: c for c in all_chapters()}
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.platform(),
              "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
              "sandbox": why, "overhead_s": {}}
    for slug, chapter in chapters.items():
        path = SAMPLES / "alice" / slug / f"{slug}.ipynb"
        root = Path(tempfile.mkdtemp())
        shutil.copytree(path.parent, root / "alice" / slug)
        many = Path(tempfile.mkdtemp())
        for i in range(args.copies):
            shutil.copytree(path.parent, many / f"student{i:03d}" / slug)
        direct = min(direct_seconds(path, chapter) for _ in range(3))
        one = min(batch_seconds(root, 1, sandboxed) for _ in range(3))
        n = batch_seconds(many, 1, sandboxed)
        marginal = (n - one) / (args.copies - 1)
        report["overhead_s"][slug] = {"direct_run": round(direct, 3), "batch_of_one": round(one, 3),
                                      "batch_startup": round(one - marginal, 3),
                                      "per_submission": round(marginal, 3),
                                      "per_submission_overhead": round(marginal - direct, 3)}
    root = Path(tempfile.mkdtemp())
    for i in range(args.copies):
        for slug in chapters:
            shutil.copytree(SAMPLES / "alice" / slug, root / f"student{i:03d}" / slug)
    n = args.copies * len(chapters)
    serial = batch_seconds(root, 1, sandboxed)
    parallel = batch_seconds(root, 2, sandboxed)
    report["throughput"] = {"submissions": n, "jobs1_s": round(serial, 2), "jobs2_s": round(parallel, 2),
                            "jobs1_per_s": round(n / serial, 2), "jobs2_per_s": round(n / parallel, 2),
                            "speedup": round(serial / parallel, 2)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

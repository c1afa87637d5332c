"""Benchmark: grading a generated class, as after a deadline.

    .venv/bin/python bench/class_scale.py [--students 300] [--out bench/results/class_scale.json]

The class: N student folders, each one submission of a chapter chosen in turn (NumPy and
Triton chapters mixed), copied from the bundled samples so that about half are correct and
the rest partly correct, untouched, failing at import or looping (the samples' mix). Graded
with --jobs 1 and --jobs 2 in fresh work folders; reports submissions per second, the peak
memory of the grader (its own, and the largest of its workers), and checks that the class
report's numbers equal grades.csv. Prints the machine, versions and date beside the numbers.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import html
import json
import os
import platform
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autograder.batch import SAMPLES, Batch  # noqa: E402
from autograder.chapters import all_chapters  # noqa: E402
from autograder.sandbox import Limits, isolation_status  # noqa: E402

MIX = ("alice", "alice", "alice", "bob", "bob", "carol", "dave", "erin")  # half correct


def make_class(root: Path, students: int, slugs: list[str]) -> None:
    for i in range(students):
        slug = slugs[i % len(slugs)]
        kind = MIX[(i // len(slugs)) % len(MIX)]
        folder = root / f"student{i:04d}" / slug
        folder.mkdir(parents=True)
        shutil.copy(SAMPLES / kind / slug / f"{slug}.ipynb", folder)


def grade(root: Path, jobs: int, sandboxed: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="class-work-"))
    start = time.perf_counter()
    batch = Batch(root, work, Limits(), sandboxed, jobs=jobs, out=lambda s: None)
    results = batch.run()
    seconds = time.perf_counter() - start
    rows = list(csv.DictReader(open(work / "grades.csv")))
    agree = True
    for page in work.glob("report-*.html"):
        data = json.loads(html.unescape(re.search(r'data-summary="([^"]*)"', page.read_text()).group(1)))
        scores = sorted(float(r["score"]) for r in rows if r["assignment"] == data["assignment"] and r["score"])
        agree &= sorted(data["scores"]) == scores
    shutil.rmtree(work)
    return {"jobs": jobs, "submissions": len(results), "seconds": round(seconds, 1),
            "per_second": round(len(results) / seconds, 3), "report_agrees_with_csv": agree}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--chapters", default="01-similarity,04-transformer-block,08-tokenization,12-triton-basics")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    known = {c.slug for c in all_chapters()}
    slugs = [s for s in args.chapters.split(",") if s in known]
    sandboxed, why = isolation_status()
    root = Path(tempfile.mkdtemp(prefix="class-"))
    make_class(root, args.students, slugs)
    runs = [grade(root, jobs, sandboxed) for jobs in (1, 2)]
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    shutil.rmtree(root)
    import numpy
    result = {
        "date": datetime.date.today().isoformat(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "numpy": numpy.__version__, "sandbox": why,
        "students": args.students, "chapters": slugs, "runs": runs,
        "speedup_jobs2": round(runs[0]["seconds"] / runs[1]["seconds"], 2),
        "peak_memory_mb": {"grader": round(peak_self), "largest_worker": round(peak_child)},
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

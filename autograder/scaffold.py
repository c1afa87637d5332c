"""`python -m autograder new-chapter NN-slug "Title"`: every file a chapter needs, with the
course's conventions filled in, green from the start on a placeholder function.

The placeholder (`clip_norm`, which rescales rows to at most a given norm) has a reference, a
visible and two hidden tests, three catalogued mistakes and a differently written correct
version, so `make test-chapter CH=NN-slug` passes before the real content is written; the
maintainer then replaces it, function by function, following book/adding-a-chapter.md.
"""
from __future__ import annotations

import json
import re
import textwrap
import uuid
from pathlib import Path

from .reference import REPO

REFERENCE = '''"""Chapter {number} ({slug}): {title}. The reference implementation (single source of truth).

TODO: replace the placeholder `clip_norm` with the chapter's graded functions; their
docstrings are the students' instructions.
"""
import numpy as np


def clip_norm(x, max_norm):
    """Rescale each row of `x` so that its Euclidean norm is at most `max_norm`.

    x: array of shape (..., d); max_norm: a positive number.
    Rows already shorter than `max_norm` are returned unchanged. Returns an array of x's
    shape and dtype.
    """
    norms = np.sqrt((x * x).sum(axis=-1, keepdims=True))
    factor = np.minimum(1.0, max_norm / np.maximum(norms, np.finfo(x.dtype).tiny))
    return (x * factor).astype(x.dtype)
'''

CHECKS = '''"""Chapter {number} ({slug}): the checks. TODO: one visible and some hidden tests per function."""
import numpy as np

from ..framework import Chapter, assert_close, rng_for

# sample_scores: what the bundled samples score (alice, bob, carol, dave, erin); set them after
# `python -m autograder release --chapter {slug}` from `make test-chapter`'s report.
chapter = Chapter("{slug}", reference="{module}", functions=["clip_norm"],
                  sample_scores=(3, 1, 0, 0, 0))
test = chapter.test

LONGEST_HINT = "rescale by max_norm / norm of the row, and only rows longer than max_norm"


@test("{prefix}clip_norm_visible", "clip_norm")
def clip_norm_visible(clip_norm):
    """Shortens long rows to the maximum norm and leaves short rows alone."""
    x = np.array([[3.0, 4.0], [0.3, 0.4]])
    assert_close(clip_norm(x, 1.0), [[0.6, 0.8], [0.3, 0.4]], "clip_norm([[3, 4], [0.3, 0.4]], 1)",
                 LONGEST_HINT)
    assert_close(clip_norm(x.astype(np.float32), 1.0), np.array([[0.6, 0.8], [0.3, 0.4]], np.float32),
                 "clip_norm of a float32 array", LONGEST_HINT)


@test("{prefix}clip_norm_random", "clip_norm", hidden=True)
def clip_norm_random(clip_norm, ref):
    """Random rows of several shapes, in float32 and float64."""
    rng = rng_for("{prefix}clip_norm_random")
    for dtype in (np.float64, np.float32):
        x = (rng.standard_normal((3, 4, 5)) * 3).astype(dtype)
        assert_close(clip_norm(x, 2.0), ref.clip_norm(x, 2.0), f"clip_norm of a {{np.dtype(dtype)}} (3, 4, 5) array")


@test("{prefix}clip_norm_edge", "clip_norm", hidden=True)
def clip_norm_edge(clip_norm, ref):
    """A zero row and a single vector."""
    x = np.zeros((2, 3))
    assert_close(clip_norm(x, 1.0), ref.clip_norm(x, 1.0), "clip_norm of zero rows", "a zero row has no direction: keep it")
    v = np.array([6.0, 8.0])
    assert_close(clip_norm(v, 5.0), ref.clip_norm(v, 5.0), "clip_norm of one vector")
'''

CATALOGUE = '''"""Chapter {number} ({slug}): realistic wrong implementations, each rejected by the visible
test with its hint, and differently written correct ones. TODO: at least three per function."""
from . import Wrong

WRONG = [
    Wrong("clip_norm", "always_rescale", "only rows longer than max_norm", \'\'\'import numpy as np
def clip_norm(x, max_norm):
    return x * (max_norm / np.linalg.norm(x, axis=-1, keepdims=True))
\'\'\', "Rescaling every row, short ones too (dividing by the norm unconditionally)."),
    Wrong("clip_norm", "wrong_axis", "rescale by max_norm / norm of the row", \'\'\'import numpy as np
def clip_norm(x, max_norm):
    norms = np.linalg.norm(x, axis=0, keepdims=True)
    return x * np.minimum(1.0, max_norm / norms)
\'\'\', "Norms over axis 0 (columns) instead of each row."),
    Wrong("clip_norm", "float64_result", "keep the input's dtype", \'\'\'import numpy as np
def clip_norm(x, max_norm):
    norms = np.linalg.norm(x.astype(np.float64), axis=-1, keepdims=True)
    return x * np.minimum(1.0, max_norm / norms)
\'\'\', "Computing in float64 and returning it for float32 inputs."),
]

CORRECT = [\'\'\'import numpy as np
def clip_norm(x, max_norm):
    out = x.copy()
    norms = np.linalg.norm(x, axis=-1)
    long = norms > max_norm
    out[long] = x[long] * (max_norm / norms[long])[..., None].astype(x.dtype)
    return out
\'\'\']
'''

PAGE = '''---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# {number_int}. {title}

:::{{admonition}} Before you start
- **Time:** about TODO minutes to read (words / 200 plus visible code lines / 10 plus a minute
  per display equation), and about TODO for {{doc}}`the exercise <../exercises/{slug}/{slug}>`
  (TODO graded functions: 10, 20, 30 or 45 minutes each by difficulty, plus 10).
- **Prerequisites:** TODO: the chapters it builds on, as {{doc}} links, and outside knowledge.
:::

TODO: the motivation, in prose for people: what problem this chapter solves and why.

## Learning goals

After this chapter you can:

- TODO

```{{code-cell}} ipython3
:tags: [hide-input]

# Setup: NumPy, matplotlib and the reference implementation (the page may use it; it never
# prints the code the exercise asks for).
import numpy as np
from myst_nb import glue

from solutions.reference.{module} import clip_norm
```

## TODO: the narrative

Explain, motivate, show a legible figure, then ask. Every number in the prose is computed on
the page and glued, like this one: the clipped vector has norm {{glue:text}}`clipped_norm:.2f`.

```{{code-cell}} ipython3
glue("clipped_norm", float(np.linalg.norm(clip_norm(np.array([3.0, 4.0]), 1.0))), display=False)
```

## Common mistakes

TODO: one entry per catalogued mistake (`autograder/catalogue/{module}.py`).

## Summary

- TODO

## Exercise

Exercise: {{doc}}`../exercises/{slug}/{slug}`
'''


def _cell(kind: str, source: str, nbgrader: dict | None = None) -> dict:
    cell = {"cell_type": kind, "id": uuid.uuid4().hex[:8], "metadata": {}, "source": source}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    if nbgrader:
        cell["metadata"]["nbgrader"] = dict(nbgrader, schema_version=3)
    return cell


def _notebook(slug: str, title: str, prefix: str) -> dict:
    answer = {"grade": False, "grade_id": "clip_norm", "locked": False, "solution": True, "task": False}
    cells = [
        _cell("markdown", f"# Exercise: {title}\n\n- **Time:** about TODO for this notebook, after about "
                          "TODO minutes reading the chapter (the numbers of the chapter's 'Before you "
                          "start').\n- **Prerequisites:** TODO (the chapter's, with plain links)."
                          f"\n\nRead the chapter [{title}](../../book/{slug}.md) first. "
                          "TODO: what the student builds here."),
        _cell("code", "import numpy as np"),
        _cell("markdown", "## 1. TODO: pose the exercise (the math, the shapes, the dtype)"),
        _cell("code", "", answer),
    ]
    for gid, points in ((f"{prefix}clip_norm_visible", 1), (f"{prefix}clip_norm_random", 1),
                        (f"{prefix}clip_norm_edge", 1)):
        cells.append(_cell("code", "", {"grade": True, "grade_id": gid, "locked": True, "points": points,
                                        "solution": False, "task": False}))
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                        "name": "python3"}, "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def _register_in_toc(toc: Path, slug: str) -> bool:
    """Insert the chapter after the last chapter with a smaller number."""
    text = toc.read_text()
    if f"book/{slug}" in text:
        return False
    number = int(slug[:2])
    entry = f"      - file: book/{slug}\n        sections:\n          - file: exercises/{slug}/{slug}\n"
    lines = text.splitlines(keepends=True)
    at = None
    for i, line in enumerate(lines):
        m = re.match(r"\s+- file: book/(\d\d)-", line)
        if m and int(m.group(1)) < number:
            at = i + 1
            while at < len(lines) and lines[at].startswith("        "):
                at += 1
    if at is None:
        return False
    lines.insert(at, entry)
    toc.write_text("".join(lines))
    return True


def new_chapter(slug: str, title: str, root: Path = REPO) -> list[Path]:
    if not re.fullmatch(r"\d\d-[a-z0-9]+(-[a-z0-9]+)*", slug):
        raise ValueError(f"a chapter slug looks like 07-backprop (two digits, lowercase words), not {slug!r}")
    module = slug[3:].replace("-", "_")
    prefix = f"{module}_" if module != "clip_norm" else ""
    fields = dict(slug=slug, module=module, title=title, number=slug[:2], number_int=int(slug[:2]),
                  prefix=prefix)
    files = {
        root / "solutions" / "reference" / f"{module}.py": REFERENCE.format(**fields),
        root / "autograder" / "chapters" / f"{module}.py": CHECKS.format(**fields),
        root / "autograder" / "catalogue" / f"{module}.py": CATALOGUE.format(**fields),
        root / "book" / f"{slug}.md": PAGE.format(**fields),
        root / "solutions" / slug / f"{slug}.ipynb":
            json.dumps(_notebook(slug, title, prefix), indent=1, ensure_ascii=False) + "\n",
    }
    existing = [p for p in files if p.exists()]
    if existing:
        raise FileExistsError("already there, nothing written: " + ", ".join(str(p.relative_to(root)) for p in existing))
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _register_in_toc(root / "_toc.yml", slug)
    return list(files)


def next_steps(slug: str) -> str:
    module = slug[3:].replace("-", "_")
    return textwrap.dedent(f"""\
        Written, with a placeholder function (clip_norm) that is green from the start:
          solutions/reference/{module}.py      the reference: replace clip_norm with the graded functions
          autograder/chapters/{module}.py      the checks: a visible and hidden tests per function
          autograder/catalogue/{module}.py     >= 3 realistic mistakes per function, and a correct variant
          solutions/{slug}/{slug}.ipynb   the instructor notebook: pose each exercise; answer and test
                                               cells are filled by release (one cell must import numpy)
          book/{slug}.md                  the page: goals, narrative, figures, mistakes, summary
          _toc.yml                             registered, with the exercise as a section
        Then:
          python -m autograder release --chapter {slug}
          set Chapter(sample_scores=...) to what alice, bob, carol, dave and erin score (make test-chapter says)
          make test-chapter CH={slug}
        The guide: book/adding-a-chapter.md""")

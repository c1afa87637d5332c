"""The bundled sample submissions that `python -m autograder grade` grades by default.

Generated from the released notebooks, the reference and the wrong-implementation
catalogue (so they never drift), by `python -m autograder release`.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from . import catalogue, reference
from .chapters import all_chapters
from .notebooks import grade_id
from .release import source_of

def _partly_wrong(chapter) -> dict[str, str]:
    """Bob's mistakes, as the chapter declares them (`Chapter(sample_mistakes=...)`); by default
    the first catalogued mistake of the first and last functions."""
    if chapter.sample_mistakes:
        return chapter.sample_mistakes
    wrongs = catalogue.load(chapter.reference).WRONG
    picks = {}
    for fn in (chapter.functions[0], chapter.functions[-1]):
        picks[fn] = next(w.name for w in wrongs if w.function == fn)
    return picks


def _answers(chapter, wrong: dict[str, str]) -> dict[str, str]:
    ref = reference.load(chapter.reference)
    wrongs = {(w.function, w.name): w for w in catalogue.load(chapter.reference).WRONG}
    out = {}
    for fn in chapter.helpers + chapter.functions:
        if fn in wrong:
            out[fn] = wrongs[(fn, wrong[fn])].source.strip() + "\n"
        else:
            out[fn] = source_of(getattr(ref, fn)) + "\n"
    return out


def _fill(released: dict, answers: dict[str, str]) -> dict:
    nb = copy.deepcopy(released)
    for cell in nb["cells"]:
        gid = grade_id(cell)
        if gid in answers:
            cell["source"] = answers[gid]
    return nb


def build(release_dir: Path, only: str | None = None) -> dict[tuple[str, str], dict]:
    subs = {}
    for ch in all_chapters():
        if only and ch.slug != only:
            continue
        released = json.loads((release_dir / ch.slug / f"{ch.slug}.ipynb").read_text())
        correct = _answers(ch, {})
        subs[("alice", ch.slug)] = _fill(released, correct)
        subs[("bob", ch.slug)] = _fill(released, _answers(ch, _partly_wrong(ch)))
        subs[("carol", ch.slug)] = copy.deepcopy(released)
        broken = _fill(released, correct)
        for cell in broken["cells"]:
            if cell["cell_type"] == "code" and "import numpy" in "".join(cell["source"]):
                cell["source"] = "import attention_helpers  # only on Dave's laptop\n" + "".join(cell["source"])
                break
        subs[("dave", ch.slug)] = broken
        kind, fn = ch.sample_loop or ("call", ch.functions[-1])
        looping = dict(correct)
        if kind == "cell":
            looping[fn] = correct[fn] + "\nwhile True:  # left over from debugging\n    pass\n"
        else:
            looping[fn] = correct[fn].replace('"""\n', '"""\n    while True:\n        pass\n', 1)
        subs[("erin", ch.slug)] = _fill(released, looping)
    return subs


def write(release_dir: Path, root: Path, only: str | None = None) -> None:
    for (student, slug), nb in build(release_dir, only).items():
        path = root / student / slug / f"{slug}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")

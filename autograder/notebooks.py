"""Read a submitted notebook defensively and compare it with the released one.

Everything a submission can get wrong (not JSON, not a notebook, too large, an
old format, edited/moved/deleted/duplicated test cells, the wrong assignment)
becomes a one-line reason, never a traceback.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from pathlib import Path

MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
# The tag of the setup cell that `release` puts first in every student notebook (see
# `launch`): it installs the course where it is missing, so the grader never runs it.
SETUP_TAG = "course-setup"


class Unreadable(Exception):
    """The file cannot be graded at all; the message is the one-line reason."""


def _source(cell) -> str:
    src = cell.get("source", "")
    if isinstance(src, list):
        if not all(isinstance(s, str) for s in src):
            raise Unreadable("a cell's source is not text")
        src = "".join(src)
    if not isinstance(src, str):
        raise Unreadable("a cell's source is not text")
    return src


def shown(name: str, limit: int = 120) -> str:
    """A file name as it can be shown anywhere: valid UTF-8 (undecodable bytes become
    replacement characters), no control characters, at most `limit` characters."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else "\ufffd" for c in text)
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def read_bytes_safely(path: Path, limit: int = MAX_NOTEBOOK_BYTES) -> bytes:
    """The bytes of a regular file, never through a symlink, never blocking on a FIFO or
    device, at most `limit` bytes; `Unreadable` with a reason otherwise."""
    import os
    import stat
    name = shown(path.name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        if err.errno == 40:  # ELOOP: the last component is a symbolic link
            raise Unreadable(f"{name} is a symbolic link; submit the notebook file itself") from None
        raise Unreadable(f"cannot read {name}: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable(f"{name} is not a regular file")
        if info.st_size > limit:
            raise Unreadable(f"{name} is {info.st_size / 2**20:.0f} MB; the limit is "
                             f"{limit // 2**20} MB (clear the outputs and resubmit)")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        raw = b"".join(chunks)
        if len(raw) > limit:
            raise Unreadable(f"{name} is over the {limit // 2**20} MB limit")
        return raw
    except OSError as err:
        raise Unreadable(f"cannot read {name}: {err.strerror}") from None
    finally:
        os.close(fd)


def read_notebook(path: Path) -> dict:
    """The notebook as a dict with well-formed cells, or `Unreadable`."""
    return parse_notebook(read_bytes_safely(path), shown(path.name))


def parse_notebook(raw: bytes, name: str) -> dict:
    """`raw` as a notebook dict, or `Unreadable`; `name` is shown in the reasons."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Unreadable(f"{name} is not UTF-8 text (bad byte at position {err.start})") from None
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as err:
        raise Unreadable(f"{name} is not valid JSON (line {err.lineno}: {err.msg}); "
                         "was it saved by Jupyter?") from None
    except RecursionError:
        raise Unreadable(f"{name} is nested too deeply to be a notebook") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        if isinstance(nb, dict) and isinstance(nb.get("worksheets"), list):
            raise Unreadable(f"{name} uses notebook format {nb.get('nbformat')}, which is too old; "
                             "open and save it in a current Jupyter (format 4)")
        raise Unreadable(f"{name} is JSON but not a Jupyter notebook (no list of cells)")
    if nb.get("nbformat") != 4:
        raise Unreadable(f"{name} uses notebook format {nb.get('nbformat')!r}; format 4 is required")
    for i, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise Unreadable(f"cell {i + 1} of {name} is not a valid notebook cell")
        if not isinstance(cell.get("metadata", {}), dict):
            raise Unreadable(f"cell {i + 1} of {name} has malformed metadata")
        cell["source"] = _source(cell)
    return nb


def grade_id(cell) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str):
        return meta["grade_id"]
    return None


def is_test_cell(cell) -> bool:
    """A graded test cell (never run: its verdict comes from the trusted registry)."""
    return _is_test(cell)


def is_setup_cell(cell) -> bool:
    tags = cell.get("metadata", {}).get("tags")
    return isinstance(tags, list) and SETUP_TAG in tags


def _is_test(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader")
    return isinstance(meta, dict) and bool(meta.get("grade")) and not meta.get("solution")


def _norm(src: str) -> str:
    return "\n".join(line.rstrip() for line in src.strip().splitlines())


@dataclasses.dataclass
class Plan:
    code_cells: list[tuple[int, str]]   # (cell number, source): everything the student's code is
    tampered: dict[str, str]            # test grade_id -> why it scores zero
    notes: list[str]


def plan(released: dict, submitted: dict, test_ids: set[str]) -> Plan:
    """Which cells to run, and which tests were tampered with.

    Test cells are never run: verdicts come from the trusted registry. A test cell
    that was deleted, duplicated, edited (source or metadata) or moved scores zero.
    """
    ref_tests = {grade_id(c): c for c in released["cells"] if _is_test(c) and grade_id(c) in test_ids}
    ref_order = [grade_id(c) for c in released["cells"] if grade_id(c) in ref_tests]
    seen: dict[str, list] = {}
    code_cells, notes = [], []
    # The setup cell installs the course where it is missing: never the student's code, and
    # in the sandbox (no network, no package) it could only fail. Skipped when tagged, or when
    # it is the released one even if an editor dropped its tag.
    setup = {_norm(c["source"]) for c in released["cells"] if is_setup_cell(c)}
    for number, cell in enumerate(submitted["cells"], start=1):
        gid = grade_id(cell)
        if gid in ref_tests:
            seen.setdefault(gid, []).append(cell)
            continue
        if cell.get("cell_type") == "code" and (is_setup_cell(cell) or _norm(cell["source"]) in setup):
            continue
        if cell.get("cell_type") == "code" and cell["source"].strip():
            code_cells.append((number, cell["source"]))
    tampered = {}
    for gid, ref_cell in ref_tests.items():
        copies = seen.get(gid, [])
        if not copies:
            tampered[gid] = "its test cell was deleted"
        elif len(copies) > 1:
            tampered[gid] = f"its test cell appears {len(copies)} times"
        elif _norm(copies[0]["source"]) != _norm(ref_cell["source"]):
            tampered[gid] = "its test cell was edited"
        elif _meta_changed(copies[0], ref_cell):
            tampered[gid] = "its test cell's metadata was edited"
    sub_order = [grade_id(c) for c in submitted["cells"] if grade_id(c) in ref_tests]
    matcher = difflib.SequenceMatcher(a=ref_order, b=sub_order, autojunk=False)
    in_place = {ref_order[b.a + k] for b in matcher.get_matching_blocks() for k in range(b.size)}
    for gid in ref_order:
        if gid not in tampered and gid not in in_place:
            tampered[gid] = "its test cell was moved"
    unknown = [g for g in (grade_id(c) for c in submitted["cells"]) if g and g not in ref_tests
               and g not in {grade_id(c) for c in released["cells"]}]
    if unknown:
        notes.append(f"cells with unknown grade ids were run as ordinary code: {', '.join(unknown[:5])}")
    return Plan(code_cells, tampered, notes)


def _meta_changed(cell, ref_cell) -> bool:
    a = cell.get("metadata", {}).get("nbgrader", {})
    b = ref_cell.get("metadata", {}).get("nbgrader", {})
    return any(a.get(k) != b.get(k) for k in ("grade", "solution", "points", "locked"))


def chapter_of(nb: dict, chapters) -> object | None:
    """The chapter whose test ids this notebook carries most of (None if none)."""
    ids = {grade_id(c) for c in nb["cells"]}
    best = max(chapters, key=lambda ch: len(ids & set(ch.tests)), default=None)
    return best if best is not None and ids & set(best.tests) else None

"""Run every instructor notebook through nbgrader's Validator (from Python:
the `nbgrader validate` CLI exits 0 even when validation fails)."""
from __future__ import annotations

from .chapters import all_chapters
from .release import notebook_path


def validate(path) -> list[str]:
    from nbgrader.validator import Validator
    from traitlets.config import Config

    config = Config()
    config.Validator.validate_all = True
    config.Execute.timeout = 120
    result = Validator(config=config).validate(str(path))
    problems = []
    for key in ("failed", "passed", "changed", "mismatch_version"):
        for item in result.get(key, []) if key != "passed" else []:
            problems.append(f"{path.name}: {key}: {str(item.get('source', item))[:300]}")
    return problems


def validate_all() -> list[str]:
    problems = []
    for chapter in all_chapters():
        problems += validate(notebook_path(chapter))
    return problems

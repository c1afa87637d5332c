"""Files the course ships beside its code, found wherever the course is: in the repository,
or installed as a package (`models/` then is package data next to `autograder/`)."""
from __future__ import annotations

from pathlib import Path

MODELS = Path(__file__).resolve().parents[1] / "models"


def model_file(name: str) -> Path:
    """The path of `name` (for example "tiny-gpt.npz") in the course's models folder.

    The file may be missing (in a checkout, `make checkpoint` writes it): callers check."""
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise ValueError(f"model_file takes a file name such as 'tiny-gpt.npz', not {name!r}")
    return MODELS / name

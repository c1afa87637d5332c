"""Catalogues of realistic wrong (and differently written correct) implementations.

Each chapter module defines `WRONG`, a list of `Wrong` entries, and `CORRECT`, a
list of alternative correct sources. Tests run every wrong implementation through
the chapter's checks and assert it is rejected with its specific hint; the
correct ones must pass everything. The sources are plain text so the same entry
can run in-process, in the sandbox, or be pasted into a sample submission.
"""
import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class Wrong:
    function: str
    name: str
    hint: str       # a fragment the failure message must contain
    source: str     # defines `function` (imports included)
    mistake: str    # one line for the "common mistakes" list


def load(module: str):
    return importlib.import_module(f"{__name__}.{module}")

"""Callables that stand for a student's function inside a check.

Both round-trip arguments and results through the worker's wire format, so a
check sees the same plain arrays whether the function ran in the student's kernel
(`LocalFunction`) or in the sandboxed worker (`RemoteFunction`).
"""
from __future__ import annotations

import copy

from . import worker as wire
from .framework import CheckFailure, StudentError
from .sandbox import Timeout, WorkerDied


def _roundtrip(value):
    blobs: list = []
    try:
        tree = wire.encode(value, blobs)
    except TypeError as err:
        raise CheckFailure(f"the function returned something that is not a number array ({err})",
                           "return a NumPy array of numbers") from None
    return wire.decode(tree, blobs)


class LocalFunction:
    def __init__(self, name: str, fn):
        self.name = name
        self.fn = fn

    def __call__(self, *args, **kwargs):
        if not callable(self.fn):
            raise CheckFailure(f"{self.name} is not a function", f"define `def {self.name}(...)`")
        args, kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)  # the student may modify inputs
        try:
            result = self.fn(*args, **kwargs)
        except NotImplementedError:
            raise CheckFailure(f"{self.name} is not implemented yet",
                               "replace `raise NotImplementedError()` with your code") from None
        except Exception as exc:
            raise StudentError(type(exc).__name__, str(exc)[:500]) from None
        return _roundtrip(result)


class RemoteFunction:
    """Calls `name` in the sandboxed worker through a `Session` (see grading)."""

    def __init__(self, name: str, session):
        self.name = name
        self.session = session

    def __call__(self, *args, **kwargs):
        if self.name in self.session.hung:
            raise CheckFailure(f"{self.name} was not called again: an earlier test of it did not return",
                               "look for an infinite loop or a very slow computation")
        blobs: list = []
        header = {"op": "call", "fn": self.name, "args": wire.encode(tuple(args), blobs),
                  "kwargs": {k: wire.encode(v, blobs) for k, v in kwargs.items()}}
        try:
            reply, reply_blobs = self.session.request(header, blobs)
        except Timeout as err:
            self.session.hung.add(self.name)
            raise CheckFailure(f"{self.name} did not return: {err.reason}",
                               "look for an infinite loop or a very slow computation") from None
        except WorkerDied as err:
            raise CheckFailure(f"calling {self.name} stopped the worker: {err.reason}") from None
        if not reply.get("ok"):
            kind = str(reply.get("error_type", "Error"))
            message = str(reply.get("error", ""))
            if kind == "NotImplementedError":
                raise CheckFailure(f"{self.name} is not implemented yet",
                                   "replace `raise NotImplementedError()` with your code")
            if kind == "NameError" and f"'{self.name}'" in message:
                raise CheckFailure(f"{self.name} is not defined", self.session.why_missing(self.name))
            # No source location: the student's kernel can't add one the same way, and the
            # verdict must read the same in both places.
            raise StudentError(kind, message.split(": ", 1)[-1])
        try:
            return wire.decode(reply["result"], reply_blobs)
        except (ValueError, KeyError, TypeError) as err:
            raise CheckFailure(f"{self.name} returned a value that could not be read ({err})") from None

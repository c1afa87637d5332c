"""Chapters that teach a method grade the method, not only the numbers it returns.

A Triton chapter's launcher must launch its kernel (`kernel[grid](...)`), and the kernel
must be a `@triton.jit` function: a launcher that returns `x + y`, or attention written in
plain PyTorch, gets the right numbers without the lesson. This is checked on the student's
*source*, in the trusted process (the grader reads the answer cells; the self-check in the
student's kernel reads the function's source), since nothing inside the sandbox can prove
which code produced a result.

What it cannot see: a launcher that launches the kernel and then returns something else.
The results are still compared with the reference, so that launcher must compute the right
answer another way, on purpose; `book/grading.md` says so.
"""
from __future__ import annotations

import ast
import inspect
import textwrap

HINT = ("this chapter grades the kernel: compute the result inside the Triton kernel and launch "
        "it from the launcher, rather than computing it with PyTorch or NumPy")


def _last_def(source: str | None, name: str) -> ast.FunctionDef | None:
    if not source:
        return None
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return None
    found = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            found = node
    return found


def _binding(node: ast.stmt, name: str) -> str | None:
    """'def' if this top-level statement defines `name` with def, 'other' if it binds it
    another way (class, assignment, import), else None."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
        return "def"
    if isinstance(node, ast.ClassDef) and node.name == name:
        return "other"
    targets = node.targets if isinstance(node, ast.Assign) else \
        [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
    if any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)):
        return "other"
    if isinstance(node, (ast.Import, ast.ImportFrom)) and \
            any((a.asname or a.name.split(".")[0]) == name for a in node.names):
        return "other"
    return None


def last_definitions(cells: list[str], names: list[str]) -> dict[str, str | None]:
    """For each name, the source of the cell whose `def` binds it last, in notebook order (what
    runs when the tests call it); None when its last binding is not a `def` (an assignment,
    an import), which no one can read statically."""
    found: dict[str, str | None] = {}
    for source in cells:
        try:
            tree = ast.parse(textwrap.dedent(source))
        except SyntaxError:
            continue
        for node in tree.body:
            for name in names:
                kind = _binding(node, name)
                if kind:
                    found[name] = source if kind == "def" else None
    return found


def _unwritten(fn: ast.FunctionDef) -> bool:
    """The released stub: at most a docstring, then `raise NotImplementedError`."""
    body = [n for n in fn.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    return len(body) == 1 and isinstance(body[0], ast.Raise) and "NotImplementedError" in ast.dump(body[0])


def _is_jit(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, (ast.Attribute, ast.Name)) and \
        (target.attr if isinstance(target, ast.Attribute) else target.id) == "jit"


def _launches(fn: ast.FunctionDef, kernel: str) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Subscript)
               and isinstance(n.func.value, ast.Name) and n.func.value.id == kernel
               for n in ast.walk(fn))


def problem(launcher: str, launcher_source: str | None, kernels: dict[str, str | None]) -> str | None:
    """Why `launcher` (defined in `launcher_source`) does not run its kernels, or None.
    `kernels` maps each kernel's name to the source of its answer cell."""
    fn = _last_def(launcher_source, launcher)
    if fn is None or _unwritten(fn):
        return None  # not defined, not parseable or not written yet: the tests say so themselves
    for kernel, source in kernels.items():
        node = _last_def(source, kernel)
        if node is None:
            return f"{launcher}: the kernel `{kernel}` is not defined in its answer cell. Hint: {HINT}"
        if not any(_is_jit(d) for d in node.decorator_list):
            return f"{launcher}: `{kernel}` is not a Triton kernel (no @triton.jit). Hint: {HINT}"
        if not _launches(fn, kernel):
            return (f"{launcher} does not launch the Triton kernel `{kernel}` (no `{kernel}[grid](...)` "
                    f"call in it). Hint: {HINT}")
    return None


def problem_of_function(fn, launcher: str, kernel_names: list[str]) -> str | None:
    """The same check on live objects (the self-check in the student's kernel): the launcher's
    source and the source of each kernel it names in its globals. Unknown sources: no verdict."""
    try:
        launcher_source = inspect.getsource(fn)
    except (OSError, TypeError):
        return None
    kernels = {}
    for name in kernel_names:
        obj = getattr(fn, "__globals__", {}).get(name)
        while obj is not None and not inspect.isfunction(obj) and hasattr(obj, "fn"):
            obj = obj.fn  # Autotuner / Heuristics / JITFunction wrap the Python function
        try:
            body = inspect.getsource(obj) if obj is not None else None
        except (OSError, TypeError):
            return None
        if body is not None and obj is not getattr(fn, "__globals__", {}).get(name):
            body = _with_jit(body)  # the wrapper was a JITFunction: the decorator is implied
        kernels[name] = body
    return problem(launcher, launcher_source, kernels)


def _with_jit(source: str) -> str:
    source = textwrap.dedent(source)
    return source if "jit" in source.split("def", 1)[0] else "@triton.jit\n" + source

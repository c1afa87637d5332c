"""The student notebooks are generated, up to date, and give nothing away."""
import json
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from autograder import reference
from autograder.chapters import all_chapters
from autograder.release import release
from conftest import REPO

CHAPTERS = all_chapters()


@pytest.mark.parametrize("ch", CHAPTERS, ids=lambda c: c.slug)
def test_regenerating_changes_nothing(ch, tmp_path):
    """One chapter at a time, so the chapters' releases run side by side (and `--chapter`
    selects one)."""
    for folder in ("solutions", "exercises"):
        shutil.copytree(REPO / folder / ch.slug, tmp_path / folder / ch.slug)
    release(tmp_path, quiet=True, only=ch.slug)
    for folder in ("solutions", "exercises"):
        for path in sorted((REPO / folder / ch.slug).glob("*.ipynb")):
            new = tmp_path / folder / path.relative_to(REPO / folder)
            assert new.read_bytes() == path.read_bytes(), f"{path} is stale: run `make release`"
    samples = REPO / "autograder/samples/submitted"
    for path in sorted(samples.glob(f"*/{ch.slug}/*.ipynb")):
        new = tmp_path / "autograder/samples/submitted" / path.relative_to(samples)
        assert new.read_bytes() == path.read_bytes(), f"{path} is stale: run `make release`"


@pytest.mark.parametrize("ch", CHAPTERS, ids=lambda c: c.slug)
def test_student_notebook_has_no_solution_code(ch):
    text = (REPO / "exercises" / ch.slug / f"{ch.slug}.ipynb").read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN", "END HIDDEN"):
        assert marker not in text
    nb = json.loads(text)
    sources = "\n".join("".join(c["source"]) for c in nb["cells"])
    lines = {line.strip() for line in sources.splitlines()}
    ref = reference.load(ch.reference)
    import inspect
    for fn in ch.functions + ch.helpers:  # graded functions and the kernels they launch
        obj = getattr(ref, fn)
        body = inspect.getsource(getattr(obj, "fn", obj)).split('"""')[-1]
        for line in body.strip().splitlines():
            line = line.strip()
            if len(line) > 12 and not line.startswith("#"):
                assert line not in lines, f"solution line of {fn} in the student notebook: {line}"
    for t in ch.tests.values():
        if t.hidden:
            assert f'check("{t.grade_id}"' not in sources


@pytest.mark.parametrize("ch", CHAPTERS, ids=lambda c: c.slug)
def test_instructor_notebooks_are_stored_without_outputs(ch):
    nb = json.loads((REPO / "solutions" / ch.slug / f"{ch.slug}.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.parametrize("ch", CHAPTERS, ids=lambda c: c.slug)
def test_instructor_notebook_passes_nbgrader_validator(ch):
    from autograder.validate import validate
    assert validate(REPO / "solutions" / ch.slug / f"{ch.slug}.ipynb") == []


# One chapter of each kind (NumPy, PyTorch, Triton): that the validator can fail is its own
# property; that each chapter's tests reject wrong answers is the catalogue's job.
@pytest.mark.parametrize("ch", [c for c in CHAPTERS if c.slug in ("01-similarity", "09-gpt-pytorch",
                                                                  "14-flash-attention-2")],
                         ids=lambda c: c.slug)
def test_validator_notices_a_broken_instructor_notebook(ch, tmp_path):
    """The validation test above can fail: break one answer and it does."""
    from autograder.validate import validate
    nb = nbformat.read(REPO / "solutions" / ch.slug / f"{ch.slug}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == ch.functions[0]:
            cell.source = cell.source.replace("### BEGIN SOLUTION", "### BEGIN SOLUTION\n    return None")
    path = tmp_path / f"{ch.slug}.ipynb"
    nbformat.write(nb, path)
    assert validate(path) != []


@pytest.mark.parametrize("ch", CHAPTERS, ids=lambda c: c.slug)
def test_every_visible_test_cell_fails_on_the_untouched_student_notebook(ch):
    nb = nbformat.read(REPO / "exercises" / ch.slug / f"{ch.slug}.ipynb", as_version=4)
    NotebookClient(nb, timeout=60, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO)}}).execute()
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and "check(" in cell.source:
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert errors, f"{meta['grade_id']} passed on the untouched notebook"
            assert "not implemented yet" in errors[0].evalue


# The untouched notebook, graded in the sandbox, scores zero on every test with no grader
# error: carol's samples (tests/test_grade_samples.py) are exactly that notebook.

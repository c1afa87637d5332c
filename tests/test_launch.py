"""Launching the course elsewhere: the site's launch buttons, and a student notebook alone.

One setting, `repository` in _config.yml, names the course's repository: the launch buttons
of the built site and the setup cell of every student notebook must derive from it.
"""
import html as html_lib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from autograder import launch, notebooks
from autograder.chapters import all_chapters, chapter
from conftest import REPO, released

CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
LAUNCHERS = CONFIG["launch_buttons"]


# ---------------------------------------------------------------- the setting

def test_the_setting_is_read_and_checked(tmp_path):
    url, branch = launch.repository()
    assert (url, branch) == (CONFIG["repository"]["url"].rstrip("/"), CONFIG["repository"].get("branch", "main"))
    bad = tmp_path / "_config.yml"
    bad.write_text("repository:\n  url: example/attention-course\n")
    with pytest.raises(ValueError, match="repository.url must be the repository's address"):
        launch.repository(bad)


@pytest.mark.parametrize("ch", all_chapters(), ids=lambda c: c.slug)
def test_every_notebook_starts_with_the_current_setup_cell(ch):
    """The first code cell of the student and instructor notebooks is the setup cell, with the
    address of _config.yml (else: `make release`)."""
    expected = launch.setup_source()
    assert launch.install_source(*launch.repository()) in expected
    for folder in ("exercises", "solutions"):
        nb = json.loads((REPO / folder / ch.slug / f"{ch.slug}.ipynb").read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        setup = [c for c in code if notebooks.is_setup_cell(c)]
        assert len(setup) == 1 and code[0] is setup[0], f"{folder}/{ch.slug}: no setup cell first"
        assert "".join(code[0]["source"]) == expected, f"{folder}/{ch.slug}: stale setup cell: run `make release`"


def test_the_grader_never_runs_the_setup_cell():
    """In the sandbox (no network, no package) the cell could only fail; it is not the
    student's code. Skipped by its tag, or by its text if an editor dropped the tag."""
    ch = chapter("01-similarity")
    nb = released(ch.slug)
    setup_source = next("".join(c["source"]) for c in nb["cells"] if notebooks.is_setup_cell(c))
    for cell in nb["cells"]:
        cell["source"] = "".join(cell["source"])
    untagged = json.loads(json.dumps(nb))
    for cell in untagged["cells"]:
        if notebooks.is_setup_cell(cell):
            cell["metadata"]["tags"] = []
    for submitted in (nb, untagged):
        plan = notebooks.plan(nb, submitted, set(ch.tests))
        assert plan.code_cells and all(src != setup_source for _, src in plan.code_cells)
        assert not plan.tampered


# ---------------------------------------------------------------- the site's launch buttons

def launch_links(site: Path) -> dict[str, list[str]]:
    """Page (relative .html path) -> the launch URLs (Binder, Colab, JupyterHub) on it."""
    hosts = [LAUNCHERS.get(k, "").rstrip("/") for k in ("binderhub_url", "colab_url", "jupyterhub_url")]
    hosts = [h for h in hosts if h] + ["https://colab.research.google.com", "https://mybinder.org"]
    pages = {}
    for page in sorted(site.rglob("*.html")):
        rel = page.relative_to(site).as_posix()
        if rel.startswith(("_static/", "_sources/", "_images/", "vendor/")):
            continue
        hrefs = [html_lib.unescape(h) for h in re.findall(r'href="([^"]+)"', page.read_text(errors="replace"))]
        pages[rel] = [h for h in hrefs if h.startswith(tuple(hosts))]
    return pages


def check_launch_links(site: Path) -> None:
    url, branch = launch.repository()
    owner, name = url.split("/")[-2:]
    ui = {"classic": "tree", "jupyterlab": "lab/tree"}[LAUNCHERS.get("notebook_interface", "classic")]
    binder = f"{LAUNCHERS['binderhub_url'].rstrip('/')}/v2/gh/{owner}/{name}/{branch}?urlpath={ui}/"
    colab = f"{LAUNCHERS['colab_url'].rstrip('/')}/github/{owner}/{name}/blob/{branch}/"
    pages = launch_links(site)
    chapters = [f"book/{c.slug}.html" for c in all_chapters()]
    exercises = [f"exercises/{c.slug}/{c.slug}.html" for c in all_chapters()]
    for page in chapters + exercises:
        assert page in pages, f"{page} is not in the site"
    for page, links in pages.items():
        stem = page[:-len(".html")]
        for link in links:
            if link.startswith(binder):
                target = link[len(binder):]
                assert target in (stem + ".ipynb", stem + ".md"), f"{page}: Binder opens {target}"
            elif link.startswith(colab):
                target = link[len(colab):]
                assert target == stem + ".ipynb", f"{page}: Colab opens {target} (Colab opens only .ipynb)"
            else:
                raise AssertionError(f"{page}: a launch link that does not derive from _config.yml: {link}")
            assert (REPO / target).is_file(), f"{page}: its launch link opens {target}, which is not in the repository"
    for page in chapters:
        kinds = [link.startswith(colab) for link in pages[page]]
        assert kinds.count(False) == 1, f"{page}: no Binder button"
        assert True not in kinds, f"{page}: a Colab button on a chapter page (Colab cannot open .md)"
    for page in exercises:
        kinds = sorted(link.startswith(colab) for link in pages[page])
        assert kinds == [False, True], f"{page}: wants one Binder and one Colab button: {pages[page]}"


def test_every_launch_url_derives_from_the_one_setting(built_site):
    done, site = built_site
    if not (site / "index.html").is_file():
        pytest.fail(f"the book did not build:\n{done.stderr[-3000:]}")
    check_launch_links(site)


# ---------------------------------------------------------------- a notebook on its own

def course_source(dest: Path) -> Path:
    """What the setup cell installs, copied from this checkout: the package's parts only, so
    that pip's in-tree build writes its build/ and egg-info there and not in the checkout."""
    dest.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    shutil.copy2(REPO / "pyproject.toml", dest)
    for folder in ("autograder", "models", "solutions/reference"):
        shutil.copytree(REPO / folder, dest / folder, ignore=skip)
    shutil.copy2(REPO / "solutions" / "__init__.py", dest / "solutions")
    return dest


def test_a_student_notebook_runs_alone_in_an_empty_folder(tmp_path, monkeypatch):
    """Colab, or a notebook downloaded on its own: copied alone into an empty folder and run in
    a fresh environment without the course, its setup cell installs the course (from this
    checkout, never the network) and its checks run.

    The fresh environment is a venv without pip that sees the test environment's
    site-packages through a .pth file: numpy, ipykernel and pip without installing them,
    but not the course (an editable install's own .pth files are not processed there).
    About 20 s on a busy 2-core machine, most of it pip building the package."""
    ch = chapter("01-similarity")
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy2(REPO / "exercises" / ch.slug / f"{ch.slug}.ipynb", alone)
    source = course_source(tmp_path / "course")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_dir = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    import site
    (site_dir / "test-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('autograder'))"],
                           capture_output=True, text=True, check=True, cwd=alone,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert probe.stdout.strip() == "None", ("the course is installed (not editable) in the test environment, "
                                            "so this test cannot make an environment without it")

    kernel = tmp_path / "jupyter" / "kernels" / "course-alone"
    kernel.mkdir(parents=True)
    kernel.joinpath("kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "a Python without the course", "language": "python",
        "env": {"COURSE_SOURCE": str(source),
                # pip, offline: no index, and the build backend (setuptools) taken as installed
                "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.delenv("PYTHONPATH", raising=False)

    nb = nbformat.read(alone / f"{ch.slug}.ipynb", as_version=4)
    visible = next(t for t in ch.tests.values() if not t.hidden)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import autograder\nfrom autograder import check, reference\nfrom autograder.paths import model_file\n"
        "print('autograder from', autograder.__file__)\n"
        "print('checkpoint', model_file('tiny-gpt.npz').is_file())\n"
        f"check({visible.grade_id!r}, getattr(reference.load({ch.reference!r}), {visible.function!r}))\n"))
    from nbclient import NotebookClient
    NotebookClient(nb, timeout=120, allow_errors=True, kernel_name="course-alone",
                   resources={"metadata": {"path": str(alone)}}).execute()

    def text(cell):
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")

    def errors(cell):
        return [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]

    setup = next(c for c in nb.cells if notebooks.is_setup_cell(c))
    assert not errors(setup), errors(setup)
    assert f"Installing the course's package from {source}" in text(setup) and "Installed." in text(setup)
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and "check(" in c.source]
    assert tests
    for cell in tests:
        assert any("not implemented yet" in e for e in errors(cell)), (cell.source, errors(cell))
    last = nb.cells[-1]
    assert not errors(last), errors(last)
    assert f"autograder from {site_dir}" in text(last)
    assert "checkpoint True" in text(last)
    assert f"\u2714 {visible.grade_id}: passed" in text(last)

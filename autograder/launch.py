"""Where the course lives, and the setup cell that lets a student notebook run anywhere.

One setting names the course's repository: `repository.url` (with `repository.branch`) in
`_config.yml`. Jupyter Book derives the site's Binder and Colab buttons from it, and
`release` writes it into the setup cell that opens every student notebook. A fork edits
that one setting and runs `make release`.

The setup cell does nothing where `autograder` imports (the repository, Binder, any
environment with the course installed). Elsewhere (Colab, a notebook downloaded on its own)
it pip-installs the course's package from the repository: the checks, the reference
implementation and the small models the exercises load (`models/`, package data). The
environment variable COURSE_SOURCE replaces the repository by any other pip source (a fork,
a local checkout), which is how the tests run the cell without a network.
"""
from __future__ import annotations

import re
from pathlib import Path

from .notebooks import SETUP_TAG
from .reference import REPO

# A repository address as the launch buttons need it: https://HOST/OWNER/NAME.
_ADDRESS = re.compile(r"https://[A-Za-z0-9.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")

SETUP_TEMPLATE = '''\
# Setup: run this cell first. It does nothing where the course's package `autograder` is
# installed (its repository, Binder). Elsewhere (Colab, this notebook downloaded on its own)
# it installs the package (the checks, the reference and the small models the exercises
# load) from the course's repository, or from $COURSE_SOURCE if set (a fork, a local copy).
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("autograder") is None:
    _source = os.environ.get("COURSE_SOURCE") or "$SOURCE"
    print(f"Installing the course's package from {_source} ...")
    _pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", _source],
                          capture_output=True, text=True)
    if _pip.returncode != 0:
        raise RuntimeError(f"pip could not install the course's package from {_source}:\\n"
                           + (_pip.stderr or _pip.stdout)[-3000:])
    importlib.invalidate_caches()  # let the next import see the new package
    print("Installed.")'''


def repository(config: Path | None = None) -> tuple[str, str]:
    """(address, branch) of the course's repository, from `_config.yml`'s `repository`."""
    import yaml

    config = config or REPO / "_config.yml"
    if not config.is_file():
        raise FileNotFoundError(f"{config} is missing: the repository's address is set there "
                                "(`repository.url`)")
    settings = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    repo = settings.get("repository") or {}
    url = str(repo.get("url") or "").rstrip("/")
    if url.endswith(".git"):
        url = url[:-len(".git")]
    if not _ADDRESS.fullmatch(url):
        raise ValueError(f"{config}: repository.url must be the repository's address, "
                         f"https://HOST/OWNER/NAME (got {url!r})")
    branch = str(repo.get("branch") or "main")
    return url, branch


def install_source(url: str, branch: str) -> str:
    """What `pip install` takes to install the course's package from that branch."""
    return f"git+{url}@{branch}"


def setup_source(config: Path | None = None) -> str:
    """The setup cell's code, with the repository of `_config.yml` written in."""
    return SETUP_TEMPLATE.replace("$SOURCE", install_source(*repository(config)))


def ensure_setup_cell(nb, source: str) -> None:
    """Give `nb` (nbformat) the setup cell `source`: refresh the one it has, or insert one
    before its first code cell."""
    import nbformat

    for cell in nb.cells:
        if SETUP_TAG in cell.get("metadata", {}).get("tags", []):
            cell.source = source
            return
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [SETUP_TAG]})
    cell.id = SETUP_TAG   # a fixed id: releasing twice writes the same bytes
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
    nb.cells.insert(first_code, cell)

# Every target sets itself up: the first run creates .venv from requirements.txt.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
JOBS   ?= 2

.PHONY: book test grade release serve validate clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	@touch $(STAMP)

book: $(STAMP)  ## build the website into _build/html
	$(VENV)/bin/jupyter-book build . --warningiserror --nitpick --keep-going
	@echo "\nThe book is built. Open _build/html/index.html, or run 'make serve'."

test: $(STAMP)  ## run every test
	$(PY) -m pytest -n $(JOBS) -q

grade: $(STAMP)  ## grade the bundled sample submissions
	$(PY) -m autograder grade --jobs $(JOBS)

release: $(STAMP)  ## regenerate exercises/ (and the samples) from solutions/
	$(PY) -m autograder release

validate: $(STAMP)  ## run every instructor notebook against its own tests
	$(PY) -m autograder validate

serve: book  ## serve the built site on http://127.0.0.1:8000
	$(PY) -m http.server --directory _build/html --bind 127.0.0.1 8000

clean:
	rm -rf _build .grader

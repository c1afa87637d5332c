# Every target sets itself up: the first run creates .venv from requirements.txt.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
JOBS   ?= 2
# One BLAS thread per process: pytest-xdist and the grader already run processes side by side,
# and oversubscribed OpenBLAS threads made some pages 10x slower on 2 cores.
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: book site-assets system-packages test test-chapter checkpoint-check checkpoints-18 grade release serve validate checkpoint clean

# The widget manager, RequireJS and MathJax that the site serves itself (no public CDN):
# npm installs package-lock.json's versions; the files pages need are copied to ASSETS,
# which _ext/site_assets.py hands to Sphinx. Without npm the site uses the CDNs.
NPM    ?= npm
ASSETS := _build/site-assets/vendor
HAVE_NPM := $(shell command -v $(NPM) 2>/dev/null)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	@touch $(STAMP)

book: $(STAMP) site-assets  ## build the website into _build/html
	$(VENV)/bin/jupyter-book build . --warningiserror --nitpick --keep-going
	@echo "\nThe book is built. Open _build/html/index.html, or run 'make serve'."

CDN_NOTE := the site will load the widget manager, RequireJS and MathJax from public CDNs, and the browser tests will skip
site-assets:  ## install and stage the JavaScript the site serves itself (npm)
	@if [ -z "$(HAVE_NPM)" ]; then \
	  echo "*** npm not found: $(CDN_NOTE). Install Node.js and npm to serve them locally."; \
	elif ! $(MAKE) --no-print-directory $(ASSETS)/.stamp; then \
	  echo "*** npm could not install package-lock.json: $(CDN_NOTE)."; \
	fi

node_modules/.package-lock.json: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund --loglevel=error
	@touch $@

$(ASSETS)/.stamp: node_modules/.package-lock.json
	rm -rf $(ASSETS)
	mkdir -p $(ASSETS)/requirejs $(ASSETS)/html-manager $(ASSETS)/mathjax
	cp node_modules/requirejs/require.js $(ASSETS)/requirejs/
	cp node_modules/@jupyter-widgets/html-manager/dist/*.* $(ASSETS)/html-manager/
	rm -f $(ASSETS)/html-manager/*.map
	cd node_modules/mathjax/es5 && cp -r tex-mml-chtml.js input output ui a11y adaptors sre "$(CURDIR)/$(ASSETS)/mathjax/"
	@touch $@

system-packages:  ## bubblewrap, chromium and npm, installed with apt-get when run as root
	@bash .ci/system-packages

# The book is built once into _build/test-site, in the background from the first test on
# (tests/conftest.py); the browser tests reuse that build when the sources are unchanged.
test: export COURSE_SITE = $(CURDIR)/_build/test-site
test: system-packages $(STAMP) site-assets  ## run every test
	$(PY) -m pytest -n $(JOBS) --dist loadgroup -q --durations=25 --ignore=tests/test_site.py
	@# The browser tests time page loads: they run alone, with no other test loading the CPU.
	$(PY) -m pytest -q -p no:xdist tests/test_site.py

test-chapter: $(STAMP)  ## every test of one chapter: make test-chapter CH=NN-slug
	@test -n "$(CH)" || { echo "usage: make test-chapter CH=NN-slug"; exit 2; }
	$(PY) -m pytest -n $(JOBS) -q -s --chapter $(CH) --ignore=tests/test_site.py

grade: $(STAMP)  ## grade the bundled sample submissions
	$(PY) -m autograder grade --jobs $(JOBS)

release: $(STAMP)  ## regenerate exercises/ (and the samples) from solutions/
	$(PY) -m autograder release

checkpoint: $(STAMP)  ## retrain the tiny GPT of chapter 5 (models/tiny-gpt.npz, a few CPU minutes)
	$(PY) -m models.tiny_gpt

checkpoint-check: $(STAMP)  ## retrain chapter 5's model (one thread, a few CPU minutes) and compare it bit for bit with models/tiny-gpt.npz
	$(PY) -m models.tiny_gpt --check

checkpoints-18: $(STAMP)  ## retrain chapter 18's two small models (induction heads, "it"), about a CPU minute each
	$(PY) -m models.induction_heads
	$(PY) -m models.it_coreference

validate: $(STAMP)  ## run every instructor notebook against its own tests
	$(PY) -m autograder validate

serve: book  ## serve the built site on http://127.0.0.1:8000
	$(PY) -m http.server --directory _build/html --bind 127.0.0.1 8000

clean:
	rm -rf _build .grader

# Two entry points (see README): `make book` builds and executes the book,
# `make test` runs the unit tests and the notebooks. Each creates .venv on first use
# and installs what it needs (the test extra only for tests, everything for the book).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --quiet --disable-pip-version-check
TEST_STAMP := $(VENV)/.installed-test
BOOK_STAMP := $(VENV)/.installed-book

.PHONY: book test ci test-colab test-fullsize env clean benchmarks site student linkcheck dist github-release mathjax

# MathJax 3 on this machine (npm), for tools/page_check.py: it renders the pages' maths
# offline, as a reader's browser does, to measure each display equation's width.
MATHJAX := .mathjax/node_modules/mathjax/es5/tex-mml-chtml.js
mathjax: $(MATHJAX)
$(MATHJAX):
	@command -v npm >/dev/null || { echo "no npm: the page check cannot render the maths (install nodejs and npm)"; exit 0; }; \
	npm install --silent --no-audit --no-fund --prefix .mathjax mathjax@3

env: $(BOOK_STAMP)

$(TEST_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

$(BOOK_STAMP): $(TEST_STAMP)
	$(PIP) -e ".[dev]"
	touch $@

# CONVBIAS_STATIC=1 (convbias.live): a static page saves no progress bar and no live
# widget (a widget draws its default once); every jupyter-book build below sets it.
STATIC := CONVBIAS_STATIC=1

# Every page is re-read (--all) so that the reproducibility page's glued numbers come
# from this build's executions; jupyter-cache still skips notebooks whose code cells
# are unchanged, unless the package's code changed since the last build (then its
# cache is dropped and every notebook runs again).
book: $(BOOK_STAMP) $(MATHJAX)
	@code=$$($(BIN)/python -c "from convbias.cache import code_fingerprint; print(code_fingerprint())"); \
	if [ -d _build/.jupyter_cache ] && [ "$$(cat _build/.package-code 2>/dev/null)" != "$$code" ]; then \
	  echo "the package changed since the last build: every notebook runs again"; rm -rf _build/.jupyter_cache; fi; \
	$(STATIC) $(BIN)/jupyter-book build . --all -W -n --keep-going && echo "$$code" > _build/.package-code
	$(BIN)/python tools/page_check.py --html _build/html --screenshots _build/screenshots

# Notebooks and test files run on two worker processes, one torch thread each: on a
# 2-core machine that beats one process with two threads, which spin-wait on each other.
# Two groups have their own targets and CI jobs, so that `make test` stays within about 15
# minutes on 2 cores: colab_run (the real install into a venv pinned to Colab's kernel stack
# and chapter 1 there: make test-colab) and fullsize (chapters 1-5 at full size with two
# steps per loop, 6 CPU-minutes: make test-fullsize). TEST_MARKERS="" runs everything.
TEST_MARKERS ?= not colab_run and not fullsize
test: $(TEST_STAMP) $(MATHJAX)
	@CONVBIAS_PROFILE=quick OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests -n 2 --dist loadfile \
	  $(if $(TEST_MARKERS),-m "$(TEST_MARKERS)") --nbval-cell-timeout=900; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# What CI runs (.ci/run, and tests.yml): Chromium installed when the machine has none, then `make test`.
ci:
	bash .ci/run

# Every chapter that has a full-size smoke test (tests/test_smoke_full.py), on two workers.
test-fullsize: $(TEST_STAMP)
	CONVBIAS_SKIP_NOTEBOOKS=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests/test_smoke_full.py -n 2 -m fullsize

# The package on Google Colab's kernel stack (tests/test_colab_stack.py): the wheel installed
# into a venv pinned to IPython 7.34.0, ipykernel 6.17.1, ipywidgets 7.7.1 and traitlets 5.7.1
# moves none of them, and chapter 1 runs headless there (about 3 minutes on 2 cores).
test-colab: $(TEST_STAMP)
	CONVBIAS_SKIP_NOTEBOOKS=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests/test_colab_stack.py -m colab

# The published site (GitHub Pages, .github/workflows/book.yml): the book, whose pages'
# .ipynb downloads are replaced by the executed notebooks, and the student edition
# (the book without solutions) beside it under student/.
site: book
	$(BIN)/python tools/publish.py downloads _build
	$(MAKE) student

# The student edition: the book built again with sphinx-exercise's hide_solutions (its
# notebooks come from the main build's cache), its downloads without solutions, and the
# notebooks without solutions or outputs in student/notebooks/ (one by one and zipped).
student: $(BOOK_STAMP)
	$(BIN)/python tools/publish.py student-config _build/student/_config.yml
	$(STATIC) $(BIN)/jupyter-book build . --config _build/student/_config.yml --path-output _build/student --keep-going
	$(BIN)/python tools/publish.py student _build/html/student --html _build/student/_build/html

# Every external link of the book, checked without executing a notebook (weekly in CI):
# Sphinx runs on a conf.py generated from _config.yml, removed afterwards.
linkcheck: $(BOOK_STAMP)
	@$(BIN)/jupyter-book config sphinx . >/dev/null; \
	$(STATIC) $(BIN)/sphinx-build -b linkcheck -q -D nb_execution_mode=off -D linkcheck_timeout=30 . _build/linkcheck; \
	rc=$$?; rm -f conf.py; echo "report: _build/linkcheck/output.txt"; exit $$rc

# A release (the recipe: README; .github/workflows/release.yml runs `make github-release`
# with TAG=v<version> for a pushed tag): the tag must be the package's version, every Colab cell
# and Colab copy must install it; then the wheel and the sdist in dist/, published as the
# GitHub release of the tag.
dist: $(TEST_STAMP)
	@version=$$($(BIN)/python -c "import convbias; print(convbias.__version__)"); \
	if [ -n "$(TAG)" ] && [ "$(TAG)" != "v$$version" ]; then \
	  echo "the tag $(TAG) is not the package's version v$$version"; exit 1; fi
	$(BIN)/python tools/colab_cell.py --check
	$(BIN)/python -m convbias colab --check
	rm -rf dist && $(BIN)/uv build --quiet --out-dir dist

github-release: dist
	@test -n "$(TAG)" || { echo "give the tag: make github-release TAG=v<version>"; exit 1; }
	gh release create "$(TAG)" dist/* --verify-tag --title "$(TAG)" --generate-notes

benchmarks: $(TEST_STAMP)
	for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf _build .jupyter_cache .pytest_cache

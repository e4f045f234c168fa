# Two commands for a fresh machine: `make demo` (the embedded quickstart) and `make test`.
# Each creates .venv and installs what is missing; nothing is downloaded at run time.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test lint install clean gpu-wheels gpu-check gpu-rehearsal

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml scripts/install_llama_cpp.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	bash scripts/install_llama_cpp.sh $(BIN)/python  # export --to gguf|ollama: llama.cpp's converter + runtime (wheel cached)
	touch $@

demo: install
	$(BIN)/phased-cpt train

# Two pytest workers, one file each at a time (a file's module fixtures train once), each single-threaded
# so the two share the cores without oversubscribing them; the slowest tests are listed at the end.
TEST_WORKERS ?= 2
test: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

# The first GPU run (docs/gpu-check.md). gpu-wheels: on a machine with the package index, the wheels
# a bare GPU machine lacks (< 60 MiB, git-ignored). gpu-check: on the GPU machine, from the
# repository root, with the GPU machine's own python3 (no venv): installs them, then runs the check
# within 8 minutes. gpu-rehearsal: the same code path with tiny shapes on this CPU.
GPU_WHEELS ?= .gpu-wheels
OUT ?= gpu-check-out
gpu-wheels: install
	$(BIN)/python scripts/gpu_wheels.py $(GPU_WHEELS)

gpu-check:
	python3 benchmarks/gpu_check.py --out $(OUT) --wheels $(GPU_WHEELS)

gpu-rehearsal: install
	$(BIN)/python benchmarks/gpu_check.py --out $(OUT) --cpu-rehearsal

lint: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

clean:
	rm -rf $(VENV) outputs .pytest_cache

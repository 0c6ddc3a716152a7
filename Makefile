# hobench: every target works from a fresh clone; `make test` installs first.
#
#   make install        .venv with the package, dev tools, the peers extra (torchopt, higher)
#                       and the ray extra (make test runs a suite on a local Ray cluster)
#   make test           unit, exactness and integration tests (tests/), no benchmarks
#   make lint           ruff check + ruff format --check
#   make bench          suites/default.toml on the embedded data into results/local/default (2
#                       cells at a time; each cell's threads are the suite's, so --jobs changes
#                       no result), its report, and a comparison with the committed run in
#                       results/default (accuracy is bit-identical on the same torch build; time
#                       and memory are gated only on the same build). The report's engine table
#                       is this machine's last `make bench-engine`, else the committed one: run
#                       `make bench-engine bench` for both measured here. Last, its own time
#                       against its 10-minute target (tools/bench_clock.py).
#                       Both append a summary to results/local/history.jsonl (HISTORY=...):
#                       `hobench history FILE --plot out.png` shows each metric over commits.
#   make bench-engine   engine benchmarks: timings (saved under .benchmarks/ by T), peak
#                       memory, the target ratios; summary also in results/local/engine-bench.json
#                       (the committed results/engine-bench.json, which docs/engine.md quotes, is
#                       a copy of one such run; `make readme` rewrites that page from it)
#                       (HOBENCH_BENCH_T=50 make bench-engine: a quicker run, T = 50 steps;
#                       45 s before the compiled path, 14 min after on a machine shared with
#                       other work, every process compiling its own; its summary goes to
#                       results/local/engine-bench-T50.json instead;
#                       HOBENCH_BENCH_THREADS=1: one torch thread, steadier on a shared machine)
#                       No --benchmark-only: it would skip the correctness and memory tests.
#                       Then the module cases (benchmarks/module_engine.py: a ResNet with
#                       BatchNorm against the ordinary loop and torchopt; MODULE_BENCH_T=100),
#                       summary in results/local/engine-module.json; then the default suite's
#                       gradient cells eager against compiled, side by side (benchmarks/
#                       compiled_cells.py; results/local/compiled-cells.json)
#   make bench-compare  engine benchmarks compared with the latest saved run of the same T; fails
#                       when a median is more than 25 % slower. The first run, with nothing
#                       saved, saves the baseline instead (every `make bench-engine` saves too).
#   make bench-gpu      engine benchmarks on the GPU (HOBENCH_BENCH_DEVICE=cuda): every timed call
#                       waits for the GPU, extra peak memory is the CUDA allocator's over what was
#                       allocated before the case; summary in results/local/engine-bench-cuda.json,
#                       timings saved as engine-cuda-T500. Then suites/smoke.toml with --device
#                       cuda into results/local/smoke-cuda (cuda_peak_mb in every record) and its
#                       report. Without a GPU it stops at once with one line. Not yet run on a GPU.
#   make bench-population  configurations evaluated per second by population training (k
#                       configurations as one vmapped run; random, qmc and grid's `population`)
#                       at k = 1, 8, 32 on the default suite's tasks, one thread and the
#                       default threads: a table, and results/population-bench.json
#   make gpu-pack       the wheels a borrowed GPU machine (no network, Python 3.12 with its own
#                       torch) lacks to run hobench, hobench's own included, into .whl/
#                       (GPU_PYTHON=3.12, GPU_PACK=.whl), and whether they and the working tree
#                       fit the 64 MiB carry limit, in one line (tools/gpu_pack.py; docs/gpu.md)
#   make gpu-run        on that machine: installs the pack next to its torch, then in about 8
#                       minutes the engine benchmarks, the smoke suite, one seed of the default
#                       suite and population training at k = 1, 32, 256, 1024 on CUDA, results
#                       and SUMMARY.md into $OUT (tools/gpu-run.sh; DEVICE=cpu QUICK=1 here)
#   make readme         the generated figures of README.md (the default suite's critical-difference
#                       diagram and ranks, the strategies and tasks tables), docs/results.md (the
#                       task and cost tables) and docs/engine.md (the engine section) rewritten
#                       from results/default/report/REPORT.md, results/engine-bench.json and the
#                       registries (tools/readme_figures.py; make test checks them)
#   make docs           the docs site into site/ (mkdocs build --strict: a warning, e.g. a broken
#                       link, fails it); installs the docs extra (mkdocs-material) first. The
#                       strategies and tasks pages are generated from the registries at build time
#   make clean          caches and build outputs (keeps .venv and the .benchmarks baselines)
#   make distclean      clean, and remove .venv too

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
# T, the training steps of every engine case (HOBENCH_BENCH_T=50 for a quick run). Runs are saved
# per T, as NNNN_engine-T500.json, and bench-compare compares only runs with the same T.
export HOBENCH_BENCH_T ?= 500
BENCH_STORAGE := .benchmarks
# One summary per `make bench` run (suite and engine), keyed by commit and date: `hobench history`.
HISTORY ?= results/local/history.jsonl
BENCH_NAME := engine-T$(HOBENCH_BENCH_T)
# The module cases' T (a ResNet with BatchNorm, batch 128; benchmarks/module_engine.py).
MODULE_BENCH_T ?= 100
BENCH_FLAGS := benchmarks --benchmark-storage=$(BENCH_STORAGE) --benchmark-sort=name \
	--benchmark-columns=min,median,max,rounds --benchmark-group-by=group --benchmark-name=short

.PHONY: install test lint bench bench-engine bench-suite bench-compare bench-gpu \
	bench-population gpu-pack gpu-run readme docs clean distclean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstalls when pyproject.toml changes. torch is not pinned here: where it is already in the
# venv (CI puts the CPU build there first) pip keeps it, otherwise pip resolves it.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev,peers,ray]'
	touch $@

test: install
	$(PY) -m pytest -q tests

readme: install
	$(PY) tools/readme_figures.py

$(DOCS_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -e '.[docs]'
	touch $@

# NO_MKDOCS_2_WARNING: mkdocs-material's banner about its successor, not a warning of the build.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
	@echo "docs: $(CURDIR)/site/index.html"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The clock starts before the install: a fresh clone's first `make bench` is what it measures.
bench:
	@$(PYTHON) tools/bench_clock.py start results/local/default
	$(MAKE) bench-suite
	@$(PYTHON) tools/bench_clock.py stop results/local/default

# Resumes: rerunning after an interruption runs only the missing cells. The report's engine
# table is this machine's latest `make bench-engine` (results/local/engine-bench.json), else the
# committed run's (results/engine-bench.json); its caption names the machine and commit.
bench-suite: install
	@# Exit 1 means some cell failed (a diverged search is a result, listed above): report anyway.
	$(VENV)/bin/hobench run suites/default.toml --jobs 2 --results-dir results/local/default \
		|| [ $$? -eq 1 ]
	@engine=results/local/engine-bench.json; [ -f $$engine ] || engine=results/engine-bench.json; \
	echo "engine figures: $$engine"; \
	$(VENV)/bin/hobench report results/local/default --engine $$engine
	-$(VENV)/bin/hobench compare results/default results/local/default
	$(VENV)/bin/hobench track results/local/default --history $(HISTORY)
	@echo "report: $(CURDIR)/results/local/default/report/index.html"
	@echo "history: $(VENV)/bin/hobench history $(HISTORY) --plot results/local/history.png"

bench-engine: install
	$(PY) -m pytest $(BENCH_FLAGS) --benchmark-save=$(BENCH_NAME)
	@latest=$$(ls $(BENCH_STORAGE)/*/[0-9][0-9][0-9][0-9]_$(BENCH_NAME).json 2>/dev/null \
		| awk -F/ '{ print $$NF "\t" $$0 }' | sort | tail -n 1 | cut -f 2); \
	if [ -n "$$latest" ]; then $(VENV)/bin/hobench track "$$latest" --history $(HISTORY); fi
	$(PY) -m benchmarks.module_engine --steps $(MODULE_BENCH_T)
	$(PY) -m benchmarks.compiled_cells --out results/local/compiled-cells.json

# The baseline is the latest saved run with the same T (any machine folder under .benchmarks/).
bench-compare: install
	@latest=$$(ls $(BENCH_STORAGE)/*/[0-9][0-9][0-9][0-9]_$(BENCH_NAME).json 2>/dev/null \
		| awk -F/ '{ print $$NF "\t" $$0 }' | sort | tail -n 1 | cut -f 2); \
	if [ -n "$$latest" ]; then \
		echo "comparing with $$latest (fails when a median is > 25 % slower)"; \
		$(PY) -m pytest $(BENCH_FLAGS) --benchmark-compare="$$latest" \
			--benchmark-compare-fail=median:25%; \
	else \
		echo "no saved $(BENCH_NAME) run in $(BENCH_STORAGE)/: this run saves the baseline"; \
		$(PY) -m pytest $(BENCH_FLAGS) --benchmark-save=$(BENCH_NAME); \
	fi

# The engine half checks for the GPU first (benchmarks/conftest.py), so no GPU means one line.
# Its own saved name and summary file: bench-compare and the committed CPU figures never see it.
GPU_T_SUFFIX := $(if $(filter 500,$(HOBENCH_BENCH_T)),,-T$(HOBENCH_BENCH_T))
GPU_SUMMARY := results/local/engine-bench-cuda$(GPU_T_SUFFIX).json
bench-gpu: install
	HOBENCH_BENCH_DEVICE=cuda $(PY) -m pytest $(BENCH_FLAGS) \
		--benchmark-save=engine-cuda-T$(HOBENCH_BENCH_T)
	$(VENV)/bin/hobench run suites/smoke.toml --device cuda --jobs 1 \
		--results-dir results/local/smoke-cuda
	$(VENV)/bin/hobench report results/local/smoke-cuda --engine $(GPU_SUMMARY)
	@echo "report: $(CURDIR)/results/local/smoke-cuda/report/index.html"

bench-population: install
	$(PY) -m benchmarks.population --out results/population-bench.json

# The GPU machine's Python and the pack's folder (ignored; named in the device call's carry).
GPU_PYTHON ?= 3.12
GPU_PACK ?= .whl
gpu-pack: install
	$(PY) tools/gpu_pack.py --python $(GPU_PYTHON) --out $(GPU_PACK)

# No install: it runs where there is no venv, with the interpreter that holds the image's torch.
gpu-run:
	PACK=$(GPU_PACK) tools/gpu-run.sh

clean:
	rm -rf build dist site *.egg-info .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

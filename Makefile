# rexnet_det: `make demo` and `make test` set everything up on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=
# Two pytest-xdist workers (one per core); tests sharing a slow session
# fixture stay on one worker (tests/conftest.py: HEAVY_FIXTURES).
PYTEST_JOBS ?= -n 2 --dist loadgroup

.PHONY: setup test demo benchmark tables clean-venv

setup:
	@bash tools/setup_env.sh

# One OpenMP thread per process: on 2 cores, tests that start several
# processes (torchrun, train/test subprocesses) otherwise oversubscribe the
# CPU and run several times slower. Override with OMP_NUM_THREADS=N.
test: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest $(PYTEST_JOBS) tests $(PYTEST_ARGS)

demo: setup
	$(PY) tools/demo.py

# Every comparison the docs show, into one results file, then the
# README/docs tables regenerated from it (docs/performance.md, "Method").
benchmark: setup
	$(PY) tools/benchmark.py --out benchmarks/results.json
	$(PY) tools/gen_tables.py benchmarks/results.json

tables: setup
	$(PY) tools/gen_tables.py benchmarks/results.json

clean-venv:
	rm -rf $(VENV)

# rexnet_det: `make demo` and `make test` set everything up on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test demo benchmark clean-venv

setup:
	@bash tools/setup_env.sh

test: setup
	$(PY) -m pytest tests $(PYTEST_ARGS)

demo: setup
	$(PY) tools/demo.py

benchmark: setup
	$(PY) tools/analysis/benchmark.py

clean-venv:
	rm -rf $(VENV)

# Everything a fresh machine needs: `make demo` serves a demo model, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001

.PHONY: install demo demo-model test lint typecheck unit proto bench-serve bench-grpc bench-drift bench-score bench-pipeline bench-client bench-registry clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,ray]'
	touch $@

demo-model: install
	$(PY) -m benchmarks.models mlp --output demo/models/mlp/1/model.onnx

demo: demo-model
	$(VENV)/bin/sluice serve demo/models --host $(HOST) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT)

proto: install
	$(PY) -m server.grpc.codegen

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

unit: install
	$(PY) -m pytest -q

test: lint typecheck unit

# Benchmarks: peers are installed into benchmarks/.venvs by the scripts themselves.
bench-serve: install
	$(PY) -m benchmarks.serve_bench --interleave

bench-grpc: install
	$(PY) -m benchmarks.grpc_bench --interleave

bench-drift: install
	$(PY) -m benchmarks.drift_bench

bench-score: install
	$(PY) -m benchmarks.score_bench

bench-pipeline: install
	$(PY) -m benchmarks.pipeline_bench

bench-client: install
	$(PY) -m benchmarks.bench_client

bench-registry: install
	$(PY) -m benchmarks.registry_bench

clean:
	rm -rf $(VENV) demo .mypy_cache .ruff_cache .pytest_cache

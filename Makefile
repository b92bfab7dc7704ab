# Every target creates .venv when it is missing; nothing needs installing by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -q -c requirements.lock
CLI    := $(VENV)/bin/scaleclf

.PHONY: install install-core run test test-all bench lint typecheck lock clean spark-package

# The core install (local engine, CLI, report) is enough for the quickstart; `install` adds
# Spark, Dask, Ray, Flower, MLflow and the dev tools that the test suite uses.
$(VENV)/.core: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	$(PIP) -e .
	touch $@

$(VENV)/.all: $(VENV)/.core
	$(PIP) -e '.[dev]'
	touch $@

install-core: $(VENV)/.core
install: $(VENV)/.all

run: install-core
	$(CLI) train conf/quickstart.yaml

test: install
	$(VENV)/bin/pytest

# The slow tier too: the costliest parity cases that `make test` (CI) leaves out.
test-all: install
	$(VENV)/bin/pytest -m 'slow or not slow'

bench: install
	$(CLI) bench conf/bench.yaml --engines local --rows 100000

lint: install
	$(VENV)/bin/ruff check pipelines jobs federated tests
	$(VENV)/bin/ruff format --check pipelines jobs federated tests

typecheck: install
	$(VENV)/bin/mypy

# --py-files zip of our code (+ a venv-pack archive for --archives when venv-pack is installed).
spark-package: install
	infra/spark/package.sh

lock: install
	{ echo "# Transitive pins for a reproducible install: make install uses this file as pip constraints."; \
	  echo "# Regenerate with: make lock"; \
	  $(PY) -m pip freeze --exclude-editable; } > requirements.lock

clean:
	rm -rf $(VENV) runs .pytest_cache

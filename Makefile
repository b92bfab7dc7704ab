# Every target creates .venv when it is missing; nothing needs installing by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/scaleclf

.PHONY: install install-core run test test-all test-hosts bench lint typecheck lock clean spark-package

# The core install (local engine, CLI, report) is enough for the quickstart; `install` adds
# Spark, Dask, Ray, Flower, MLflow and the dev tools that the test suite uses.
# Both run infra/install.sh, the script infra/docker/Dockerfile runs too.
$(VENV)/.core: pyproject.toml requirements.lock infra/install.sh
	PYTHON=$(PYTHON) infra/install.sh $(VENV) core
	touch $@

$(VENV)/.all: $(VENV)/.core
	PYTHON=$(PYTHON) infra/install.sh $(VENV) all
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

# Spark, Dask and Ray clusters across simulated hosts (network namespaces; needs root and `ip`,
# else every test skips with the reason): TLS/auth on, a worker host killed mid-fit. docs/deploy.md.
test-hosts: install
	$(VENV)/bin/pytest -m hosts tests/hosts

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

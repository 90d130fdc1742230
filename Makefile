# Sabaq: `make run` starts it, `make test` proves it. Both create .venv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sabaq-dev-installed

.PHONY: install lint typecheck test coverage bench run clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(PY) -m ruff check sfu signaling recorder loadtests tests
	$(PY) -m ruff format --check sfu signaling recorder

typecheck: install
	$(PY) -m mypy

# pytest exits 5 when it collected nothing; that is a failure here like any other non-zero.
test: lint typecheck
	$(PY) -m pytest -q

# Line coverage of the packages (slower than `make test`: the tracer runs on the packet path).
coverage: install
	$(PY) -m coverage run -m pytest -q
	$(PY) -m coverage report --skip-covered --sort=cover

bench: install
	$(PY) -m loadtests.bench_sfu

run: install
	@echo "Sabaq's media plane (sfu/) is in place; 'sabaq serve' with the classroom,"
	@echo "a demo lesson and its links arrives with the signaling service."
	@echo "Until then: 'make test' proves forwarding, 'make bench' measures it."
	@exit 1

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis bench-results artifacts

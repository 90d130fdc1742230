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

# Forwarding curves (N = 25..400, floor, MediaRelay, seminar, Janus side by side when it can
# run: root, `ip netns`, apt-get), then the join storm; JSON in bench-results/.
bench: install
	$(PY) -m loadtests.bench_sfu
	$(PY) -m loadtests.bench_join --output bench-results/join.json

# Embedded mode with the demo lesson; prints a teacher link and two student links.
# Settings: CONFIG=path/to/sabaq.toml, or SABAQ_* variables (docs/configuration.md).
run: install
	$(VENV)/bin/sabaq serve --demo $(if $(CONFIG),--config $(CONFIG))

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis bench-results artifacts

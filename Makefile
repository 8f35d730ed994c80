# One entry point for people and CI. `make test` and `make demo` work on a fresh machine:
# they create the virtualenv, and the tests start (and stop) the local Kafka broker.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install test test-unit test-integration test-faults lint format broker-up broker-down broker-status demo bench soak clean

$(STAMP): pyproject.toml services/devstack/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e services/devstack
	@touch $(STAMP)

install: $(STAMP)

# pytest exits 5 when it collects nothing (e.g. a -m filter with no match): not a failure here
test: $(STAMP)  ## every tier; starts the local broker when no cluster is configured
	@$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests"; exit 0; fi; exit $$rc

test-unit: $(STAMP)
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-integration: $(STAMP)
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

# the fault suite at full size (10 x kill -9 over 200,000 events, ...) and the corpus;
# each test writes its report to .state/fault-reports/ (make test runs the short sizes)
test-faults: $(STAMP)
	CONSENTGATE_FAULTS=full $(BIN)/pytest -m faults $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check services tests bench
	$(BIN)/ruff format --check services tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix services tests bench
	$(BIN)/ruff format services tests bench

broker-up: $(STAMP)
	$(BIN)/consentgate broker start

broker-down: $(STAMP)
	$(BIN)/consentgate broker stop

broker-status: $(STAMP)
	$(BIN)/consentgate broker status

demo: $(STAMP)
	$(BIN)/consentgate demo

bench: $(STAMP)
	$(BIN)/python bench/run.py

soak: $(STAMP)  ## bench/soak.py: one router for 10 min at a steady rate (SOAK_ARGS=--minutes 1 ...)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .state .mypy_cache .ruff_cache .pytest_cache .hypothesis

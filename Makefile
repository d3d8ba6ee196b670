# The two commands a newcomer needs: `make demo` and `make test`.
# Each builds its own environment in .venv on first use (Python >= 3.11 and
# network access to PyPI are the only prerequisites; `make test` also installs
# net-snmp's command-line tools from Debian when it runs as root and they are missing).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help env demo test lint typecheck pytest bench forecast-eval lock clean system-deps

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'uv>=0.5'

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-extras --python $(BIN)/python
	@touch $@

env: $(VENV)/.synced  ## create .venv with every extra and the dev tools

system-deps:  ## net-snmp tools (SNMP interop tests), docker-compose (Compose check), wrk (api benchmark), chromium (dashboard browser tests); Debian, root only
	@if ! command -v snmpbulkwalk >/dev/null 2>&1 || ! command -v snmpd >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing net-snmp (snmp, snmpd) from Debian"; \
	    (apt-get install -y -qq snmp snmpd >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq snmp snmpd >/dev/null)) ; \
	  else echo "net-snmp tools missing and not root: SNMP interop tests will be skipped"; fi; \
	fi
	@if ! command -v docker-compose >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing docker-compose from Debian (validates docker-compose.yml; no engine)"; \
	    (apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1 || \
	     (apt-get update -qq && \
	      apt-get install -y -qq --no-install-recommends docker-compose >/dev/null) || \
	     echo "could not install docker-compose: its check of the Compose file is skipped") ; \
	  else echo "docker-compose missing and not root: its check of the Compose file is skipped"; fi; \
	fi
	@if ! command -v wrk >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing wrk from Debian (the api benchmark's load tool)"; \
	    (apt-get install -y -qq wrk >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq wrk >/dev/null) || \
	     echo "could not install wrk: the api benchmark is skipped") ; \
	  else echo "wrk missing and not root: the api benchmark is skipped"; fi; \
	fi
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium from Debian (the dashboard's browser tests drive it headless)"; \
	    (apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null) || \
	     echo "could not install chromium: the dashboard's browser tests are skipped") ; \
	  else echo "chromium missing and not root: the dashboard's browser tests are skipped"; fi; \
	fi

demo: env  ## run the whole pipeline on this machine (embedded servers unless *_URL are set)
	$(BIN)/resmon demo $(ARGS)

lint: env  ## ruff lint + format check + the hub's import layers (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: env  ## mypy --strict on the packages
	$(BIN)/mypy

pytest: env system-deps  ## the test suite (starts its own Kafka-protocol broker)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest  ## everything CI runs

bench: env system-deps  ## the benchmarks/ suites (a checkout only, not in the wheel); writes BENCHMARKS.md
	$(BIN)/resmon bench --output BENCHMARKS.md

forecast-eval: env  ## the forecast accuracy table of docs/forecasting.md (benchmarks/forecast_eval.py; ARGS=--replicas N)
	$(BIN)/python -m benchmarks.forecast_eval $(ARGS)

lock:  ## refresh uv.lock after editing pyproject.toml
	$(UV) lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .resmon-state

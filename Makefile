# secretd: `make run` starts the daemon with defaults, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-openhands test-py312 bench demo install-systemd clean

# The editable install also compiles the masker's C module and, with mypyc, its
# Python modules (hatch_build.py), so it runs again when one of them changes.
$(STAMP): pyproject.toml hatch_build.py daemon/secretd/daemon/masking/_scan.c $(wildcard daemon/secretd/daemon/masking/*.py)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## Start the daemon in the foreground with default settings (installs into .venv first).
run: $(STAMP)
	$(BIN)/secretd

## Run the test suite against real daemons.
test: $(STAMP)
	$(BIN)/python -m pytest -m 'not openhands'

## Run the OpenHands integration tests in a Python 3.12 environment.
test-openhands: $(STAMP)
	scripts/openhands-env.sh
	.venv312/bin/python -m pytest -m openhands tests/openhands

## Run the whole suite on Python 3.12 as well (in the same environment).
test-py312: $(STAMP)
	scripts/openhands-env.sh
	.venv312/bin/python -m pytest -m 'not openhands'

## Compare secretd's masking with the OpenHands SDK's (writes docs/benchmarks.md data to stdout).
bench: $(STAMP)
	scripts/openhands-env.sh
	.venv312/bin/python bench/run.py

## Play an agent session against a temporary daemon and show the masked output.
demo: $(STAMP)
	$(BIN)/python examples/demo.py

## Install the systemd user units for the current user, pointing at .venv's secretd.
install-systemd: $(STAMP)
	scripts/install-systemd "$${XDG_CONFIG_HOME:-$$HOME/.config}/systemd/user" "$(abspath $(BIN))/secretd"
	@echo "now run: systemctl --user daemon-reload && systemctl --user enable --now secretd.socket"

clean:
	rm -rf $(VENV) .venv312 build dist
	rm -rf daemon/secretd/daemon/masking/*.so daemon/secretd/daemon/masking/_compiled

# Setup, demo and test commands used by the README and by CI (.ci/run runs `make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench clean

# Creates the virtual environment and installs clibd with its pinned dependencies.
$(BIN)/clibd: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(BIN)/clibd

setup: $(BIN)/clibd

# Classifies examples/barcodes.fasta against a k-mer reference index of the BOLD barcodes.
demo: setup
	$(BIN)/clibd --version
	CLIBD=$(BIN)/clibd examples/quickstart.sh demo-output | cut -f 1-7,12

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo-output

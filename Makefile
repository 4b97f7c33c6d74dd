# Setup, demo and test commands used by the README and by CI (.ci/run runs `make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup peers demo test clean

# Creates the virtual environment and installs clibd (pyproject.toml: torch and torchvision pinned, the others as version ranges).
$(BIN)/clibd: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(BIN)/clibd

setup: $(BIN)/clibd

# Classifies examples/barcodes.fasta with the bundled model and BOLD reference
# (the TSV's id, status, order..species and lineage columns).
demo: setup
	$(BIN)/clibd classify examples/barcodes.fasta | cut -f 1,3-7,12

# The programs some tests run (Debian/Ubuntu packages; needs root): the evaluate baselines
# (vsearch, BLAST+, MMseqs2, the RDP classifier with java), the pipeline example (snakemake) and
# the HTML summary check (chromium). CI runs it first; elsewhere those tests skip without the
# programs (and fail when CI=true).
PEERS := vsearch blastn makeblastdb mmseqs snakemake chromium java rdp_classifier
peers:
	@for p in $(PEERS); do command -v $$p >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && \
		apt-get install -y -qq vsearch ncbi-blast+ mmseqs2 snakemake chromium rdp-classifier; fi

test: setup
	$(BIN)/python -m pytest -q -rs

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache e2e-output

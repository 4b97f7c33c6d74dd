"""Datasets: BIOSCAN, FASTA and BOLD TSV record sources, the CLIBD split protocol, the dataset
HDF5 store and what ``clibd prepare`` runs (``build.py``), and the synthetic photo dataset."""

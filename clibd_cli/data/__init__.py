"""Datasets: BIOSCAN and FASTA readers, the CLIBD split protocol, and the dataset HDF5 store."""

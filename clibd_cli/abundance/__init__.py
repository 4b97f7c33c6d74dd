"""Reads per taxon: abundances from dereplicated headers or feature tables, and the summaries
of ``clibd classify --summary`` (TSV, Krona text, HTML)."""

"""The library behind ``clibd evaluate``: the CLIBD retrieval protocol, baselines and the report.

* :mod:`.protocol` which splits are keys and queries (BIOSCAN-5M and CLIBD-1M layouts), the
  two scenarios, and the records' labels;
* :mod:`.vectors` embeddings of dataset splits (a CLIBD model or k-mer profiles), cached on disk;
* :mod:`.retrieval` nearest keys of each query → neighbour labels and calibrated calls;
* :mod:`.baselines` VSEARCH ``--usearch_global`` / ``--sintax``, BLAST+ ``blastn``, MMseqs2
  ``easy-search`` and RDP (:mod:`.rdp`);
* :mod:`.metrics` accuracy and calibration metrics; :mod:`.scores` the numbers of a report
  (paper metrics, open-set metrics, reliability);
* :mod:`.report` ``metrics.json``, ``metrics.tsv``, the text table; :mod:`.plots` PNGs and
  ``report.html``; :mod:`.run` puts it together.
"""

PAIRS = ("dna-dna", "image-image", "image-dna", "image-text", "dna-text")  # query-key modalities
BASELINES = ("kmer", "vsearch-global", "vsearch-sintax", "blastn", "mmseqs", "rdp")  # --baselines; tools: baselines.TOOLS

"""Turning barcodes, photos and label strings into vectors.

* :mod:`.embedder` the model (a CLIBD model or the k-mer profile, behind the ``Encoder``
  protocol), loading it by name, batching and the arithmetic precision;
* :mod:`.kmer` the model-free embeddings (k-mer profiles: ``kmer``; with :mod:`.translation`'s
  amino-acid triplets, ``kmer-aa``);
* :mod:`.embeddings_file` the HDF5 that ``clibd embed`` writes;
* :mod:`.shards` embedding in resumable chunks, shared among processes (``embed``, ``index``).
* :mod:`.unit` ``unit_rows``, vectors scaled to unit length, the one place it is written.
"""

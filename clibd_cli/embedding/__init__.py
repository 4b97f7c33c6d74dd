"""Turning barcodes, photos and label strings into vectors.

* :mod:`.embedder` the model (a CLIBD model or the k-mer profile, behind the ``Encoder``
  protocol), loading it by name, batching and the arithmetic precision;
* :mod:`.kmer` the one model-free embedding (k-mer profiles);
* :mod:`.embeddings_file` the HDF5 that ``clibd embed`` writes;
* :mod:`.shards` embedding in resumable chunks, shared among processes (``embed``, ``index``).
"""

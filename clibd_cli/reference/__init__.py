"""Reference records and their searchable index (made and shipped by ``clibd_cli/indexing/``).

* :mod:`.sources` labelled reference records from FASTA, photo folders or a dataset HDF5;
* :mod:`.records` the ``records.tsv`` format; :mod:`.search` exact nearest neighbours;
* :mod:`.hnsw_index` the index directory: build, append, save, search (the only place an
  HNSW graph is built); :mod:`.index_reading` opening one, every file checked; :mod:`.hnsw_file`
  reading vectors out of the stored graph; :mod:`.graph_nodes` records that share a vector
  grouped into one graph node;
* :mod:`.sketch` the k-mer sketch (strand, off-target floor); :mod:`.label_check` records whose
  label looks wrong.
"""

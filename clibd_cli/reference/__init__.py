"""Reference records and their searchable index.

* :mod:`.build` the whole ``clibd index`` run, from records to a saved index;
* :mod:`.sources` labelled reference records from FASTA, photo folders or a dataset HDF5;
* :mod:`.records` the ``records.tsv`` format; :mod:`.search` exact nearest neighbours;
* :mod:`.hnsw_index` the index directory: build, load, append, save, search (the only place an
  HNSW graph is built); :mod:`.hnsw_file` reading vectors out of the stored graph; :mod:`.graph_nodes`
  records that share a vector grouped into one graph node;
* :mod:`.sketch` the k-mer sketch (strand, off-target floor); :mod:`.label_check` records whose
  label looks wrong;
* :mod:`.pack` the small shippable form of an index; :mod:`.bundled` the default reference.
"""

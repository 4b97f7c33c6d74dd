"""From nearest reference records to per-rank labels with calibrated confidences.

* :mod:`.taxonomy` the reference's labels as codes per rank, and one query's prediction;
* :mod:`.decision` the top-down vote that picks a label per rank (``predict``, ``decide``);
* :mod:`.calibration` the fitted confidence maps (typed, with their JSON form);
  :mod:`.fitting` how they are fitted, of :mod:`.probability_map` maps (logistic + isotonic),
  with :mod:`.batch_prior`'s scenario model and :mod:`.barcode_gap`'s spread of each label;
* :mod:`.query_kinds` one calibration per kind of query; :mod:`.read_errors` the simulated
  sequencing errors of the ``dna~`` one;
* :mod:`.queries` the specimens to classify; :mod:`.classifier` the whole path for ``clibd classify``.
"""

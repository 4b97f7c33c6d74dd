"""From nearest reference records to per-rank labels with calibrated confidences.

* :mod:`.taxonomy` the reference's labels as codes per rank, and one query's prediction;
* :mod:`.decision` the top-down vote that picks a label per rank (``predict``, ``decide``);
* :mod:`.calibration` the fitted confidence maps (typed, with their JSON form);
  :mod:`.fitting` how they are fitted; :mod:`.query_kinds` one calibration per kind of query;
* :mod:`.queries` the specimens to classify; :mod:`.classifier` the whole path for ``clibd classify``.
"""

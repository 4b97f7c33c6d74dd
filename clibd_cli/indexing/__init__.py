"""Making reference indexes and shipping them: the layer above ``reference`` (storage and search)
and ``classification`` (the calibration an index carries).

* :mod:`.build` the whole ``clibd index`` run, from records to a saved index;
* :mod:`.pack` the small shippable form of an index (int8 vectors, graph rebuilt on unpacking);
* :mod:`.bundled` the default reference that ships with clibd, unpacked once into the cache.
"""

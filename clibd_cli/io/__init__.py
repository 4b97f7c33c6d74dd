"""Reading users' inputs (sequences, images, tables, streams) and writing predictions.

Atomic writes and checksums are in ``models/files.py``."""

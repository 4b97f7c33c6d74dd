"""Reading users' inputs (sequences, images, tables, streams) and writing predictions.

Where a user's ``-o`` may be written, and its lock: ``outputs.py``; atomic writes and checksums
are in ``models/files.py``."""

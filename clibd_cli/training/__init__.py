"""The library behind ``clibd train``: data loading, the loop, LoRA, checkpoints, validation
(one process or many: ``clibd_cli/distributed.py``)."""

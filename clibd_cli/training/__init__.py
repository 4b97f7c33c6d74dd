"""The library behind ``clibd train``: data loading, the loop, LoRA, checkpoints, validation, torchrun."""

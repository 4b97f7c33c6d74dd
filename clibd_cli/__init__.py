"""clibd: the command-line application around the CLIBD models in :mod:`models`."""


def __getattr__(name: str) -> str:
    """``__version__``, read on first use: ``import clibd_cli`` stays instant (the console script
    imports it before ``clibd_cli/__main__.main`` can catch a Ctrl-C)."""
    if name != "__version__":
        raise AttributeError(f"module 'clibd_cli' has no attribute {name!r}")
    from models.version import clibd_version

    found = globals()["__version__"] = clibd_version()
    return found

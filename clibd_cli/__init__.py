"""clibd: the command-line application around the CLIBD models in :mod:`models`."""


def __getattr__(name: str) -> str:
    """``__version__``, read on first use: ``import clibd_cli`` stays instant (the console script
    imports it before ``clibd_cli/__main__.main`` can catch a Ctrl-C)."""
    if name != "__version__":
        raise AttributeError(f"module 'clibd_cli' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("clibd")
    except PackageNotFoundError:  # running from a source tree that was not installed
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found

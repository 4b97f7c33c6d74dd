"""The installed clibd's version: recorded in every file clibd writes, printed by ``clibd --version``.

Only the standard library is imported, so ``clibd --help`` stays instant."""

from __future__ import annotations


def clibd_version() -> str:
    """The version of the installed ``clibd`` distribution; ``0.0.0+unknown`` when running from a
    source tree that was not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clibd")
    except PackageNotFoundError:
        return "0.0.0+unknown"

"""clibd: the command-line application around the CLIBD models in :mod:`models`."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("clibd")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

"""The one exception root of clibd: every failure a user can act on is a :class:`ClibdError`.

The command line (``clibd_cli/main.py``) prints it as ``clibd: error: <message>``, so keep the
message to one line and say where (``FILE:LINE``) and what was expected. It lives in ``models/``
because the model core raises its own kind, :class:`ModelError`, and imports nothing from the
command line.
"""


class ClibdError(Exception):
    """A failure the user can act on: the message is printed as ``clibd: error: <message>``."""


class ModelError(ClibdError):
    """A model that cannot be built or loaded: unknown preset, bad config, missing/corrupt files."""


class ModelNotFound(ModelError):
    """No model by that name or path: a mistyped option, which the command line treats as a usage
    error."""


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun`` as a message says it: ``1 record``, ``2 records``, ``12,000 records``
    (``plural`` where adding an ``s`` is wrong: ``counted(n, "query", "queries")``)."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"

"""The one exception type that commands raise for user-facing failures."""


class ClibdError(Exception):
    """A failure the user can act on: the message is printed as ``clibd: error: <message>``.

    Keep the message to one line and say where (``FILE:LINE``) and what was expected.
    """

"""The ``clibd`` subcommands, one module per verb: parse the options, call the library, print.

``import_`` is ``clibd import`` (``import`` is a Python keyword). Shared option blocks are in
:mod:`.options`. Nothing outside this package and ``clibd_cli/main.py`` imports click.
"""

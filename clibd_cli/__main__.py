"""``python -m clibd_cli ARGS`` and the ``clibd`` console script: the ``clibd`` command line (what
torchrun runs for ``clibd train``)."""

import sys


def main() -> None:
    """Run ``clibd``. A Ctrl-C while its modules load (the first ~40 ms, before the command's own
    handling in ``clibd_cli/main.py``) ends it as a later one does: exit 130, not a traceback."""
    try:
        from clibd_cli.main import cli

        cli(prog_name="clibd")
    except KeyboardInterrupt:
        print("clibd: interrupted (nothing half-written is left)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()

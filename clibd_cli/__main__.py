"""``python -m clibd_cli ARGS``: the ``clibd`` command line (what torchrun runs for ``clibd train``)."""

from clibd_cli.main import cli

if __name__ == "__main__":
    cli(prog_name="clibd")

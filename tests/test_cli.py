"""The command group: help speed, version, errors and exit codes, broken pipes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from clibd_cli import __version__
from clibd_cli.main import cli
from models.errors import ClibdError, counted

CLIBD = [str(Path(sys.executable).with_name("clibd"))]


@pytest.fixture
def failing_commands():
    """Temporarily add commands that fail in the ways real commands can."""

    @click.command("user-error")
    def user_error():
        raise ClibdError("reads.fasta:3: expected a header line starting with '>'")

    @click.command("library-error")
    def library_error():  # HDF5's read failures, for one, hold a newline
        raise ClibdError("x.h5: not an HDF5 dataset file (file read failed: time = Sun Dec  6 2026\n, errno = 29)")

    @click.command("missing-file")
    def missing_file():
        open("/nonexistent/reference.fasta")

    @click.command("bug")
    def bug():
        raise RuntimeError("something nobody expected")

    @click.command("lines")
    def lines():
        for i in range(200_000):
            click.echo(f"line {i}")

    added = [user_error, library_error, missing_file, bug, lines]
    for command in added:
        cli.add_command(command)
    yield
    for command in added:
        cli.commands.pop(command.name)


def test_help_is_fast_and_lists_options():
    start = time.perf_counter()
    result = subprocess.run(CLIBD + ["--help"], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    assert "--device" in result.stdout and "--threads" in result.stdout
    # Heavy libraries are imported by command bodies only; a second is generous.
    assert elapsed < 1.0, f"clibd --help took {elapsed:.2f} s"


def test_help_does_not_import_torch():
    code = "import sys; from clibd_cli.main import cli; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


_CTRL_C_WHILE_LOADING = """
import builtins, sys
load = builtins.__import__
def interrupted(name, *args, **kwargs):
    if name == "click":  # Ctrl-C while clibd_cli/main.py loads what it needs
        raise KeyboardInterrupt
    return load(name, *args, **kwargs)
builtins.__import__ = interrupted
import clibd_cli.__main__
assert "importlib.metadata" not in sys.modules  # importing the package costs nothing before main() runs
sys.argv = ["clibd", "--help"]
clibd_cli.__main__.main()
"""


def test_ctrl_c_while_clibd_starts_is_exit_130_not_a_traceback():
    """The console script imported clibd_cli.main, ~40 ms of imports before clibd's own handling:
    a Ctrl-C then printed Python's KeyboardInterrupt traceback. It now runs clibd_cli/__main__.main,
    which handles it from the first import on."""
    import tomllib

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["clibd"] == "clibd_cli.__main__:main"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", _CTRL_C_WHILE_LOADING], capture_output=True, text=True, env=env,
                          timeout=60)
    assert (proc.returncode, proc.stderr) == (130, "clibd: interrupted (nothing half-written is left)\n")


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"clibd, version {__version__}"


def test_usage_error_exits_2(failing_commands):
    result = CliRunner().invoke(cli, ["--threads", "0", "user-error"])
    assert result.exit_code == 2
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2


def test_user_error_is_one_line_exit_1(failing_commands):
    result = CliRunner().invoke(cli, ["user-error"])
    assert result.exit_code == 1
    assert result.output == "clibd: error: reads.fasta:3: expected a header line starting with '>'\n"


def test_an_error_message_that_spans_lines_is_printed_on_one(failing_commands):
    result = CliRunner().invoke(cli, ["library-error"])
    assert result.exit_code == 1
    assert result.output == ("clibd: error: x.h5: not an HDF5 dataset file (file read failed: time = Sun Dec  6 "
                             "2026 , errno = 29)\n")


def test_os_error_names_the_file(failing_commands):
    result = CliRunner().invoke(cli, ["missing-file"])
    assert result.exit_code == 1
    assert result.output == "clibd: error: /nonexistent/reference.fasta: No such file or directory\n"


def test_unexpected_error_has_no_traceback_unless_verbose(failing_commands):
    result = CliRunner().invoke(cli, ["bug"])
    assert result.exit_code == 1
    assert result.output.startswith("clibd: error: internal error (RuntimeError: something nobody expected)")
    assert "Traceback" not in result.output
    verbose = CliRunner().invoke(cli, ["-v", "bug"])
    assert verbose.exit_code == 1
    assert "Traceback" in verbose.output
    after = CliRunner().invoke(cli, ["bug", "-v"])  # where users type it: clibd's own flag after the command
    assert after.exit_code == 1 and "Traceback" in after.output
    quiet = CliRunner().invoke(cli, ["user-error", "--quiet", "--", "-v"])  # after --, an argument
    assert quiet.exit_code == 2 and "Got unexpected extra argument (-v)" in quiet.output


def test_a_global_option_after_the_command_says_where_it_goes():
    """``clibd classify --threads 1``: exit 2 naming the option as clibd's own and where it goes, with the
    value given (was click's "No such option '--threads'. Did you mean '--reads'?"); other options as click says."""
    for args, said in ((["classify", "--threads", "1", "x.fa"], "--threads is an option of clibd itself, not of "
                        "classify: give it before the command, as in `clibd --threads 1 classify ...`"),
                       (["index", "x.fa", "--device=cpu"], "--device is an option of clibd itself, not of index "
                        "build: give it before the command, as in `clibd --device cpu index build ...`"),
                       (["embed", "--precision"], "--precision is an option of clibd itself, not of embed: give "
                        "it before the command, as in `clibd --precision VALUE embed ...`")):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and result.output.splitlines()[-1] == f"clibd: error: {said}", result.output
    assert "No such option '--nope'" in CliRunner().invoke(cli, ["classify", "--nope"]).output


def test_classify_help_names_every_exit_status():
    """classify --help's Exit status: each stop signal's 128 + N (SIGHUP's 129 was missing) and `| head`'s 1."""
    from clibd_cli.defaults import STOP_SIGNALS

    text = " ".join(CliRunner().invoke(cli, ["classify", "--help"]).output.split())
    statuses = text[text.index("Exit status:"):text.index("Examples:")]
    assert "130 when interrupted (Ctrl-C)" in statuses and "when the reader of the output stops (`| head`)" in statuses
    for signum, what in STOP_SIGNALS.items():
        assert f"{128 + signum} when {what} ({signum.name}" in statuses


def test_device_cuda_without_a_gpu_is_one_clear_error(monkeypatch):
    """--device cuda where PyTorch sees no GPU: a ClibdError saying so, not torch's own failure."""
    import torch

    from clibd_cli.main import Settings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ClibdError, match="--device cuda was requested but no CUDA GPU is visible"):
        Settings(device="cuda").torch_device()
    assert Settings(device="auto").torch_device() == "cpu"


def test_broken_pipe_prints_no_traceback(failing_commands, tmp_path):
    # A real pipe into `head`: the writer must exit quietly when the reader goes away.
    script = (
        "import click\n"
        "from clibd_cli.main import cli\n"
        "@cli.command('lines')\n"
        "def lines():\n"
        "    for i in range(1_000_000):\n"
        "        click.echo(f'line {i}')\n"
        "cli()\n"
    )
    program = tmp_path / "lines.py"
    program.write_text(script)
    result = subprocess.run(
        ["bash", "-c", f"{sys.executable} {program} lines | head -n 2; exit ${{PIPESTATUS[0]}}"],
        capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "0"},
    )
    assert result.stdout == "line 0\nline 1\n"
    assert result.returncode == 1  # the writer's own status, not head's
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


@pytest.mark.parametrize("signum, status", [(signal.SIGHUP, 129), (signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_whose_message_cannot_be_written_still_exits_with_its_status(tmp_path, signum, status):
    """A hang-up closes the terminal clibd reports to: writing 'clibd: hung up ...' failed (EIO; here EPIPE,
    stderr's reader gone) and clibd exited 1 with a traceback instead of 129."""
    program = tmp_path / "wait.py"
    program.write_text("import sys, time\nfrom clibd_cli.main import cli\n@cli.command('wait')\ndef wait():\n"
                       "    print('ready', flush=True)\n    time.sleep(60)\ncli()\n")
    waiting = subprocess.Popen([sys.executable, str(program), "wait"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert waiting.stdout.readline() == "ready\n"
        waiting.stderr.close()  # nothing can be said on stderr any more
        waiting.send_signal(signum)
        assert waiting.wait(timeout=30) == status
    finally:
        waiting.kill()
        waiting.wait()


def test_a_model_that_does_not_exist_is_a_usage_error_in_every_command(tmp_path):
    """README: 2 on a usage error, an option path that does not exist included (index said 2, the
    others 1)."""
    from fixtures.specimens import specimens, write_fasta

    fasta = write_fasta(tmp_path / "q.fa", specimens(n_species=2, per_species=2, unnamed=0))
    runner = CliRunner()
    for args in (["embed", "-m", "run/bestx", str(fasta), "-o", str(tmp_path / "e.h5")],
                 ["index", "-m", "nope", str(fasta), "-o", str(tmp_path / "i")]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
    from models import create_model
    from models.errors import ModelNotFound

    with pytest.raises(ModelNotFound):  # what train, evaluate and classify -m meet
        create_model("nope")


def test_load_model_takes_a_shipped_models_name():
    from models import load_model
    from models.config import list_pretrained

    names = list_pretrained()
    assert names  # the bundled model ships with clibd
    for name in names:
        assert load_model(name).fingerprint()


def test_counts_in_messages_agree_with_their_noun():
    """``models.errors.counted``, the one way a message prints a count and its noun."""
    assert [counted(n, "record") for n in (0, 1, 2)] == ["0 records", "1 record", "2 records"]
    assert counted(1, "dna query", "dna queries") == "1 dna query"
    assert counted(12000, "dna query", "dna queries") == "12,000 dna queries"



def test_the_clibd_warnings_fixture_hears_a_cli_run_and_what_follows(tmp_path, clibd_warnings):
    """A run in this process puts its own stderr handler on the ``clibd`` logger, in place of the
    handlers there (``clibd_cli/main.py``): the fixture's own handler was dropped, and it heard nothing."""
    import logging

    short = tmp_path / "short.fa"
    short.write_text(">a\nACGT\n")
    assert CliRunner().invoke(cli, ["embed", "-m", "kmer", str(short), "-o", str(tmp_path / "e.h5")]).exit_code == 1
    logging.getLogger("clibd").warning("after the run")
    assert clibd_warnings == [f"{short}:1: a: skipped: too short: 4 unambiguous bases (at least 100 needed)",
                              "after the run"]

"""``clibd train --nproc-per-node``: the torchrun launcher (``clibd_cli/distributed.launch``) and
stop signals, from a stand-in worker and from real gloo workers on the CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clibd_cli import distributed
from clibd_cli.training.state import load_state
from models import load_model
from test_train import write_bold

STOPS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
# Imported by every process of a run started with PYTHONPATH=<its folder>: rank 0 sleeps in the
# middle of writing last/, so signals that come meanwhile find the save still going on.
SLOW_SAVE = """import os, time
if "LOCAL_RANK" in os.environ:
    import models.checkpoint
    write_model = models.checkpoint.write_model
    def slow(*args, **kwargs):
        write_model(*args, **kwargs)
        time.sleep(3)
    models.checkpoint.write_model = slow
"""


@pytest.fixture(scope="module")
def bold_h5(tmp_path_factory) -> Path:
    return write_bold(tmp_path_factory.mktemp("data") / "bold.h5")


@pytest.mark.parametrize("stop", STOPS, ids=[s.name for s in STOPS])
def test_the_launcher_passes_on_the_first_stop_signal_alone(tmp_path, monkeypatch, stop):
    """`kill`, `timeout`, `kill -HUP` or Ctrl-C reach the clibd that launched torchrun: it passes the
    first on, once, and waits for the workers (SIGHUP killed the launcher outright, the workers
    left running; Ctrl-C was left to the terminal; every repeat was passed on), then exits as
    shells say for that signal. torchrun starts in a session of its own, out of reach of signals
    sent to clibd's process group."""
    ready, got = tmp_path / "ready", tmp_path / "got"
    worker = (f"import os, signal, sys, time; signal.signal({int(stop)}, lambda *a: open({str(got)!r}, 'a').write('x')); "
              f"open({str(ready)!r}, 'w').close()\n"
              f"for _ in range(1000):\n    if os.path.exists({str(got)!r}): break\n    time.sleep(0.01)\n"
              "time.sleep(0.5); sys.exit(7)")  # gives up after 10 s without a signal
    real, sessions = subprocess.Popen, []

    def start(command, start_new_session=False):
        sessions.append(start_new_session)
        return real([sys.executable, "-c", worker], start_new_session=start_new_session)

    monkeypatch.setattr(distributed.subprocess, "Popen", start)

    def signal_when_ready():
        while not ready.exists():
            time.sleep(0.01)
        for _ in range(3):
            os.kill(os.getpid(), stop)
            time.sleep(0.05)

    previous = {sig: signal.getsignal(sig) for sig in STOPS}
    threading.Thread(target=signal_when_ready, daemon=True).start()
    try:
        assert distributed.launch(2, ["train"]) == 128 + stop  # as shells say (torchrun says 1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert got.exists() and got.read_text() == "x" and sessions == [True]


def test_torchrun_whose_launcher_is_gone_does_not_start():
    """The launcher died before torchrun could ask to be told (``PR_SET_PDEATHSIG``): it stops as
    for a SIGTERM, starting nothing."""
    started = subprocess.run([sys.executable, "-m", "clibd_cli.distributed", "1", "--help"], capture_output=True,
                             text=True, timeout=60)
    assert started.returncode == 128 + signal.SIGTERM and "usage" not in started.stdout


def run_processes(out: Path) -> list[int]:
    """The processes (launcher, torchrun, workers) whose command line names ``out``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(out).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile
            pass
    return found


def start_two(bold_h5: Path, out: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``clibd train --nproc-per-node 2`` in a process group of its own, returned once two steps
    are logged (under load start-up may take long)."""
    proc = subprocess.Popen([sys.executable, "-m", "clibd_cli", "--threads", "1", "train", "--nproc-per-node", "2",
                             "--model", "clibd-tiny", "--data", str(bold_h5), "--modalities", "dna,text",
                             "--batch-size", "8", "--max-steps", "100000", "--workers", "0", "--log-every", "1",
                             "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=(out.parent / "stderr").open("w"), start_new_session=True, env=env)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline and not (
            metrics.exists() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.05)
    assert proc.poll() is None, (out.parent / "stderr").read_text()
    assert metrics.read_text().count("\n") >= 2, "no two steps logged in 180 s"
    return proc


def stopped_cleanly(out: Path) -> None:
    """Nothing of the run is left running, ``last/`` is whole and a resume can read it."""
    assert not run_processes(out), "processes of the run outlived clibd"
    assert not list(out.glob(".last.tmp*")), "a half-written last/"
    assert load_state(out / "last")["step"] >= 2
    assert load_model(out / "last") is not None


def kill_leftovers(out: Path) -> None:
    for pid in run_processes(out):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_signals_to_the_process_group_stop_two_workers_once(bold_h5, tmp_path, stop):
    """Ctrl-C or a closed terminal signal the whole foreground process group, maybe more than once
    (the shell, then the kernel): clibd returns only when both workers have saved last/, with
    130 or 129. torchrun got each signal twice (from the terminal and from clibd), and on the third
    stopped waiting: clibd exited while rank 0 was still writing last/ (a scheduler ending the job
    then would have killed it mid-save). After Ctrl-C clibd said 1."""
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "sitecustomize.py").write_text(SLOW_SAVE)
    out = tmp_path / "run"
    proc = start_two(bold_h5, out, env={**os.environ, "PYTHONPATH": str(tmp_path / "slow")})
    try:
        for _ in range(3):
            os.killpg(proc.pid, stop)
            time.sleep(0.5)
        assert proc.wait(timeout=120) == 128 + stop, (tmp_path / "stderr").read_text()
        stopped_cleanly(out)
    finally:
        kill_leftovers(out)


@pytest.mark.slow
def test_torchrun_stops_when_its_launcher_is_killed(bold_h5, tmp_path):
    """``kill -9`` of the launching clibd (or of its process group): torchrun, in a session of
    its own, gets a SIGTERM from the kernel and stops the workers as for ``kill``, saving last/.
    They went on training unseen."""
    out = tmp_path / "run"
    proc = start_two(bold_h5, out)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 60
        while run_processes(out) and time.monotonic() < deadline:
            time.sleep(0.2)
        stopped_cleanly(out)
    finally:
        kill_leftovers(out)

"""`clibd train --resume`: options left out take the run's values (RUN/args.json); given ones that
change what the run computes, and a --data of other training records, are refused (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from clibd_cli.main import cli
from models import load_model
from test_train import interrupted_in_step, losses, write_bold

RUN = ["--model", "clibd-tiny", "--modalities", "dna,text", "--batch-size", "8", "--max-steps", "2",
       "--lr", "1e-3", "--val-limit", "20"]


def clibd(*args) -> Result:
    return CliRunner().invoke(cli, ["--threads", "1", *map(str, args)])


def train(*args) -> Result:
    return clibd("train", "--workers", "0", *args)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_bold(tmp_path_factory.mktemp("data") / "bold.h5")


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    """A finished run of 2 steps (last/ holds its state)."""
    run = tmp_path_factory.mktemp("runs") / "run"
    result = train(*RUN, "--data", data, "--out", run)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def run(finished, tmp_path) -> Path:
    """A copy of the finished run for one test to resume."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


@pytest.mark.parametrize("given, refused", [
    (["--model", "clibd-fast"], "--model clibd-fast (the run's: clibd-tiny)"),
    (["--lr", "0.05", "--warmup", "0.9"], "--lr 0.05 (the run's: 0.001), --warmup 0.9 (the run's: 0.3)"),
    (["--weight-decay", "0"], "--weight-decay 0 (the run's: 0.01)"),
    (["--train-splits", "train"], "--train-splits train (the run's: pretrain,train)"),
    (["--positives", "label", "--label-ranks", "genus"],
     "--positives label (the run's: sample), --label-ranks genus (the run's: '')"),
    (["--dna-crop", "0.3"], "--dna-crop 0.3 (the run's: 0)"),
    (["--precision", "bf16"], "--precision bf16 (the run's: auto)"),
    (["--best-metric", "dna-dna.genus.macro.hm"], "--best-metric dna-dna.genus.macro.hm (the run's: auto)"),
])
def test_a_resume_refuses_options_that_change_what_the_run_computes(run, data, given, refused):
    result = train("--data", data, "--out", run, "--resume", *given)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"clibd: error: {run}: the options disagree with the run's: {refused}; "
                                    "give the run's values or leave these options out") and result.output.count("\n") == 1
    assert json.loads((run / "args.json").read_text())["resumed"] == []  # refused before anything is written


def test_a_resume_refuses_another_seed_and_another_dataset_but_not_a_moved_one(run, data, tmp_path):
    seed = clibd("--seed", "1", "train", "--out", run, "--resume")
    assert seed.exit_code == 2 and "--seed 1 (the run's: 0)" in seed.output, seed.output
    fewer = write_bold(tmp_path / "fewer.h5", every_nth=2)
    other = train("--data", fewer, "--out", run, "--resume")
    assert other.exit_code == 2, other.output
    assert (f"--data {fewer} is not the run's data: its pretrain+train records are 115 records of ids sha256 "
            in other.output and f"the run's ({data}) 231 records of " in other.output)
    assert "give the file the run trained on (moved or copied is fine) or leave --data out" in other.output
    moved = Path(shutil.copy(data, tmp_path / "moved.h5"))
    again = train("--data", moved, "--out", run, "--resume")
    assert again.exit_code == 0, again.output
    assert "training clibd-tiny on 231 records (dna+text), 2 steps" in again.output
    assert "resumed at step 2" in again.output


def _changed(data: Path, path: Path, field: str) -> Path:
    """A copy of ``data`` whose first train record has another barcode or species (the same ids)."""
    import h5py

    shutil.copy(data, path)
    with h5py.File(path, "r+") as h5:
        h5["train"][field][0] = "ACGT" * 160 if field == "barcode" else "Culex changed"
    return path


@pytest.mark.parametrize("field", ["barcode", "species"])
def test_a_resume_refuses_the_runs_ids_with_other_barcodes_or_labels(run, data, tmp_path, field):
    """The run's fingerprint held the records' number and ids only: a --data of the same ids with another
    barcode or label resumed on records the run never trained on."""
    other = _changed(data, tmp_path / "other.h5", field)
    result = train("--data", other, "--out", run, "--resume")
    assert result.exit_code == 2, result.output
    assert (f"--data {other} is not the run's data: its pretrain+train records have the run's ids but other "
            "barcodes or labels (sha256 " in result.output and f"the run's ({data}) " in result.output)
    assert json.loads((run / "args.json").read_text())["resumed"] == []


def test_an_older_run_fingerprinted_by_ids_only_resumes_on_them_and_says_what_it_did_not_check(run, data, tmp_path):
    record = json.loads((run / "args.json").read_text())
    del record["dataset"]["content_sha256"]
    (run / "args.json").write_text(json.dumps(record))
    other = _changed(data, tmp_path / "other.h5", "species")
    result = clibd("-v", "train", "--workers", "0", "--data", other, "--out", run, "--resume")
    assert result.exit_code == 0, result.output
    assert "args.json records the ids of the run's training records only (an older run): their ids agree; not " \
           "checking their barcodes and labels" in result.output
    assert json.loads((run / "args.json").read_text())["args"]["data"] == str(other)  # the run's ids: kept


def test_an_older_run_refusing_other_ids_does_not_first_say_it_is_not_checking_barcodes(tmp_path, caplog):
    """The debug line of an ids-only fingerprint came before the refusal of other ids too, as if the
    ids had been let through."""
    import logging

    from clibd_cli.io.outputs import UsageError
    from clibd_cli.training.run_files import check_resume

    (tmp_path / "args.json").write_text(json.dumps({"args": {"data": "old.h5"},
                                                    "dataset": {"records": 4, "ids_sha256": "a" * 64}}))
    ours = {"records": 5, "ids_sha256": "b" * 64, "content_sha256": "c" * 64}
    with caplog.at_level(logging.DEBUG, logger="clibd"), pytest.raises(UsageError, match="is not the run's data"):
        check_resume(tmp_path, {"data": "new.h5", "train_splits": ("train",)}, ours)
    assert not [m for m in caplog.messages if "ids of the run's training records only" in m]


def test_resume_with_only_out_continues_exactly_with_the_runs_options(data, tmp_path, monkeypatch):
    """Options other than the command's defaults (--lr, --warmup, --seed, --data itself) come back
    from args.json: the resumed run ends with the weights and losses of an uninterrupted one."""
    options = ["--model", "clibd-tiny", "--data", data, "--modalities", "dna,text", "--batch-size", "8",
               "--max-steps", "4", "--lr", "1e-3", "--warmup", "0.5", "--log-every", "1"]
    straight = clibd("--seed", "3", "train", "--workers", "0", *options, "--out", tmp_path / "straight")
    assert straight.exit_code == 0, straight.output
    run = tmp_path / "run"
    with interrupted_in_step(2, monkeypatch):
        assert clibd("--seed", "3", "train", "--workers", "0", *options, "--out", run).exit_code == 130
    resumed = clibd("train", "--out", run, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert losses(run) == losses(tmp_path / "straight") and len(losses(run)) == 4
    assert load_model(run / "last").fingerprint() == load_model(tmp_path / "straight" / "last").fingerprint()
    assert torch.load(run / "last" / "train_state.pt", weights_only=True)["step"] == 4
    command = json.loads((run / "args.json").read_text())["resumed"][0]["command"]
    assert ["--seed", "3"] == command[command.index("--seed"):][:2] and "--data" in command


def test_an_older_run_without_the_new_records_still_resumes_and_says_what_it_did_not_check(run):
    record = json.loads((run / "args.json").read_text())
    del record["dataset"], record["args"]["warmup"]
    (run / "args.json").write_text(json.dumps(record))
    result = clibd("-v", "train", "--workers", "0", "--out", run, "--resume")
    assert result.exit_code == 0, result.output
    assert "args.json does not record --warmup (an older run): not checking it" in result.output
    assert "does not record the run's training records (an older run): not checking --data" in result.output


def test_data_is_needed_without_resume_and_where_the_runs_file_is_gone(run, data, tmp_path):
    fresh = train("--out", tmp_path / "new")
    assert fresh.exit_code == 2 and "Missing option '-d' / '--data'" in fresh.output, fresh.output
    record = json.loads((run / "args.json").read_text())
    record["args"]["data"] = str(tmp_path / "gone.h5")
    (run / "args.json").write_text(json.dumps(record))
    gone = train("--out", run, "--resume")
    assert gone.exit_code == 2 and f"the run's {tmp_path / 'gone.h5'} is not there; give --data" in gone.output
    assert train("--data", data, "--out", run, "--resume").exit_code == 0  # the same records, elsewhere
    assert json.loads((run / "args.json").read_text())["args"]["data"] == str(data)  # kept for the next one
    assert train("--out", run, "--resume").exit_code == 0


@pytest.mark.parametrize("data_given", [False, True])
def test_nothing_to_resume_is_said_first_with_or_without_data(data, tmp_path, data_given):
    """Not click's Missing option '--data' for a folder without a run (or an empty one)."""
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "none", tmp_path / "empty"):
        result = train(*(["--data", data] if data_given else []), "--out", out, "--resume")
        assert result.exit_code == 2, result.output
        assert f"{out}: nothing to resume (no last/ checkpoint); drop --resume to start" in result.output


def test_the_runs_modalities_in_another_order_are_the_runs(run):
    """--modalities text,dna on a dna,text run: the same towers, resumed in the run's order."""
    result = train("--out", run, "--resume", "--modalities", "text,dna")
    assert result.exit_code == 0, result.output
    assert "(dna+text)" in result.output and "resumed at step 2" in result.output


def test_a_run_started_with_relative_paths_resumes_from_another_folder(data, tmp_path, monkeypatch):
    """args.json keeps --data (and a --model path) absolute: `--out` alone finds them from anywhere; an
    earlier clibd's relative --data is said to be relative to where the run was started."""
    (tmp_path / "project").mkdir(), (tmp_path / "elsewhere").mkdir()
    shutil.copy(data, tmp_path / "project" / "bold.h5")
    monkeypatch.chdir(tmp_path / "project")
    assert train(*RUN, "--data", "bold.h5", "--out", "run").exit_code == 0
    assert json.loads(Path("run/args.json").read_text())["args"]["data"] == str(tmp_path / "project" / "bold.h5")
    monkeypatch.chdir(tmp_path / "elsewhere")
    resumed = train("--out", tmp_path / "project" / "run", "--resume")
    assert resumed.exit_code == 0, resumed.output
    record = json.loads((tmp_path / "project" / "run" / "args.json").read_text())
    record["args"]["data"] = "bold.h5"  # as an earlier clibd kept it
    (tmp_path / "project" / "run" / "args.json").write_text(json.dumps(record))
    older = train("--out", tmp_path / "project" / "run", "--resume")
    assert older.exit_code == 2 and "the run's bold.h5 (relative to where the run was started) is not there" \
        in older.output, older.output

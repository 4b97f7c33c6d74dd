"""`clibd train`: learning, run directory, exact resume, 1 vs 2 processes, errors, LoRA/freeze."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from clibd_cli.data.store_writer import DatasetWriter
from clibd_cli.data.synthetic import select_records, write_synthetic_dataset
from clibd_cli.main import cli
from clibd_cli.training import loop
from clibd_cli.training.datasets import GlobalBatchSampler, SpecimenDataset
from clibd_cli.distributed import World, detect
from fixtures.samples import BOLD_CSV, bold_table
from models import create_model, load_model
from models.config import PRESET_DIR

CLIBD = str(Path(sys.executable).with_name("clibd"))


def write_bold(path: Path, splits: tuple[str, ...] | None = None, every_nth_without_barcode: int = 0,
               every_nth: int = 1) -> Path:
    """Real BOLD barcodes of 30 species (a third unseen) plus species-less pretrain records; no
    images; only the records of ``splits`` if given, only every n-th record, every n-th record
    without its barcode if asked."""
    with DatasetWriter(path, {"source": "test sample of BOLD"}) as writer:
        for i, row in enumerate(select_records(bold_table()[1], n_species=30, per_species=10, seed=0)):
            if (splits is None or row["split"] in splits) and i % every_nth == 0:
                dropped = every_nth_without_barcode and i % every_nth_without_barcode == 0
                record = {"processid": row["processid"], "barcode": None if dropped else row["dna_barcode"],
                          **{k: row[k] or None for k in ("order", "family", "genus", "species")}}
                writer.add(row["split"], record)
    return path


@pytest.fixture(scope="module")
def bold_h5(tmp_path_factory) -> Path:
    return write_bold(tmp_path_factory.mktemp("data") / "bold.h5")


@pytest.fixture(scope="module")
def synthetic_h5(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "synthetic.h5"
    write_synthetic_dataset(path, n_species=12, images_per_species=6, image_size=48, bold_csv=BOLD_CSV)
    return path


@pytest.fixture(scope="module")
def no_dropout(tmp_path_factory) -> Path:
    """clibd-tiny without dropout: processes then share no random noise, so losses can match."""
    config = json.loads((Path(loop.__file__).parents[2] / "models/configs/clibd-tiny.json").read_text())
    for tower in ("dna", "text"):
        config[tower]["dropout"] = 0.0
    path = tmp_path_factory.mktemp("config") / "tiny-no-dropout.json"
    path.write_text(json.dumps(config))
    return path


def train(*args: str, threads: int = 1):
    return CliRunner().invoke(cli, ["--threads", str(threads), "train", "--workers", "0", "--log-every", "1",
                                    *map(str, args)])


def losses(run: Path) -> list[float]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [line["loss"] for line in lines if line["kind"] == "train"]


def test_global_batches_are_the_same_for_any_number_of_processes():
    one = GlobalBatchSampler(100, 8, World(), seed=3)
    two = [GlobalBatchSampler(100, 4, World(rank, rank, 2), seed=3) for rank in (0, 1)]
    for epoch in (0, 1):
        for sampler in (one, *two):
            sampler.set_epoch(epoch)
        batches = list(one)
        assert len(batches) == 12 and len({i for b in batches for i in b}) == 96
        assert [a + b for a, b in zip(*two)] == batches  # rank 0's slice, then rank 1's
    first_epoch = [b for s in [GlobalBatchSampler(100, 8, World(), seed=3)] for b in s]
    assert first_epoch != batches  # set_epoch reshuffles
    one.set_epoch(1, start=5)
    assert list(one) == batches[5:] and len(one) == 7
    accumulating = GlobalBatchSampler(100, 8, World(), seed=3, multiple_of=5)  # 12 global batches: 10 kept
    assert accumulating.batches_per_epoch == 10 and len(list(accumulating)) == 10


def test_the_schedule_warms_up_over_the_asked_share_then_anneals_to_lr_over_25e4():
    from clibd_cli.training.optim import create_optimizer, create_schedule

    optimizer = create_optimizer(torch.nn.Linear(2, 2), 1e-3, 0.01)
    schedule = create_schedule(optimizer, 1e-3, 100, warmup=0.1)
    rates = []
    for _ in range(100):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(1e-3 / 25) and max(range(100), key=rates.__getitem__) == 9  # the 10th step
    assert rates[-1] == pytest.approx(1e-3 / 25e4)  # the last step's


def test_environment_detection():
    assert detect({}) == World(0, 0, 1)
    assert detect({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == World(3, 1, 4, launched=True)
    assert detect({"RANK": "0", "WORLD_SIZE": "1"}).enabled  # torchrun of one: a process group of one
    assert detect({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}) == World(5, 1, 8)
    assert detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == World(0, 0, 1)



@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_sigterm_to_the_whole_process_group_stops_as_one(bold_h5, tmp_path, signum):
    """`timeout` and Slurm signal every process of the job, data-loading workers too: the run still
    stops after the step, saves last/ and exits 143 (not an internal error about a killed worker);
    a hang-up (a closed terminal or SSH session) the same, exit 129.
    Signalled only once two steps are logged (under load start-up may take long); a run left over
    by a failure is killed, its worker with it."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "clibd_cli", "--threads", "1", "train", "--model", "clibd-tiny",
                             "--data", str(bold_h5), "--modalities", "dna,text", "--batch-size", "8",
                             "--max-steps", "100000", "--workers", "1", "--log-every", "1", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = out / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline and not (
                metrics.exists() and metrics.read_text().count("\n") >= 2):
            time.sleep(0.05)
        assert proc.poll() is None, f"train ended before it could be terminated: {proc.communicate()[1]}"
        assert metrics.read_text().count("\n") >= 2, "no two steps logged in 180 s"
        os.killpg(proc.pid, signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signum, stderr
    assert "--resume" in stderr and "internal error" not in stderr
    assert (out / "last" / "train_state.pt").exists()


def test_no_weight_decay_on_norms_biases_and_logit_scale():
    from clibd_cli.training.optim import create_optimizer

    model = create_model("clibd-tiny")
    decay, plain = create_optimizer(model, 1e-3, 0.01).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    plain_names = {names[id(p)] for p in plain["params"]}
    assert decay["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert "logit_scale" in plain_names
    assert all(n.endswith("bias") or "norm" in n.lower() or "logit" in n or "cls_token" in n
               for n in plain_names)
    assert all(p.ndim >= 2 for p in decay["params"])


def test_validation_matches_each_query_to_its_nearest_key():
    from clibd_cli.training.validation import nearest

    nan = float("nan")
    keys = torch.tensor([[1.0, 0.0], [nan, nan], [0.0, 2.0], [-1.0, 0.0]])  # row 1: a record without it
    queries = torch.tensor([[0.9, 0.1], [nan, nan], [-0.2, 3.0], [-5.0, -1.0], [0.3, 0.2]])
    found = nearest(queries, keys, chunk=2)  # by cosine, in chunks of 2 queries
    assert found.query.tolist() == [0, 2, 3, 4] and found.key.tolist() == [0, 2, 3, 0]


def test_validation_leaves_out_the_records_without_the_modality(tmp_path):
    from clibd_cli.training.validation import Validation

    data = write_bold(tmp_path / "gaps.h5", every_nth_without_barcode=3)
    model = create_model("clibd-tiny", modalities=("dna", "text"))
    validation = Validation.for_dataset(str(data), ("dna", "text"), model, detect(), batch_size=8, workers=0)
    for name, records in validation.sets.items():
        vectors = validation._embed(records, validation.records[name]).vectors["dna"]
        without = [not barcode for barcode in records.labels("barcode")]
        assert any(without) and torch.isnan(vectors).any(dim=1).tolist() == without
    scores = validation.run()
    macro = [(scores[f"dna-dna.{rank}.macro.seen"], scores[f"dna-dna.{rank}.macro.unseen"],
              scores[f"dna-dna.{rank}.macro.hm"]) for rank in ("order", "family", "genus", "species")]
    assert any(seen != unseen for seen, unseen, _ in macro)
    assert all(hm == pytest.approx(2 * seen * unseen / (seen + unseen) if seen + unseen else 0.0)
               for seen, unseen, hm in macro)


def test_tiny_model_learns_on_real_barcodes(bold_h5, tmp_path):
    run = tmp_path / "run"
    result = train("--model", "clibd-tiny", "--data", bold_h5, "--out", run, "--modalities", "dna,text",
                   "--epochs", "3", "--batch-size", "16", "--lr", "1e-3")
    assert result.exit_code == 0, result.output
    trajectory = losses(run)
    assert len(trajectory) == 42
    assert sum(trajectory[-5:]) / 5 < sum(trajectory[:5]) / 5 - 0.1
    assert {p.name for p in run.iterdir()} == {"args.json", "metrics.jsonl", "best", "last"}
    vals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if '"val"' in line]
    assert len(vals) == 3 and all(0 <= v["dna-dna.species.macro.hm"] <= 1 for v in vals)
    assert load_model(run / "best").extra["training"]["best_metric"] == "dna-dna.species.macro.hm"
    # best/ holds the weights of a validation with the highest metric (ties: any of them)
    values = [v["dna-dna.species.macro.hm"] for v in vals]
    best = load_model(run / "best")
    assert best.extra["training"]["step"] in [v["step"] for v in vals if v["dna-dna.species.macro.hm"] == max(values)]
    assert best.extra["training"]["best"] == pytest.approx(max(values))
    assert (best.fingerprint() == load_model(run / "last").fingerprint()) == (
        best.extra["training"]["step"] == vals[-1]["step"])
    # and the weights learned to align barcodes with labels: held-out barcodes of seen species
    # (val, test) find their species' label string among the training labels (untrained: ~1/20)
    assert _label_accuracy(load_model(run / "last"), bold_h5) >= 0.35  # 15 of 26 here; untrained: 1
    assert load_model(run / "last").modalities == ("dna", "text")
    args = json.loads((run / "args.json").read_text())
    assert args["args"]["batch_size"] == 16 and args["world_size"] == 1
    assert args["command"][:4] == ["clibd", "--threads", "1", "train"] and "--resume" not in args["command"]


def test_best_is_the_step_with_the_highest_validation_metric(bold_h5, tmp_path, monkeypatch):
    from clibd_cli.training.validation import Validation

    scripted = iter([0.2, 0.6, 0.4])  # the metric at steps 2, 4, 6: best at step 4, not the last
    monkeypatch.setattr(Validation, "run", lambda self: {"dna-dna.species.macro.hm": next(scripted)})
    run = tmp_path / "run"
    result = train("--model", "clibd-tiny", "--data", bold_h5, "--out", run, "--modalities", "dna,text",
                   "--batch-size", "8", "--max-steps", "6", "--val-every", "2")
    assert result.exit_code == 0, result.output
    best = load_model(run / "best")
    assert best.extra["training"]["step"] == 4 and best.extra["training"]["best"] == 0.6
    assert best.fingerprint() != load_model(run / "last").fingerprint()


def _label_accuracy(model, data: Path) -> float:
    """Share of val+test barcodes whose nearest training label string (DNA → text) is their species'."""
    import numpy as np

    from clibd_cli.data.store import open_dataset
    from clibd_cli.embedding.embedder import Embedder
    from models.tokenizers import label_string

    ranks = ("order", "family", "genus", "species")
    with open_dataset(data) as ds:
        train, held_out = ds.split("train"), ds.splits_union(["val", "test"])
        lineages = sorted({tuple(train.ranks(i)[r] for r in ranks) for i in range(len(train))})
        barcodes, truth = held_out.column("barcode"), [held_out.ranks(i)["species"] for i in range(len(held_out))]
    embedder = Embedder(model, "cpu", 64, "fp32")
    sims = embedder.barcodes(barcodes) @ embedder.labels([label_string(dict(zip(ranks, l))) for l in lineages]).T
    return float(np.mean([lineages[j][3] == t for j, t in zip(sims.argmax(axis=1), truth)]))


def test_kmer_bag_learns_with_label_positives_and_dna_dna_term(bold_h5, tmp_path):
    run = tmp_path / "run"
    dna = {"tower": "kmer-bag", "ks": [4, 5], "bag_dim": 16, "hidden_size": 32}
    config = tmp_path / "bag.json"
    config.write_text(json.dumps({**json.loads((PRESET_DIR / "clibd-tiny.json").read_text()), "dna": dna}))
    result = train("--model", config, "--data", bold_h5, "--out", run, "--modalities", "dna,text",
                   "--epochs", "3", "--batch-size", "16", "--lr", "3e-3", "--positives", "label",
                   "--dna-dna", "0.5")
    assert result.exit_code == 0, result.output
    trajectory = losses(run)
    assert sum(trajectory[-5:]) / 5 < sum(trajectory[:5]) / 5 - 0.1
    assert load_model(run / "best").config["dna"]["tower"] == "kmer-bag"
    args = json.loads((run / "args.json").read_text())["args"]
    assert args["positives"] == "label" and args["dna_dna"] == 0.5
    bad = train("--model", config, "--data", bold_h5, "--out", tmp_path / "bad", "--modalities", "dna,text",
                "--dna-dna", "1")
    assert bad.exit_code != 0 and "needs --positives label" in bad.output


def test_photos_are_augmented_anew_each_epoch_and_alike_after_a_resume(synthetic_h5):
    model = create_model("clibd-tiny")

    def photo(epoch: int) -> torch.Tensor:
        data = SpecimenDataset(synthetic_h5, ["train"], ["image"], model, train=True, seed=0)
        data.epoch = epoch
        return data[0]["image"]

    assert torch.equal(photo(0), photo(0)) and not torch.equal(photo(0), photo(1))


def test_each_epoch_reads_its_records_as_that_epoch(bold_h5, tmp_path, monkeypatch):
    """The loop tells the dataset the epoch: a barcode cut by --dna-crop (a photo augmented) differs by epoch."""
    epochs = set()
    read = SpecimenDataset.__getitem__

    def reading(self, index):
        epochs.add((self.train, self.epoch))
        return read(self, index)

    monkeypatch.setattr(SpecimenDataset, "__getitem__", reading)
    result = train("--model", "clibd-tiny", "--data", bold_h5, "--modalities", "dna,text", "--epochs", "3",
                   "--batch-size", "64", "--val-limit", "8", "--dna-crop", "0.3", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert {epoch for train_set, epoch in epochs if train_set} == {0, 1, 2}
    rates = [line["lr"] for line in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
             if line["kind"] == "train"]
    assert rates[0] == pytest.approx(5e-4 / 25) and rates[-1] == pytest.approx(5e-4 / 25e4)  # each step's own


def test_interrupted_run_resumes_to_the_same_weights(synthetic_h5, tmp_path):
    """Ctrl-C saves last/; --resume finishes with the weights of an uninterrupted run (images too)."""
    common = ["--model", "clibd-tiny", "--data", synthetic_h5, "--modalities", "image,dna,text",
              "--epochs", "4", "--batch-size", "8", "--val-every", "5", "--val-limit", "30"]
    straight = train(*common, "--out", tmp_path / "straight")
    assert straight.exit_code == 0, straight.output

    run = tmp_path / "interrupted"

    def interrupt_after_three_steps():
        metrics = run / "metrics.jsonl"
        while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_after_three_steps, daemon=True).start()
    stopped = train(*common, "--out", run)
    assert stopped.exit_code == 130 and "--resume" in stopped.output, stopped.output
    step = torch.load(run / "last" / "train_state.pt", weights_only=True)["step"]
    assert 3 <= step < 24
    again = train(*common, "--out", run)  # without --resume: a usage error, the run kept
    assert again.exit_code == 2 and "holds a previous run; add --resume to continue it" in again.output
    resumed = train(*common, "--out", run, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert load_model(run / "last").fingerprint() == load_model(tmp_path / "straight" / "last").fingerprint()
    assert losses(run) == losses(tmp_path / "straight")


def test_a_resume_between_log_lines_logs_the_losses_of_the_whole_interval(bold_h5, tmp_path, monkeypatch):
    """Interrupted at step 3 of a run logging every 2 steps: the resumed run's step-4 line averages
    steps 3 and 4, as the uninterrupted run's does (it held step 4's loss alone)."""
    common = ["--model", "clibd-tiny", "--data", bold_h5, "--modalities", "dna,text", "--max-steps", "6",
              "--batch-size", "8", "--log-every", "2"]
    straight = train(*common, "--out", tmp_path / "straight")
    assert straight.exit_code == 0, straight.output
    with interrupted_in_step(3, monkeypatch):
        assert train(*common, "--out", tmp_path / "run").exit_code == 130
    resumed = train(*common, "--out", tmp_path / "run", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert losses(tmp_path / "run") == losses(tmp_path / "straight")


def test_ctrl_c_during_validation_stops_at_its_step(bold_h5, tmp_path, monkeypatch):
    """A signal while step 2's validation ran stopped after one more step (3) and saved last/ twice;
    now last/ holds step 2, and --resume still ends as the uninterrupted run."""
    from clibd_cli.training.validation import Validation

    common = ["--model", "clibd-tiny", "--data", bold_h5, "--modalities", "dna,text", "--max-steps", "4",
              "--batch-size", "8", "--val-every", "2", "--val-limit", "20"]
    straight = train(*common, "--out", tmp_path / "straight")
    assert straight.exit_code == 0, straight.output
    validate = Validation.run

    def interrupted(self):
        os.kill(os.getpid(), signal.SIGINT)
        return validate(self)

    monkeypatch.setattr(Validation, "run", interrupted)
    stopped = train(*common, "--out", tmp_path / "run")
    monkeypatch.setattr(Validation, "run", validate)
    assert stopped.exit_code == 130 and "interrupted at step 2 of 4" in stopped.output, stopped.output
    assert torch.load(tmp_path / "run" / "last" / "train_state.pt", weights_only=True)["step"] == 2
    resumed = train(*common, "--out", tmp_path / "run", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert losses(tmp_path / "run") == losses(tmp_path / "straight")


@contextlib.contextmanager
def interrupted_in_step(n: int, monkeypatch):
    """Ctrl-C (SIGINT to this process) during the n-th forward-backward pass of the training loop."""
    step, calls = loop.forward_backward, []

    def interrupting(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGINT)
        return step(*args, **kwargs)

    monkeypatch.setattr(loop, "forward_backward", interrupting)
    yield
    monkeypatch.setattr(loop, "forward_backward", step)


def test_metrics_lines_are_strict_json_with_null_for_nan(tmp_path):
    from clibd_cli.training.run_files import append_metrics

    append_metrics(tmp_path / "metrics.jsonl", {"kind": "val", "step": 1, "a": float("nan"), "b": float("inf"),
                                                "c": 0.5})

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    line = json.loads((tmp_path / "metrics.jsonl").read_text(), parse_constant=refuse)
    assert line == {"kind": "val", "step": 1, "a": None, "b": None, "c": 0.5}


def test_resume_finds_last_where_a_crash_while_replacing_it_left_it(tmp_path):
    from clibd_cli.training.state import STATE_FILE, last_checkpoint

    assert last_checkpoint(tmp_path) is None
    moved = tmp_path / ".last.old3x7q" / "last"  # models.files moved it aside; the new one is not in place
    moved.mkdir(parents=True)
    (moved / STATE_FILE).write_bytes(b"")
    assert last_checkpoint(tmp_path) == moved
    (tmp_path / "last").mkdir()
    (tmp_path / "last" / STATE_FILE).write_bytes(b"")
    assert last_checkpoint(tmp_path) == tmp_path / "last"


def test_resuming_drops_later_and_half_written_metrics_lines(tmp_path):
    from clibd_cli.training.run_files import keep_metrics

    metrics = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"kind": "train", "step": step}) for step in (1, 2, 3)]
    metrics.write_text("\n".join(lines) + '\n{"kind": "train", "st')  # a run killed while writing
    keep_metrics(metrics, up_to_step=2)
    assert metrics.read_text().splitlines() == lines[:2]


@pytest.mark.slow
def test_two_processes_follow_the_one_process_trajectory(bold_h5, no_dropout, tmp_path):
    common = ["--model", str(no_dropout), "--data", str(bold_h5), "--modalities", "dna,text", "--epochs", "1",
              "--max-steps", "8", "--log-every", "1", "--workers", "0"]
    one = train(*common[:-2], "--out", tmp_path / "one", "--batch-size", "16")
    assert one.exit_code == 0, one.output
    two = subprocess.run([CLIBD, "--threads", "1", "train", "--nproc-per-node", "2", *common,
                          "--out", str(tmp_path / "two"), "--batch-size", "8"],
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), abs=1e-5)
    a, b = (load_model(tmp_path / name / "last").state_dict() for name in ("one", "two"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert json.loads((tmp_path / "two" / "args.json").read_text())["world_size"] == 2
    # validation: each process embeds a share of the records, put back in order before scoring
    one, two = ([json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
                for name in ("one", "two"))
    vals = [[line for line in lines if line["kind"] == "val"] for lines in (one, two)]
    assert vals[0] and vals[1] == vals[0]


def test_a_refused_run_stops_every_srun_process_quietly(bold_h5, no_dropout, tmp_path):
    """Under srun every process is started alike and only rank 0 takes --out's lock: when a run
    already holds it, every rank stops at once (exit 1), rank 0 saying why, instead of the others
    running into their first collective (gloo: an internal error once rank 0 has left; NCCL:
    waiting until it times out)."""
    import socket

    from clibd_cli.io.outputs import writer_lock

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    command = [CLIBD, "--threads", "1", "train", "--model", str(no_dropout), "--data", str(bold_h5),
               "--modalities", "dna,text", "--max-steps", "2", "--workers", "0", "--out", str(tmp_path / "run")]
    with writer_lock(tmp_path / "run"):  # the run already writing there
        ranks = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
                                       "SLURM_NTASKS": "2", "MASTER_PORT": str(port)})
                 for rank in (0, 1)]
        try:
            codes = [rank.wait(timeout=180) for rank in ranks]
        finally:
            for rank in ranks:
                rank.kill()
    errors = [rank.stderr.read() for rank in ranks]
    assert codes == [1, 1]
    assert "another clibd is writing it" in errors[0] and "error" not in errors[1], errors
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_dna_crop_cuts_a_seeded_share_of_training_barcodes_to_stretches_of_themselves(bold_h5):
    import numpy as np

    from clibd_cli.io.sequences import random_stretch

    rng = np.random.default_rng(0)
    whole = bold_table()[1][0]["dna_barcode"]
    stretches = [random_stretch(whole, rng, 200) for _ in range(200)]
    assert all(s in whole and 200 <= len(s) <= len(whole) for s in stretches)
    assert min(map(len, stretches)) < 300 and max(map(len, stretches)) > len(whole) - 60  # the range is used
    assert random_stretch("ACGT", rng, 200) == "ACGT"  # shorter than the shortest stretch: left whole
    assert {len(random_stretch(whole, rng, 150, 499)) for _ in range(100)} <= set(range(150, 500))
    model = create_model("clibd-tiny")

    def barcodes(dna_crop: float, epoch: int = 0, train: bool = True, seed: int = 0) -> list[str]:
        data = SpecimenDataset(bold_h5, ["train"], ["dna", "text"], model, train=train, seed=seed, dna_crop=dna_crop)
        data.epoch = epoch
        return [data[i]["barcode"] for i in range(60)]

    full, cut = barcodes(0.0), barcodes(0.3)
    changed = [a != b for a, b in zip(full, cut)]
    assert 8 <= sum(changed) <= 30 and all(b in a for a, b in zip(full, cut))
    assert cut == barcodes(0.3)  # a function of (seed, epoch, record): the same after a resume
    assert cut != barcodes(0.3, epoch=1) and cut != barcodes(0.3, seed=1)
    assert barcodes(1.0, train=False) == full  # validation reads whole barcodes
    bad = train("--model", "clibd-tiny", "--data", bold_h5, "--out", "unused", "--modalities", "image,text",
                "--dna-crop", "0.3")
    assert bad.exit_code == 2 and "add dna to --modalities" in bad.output


def test_training_reads_a_stored_barcode_as_embed_reads_it(tmp_path):
    """A dataset file not written by clibd prepare (the CLIBD authors' keep alignment gaps) trains
    on the barcodes ``embed`` and ``index`` read: gaps dropped, RNA's U as T."""
    from clibd_cli.data.store import Record

    path = tmp_path / "gapped.h5"
    with DatasetWriter(path) as writer:
        for pid, barcode in (("r0", "AC-GT..ACGU--"), ("r1", "---"), ("r2", "")):
            writer.add("train", Record(pid, barcode=barcode, order="Diptera", species="Aedes aegypti"))
    data = SpecimenDataset(path, ["train"], ["dna", "text"], create_model("clibd-tiny"), train=False)
    assert [data[i]["barcode"] for i in range(3)] == ["ACGTACGT", None, None]


def test_a_dataset_without_any_label_is_refused_before_training_text(tmp_path):
    """Unlabelled barcodes (FASTA without taxonomy) give the text tower nothing to align to: every
    batch was skipped and training ended with loss 0 and exit 0, having learnt nothing. Only one
    labelled record anywhere, past the first chunk read, is enough to train."""
    from clibd_cli.data.store import Record

    barcode = "ACGT" * 50
    path = tmp_path / "unlabelled.h5"
    with DatasetWriter(path) as writer:
        for i in range(40):
            writer.add("train", Record(f"r{i}", barcode=barcode))
    unlabelled = train("--model", "clibd-tiny", "--data", path, "--modalities", "dna,text", "--batch-size", "16",
                       "--out", tmp_path / "a", "--max-steps", "1")
    assert unlabelled.exit_code == 1 and "have no label at any rank" in unlabelled.output
    assert "drop text from --modalities" in unlabelled.output and not (tmp_path / "a").exists()
    with DatasetWriter(tmp_path / "one.h5") as writer:
        for i in range(40):
            writer.add("train", Record(f"r{i}", barcode=barcode, genus="Aedes" if i == 39 else None))
    from clibd_cli.data.store import open_dataset
    from clibd_cli.training.datasets import _labelled

    with open_dataset(tmp_path / "one.h5") as one, open_dataset(path) as none:
        assert _labelled(one.split("train"), chunk=16) and not _labelled(none.split("train"), chunk=16)


def test_clear_errors(bold_h5, tmp_path):
    base = ["--model", "clibd-tiny", "--data", bold_h5, "--batch-size", "16"]
    images = train(*base, "--out", tmp_path / "a", "--modalities", "image,dna")
    assert images.exit_code == 1 and "have no images" in images.output and "--modalities" in images.output
    huge = train(*base[:-2], "--batch-size", "100000", "--out", tmp_path / "b", "--modalities", "dna,text")
    assert huge.exit_code == 1 and "lower --batch-size" in huge.output
    nothing = train(*base, "--out", tmp_path / "c", "--modalities", "dna,text", "--resume")
    assert nothing.exit_code == 2 and "nothing to resume" in nothing.output
    assert train(*base, "--out", tmp_path / "d", "--modalities", "dna").exit_code == 2
    bad_metric = train(*base, "--out", tmp_path / "e", "--modalities", "dna,text", "--best-metric", "x.y")
    assert bad_metric.exit_code == 2 and "dna-dna.species.macro.hm" in bad_metric.output
    absent = train(*base, "--out", tmp_path / "f", "--modalities", "dna,text", "--freeze", "image")
    assert absent.exit_code == 2 and "image is not in --modalities" in absent.output


def test_without_unseen_species_best_is_chosen_by_the_seen_ones(tmp_path):
    """A val split without val_unseen: no harmonic mean, so auto picks best/ by the seen species."""
    data = write_bold(tmp_path / "no_unseen.h5", splits=("train", "val"))
    base = ["--model", "clibd-tiny", "--data", data, "--modalities", "dna,text", "--batch-size", "16",
            "--max-steps", "2"]
    harmonic = train(*base, "--out", tmp_path / "hm", "--best-metric", "dna-dna.species.macro.hm")
    assert harmonic.exit_code == 1 and "has no val_unseen split; choose a .seen metric" in harmonic.output
    auto = train(*base, "--out", tmp_path / "auto")
    assert auto.exit_code == 0, auto.output
    chosen = load_model(tmp_path / "auto" / "best").extra["training"]["best_metric"]
    assert chosen == "dna-dna.species.macro.seen"


def test_an_empty_val_unseen_split_counts_as_none(tmp_path):
    """A val_unseen group of no records (written by another tool) made every harmonic mean NaN, so
    best/ was never chosen; it is read as no val_unseen split."""
    import h5py

    data = write_bold(tmp_path / "empty_unseen.h5", splits=("train", "val", "key_unseen"))
    with h5py.File(data, "a") as f:
        f.create_group("val_unseen").create_dataset("barcode", shape=(0,), dtype=h5py.string_dtype())
    run = train("--model", "clibd-tiny", "--data", data, "--modalities", "dna,text", "--batch-size", "16",
                "--max-steps", "2", "--out", tmp_path / "run")
    assert run.exit_code == 0, run.output
    assert load_model(tmp_path / "run" / "best").extra["training"]["best_metric"] == "dna-dna.species.macro.seen"


def test_a_training_split_of_no_records_is_named_as_such(tmp_path):
    """A train group of no records (written by another tool) said the records 'have no barcodes;
    drop dna from --modalities'; it says the split holds none."""
    import h5py

    data = write_bold(tmp_path / "no_train.h5", splits=("val",))
    with h5py.File(data, "a") as f:
        f.create_group("train").create_dataset("barcode", shape=(0,), dtype=h5py.string_dtype())
    run = train("--model", "clibd-tiny", "--data", data, "--modalities", "dna,text", "--batch-size", "16",
                "--max-steps", "2", "--train-splits", "train", "--out", tmp_path / "run")
    assert run.exit_code == 1 and "split holds no records" in run.output, run.output
    assert "drop dna" not in run.output


def test_without_a_val_split_the_last_line_names_last_not_a_missing_best(tmp_path):
    data = write_bold(tmp_path / "no_val.h5", splits=("train",))
    out = tmp_path / "run"
    result = train("--model", "clibd-tiny", "--data", data, "--modalities", "dna,text", "--batch-size", "16",
                   "--max-steps", "2", "--out", out)
    assert result.exit_code == 0, result.output
    assert not (out / "best").exists() and (out / "last").is_dir()
    assert f"the model is {out}/last" in result.output and f"{out}/best)" not in result.output


def test_out_of_memory_suggests_a_smaller_batch(bold_h5, tmp_path, monkeypatch):
    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop, "forward_backward", no_memory)
    result = train("--model", "clibd-tiny", "--data", bold_h5, "--out", tmp_path / "run", "--modalities",
                   "dna,text", "--batch-size", "16")
    assert result.exit_code == 1
    assert "out of memory at batch size 16; try --batch-size 8" in result.output



def test_a_diverging_run_stops_with_an_error_and_infinite_options_are_refused(bold_h5, tmp_path):
    """--lr 1e30 makes the loss nan: exit 1 naming --lr, not exit 0 pointing at a best/ never
    written; --lr inf is a usage error."""
    base = ["--model", "clibd-tiny", "--data", bold_h5, "--modalities", "dna,text", "--batch-size", "16",
            "--max-steps", "3"]
    diverged = train(*base, "--lr", "1e30", "--out", tmp_path / "a")
    assert diverged.exit_code == 1 and "training diverged; lower --lr (now 1e+30)" in diverged.output
    infinite = train(*base, "--lr", "inf", "--out", tmp_path / "b")
    assert infinite.exit_code == 2 and "is not a finite number" in infinite.output

def test_freeze_and_lora_write_plain_model_directories(bold_h5, tmp_path):
    base = ["--model", "clibd-tiny", "--data", bold_h5, "--modalities", "dna,text", "--batch-size", "16",
            "--max-steps", "3"]
    frozen = train(*base, "--out", tmp_path / "frozen", "--freeze", "dna")
    assert frozen.exit_code == 0, frozen.output
    torch.manual_seed(0)
    start = create_model("clibd-tiny", modalities=("dna", "text")).state_dict()
    after = load_model(tmp_path / "frozen" / "last").state_dict()
    assert all(torch.equal(start[k], after[k]) for k in start if k.startswith("dna_encoder.bert."))
    assert not torch.equal(start["dna_encoder.proj.weight"], after["dna_encoder.proj.weight"])
    assert not torch.equal(start["text_encoder.bert.embeddings.word_embeddings.weight"],
                           after["text_encoder.bert.embeddings.word_embeddings.weight"])

    lora = train(*base, "--out", tmp_path / "lora", "--lora", "2")
    assert lora.exit_code == 0, lora.output
    merged = load_model(tmp_path / "lora" / "last").state_dict()  # a plain model: adapters folded in
    query = "dna_encoder.bert.encoder.layer.0.attention.self.query.weight"
    key = "dna_encoder.bert.encoder.layer.0.attention.self.key.weight"
    assert not torch.equal(start[query], merged[query]) and torch.equal(start[key], merged[key])
    # last/'s optimiser state fits only the parameters the run trained
    other = train(*base, "--out", tmp_path / "lora", "--resume", "--freeze", "dna")
    assert other.exit_code == 2
    assert "the options disagree with the run's: --freeze dna (the run's: '')" in other.output
    # a resume that plans another number of steps names --max-steps, the option most often changed
    shorter = train(*base, "--out", tmp_path / "lora", "--resume", "--lora", "2", "--max-steps", "2")
    assert shorter.exit_code == 2
    assert "the run planned 3 steps, this command 2; resume with its --max-steps," in shorter.output
    # the same --max-steps with another global batch or --grad-accum plans as many steps of other data
    for other in (["--batch-size", "8"], ["--grad-accum", "2"]):
        changed = train(*base, *other, "--out", tmp_path / "lora", "--resume", "--lora", "2")
        assert changed.exit_code == 2, changed.output
        assert "the run took global batches of 16 (1 micro-batch a step)" in changed.output


def test_freeze_and_lora_take_a_kmer_bag_towers_kmer_table_for_its_backbone():
    from clibd_cli.training.adapt import add_lora, freeze_backbones

    model = create_model("clibd-fast", modalities=("dna", "text"))  # kmer-bag DNA tower, BERT text tower
    freeze_backbones(model, ("dna",))
    assert not model.dna_encoder.kmers.weight.requires_grad
    assert model.dna_encoder.mlp[0].weight.requires_grad
    add_lora(model, 2)
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    assert "dna_encoder.mlp.0.weight" in trainable and "dna_encoder.kmers.weight" not in trainable
    assert any(name.startswith("text_encoder.bert.") and ".lora_" in name for name in trainable)


def test_lora_merge_matches_the_adapted_model():
    from clibd_cli.training.adapt import add_lora, merged

    torch.manual_seed(0)
    model = create_model("clibd-tiny")
    add_lora(model, 2)
    for name, param in model.named_parameters():
        if ".lora_b" in name:
            torch.nn.init.normal_(param)
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} >= {"logit_scale"}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(".lora_" in n or ".proj." in n or n == "logit_scale" for n in trainable)
    plain = merged(model)
    # the ViT's fused qkv projection is adapted on its query and value thirds, not on the key
    name, adapted = next((n, m) for n, m in model.named_modules() if n.endswith("attn.qkv"))
    changed = (dict(plain.named_modules())[name].weight - adapted.base.weight).abs().sum(dim=1) > 0
    third = len(changed) // 3
    assert changed[:third].all() and not changed[third:2 * third].any() and changed[2 * third:].all()
    tokens = model.tokenize_dna(["ACGT" * 50, "GATTACA"])
    batch = {"image": torch.rand(2, 3, 32, 32), **{f"dna_{k}": v for k, v in tokens.items()}}
    out_adapted, out_plain = model(batch), plain(batch)
    for m in ("image", "dna"):
        assert torch.allclose(out_adapted[m], out_plain[m], atol=1e-5)


def test_lora_state_resumes_the_adapted_model(tmp_path):
    """last/ holds merged weights; --resume puts back the adapters and the unmerged weights under them."""
    from clibd_cli.training.adapt import adapter_state, add_lora, load_adapter_state, merged
    from models import save_model

    torch.manual_seed(0)
    model = create_model("clibd-tiny", modalities=("dna", "text"))
    add_lora(model, 2)
    for name, param in model.named_parameters():
        if ".lora_b" in name:
            torch.nn.init.normal_(param)
    resumed = load_model(save_model(merged(model), tmp_path / "last"))
    add_lora(resumed, 2)
    load_adapter_state(resumed, adapter_state(model))
    batch = {f"dna_{k}": v for k, v in model.tokenize_dna(["ACGT" * 50, "GATTACA"]).items()}
    with torch.no_grad():
        assert torch.allclose(resumed(batch)["dna"], model(batch)["dna"], atol=1e-6)


def test_gradient_accumulation_and_bf16_autocast(bold_h5, no_dropout, tmp_path):
    # lr 1e-12 leaves every weight as it was (AdamW moves each by ~lr): each micro-batch's loss is
    # that of the initial model, so runs with and without --grad-accum can be compared batch by batch
    common = ["--model", no_dropout, "--data", bold_h5, "--modalities", "dna,text", "--batch-size", "8",
              "--lr", "1e-12", "--val-limit", "10"]
    runs = {"plain": ["--max-steps", "6"], "accum": ["--grad-accum", "2", "--max-steps", "3"],
            "bf16": ["--grad-accum", "2", "--max-steps", "3", "--precision", "bf16"]}
    for name, extra in runs.items():
        result = train(*common, *extra, "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
    plain = losses(tmp_path / "plain")
    # one step of --grad-accum 2 is two micro-batches of 8 (each its own contrastive batch), in the same order
    assert losses(tmp_path / "accum") == pytest.approx([(plain[i] + plain[i + 1]) / 2 for i in (0, 2, 4)], abs=1e-6)
    bf16 = losses(tmp_path / "bf16")
    assert bf16 == pytest.approx(losses(tmp_path / "accum"), abs=0.05) and bf16 != losses(tmp_path / "accum")
    state = torch.load(tmp_path / "accum" / "last" / "train_state.pt", weights_only=True)
    assert state["step"] == 3 and state["batch"] == 6 and state["total_steps"] == 3


def test_default_splits_fit_a_file_prepared_from_labelled_fasta(tmp_path):
    """Every record has a species: no `pretrain` split; the default trains on `train` alone
    (an explicit missing split is still an error)."""
    from fixtures.specimens import run

    rows = [r for r in bold_table()[1] if r["split"] == "train" and r["species"]][:300]
    fasta = tmp_path / "mine.fa"
    fasta.write_text("".join(f">{r['processid']};tax=o:{r['order']},f:{r['family']},g:{r['genus']},"
                             f"s:{r['species'].replace(' ', '_')};\n{r['dna_barcode']}\n" for r in rows))
    assert run("prepare", fasta, "--seed", "1", "-o", tmp_path / "mine.h5").exit_code == 0
    base = ["--model", "clibd-tiny", "--data", tmp_path / "mine.h5", "--modalities", "dna,text",
            "--batch-size", "4", "--max-steps", "1", "--val-limit", "4"]
    result = train(*base, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "args.json").read_text())["args"]["train_splits"] == ["train"]
    named = train(*base, "--out", tmp_path / "run2", "--train-splits", "pretrain,train")
    assert named.exit_code == 2 and "no split 'pretrain'" in named.output
    # a usage error came after "training on train: mine.h5 has no pretrain split", as if training had begun
    for refused, why in ((train(*base, "--out", tmp_path / "run"), "holds a previous run; add --resume"),
                         (train(*base, "--out", tmp_path / "run3", "--best-metric", "bogus"), "is not reported for")):
        assert refused.exit_code == 2 and why in refused.output and "no pretrain split" not in refused.output


def test_out_must_be_a_new_empty_or_run_folder(tmp_path):
    """`--out` into a folder of other files is refused (exit 2), as `index -o` is: a run writes
    best/, last/, args.json and metrics.jsonl there."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("a user's file")
    data = tmp_path / "x.h5"
    data.write_bytes(b"")
    result = train("--model", "clibd-tiny", "--data", data, "--out", tmp_path / "mine")
    assert result.exit_code == 2 and "not an earlier output of this command" in result.output
    assert (tmp_path / "mine" / "keep.txt").read_text() == "a user's file"


def test_a_second_run_into_the_same_out_is_refused_while_the_first_trains(bold_h5, tmp_path):
    """Two runs into one --out both trained, their metrics.jsonl lines interleaved and best/ and
    last/ from whichever saved last (both exit 0). Now the second stops at once."""
    from clibd_cli.io.outputs import writer_lock

    with writer_lock(tmp_path / "run"):  # the first run holds it
        second = train("--model", "clibd-tiny", "--data", bold_h5, "--modalities", "dna,text",
                       "--batch-size", "16", "--out", tmp_path / "run")
    assert second.exit_code == 1 and "run: another clibd is writing it" in second.output, second.output
    assert not (tmp_path / "run").exists()
    (tmp_path / "run").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "run")
    for other_name in (tmp_path / "link", tmp_path / "run" / ".." / "run"):  # the same folder, written otherwise
        with writer_lock(tmp_path / "run"):
            second = train("--model", "clibd-tiny", "--data", bold_h5, "--modalities", "dna,text",
                           "--batch-size", "16", "--out", other_name)
        assert second.exit_code == 1 and "another clibd is writing it" in second.output, (other_name, second.output)

"""Options and behaviours the README documents, each checked for its effect (not only exit 0).

Most run on the model-free k-mer index (real BOLD barcodes, no neural network): fast, and its
answers follow the barcodes' real similarities.
"""

from __future__ import annotations

import bz2
import json
import lzma
import os
import signal
from pathlib import Path

import pytest

from clibd_cli.data.store import Record
from clibd_cli.data.store_writer import DatasetWriter
from fixtures.specimens import run, specimens, tsv, write_fasta

RANKS = ("order", "family", "genus", "species")


@pytest.fixture(scope="module")
def bold(tmp_path_factory):
    """12 species x 4 real barcodes: 3 of each species in ``train``, 1 in ``val``; 2 species held
    back whole (``val_unseen``); as a FASTA (train) and a dataset HDF5 (every split)."""
    root = tmp_path_factory.mktemp("readme_options")
    records = specimens(n_species=12, per_species=4, unnamed=0)
    species = sorted({r.lineage["species"] for r in records})
    unseen = set(species[-2:])
    splits, count = {}, {}
    for r in records:
        name = r.lineage["species"]
        count[name] = count.get(name, 0) + 1
        splits[r.id] = "val_unseen" if name in unseen else ("val" if count[name] == 4 else "train")
    data = root / "bold.h5"
    with DatasetWriter(data) as writer:
        for r in records:
            writer.add(splits[r.id], Record(r.id, barcode=r.barcode, **r.lineage))
    train = [r for r in records if splits[r.id] == "train"]
    return {"root": root, "records": records, "splits": splits, "data": data, "train": train,
            "fasta": write_fasta(root / "train.fasta", train),
            "val": [r for r in records if splits[r.id] == "val"]}


def _index(bold, name: str, *args) -> Path:
    out = bold["root"] / name
    result = run("-q", "index", "-m", "kmer", *args, "-o", out)
    assert result.exit_code == 0, result.stderr
    return out


def _calibration(index) -> dict:
    return json.loads((index / "calibration.json").read_text())["dna"]


def _species_conf(index, queries) -> list[float]:
    rows = tsv(run("classify", "-i", index, queries).stdout)
    return [float(row["species_conf"]) for row in rows]


def test_prior_unseen_moves_the_confidences(bold):
    queries = write_fasta(bold["root"] / "val.fasta", bold["val"], sintax=False)
    conf = {prior: _species_conf(_index(bold, f"prior{prior}", bold["fasta"], "--prior-unseen", prior), queries)
            for prior in (0.05, 0.95)}
    assert _calibration(bold["root"] / "prior0.05")["prior_unseen"] == 0.05
    # a query mix with fewer absent species makes a seen species' label more likely right
    assert all(a >= b - 1e-4 for a, b in zip(conf[0.05], conf[0.95])) and sum(conf[0.05]) > sum(conf[0.95]) + 0.1


def test_dataset_splits_and_calibration_on_held_out_splits(bold):
    index = _index(bold, "from_h5", bold["data"], "--split", "train", "--split", "val")
    manifest = json.loads((index / "manifest.json").read_text())
    in_order = [r.id for r in bold["records"] if bold["splits"][r.id] == "train"] + [r.id for r in bold["val"]]
    assert manifest["count"] == len(in_order)
    assert [line.split("\t")[0] for line in (index / "records.tsv").read_text().splitlines()[1:]] == in_order
    # val_unseen alone lacks seen species: the held-out fit refuses it, naming what it needs
    assert "must include both species in the reference and species absent" in run(
        "index", "-m", "kmer", bold["data"], "--split", "train", "--calibrate-on", bold["data"],
        "--calibrate-split", "val_unseen", "-o", bold["root"] / "x").stderr
    index = _index(bold, "held_out", bold["data"], "--split", "train", "--calibrate-on", bold["data"],
                   "--calibrate-split", "val", "--calibrate-split", "val_unseen")
    n_unseen = sum(split == "val_unseen" for split in bold["splits"].values())
    assert _calibration(index)["fitted_on"]["held_out_queries"] == [len(bold["val"]), n_unseen]


def test_hnsw_options_are_recorded_and_used(bold):
    index = _index(bold, "hnsw", bold["fasta"], "--M", "8", "--ef-construction", "40", "--ef", "16")
    manifest = json.loads((index / "manifest.json").read_text())
    assert {k: manifest["hnsw"][k] for k in ("M", "ef_construction", "ef")} == {"M": 8, "ef_construction": 40,
                                                                               "ef": 16}
    assert "HNSW: M=8 ef_construction=40 ef=16" in run("index", "info", index).stdout
    queries = write_fasta(bold["root"] / "q.fasta", bold["val"], sintax=False)
    default = run("classify", "-i", index, queries).stdout
    assert run("classify", "-i", index, "--ef", "200", queries).stdout == default  # 36 records: exact either way
    assert run("classify", "-i", index, "--ef", "0", queries).exit_code == 2


def test_append_keeps_the_indexs_neighbours_and_prior_unseen(bold):
    """``index --append`` refitted the index's own calibration with -k 50 and an estimated share of
    new species, the build defaults, whatever the index was built with (its dna<500 calibration,
    kept, still had them: two settings in one index); it keeps the index's unless given."""
    index = _index(bold, "append_keeps", bold["fasta"], "-k", "7", "--prior-unseen", "0.3")
    half = len(bold["val"]) // 2
    for name, records, given, expected in (("a", bold["val"][:half], (), (7, 0.3)),
                                           ("b", bold["val"][half:], ("-k", "9", "--prior-unseen", "0.6"), (9, 0.6))):
        more = write_fasta(bold["root"] / f"append_{name}.fasta", records)
        result = run("-q", "index", more, "--append", *given, "-o", index)
        assert result.exit_code == 0, result.stderr
        assert (_calibration(index)["k"], _calibration(index)["prior_unseen"]) == expected


@pytest.mark.parametrize("compress", [bz2.compress, lzma.compress], ids=["bzip2", "xz"])
def test_compressed_stdin(bold, compress):
    queries = write_fasta(bold["root"] / "stdin.fasta", bold["val"], sintax=False)
    index = bold["root"] / "stdin_index"
    if not index.exists():
        _index(bold, "stdin_index", bold["fasta"])
    plain = run("classify", "-i", index, queries)
    packed = run("classify", "-i", index, "-", input=compress(queries.read_bytes()))
    assert packed.exit_code == 0, packed.stderr
    assert packed.stdout == plain.stdout and len(tsv(plain.stdout)) == len(bold["val"])


def test_sigterm_stops_training_after_the_step(monkeypatch):
    """The handler ``clibd train`` installs: SIGTERM (as from Slurm or kill) sets the stop flag
    instead of ending the process, and the previous handler comes back afterwards (the resume
    after a stop is tested with Ctrl-C in test_train.py)."""
    from clibd_cli.training.loop import StopFlag

    before = signal.getsignal(signal.SIGTERM)
    stop = StopFlag()
    with stop.installed():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal changes nothing
        assert stop.raised
    assert signal.getsignal(signal.SIGTERM) == before


def test_evaluate_limit_cutoff_cache_and_command_line(bold):
    from click.testing import CliRunner

    from clibd_cli.main import cli

    def evaluate(out: str, *args) -> dict:
        command = ["--threads", "1", "evaluate", "-m", "clibd-tiny", "-d", str(bold["data"]), "--on", "val",
                   "--pairs", "dna-dna", "--baselines", "kmer", "--limit", "3", *args, "-o", str(bold["root"] / out)]
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 0, result.output
        metrics = json.loads((bold["root"] / out / "metrics.json").read_text())
        assert metrics["command"] == "clibd " + " ".join(command)
        return metrics

    strict = evaluate("strict", "--min-confidence", "0.99", "--no-cache")
    loose = evaluate("loose", "--min-confidence", "0.3")
    assert not (bold["root"] / "strict" / "cache").exists() and any((bold["root"] / "loose" / "cache").iterdir())
    for metrics in (strict, loose):
        assert metrics["dataset"]["limit"] == 3
        assert metrics["retrieval"]["left-out"]["kmer"]["queries"] == {"seen": 3, "unseen": 3}
    assert (strict["settings"]["min_confidence"], loose["settings"]["min_confidence"]) == (0.99, 0.3)
    rates = [[m["open_set"]["left-out"][method][part][rank]["assigned_rate"] for method in ("dna-dna", "kmer")
              for part in ("seen", "unseen") for rank in RANKS] for m in (strict, loose)]
    assert all(a <= b for a, b in zip(*rates)) and sum(rates[0]) < sum(rates[1])


def test_prepare_synthetic_from_the_command_line(tmp_path):
    import csv
    import gzip
    import io

    from PIL import Image

    from clibd_cli.data.store import open_dataset

    sample = Path(__file__).parents[1] / "examples" / "bold-sample.csv.gz"
    result = run("--seed", "0", "prepare", "--format", "synthetic", sample, "-o", tmp_path / "syn.h5")
    assert result.exit_code == 0, result.stderr
    with gzip.open(sample, "rt", newline="") as f:
        real = {row["processid"]: row for row in csv.DictReader(f)}
    with open_dataset(tmp_path / "syn.h5") as ds:
        assert ds.attrs["command"].startswith("clibd --seed 0 prepare --format synthetic")  # README: recorded
        species, labelled = set(), 0
        for name in ("train", "val", "test", "key_unseen", "val_unseen", "test_unseen"):
            part = ds.split(name)
            for i, (pid, barcode) in enumerate(zip(part.ids(), part.column("barcode"))):
                source = real[pid]  # a real record: its barcode, lineage and split
                assert barcode == source["dna_barcode"].strip("-") or barcode in source["dna_barcode"]
                assert part.ranks(i)["species"] == source["species"] and source["split"] == name
                species.add(source["species"])
                labelled += 1
                if i < 3:  # every labelled record has a generated photo
                    assert Image.open(io.BytesIO(part.image_bytes(i))).size[0] > 0
    assert len(species) == 150 and "150" in result.stdout.splitlines()[-1]


def test_shipped_models_load_by_name(bold, tmp_path):
    import torch

    from clibd_cli.embedding.embeddings_file import read_embeddings
    from models import create_model, list_pretrained, load_model
    from models.config import PRETRAINED_DIR

    names = list_pretrained()
    assert names and all((PRETRAINED_DIR / name / "config.json").is_file() for name in names)
    name = names[0]
    by_name, by_path = create_model(name), load_model(PRETRAINED_DIR / name)
    assert by_name.fingerprint() == by_path.fingerprint()  # the trained weights, not a fresh init
    barcodes = write_fasta(tmp_path / "one.fasta", bold["val"][:2], sintax=False)
    result = run("-q", "--precision", "fp32", "embed", "-m", name, barcodes, "-o", tmp_path / "e.h5")
    assert result.exit_code == 0, result.stderr
    _, _, vectors, attrs = read_embeddings(tmp_path / "e.h5")
    # the fp16-stored weights load in fp32, in the Python API as in the commands
    assert attrs["model_fingerprint"] == by_path.fingerprint() == load_model(name).fingerprint()
    assert by_name.logit_scale.dtype == torch.float32
    with torch.inference_mode():
        direct = by_name.encode_dna(**by_name.tokenize_dna([r.barcode for r in bold["val"][:2]]))
    assert torch.allclose(torch.nn.functional.normalize(direct, dim=-1), torch.from_numpy(vectors), atol=1e-6)

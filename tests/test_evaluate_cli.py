"""`clibd evaluate` end to end: an untrained clibd-tiny on the CLIBD authors' 5M layout (photos
for every record: all five pairs), the cache, the report files; a `prepare --format fasta` file."""

import json

import pytest
from click.testing import CliRunner

from clibd_cli.main import cli
from fixtures.samples import clibd_hdf5, fasta_sample

PAIRS = ["dna-dna", "image-image", "image-dna", "image-text", "dna-text"]


def run(*args):
    return CliRunner().invoke(cli, ["--threads", "1", "evaluate", *map(str, args)])


def numbers(tree):
    """Every number in the accuracy part of metrics.json."""
    if isinstance(tree, dict):
        for value in tree.values():
            yield from numbers(value)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate_cli")
    clibd_hdf5(root / "clibd5m.h5")
    out = root / "report"
    result = run("-m", "clibd-tiny", "-d", root / "clibd5m.h5", "--on", "val", "--baselines", "kmer",
                 "-o", out)
    assert result.exit_code == 0, result.output
    return root, out, result.output


def test_report_files_and_keys(report):
    _, out, stdout = report
    for name in ("metrics.json", "metrics.tsv", "report.html", "accuracy_paper.png", "accuracy_left-out.png",
                 "reliability_paper.png", "reliability_left-out.png", "open_set.png", "embedding_map.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scenarios"]["paper"]["keys"]["groups"] == ["all_keys"]
    assert metrics["scenarios"]["left-out"]["keys"]["groups"] == ["seen_keys"]
    for scenario in ("paper", "left-out"):
        methods = metrics["retrieval"][scenario]
        assert list(methods) == [*PAIRS, "kmer"]
        for scores in methods.values():
            assert set(scores["seen"]["species"]) == {"top1", "top3", "top5"}
            assert set(scores["hm"]["genus"]["top1"]) == {"micro", "macro"}
            assert all(0 <= v <= 1 for part in ("seen", "unseen", "hm") for v in numbers(scores[part]))
        # calibrated calls for specimen keys; text keys are label strings: no calls
        assert set(metrics["open_set"][scenario]) == {"dna-dna", "image-image", "image-dna", "kmer"}
    assert "top-1 macro accuracy % (the paper's table)" in stdout and "scenario left-out" in stdout
    html = (out / "report.html").read_text()
    assert "accuracy_paper.png" in html and "What the numbers mean" in html


def test_rerun_reads_the_cached_embeddings(report, monkeypatch):
    from clibd_cli.evaluation.vectors import ModelVectors

    def refuse(*args, **kwargs):
        raise AssertionError("embedded anew: the cache was not read")

    monkeypatch.setattr(ModelVectors, "embed", refuse)  # every vector of the rerun must come from the cache
    root, out, _ = report
    cached = sorted(p.name for p in (out / "cache").glob("*.npy"))
    assert any(".image." in name for name in cached) and any(".text." in name for name in cached)
    again = root / "again"
    result = run("-m", "clibd-tiny", "-d", root / "clibd5m.h5", "--on", "val", "--pairs", "dna-dna",
                 "--baselines", "none", "--scenario", "paper", "--cache", out / "cache", "-o", again)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "cache").glob("*.npy")) == cached  # nothing embedded anew
    first = json.loads((out / "metrics.json").read_text())["retrieval"]["paper"]["dna-dna"]
    second = json.loads((again / "metrics.json").read_text())["retrieval"]["paper"]["dna-dna"]
    assert first["seen"] == second["seen"] and first["unseen"] == second["unseen"]


def test_dna_only_model_says_which_pairs_it_skipped(report, tmp_path):
    root, _, _ = report
    from models import create_model, save_model

    save_model(create_model("clibd-tiny", modalities=("dna",)), tmp_path / "dna_only")
    result = run("-m", tmp_path / "dna_only", "-d", root / "clibd5m.h5", "--on", "val", "--baselines", "none",
                 "--scenario", "paper", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(metrics["retrieval"]["paper"]) == ["dna-dna"]
    assert sum("skipped: the model has no" in n for n in metrics["notes"]) == 4
    refused = run("-m", tmp_path / "dna_only", "-d", root / "clibd5m.h5", "--on", "val", "--pairs", "image-image",
                  "--baselines", "none", "-o", tmp_path / "none")
    assert refused.exit_code == 2, refused.output  # was 1: a usage error, as --baselines none without -m
    assert "--pairs: pair image-image cannot be evaluated: the model has no image encoder" in refused.output
    # named beside what can run (a baseline, another pair): still refused, where it ran the rest, exit 0
    beside = run("-m", tmp_path / "dna_only", "-d", root / "clibd5m.h5", "--on", "val", "--pairs",
                 "dna-dna,image-dna", "--baselines", "kmer", "-o", tmp_path / "beside")
    assert beside.exit_code == 2, beside.output
    assert "pair image-dna cannot be evaluated: the model has no image encoder; leave it out" in beside.output
    assert not (tmp_path / "beside").exists()


def test_help_names_the_kmer_models_and_what_limit_saves():
    shown = " ".join(CliRunner().invoke(cli, ["evaluate", "--help"], terminal_width=200).output.split())
    assert "kmer or kmer-aa" in shown and "only they are embedded" in shown


def test_fasta_dataset_uses_the_clibd_1m_layout(tmp_path):
    sample = fasta_sample(tmp_path)
    data = tmp_path / "mine.h5"
    prepared = CliRunner().invoke(cli, ["prepare", "--format", "fasta", str(sample["fasta"]), "--taxonomy",
                                        str(sample["taxonomy"]), "-o", str(data)])
    assert prepared.exit_code == 0, prepared.output
    result = run("-d", data, "--baselines", "kmer", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["model"] is None
    keys = metrics["scenarios"]["paper"]["keys"]["groups"]
    assert keys == ["seen_keys", "val_unseen_keys", "test_unseen_keys"]
    assert metrics["scenarios"]["left-out"]["queries"]["seen"]["groups"] == ["test_seen"]
    kmer = metrics["retrieval"]["paper"]["kmer"]
    assert kmer["queries"] == {"seen": 10, "unseen": 17}
    assert kmer["seen"]["species"]["top1"]["micro"] >= 0.9  # 9 of 10: real barcodes, near copies among the keys
    assert kmer["seen"]["species"]["top3"]["micro"] == kmer["unseen"]["species"]["top1"]["micro"] == 1.0


@pytest.mark.parametrize("args, message", [
    (["--pairs", "dna-rna"], "dna-rna: choose from"),
    (["--baselines", "kraken"], "kraken: choose from"),
    (["--baselines", "none"], "nothing to evaluate: give --model, --baselines, or both"),
    (["-m", "none", "--baselines", "none"], "nothing to evaluate: give --model, --baselines, or both"),
    # options that set what does not run: they did nothing, exit 0, without a word
    (["--baselines", "vsearch-sintax", "--kmer", "7"], "--kmer is the k of the kmer baseline, which --"),
    (["-m", "clibd-tiny", "--baselines", "none", "--kmer", "7"], "--kmer is the k of the kmer baseline"),
    (["--baselines", "rdp", "--search", "hnsw"], "--search is the search of a model's pairs and the kmer"),
    (["--baselines", "rdp", "--batch-size", "8"], "--batch-size is how many records a model embeds"),
])
def test_usage_errors(tmp_path, args, message):
    (tmp_path / "x.h5").write_bytes(b"")
    result = run("-d", tmp_path / "x.h5", *args, "-o", tmp_path / "out")
    assert result.exit_code == 2 and message in result.output


def test_options_of_what_runs_are_taken(tmp_path):
    """--kmer with the baselines left at their default (kmer among them), --search and --batch-size with
    a model: not refused as idle (the empty file is the error, exit 1)."""
    (tmp_path / "x.h5").write_bytes(b"")
    for args in (["--kmer", "7"], ["-m", "clibd-tiny", "--baselines", "none", "--search", "hnsw",
                                   "--batch-size", "8"]):
        result = run("-d", tmp_path / "x.h5", *args, "-o", tmp_path / "out")
        assert result.exit_code == 1, result.output


def test_output_is_a_new_folder_or_an_earlier_report(report, tmp_path):
    """-o replaces an earlier report (or resumes a run that left only its cache), never writes into
    another folder, and is never '-'."""
    root, out, _ = report
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("hi")
    refused = run("-d", root / "clibd5m.h5", "--on", "val", "--baselines", "kmer", "-o", mine)
    assert refused.exit_code == 2 and "no metrics.json" in refused.output
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]
    mistyped = run("-m", "run/bestx", "-d", root / "clibd5m.h5", "--on", "val", "-o", tmp_path / "never")
    assert mistyped.exit_code == 2 and not (tmp_path / "never").exists()
    dash = run("-d", root / "clibd5m.h5", "--baselines", "kmer", "-o", "-")
    assert dash.exit_code == 2 and "cannot be written to standard output" in dash.output
    (tmp_path / "resume" / "cache").mkdir(parents=True)
    again = run("-d", root / "clibd5m.h5", "--on", "val", "--baselines", "kmer", "-o", tmp_path / "resume")
    assert again.exit_code == 0, again.output
    rerun = run("-d", root / "clibd5m.h5", "--on", "val", "--baselines", "kmer", "-o", tmp_path / "resume")
    assert rerun.exit_code == 0, rerun.output


def test_a_second_evaluate_of_one_report_waits_for_the_first(report, tmp_path):
    """Two evaluate -o OUT at once each wrote metrics.json, metrics.tsv, the plots and report.html
    in turn: a report could mix both runs. The second now waits for the lock, then writes whole."""
    import os
    import subprocess
    import sys
    import time

    from clibd_cli.io.outputs import writer_lock

    root, _, _ = report
    out = tmp_path / "report"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with writer_lock(out):
        proc = subprocess.Popen([sys.executable, "-m", "clibd_cli", "--threads", "1", "evaluate", "-d",
                                 str(root / "clibd5m.h5"), "--on", "val", "--baselines", "kmer", "-o", str(out)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert "another clibd is writing it; waiting" in proc.stderr.readline()
        time.sleep(0.5)
        assert proc.poll() is None and not out.exists()
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert (out / "metrics.json").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["report"]

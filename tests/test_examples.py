"""The scripts in examples/ run as documented (so the README's tour cannot rot)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.specimens import write_fasta
from fixtures.programs import require_programs

EXAMPLES = Path(__file__).parents[1] / "examples"
CLIBD = str(Path(sys.executable).with_name("clibd"))


def script(name: str, *args, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(EXAMPLES / name), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "CLIBD": CLIBD, **env}, timeout=600)


@pytest.mark.slow
def test_end_to_end_script_produces_predictions_and_a_report(tmp_path):
    result = script("end_to_end.sh", tmp_path / "out", cwd=tmp_path, STEPS="20")
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "out"
    with open(out / "predictions.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    queries = [line[1:].split()[0] for line in (EXAMPLES / "barcodes.fasta").read_text().splitlines()
               if line.startswith(">")]
    assert [row["query_id"] for row in rows] == queries
    assert all(row["status"] in ("assigned", "unassigned") for row in rows)
    for name in ("bold-sample.h5", "barcodes.h5", "run/best/config.json", "reference/manifest.json",
                 "report/report.html", "report/metrics.json"):
        assert (out / name).is_file(), name
    check_trained_tour(out, rows)


def check_trained_tour(out: Path, rows: list[dict]) -> None:
    """What even 20 steps of training must give (random vectors would give ~0.01 and wrong labels):
    the tour's numbers with STEPS=20 were 0.73, 0.99 and 5 of 8."""
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["retrieval"]["paper"]["dna-dna"]["seen"]["species"]["top1"]["micro"] >= 0.5
    calls = metrics["open_set"]["left-out"]["dna-dna"]
    assert calls["seen"]["species"]["assigned_accuracy"] >= 0.9  # what it names, it names right
    assert calls["unseen"]["species"]["assigned_rate"] <= 0.05  # and it hardly names absent species
    truth = {line[1:].split()[0]: line.split()[1:5] for line in (EXAMPLES / "barcodes.fasta").read_text().splitlines()
             if line.startswith(">")}
    named = [row for row in rows[:8] if row["species"] == " ".join(truth[row["query_id"]][2:])]
    assert len(named) >= 4, rows  # of the eight example barcodes of seen species
    assert all(row["order"] in ("", truth[row["query_id"]][0]) for row in rows)


def test_classify_folder_script_classifies_each_file_resumes_and_reports_failures(barcode_refs, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    write_fasta(runs / "plate1.fasta", barcode_refs.records[:3], sintax=False)
    write_fasta(runs / "plate2.fa", barcode_refs.records[3:5], sintax=False)
    with open(runs / "plate2.fa", "a") as handle:
        handle.write(">empty-well\n\n")
    (runs / "broken.fasta").write_text("this is not FASTA\n")
    (runs / "notes.txt").write_text("ignored\n")
    result = script("classify_folder.sh", runs, tmp_path / "out", "--index", barcode_refs.index, cwd=tmp_path)
    assert result.returncode == 1  # one file failed
    assert "2 classified, 0 already done, 1 failed" in result.stderr
    assert "broken.fasta" in result.stderr and "failed:" in result.stderr
    tsvs = sorted(p.name for p in (tmp_path / "out").glob("*.tsv"))
    assert tsvs == ["plate1.tsv", "plate2.tsv"]
    assert len((tmp_path / "out" / "plate1.tsv").read_text().splitlines()) == 1 + 3
    assert "empty-well: invalid: empty sequence" in (tmp_path / "out" / "plate2.log").read_text()
    (runs / "broken.fasta").unlink()
    again = script("classify_folder.sh", runs, tmp_path / "out", "--index", barcode_refs.index, cwd=tmp_path)
    assert again.returncode == 0 and "0 classified, 2 already done, 0 failed" in again.stderr


def test_classify_folder_script_explains_its_usage(tmp_path):
    result = script("classify_folder.sh", cwd=tmp_path)
    assert result.returncode == 2 and "RUNS_DIR OUT_DIR" in result.stderr


PIPELINE_READS = EXAMPLES / "pipeline" / "reads"


@pytest.fixture(scope="module")
def kmer_index(tmp_path_factory) -> Path:
    from fixtures.specimens import run, specimens

    root = tmp_path_factory.mktemp("pipeline_index")
    reference = write_fasta(root / "ref.fa", specimens())
    built = run("-q", "index", "-m", "kmer", "-k", "5", reference, "-o", root / "index")
    assert built.exit_code == 0, built.stderr
    return root / "index"


def reads_per_sample() -> dict[str, int]:
    import gzip

    return {path.name.split(".")[0]: gzip.open(path, "rt").read().count(">")
            for path in sorted(PIPELINE_READS.glob("*.fasta.gz"))}


def check_pipeline_output(out: Path) -> None:
    """Dereplicated samples whose sizes, and a summary whose every rank, add up to the raw reads."""
    reads = reads_per_sample()
    assert sorted(p.stem for p in (out / "derep").glob("*.fasta")) == sorted(reads)
    uniques = 0
    for sample, n in reads.items():
        headers = [line for line in (out / "derep" / f"{sample}.fasta").read_text().splitlines()
                   if line.startswith(">")]
        assert sum(int(h.split(";size=")[1].rstrip(";")) for h in headers) == n
        assert len(headers) < n  # dereplication merged repeated reads
        uniques += len(headers)
    with open(out / "predictions.tsv") as f:
        assert len(list(csv.DictReader(f, delimiter="\t"))) == uniques
    with open(out / "summary.tsv") as f:
        summary = list(csv.DictReader(f, delimiter="\t"))
    for sample, n in reads.items():
        for rank in ("order", "family", "genus", "species"):
            assert sum(int(r["reads"]) for r in summary if r["sample"] == sample and r["rank"] == rank) == n
    assert (out / "summary.html").is_file()
    assert all((out / f"summary.{sample}.krona.txt").is_file() for sample in reads)


def test_pipeline_script_dereplicates_classifies_and_summarises_samples(kmer_index, tmp_path):
    require_programs("vsearch")
    result = script("pipeline/run.sh", PIPELINE_READS, tmp_path / "out", "--index", kmer_index,
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 samples:" in result.stderr
    check_pipeline_output(tmp_path / "out")
    usage = script("pipeline/run.sh", cwd=tmp_path)
    assert usage.returncode == 2 and "READS_DIR OUT_DIR" in usage.stderr


def test_pipeline_snakefile_does_the_same(kmer_index, tmp_path):
    """In folders whose names hold spaces, as run.sh works in them (the shell commands split them)."""
    require_programs("vsearch", "snakemake")
    reads, out = tmp_path / "my reads", tmp_path / "smk out"
    shutil.copytree(PIPELINE_READS, reads)
    result = subprocess.run(["snakemake", "-s", str(EXAMPLES / "pipeline" / "Snakefile"), "--cores", "1",
                             "--config", f"reads={reads}", f"out={out}", f"index={kmer_index}",
                             f"clibd={CLIBD}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    check_pipeline_output(out)


def test_pipeline_snakefile_refuses_a_reads_folder_without_samples(tmp_path):
    """No READS/*.EXT (an empty folder, reads named .fastq.gz under the default ext): it ran clibd with
    no input, which read standard input, and made an empty summary with exit status 0."""
    require_programs("snakemake")
    (tmp_path / "reads").mkdir()
    (tmp_path / "reads" / "pond.fastq.gz").write_bytes(b"")
    result = subprocess.run(["snakemake", "-s", str(EXAMPLES / "pipeline" / "Snakefile"), "--cores", "1",
                             "--config", f"reads={tmp_path / 'reads'}", f"out={tmp_path / 'out'}",
                             f"clibd={CLIBD}"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)
    assert result.returncode != 0 and "reads/*.fasta.gz files" in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


def test_pipeline_snakefile_finds_the_clibd_of_make_setup_off_path(tmp_path):
    """As run.sh does: ``make setup`` installs clibd in .venv/bin, not on PATH."""
    require_programs("snakemake")
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep)
                           if not (Path(d) / "clibd").exists())
    command = [shutil.which("snakemake"), "-s", str(EXAMPLES / "pipeline" / "Snakefile"), "--cores", "1", "-n", "-p",
               "--config", f"reads={PIPELINE_READS}", f"out={tmp_path / 'smk'}"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PATH": path})
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{EXAMPLES.parent / '.venv' / 'bin' / 'clibd'} -q classify" in result.stdout


def test_classify_folder_script_stops_when_clibd_is_interrupted(tmp_path):
    """clibd exits 130 on Ctrl-C: the batch stops there (a rerun resumes) instead of going on."""
    runs = tmp_path / "runs"
    runs.mkdir()
    for name in ("a.fasta", "b.fasta"):
        (runs / name).write_text(">q\nACGT\n")
    stub = tmp_path / "clibd"
    stub.write_text("#!/usr/bin/env bash\necho called >> \"$(dirname \"$0\")/calls\"\nexit 130\n")
    stub.chmod(0o755)
    result = script("classify_folder.sh", runs, tmp_path / "out", cwd=tmp_path, CLIBD=str(stub))
    assert result.returncode == 130 and "interrupted" in result.stderr
    assert (tmp_path / "calls").read_text().count("called") == 1


def recording_clibd(tmp_path: Path) -> Path:
    """A stand-in for clibd that notes its arguments in ``calls``, writes each ``-o`` file and
    makes ``--out RUN/last``, as a training run leaves it."""
    stub = tmp_path / "clibd"
    stub.write_text('#!/usr/bin/env bash\necho "$*" >> "$(dirname "$0")/calls"\n'
                    'while [ $# -gt 0 ]; do\n'
                    '  case $1 in -o) echo header > "$2";; --out) mkdir -p "$2/last";; esac; shift\n'
                    'done\n')
    stub.chmod(0o755)
    return stub


def test_end_to_end_script_run_again_resumes_its_training_run(tmp_path):
    """A second run into the same folder (after a Ctrl-C in training, or to see it again) resumes
    the run: without --resume, train refuses a folder holding a run and the script stopped there."""
    stub = recording_clibd(tmp_path)
    for _ in range(2):
        assert script("end_to_end.sh", tmp_path / "out", cwd=tmp_path, CLIBD=str(stub)).returncode == 0
    trains = [call for call in (tmp_path / "calls").read_text().splitlines() if " train --model " in call]
    assert [call.endswith("--resume") for call in trains] == [False, True]


def test_classify_folder_script_refuses_a_missing_or_empty_folder_and_inputs_sharing_a_name(tmp_path):
    """A mistyped or empty RUNS_DIR is not a successful batch, and a.fasta with a.fastq.gz would
    both go to a.tsv: the second was reported as already done and never classified."""
    stub = recording_clibd(tmp_path)
    missing = script("classify_folder.sh", tmp_path / "no-such-runs", tmp_path / "out", cwd=tmp_path,
                     CLIBD=str(stub))
    assert missing.returncode == 2 and "not a folder" in missing.stderr
    usage = " ".join(script("classify_folder.sh", cwd=tmp_path).stderr.split())  # the header says both codes
    assert "1 if any failed or RUNS_DIR holds none, 2 if RUNS_DIR is not a folder" in usage
    runs = tmp_path / "runs"
    runs.mkdir()
    empty = script("classify_folder.sh", runs, tmp_path / "out", cwd=tmp_path, CLIBD=str(stub))
    assert empty.returncode == 1 and "no FASTA/FASTQ files in" in empty.stderr
    for name in ("plate 1.fasta", "plate 1.fastq.gz", "plate 2.fa"):
        (runs / name).write_text(">q\nACGT\n")
    shared = script("classify_folder.sh", runs, tmp_path / "out", cwd=tmp_path, CLIBD=str(stub))
    assert shared.returncode == 1 and "2 classified, 0 already done, 1 failed" in shared.stderr
    assert "plate 1.fastq.gz: another input of this name" in shared.stderr


def test_pipeline_script_refuses_two_files_of_one_sample(tmp_path):
    """pond.fasta and pond.fasta.gz were both dereplicated to derep/pond.fasta, the second over the
    first, and that file classified twice: one sample's reads lost, the other's counted twice."""
    reads = tmp_path / "reads"
    reads.mkdir()
    for name in ("pond.fasta", "pond.fasta.gz"):
        (reads / name).write_text(">r\nACGT\n")
    result = script("pipeline/run.sh", reads, tmp_path / "out", cwd=tmp_path, CLIBD=str(recording_clibd(tmp_path)),
                    VSEARCH="true")
    assert result.returncode == 1 and "second file of sample pond" in result.stderr
    assert not (tmp_path / "calls").exists()  # nothing classified


def test_both_scripts_take_fasta_by_any_usual_name_and_compression(tmp_path):
    """BOLD's downloads are .fas, instruments write RUN1.FASTA, and clibd reads bzip2 and xz: such
    files were left out without a word ("1 classified", or "no FASTA/FASTQ files")."""
    runs = tmp_path / "runs"
    runs.mkdir()
    for name in ("bold.fas", "RUN2.FASTA", "c.fasta.bz2", "d.FQ.XZ", "notes.txt"):
        (runs / name).write_text(">q\nACGT\n")
    stub = recording_clibd(tmp_path)
    result = script("classify_folder.sh", runs, tmp_path / "out", cwd=tmp_path, CLIBD=str(stub))
    assert result.returncode == 0 and "4 classified" in result.stderr, result.stderr
    tsvs = sorted(p.name for p in (tmp_path / "out").glob("*.tsv"))
    assert tsvs == ["RUN2.tsv", "bold.tsv", "c.tsv", "d.tsv"]
    (runs / "d.FQ.XZ").unlink()  # vsearch reads gzip and bzip2, not xz
    result = script("pipeline/run.sh", runs, tmp_path / "pl", cwd=tmp_path, CLIBD=str(stub), VSEARCH="true")
    assert result.returncode == 0 and "3 samples" in result.stderr, result.stderr
    classify = (tmp_path / "calls").read_text().splitlines()[-1]
    assert all(f"/derep/{name}.fasta" in classify for name in ("bold", "RUN2", "c"))

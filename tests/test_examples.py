"""The scripts in examples/ run as documented (so the README's tour cannot rot)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.specimens import write_fasta

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


def test_classify_folder_script_classifies_each_file_resumes_and_reports_failures(barcode_refs, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    write_fasta(runs / "plate1.fasta", barcode_refs.records[:3], sintax=False)
    write_fasta(runs / "plate2.fa", barcode_refs.records[3:5], sintax=False)
    (runs / "broken.fasta").write_text("this is not FASTA\n")
    (runs / "notes.txt").write_text("ignored\n")
    result = script("classify_folder.sh", runs, tmp_path / "out", "--index", barcode_refs.index, cwd=tmp_path)
    assert result.returncode == 1  # one file failed
    assert "2 classified, 0 already done, 1 failed" in result.stderr
    assert "broken.fasta" in result.stderr and "failed:" in result.stderr
    tsvs = sorted(p.name for p in (tmp_path / "out").glob("*.tsv"))
    assert tsvs == ["plate1.tsv", "plate2.tsv"]
    assert len((tmp_path / "out" / "plate1.tsv").read_text().splitlines()) == 1 + 3
    (runs / "broken.fasta").unlink()
    again = script("classify_folder.sh", runs, tmp_path / "out", "--index", barcode_refs.index, cwd=tmp_path)
    assert again.returncode == 0 and "0 classified, 2 already done, 0 failed" in again.stderr


def test_classify_folder_script_explains_its_usage(tmp_path):
    result = script("classify_folder.sh", cwd=tmp_path)
    assert result.returncode == 2 and "RUNS_DIR OUT_DIR" in result.stderr

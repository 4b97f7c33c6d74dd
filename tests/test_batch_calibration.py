"""benchmarks/batch_calibration.py: the ECE a calibrated tool would show on a batch whose records
share their species' fate (what the per-batch tables of benchmarks/README.md compare against)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def batch_calibration():
    spec = importlib.util.spec_from_file_location("batch_calibration", ROOT / "benchmarks" / "batch_calibration.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sure_confidences_show_no_ece_when_calibrated(batch_calibration):
    conf = np.array([1.0, 1.0, 0.0, 0.0])
    assert batch_calibration.calibrated_ece(conf, np.array([0, 0, 1, 2]), 3).tolist() == [0.0, 0.0, 0.0]


def test_one_species_at_even_odds_always_shows_an_ece_of_one_half(batch_calibration):
    band = batch_calibration.calibrated_ece(np.full(50, 0.5), np.zeros(50, int), 1)
    assert band.tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_the_calibrated_ece_falls_with_the_number_of_species(batch_calibration):
    conf = np.full(1000, 0.8)
    few = batch_calibration.calibrated_ece(conf, np.arange(1000) // 250, 4)  # 4 species of 250 records
    many = batch_calibration.calibrated_ece(conf, np.arange(1000), 1000)  # 1,000 species of one record
    assert many[2] < 0.05  # 1,000 independent draws: a calibrated tool's ECE is near 0
    # 4 draws at 0.8: 3 right (ECE 0.05, p 0.41), 4 (0.2, p 0.41), 2 (0.3, p 0.15), fewer (p 0.03)
    assert few.tolist() == pytest.approx([0.2, 0.05, 0.3])


def test_species_weights_reports_what_a_calibrated_tool_would_show(batch_calibration):
    conf = np.array([0.9] * 30 + [0.6] * 10)
    right = np.array([True] * 30 + [False] * 10)
    species = np.array(["Aedes albopictus"] * 30 + ["Culex pipiens"] * 10, dtype=object)
    line = batch_calibration.species_weights(conf, right, species, "genus")
    # both right (p 0.54): ECE 0.75 x 0.1 + 0.25 x 0.4 = 0.175; Culex wrong (0.36): 0.225; Aedes wrong: 0.775 or more
    assert line.startswith("genus: ECE 22.5 ") and "if calibrated: 17.5 (17.5-77.5); " in line
    assert "Culex pipiens (10 records, conf 0.60, right 0.00: +15.0)" in line


HEADER = ("query_id\tmodality\tstatus\torder\tfamily\tgenus\tspecies\torder_conf\tfamily_conf\tgenus_conf\t"
          "species_conf\tlineage\tnearest_id\tnearest_sim\tstrand\tprior_unseen\n")


def _row(query: str, lineage: str, prior: str) -> str:
    return f"{query}\tdna\tassigned\t\t\t\t\t1.0\t0.9\t0.5\t0.1\t{lineage}\tREF1\t0.99\t+\t{prior}\n"


def test_the_share_of_new_species_a_run_assumed_weighs_every_record(batch_calibration, tmp_path):
    # clibd estimates the share per kind of query (whole barcodes 0.30, partial ones 0.10): the
    # run assumed 0.25 of these four records, whichever kind comes last
    tsv = tmp_path / "clibd.tsv"
    lineage = "o:Diptera(1.00),f:Culicidae(0.90),g:Aedes(0.50),s:Aedes_albopictus(0.10)"
    tsv.write_text(HEADER + "".join(_row(f"Q{i}", lineage, prior)
                                    for i, prior in enumerate(("0.3000", "0.3000", "0.3000", "0.1000"))))
    scores, estimate = batch_calibration.read_clibd_scores(tsv)
    assert estimate == pytest.approx(0.25)
    assert scores["Q3"]["species"] == ("Aedes albopictus", 0.1)


def test_a_label_holding_a_parenthesis_keeps_it(batch_calibration):
    best = batch_calibration.best_labels("o:Diptera(1.00),g:Aedes_(Stegomyia)(0.95),s:Aedes_sp._(BOLD:AAA1)(0.41)")
    assert best == {"o": "Diptera", "g": "Aedes (Stegomyia)", "s": "Aedes sp. (BOLD:AAA1)"}

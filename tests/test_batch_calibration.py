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


def test_sure_confidences_leave_no_floor(batch_calibration):
    conf = np.array([1.0, 1.0, 0.0, 0.0])
    assert batch_calibration.calibrated_floor(conf, np.array([0, 0, 1, 2]), 3).tolist() == [0.0, 0.0, 0.0]


def test_one_species_at_even_odds_is_always_half_wrong(batch_calibration):
    floor = batch_calibration.calibrated_floor(np.full(50, 0.5), np.zeros(50, int), 1)
    assert floor.tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_the_floor_falls_with_the_number_of_species(batch_calibration):
    conf = np.full(1000, 0.8)
    few = batch_calibration.calibrated_floor(conf, np.arange(1000) // 250, 4)  # 4 species of 250 records
    many = batch_calibration.calibrated_floor(conf, np.arange(1000), 1000)  # 1,000 species of one record
    assert many[2] < 0.05  # 1,000 independent draws: a calibrated tool's ECE is near 0
    assert few[2] >= 0.2  # 4 draws: all 4 right (ECE 0.2) or at most 2 (0.3 or more) in 59 % of batches


def test_species_weights_reports_the_floor(batch_calibration):
    conf = np.array([0.9] * 30 + [0.6] * 10)
    right = np.array([True] * 30 + [False] * 10)
    species = np.array(["Aedes albopictus"] * 30 + ["Culex pipiens"] * 10, dtype=object)
    line = batch_calibration.species_weights(conf, right, species, "genus")
    assert line.startswith("genus: ECE 22.5 ") and "if calibrated: " in line and "Culex pipiens (10 records" in line

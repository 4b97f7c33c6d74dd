"""Accuracy and calibration metrics, on cases small enough to check by hand."""

import math

import numpy as np
import pytest

from clibd_cli.evaluation import metrics


def test_topk_correct_counts_true_label_among_first_k_and_skips_unlabelled_queries():
    neighbours = [["a", "b", "c"], ["b", "a", "a"], ["c", "c", "c"], ["a", None, "b"]]
    truth = ["a", "a", "b", None]
    correct, scored = metrics.topk_correct(neighbours, truth, 1)
    assert correct.tolist() == [True, False, False, False]
    assert scored.tolist() == [True, True, True, False]
    correct, _ = metrics.topk_correct(neighbours, truth, 2)
    assert correct.tolist() == [True, True, False, False]
    assert metrics.micro_accuracy(correct, scored) == pytest.approx(2 / 3)


def test_micro_and_macro_differ_on_imbalanced_classes():
    truth = ["a"] * 8 + ["b"] * 2
    correct = np.array([True] * 8 + [False, True])
    assert metrics.micro_accuracy(correct) == pytest.approx(0.9)  # 9 of 10 queries
    assert metrics.macro_accuracy(correct, truth) == pytest.approx(0.75)  # (8/8 + 1/2) / 2


def test_macro_ignores_queries_without_a_true_label():
    correct = np.array([True, False, False])
    assert metrics.macro_accuracy(correct, ["a", "b", None]) == pytest.approx(0.5)
    assert math.isnan(metrics.macro_accuracy(np.array([False]), [None]))


def test_harmonic_mean():
    assert metrics.harmonic_mean(0.6, 0.3) == pytest.approx(0.4)
    assert metrics.harmonic_mean(0.0, 0.0) == 0.0
    assert metrics.harmonic_mean(0.5, 0.0) == 0.0


def test_accuracy_table_per_rank_and_k():
    neighbours = {"genus": [["g1", "g2"], ["g1", "g2"]], "species": [["s1", "s2"], ["s3", "s2"]]}
    truth = {"genus": ["g1", "g2"], "species": ["s1", "s2"]}
    table = metrics.accuracy_table(neighbours, truth, ks=(1, 2))
    assert table["genus"][1] == {"micro": 0.5, "macro": 0.5}
    assert table["species"][2] == {"micro": 1.0, "macro": 1.0}


def test_open_set_metrics():
    # genus of the 4th query is not in the reference: not counted; the unassigned 2nd is wrong
    acc = metrics.known_label_accuracy(["G1", None, "G2", "G3"], ["G1", "G1", "G2", "Gx"], {"G1", "G2"})
    assert acc == pytest.approx(2 / 3)


def test_reliability_bins_and_ece():
    rel = metrics.reliability(np.array([0.95, 0.95, 0.15, 0.15]), np.array([1, 0, 0, 0]), bins=10)
    assert rel.counts[9] == 2 and rel.counts[1] == 2
    assert rel.accuracy[9] == pytest.approx(0.5) and rel.confidence[9] == pytest.approx(0.95)
    # (2 * |0.5 - 0.95| + 2 * |0 - 0.15|) / 4
    assert rel.ece == pytest.approx(0.3)
    assert rel.table().splitlines() == ["bin\tn\tmean_conf\taccuracy", "0.1-0.2\t2\t0.150\t0.000",
                                        "0.9-1.0\t2\t0.950\t0.500"]  # the empty bins left out
    perfect = metrics.reliability(np.array([1.0, 1.0, 0.0]), np.array([1, 1, 0]))
    assert perfect.ece == 0.0
    assert perfect.counts.tolist() == [1] + [0] * 8 + [2]  # a confidence of 1.0 is in the last bin
    assert perfect.table().splitlines()[-1] == "0.9-1.0\t2\t1.000\t1.000"
    weighted = metrics.reliability(np.array([0.95, 0.95]), np.array([1, 0]), weights=np.array([3.0, 1.0]))
    assert weighted.ece == pytest.approx(abs(0.75 - 0.95))

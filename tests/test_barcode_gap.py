"""Barcode gaps of reference labels (clibd_cli/classification/barcode_gap.py) and their use."""

import json

import numpy as np
import pytest

from clibd_cli.classification.barcode_gap import fit_gaps, gap_features
from clibd_cli.classification.calibration import Calibration
from clibd_cli.classification.decision import label
from clibd_cli.classification.fitting import fit_calibration, fit_calibration_held_out
from clibd_cli.classification.taxonomy import ReferenceTaxonomy
from clibd_cli.reference.hnsw_index import build_index
from clibd_cli.reference.search import exact_search

# records on a circle: similarity = cos(angle difference); genus G: tight species A (2 degrees
# apart), variable species B (20 degrees apart), species C near B; genus H: species D far away
ANGLES = {"A": [0, 2], "B": [30, 50], "C": [60, 61], "D": [150, 151]}
GENUS = {"A": "G", "B": "G", "C": "G", "D": "H"}


def circle():
    species = [s for s, angles in ANGLES.items() for _ in angles]
    radians = np.deg2rad([a for angles in ANGLES.values() for a in angles])
    vectors = np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)
    labels = {"genus": [GENUS[s] for s in species], "species": species}
    return vectors, ReferenceTaxonomy.from_labels([str(i) for i in range(len(species))], labels)


def cos(degrees: float) -> float:
    return float(np.cos(np.deg2rad(degrees)))


def test_spread_and_nearest_other_label():
    vectors, reference = circle()
    gaps = fit_gaps(reference, *exact_search(vectors, vectors, len(vectors)))
    species = {name: code for code, name in enumerate(reference.names["species"])}
    within, other = gaps["species"].within, gaps["species"].nearest_other
    assert within[species["A"]] == pytest.approx(cos(2), abs=1e-6)
    assert within[species["B"]] == pytest.approx(cos(20), abs=1e-6)  # the variable one
    assert other[species["A"]] == pytest.approx(cos(28), abs=1e-6)  # A's 2 to B's 30
    assert other[species["B"]] == pytest.approx(cos(10), abs=1e-6)  # B's 50 to C's 60
    assert list(gaps["species"].others[species["B"]][:2]) == [species["C"], species["A"]]
    # a genus's spread is between its species: each record of G to the nearest of another species
    g = reference.names["genus"].index("G")
    assert gaps["genus"].within[g] == pytest.approx(np.median([cos(30), cos(28), cos(28), cos(10), cos(10), cos(11)]),
                                                    abs=1e-6)
    assert gaps["genus"].nearest_other[g] == pytest.approx(cos(89), abs=1e-6)  # C's 61 to D's 150


def test_a_lone_record_s_label_takes_the_rank_s_median_spread():
    radians = np.deg2rad([0, 2, 30, 50, 100])
    vectors = np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)
    reference = ReferenceTaxonomy.from_labels([str(i) for i in range(5)], {"species": ["A", "A", "B", "B", "E"]})
    within = fit_gaps(reference, *exact_search(vectors, vectors, 5))["species"].within
    assert within[2] == pytest.approx(np.median([cos(2), cos(20)]), abs=1e-6)


def test_a_label_whose_records_see_no_other_label_lies_at_most_the_kth_neighbour_away():
    vectors, reference = circle()
    gaps = fit_gaps(reference, *exact_search(vectors, vectors, 2))["species"]  # itself and one other record
    a = reference.names["species"].index("A")
    assert gaps.nearest_other[a] == pytest.approx(cos(2), abs=1e-6)  # A's records see only each other
    # three records at 0, 1 and 5 degrees, each seeing two others: the bound is the farthest k-th
    # neighbour of any (the 1's 5 at 4 degrees), not the nearest neighbour
    radians = np.deg2rad([0, 1, 5, 90, 91, 92])
    vectors = np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)
    reference = ReferenceTaxonomy.from_labels([str(i) for i in range(6)], {"species": ["A"] * 3 + ["D"] * 3})
    gaps = fit_gaps(reference, *exact_search(vectors, vectors, 3))["species"]
    assert gaps.nearest_other[0] == pytest.approx(cos(4), abs=1e-6)


def test_a_genus_spread_leaves_out_records_without_a_species():
    """A record of the genus not named to species is of no other species: the genus's spread is
    between its named species (A's 0 to B's 30), not to that record, whatever its distance."""
    radians = np.deg2rad([0, 30, 1])
    vectors = np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)
    reference = ReferenceTaxonomy.from_labels(["a", "b", "x"],
                                              {"genus": ["G"] * 3, "species": ["A", "B", None]})
    gaps = fit_gaps(reference, *exact_search(vectors, vectors, 3))
    assert gaps["genus"].within[0] == pytest.approx(cos(30), abs=1e-6)


def test_a_record_without_a_label_at_the_rank_is_no_other_label():
    """A's nearest other label is B (2 to 30 degrees), not the record at 10 with no species."""
    radians = np.deg2rad([0, 2, 10, 30])
    vectors = np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)
    reference = ReferenceTaxonomy.from_labels(list("abxc"), {"species": ["A", "A", None, "B"]})
    gaps = fit_gaps(reference, *exact_search(vectors, vectors, 4))["species"]
    assert gaps.nearest_other[0] == pytest.approx(cos(28), abs=1e-6)
    assert gaps.others[0].tolist() == [1, -1, -1]


def test_a_rank_of_lone_records_takes_a_spread_of_one():
    """No label with two records to measure: every label's spread is 1.0 (as if its records were
    identical), so that no query looks closer to a label than its own records are."""
    radians = np.deg2rad([0, 40, 80])
    vectors = np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)
    reference = ReferenceTaxonomy.from_labels(["a", "b", "c"], {"species": ["A", "B", "C"]})
    assert fit_gaps(reference, *exact_search(vectors, vectors, 3))["species"].within.tolist() == [1.0] * 3


def test_a_left_out_neighbour_label_is_skipped():
    vectors, reference = circle()
    gaps = fit_gaps(reference, *exact_search(vectors, vectors, len(vectors)))["species"]
    b = reference.names["species"].index("B")
    code, nearest = np.array([b, b, -1]), np.array([0.9, 0.9, 0.9])
    excluded = np.array([[False] * 3, [True, False, False], [False] * 3])  # query 1 left C out
    x = gap_features(gaps, code, nearest, excluded)
    assert x[0] == pytest.approx([0.9 - cos(20), 0.9 - cos(10)], abs=1e-6)
    assert x[1, 1] == pytest.approx(0.9 - cos(28), abs=1e-6)  # C left out: the next label is A (B's 30 to A's 2)
    assert list(x[2]) == [0.0, 0.0]  # no winner
    every = gap_features(gaps, code[:1], nearest[:1], np.array([[True] * 3]))  # all three left out: the farthest kept
    assert every[0, 1] == pytest.approx(0.9 - cos(100), abs=1e-6)  # B's 50 to D's 150, not the left-out C

    # which of the winner's other labels a pseudo-query left out: at the rank it left out and
    # below it (its species), none above it (its genus is still in the reference)
    from clibd_cli.classification.fitting import _left_out

    c = reference.names["species"].index("C")
    truth = {"genus": np.array([0]), "species": np.array([c])}
    assert _left_out(reference, gaps, np.array([b]), "species", "species", truth).tolist() == [[True, False, False]]
    assert _left_out(reference, gaps, np.array([0]), "genus", "species", truth) is None


def test_calibration_with_gaps_reads_five_features_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16))
    species = np.repeat(np.arange(6), 8)
    vectors = centres[species] + rng.normal(scale=0.3, size=(len(species), 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = {"genus": [f"g{s // 2}" for s in species], "species": [f"s{s}" for s in species]}
    index = build_index(vectors.astype(np.float32), [str(i) for i in range(len(species))], labels,
                        model_fingerprint="f", modality="dna", M=8)
    plain = fit_calibration(index, k=10, n_queries=40)
    gapped = fit_calibration(index, k=10, n_queries=40, barcode_gaps=True)
    assert plain.gaps is None and len(plain.ranks["species"]["maps"][0]["coef"]) == 3
    assert set(gapped.gaps) == {"genus", "species"} and len(gapped.ranks["species"]["maps"][0]["coef"]) == 5
    again = Calibration.from_json(json.loads(json.dumps(gapped.to_json())))
    assert again.feature_names == ["log_distance", "margin", "vote_share", "spread", "gap"]
    for rank, gaps in again.rank_gaps().items():  # each label's spread and nearest other label, as fitted
        assert gaps.within.tolist() == gapped.gaps[rank]["within"]
        assert gaps.nearest_other.tolist() == gapped.gaps[rank]["nearest_other"]
    reference = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    rows, sims = index.search(vectors[:5].astype(np.float32), 10)
    assert label(rows, sims, reference, again).features["genus"].shape == (5, 5)
    # the maps of some ranks alone may read the gap (--model kmer-aa's family): the others read it as 0
    genus_only = Calibration.from_json(json.loads(json.dumps(
        fit_calibration(index, k=10, n_queries=40, gap_ranks=["genus"]).to_json())))
    assert set(genus_only.gaps) == {"genus"} and len(genus_only.ranks["species"]["maps"][0]["coef"]) == 5
    features = label(rows, sims, reference, genus_only).features
    assert not features["species"][:, 3:].any() and features["genus"][:, 3:].any()
    # held-out refits keep the gaps of the calibration whose decisions they reuse
    held = fit_calibration_held_out(index, vectors[:12] + 0.01, {"genus": labels["genus"][:10] + ["gx"] * 2,
                                                                  "species": labels["species"][:10] + ["sx"] * 2},
                                    gapped)
    assert held.gaps == gapped.gaps and len(held.ranks["genus"]["maps"][1]["coef"]) == 5
    # queries not labelled at species neither count as seen nor as unseen
    unlabelled = fit_calibration_held_out(index, vectors[:14] + 0.01, {
        "genus": labels["genus"][:10] + ["gx"] * 2 + labels["genus"][:2],
        "species": labels["species"][:10] + ["sx"] * 2 + [None] * 2}, gapped)
    assert unlabelled.fitted_on["held_out_queries"] == [10, 2]


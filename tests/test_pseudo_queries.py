"""The reference's records searched as the calibration's pseudo-queries (pseudo_queries.py)."""

import numpy as np
import pytest

from clibd_cli.classification.pseudo_queries import Nodes, Reading, search_pseudo_queries
from clibd_cli.classification.taxonomy import ReferenceTaxonomy

# records on a circle (similarity: the cosine of the angle between them); genus G holds species
# A and B, genus H only species C (monotypic); record 6 is of genus G, its species unknown
ANGLES = [0, 4, 40, 44, 120, 124, 20]
GENUS = ["G", "G", "G", "G", "H", "H", "G"]
SPECIES = ["A", "A", "B", "B", "C", "C", None]


def search(plans, sisters=0, k=2):
    radians = np.deg2rad(ANGLES)
    vectors = np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)
    reference = ReferenceTaxonomy.from_labels([str(i) for i in range(len(ANGLES))],
                                              {"genus": GENUS, "species": SPECIES})
    return search_pseudo_queries(None, Nodes(vectors, np.arange(len(ANGLES))), np.arange(len(ANGLES)), reference,
                                 k, plans, Reading({}, []), sisters=sisters)


def test_a_seen_query_finds_its_nearest_records_but_itself():
    queries, rows, sims, _ = search([(None, None)])[0]
    assert queries.tolist() == list(range(7)) and rows[:, 0].tolist() == [1, 0, 3, 2, 5, 4, 1]
    assert sims[0] == pytest.approx(np.cos(np.deg2rad([4, 20])), abs=1e-6)  # similarities, best first


def test_a_new_species_query_leaves_out_its_species_and_needs_a_congener_left():
    """The species of a monotypic genus (C) stands for a new genus, not a new species, and a
    record of unknown species (6) cannot stand for a new one; records of the genus whose species
    is unknown may be the query's own species: left out too."""
    queries, rows, _, _ = search([("species", "genus")])[0]
    assert queries.tolist() == [0, 1, 2, 3]
    assert rows[:, 0].tolist() == [2, 2, 1, 1]  # not its species, nor record 6 (20 degrees) of unknown species


def test_sister_species_are_left_out_at_the_finest_rank_only():
    """With ``sisters``, a new-species query also leaves out the species of its nearest labelled
    record (A's: B); a new-genus one leaves out no more than its genus."""
    plans = [("genus", None), ("species", None)]
    (genus, near_genus, _, _), (species, near_species, _, _) = search(plans, sisters=1)
    (genus_alone, near_genus_alone, _, _), (_, near_species_alone, _, _) = search(plans)
    assert np.array_equal(genus, genus_alone) and np.array_equal(near_genus, near_genus_alone)
    assert near_species_alone[0].tolist() == [6, 2] and near_species[0].tolist() == [6, 4]  # B left out too

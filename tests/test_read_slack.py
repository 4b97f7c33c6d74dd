"""Partial reads with errors held by a record missing a few of their 5-mers (``contained.READ_SLACK``):
searched by their 5-mers where the ``dna<500~`` calibration says so; older calibrations hold them whole."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.specimens import stretch

from clibd_cli.classification import classifier as classifier_module
from clibd_cli.classification.calibration import Calibration
from clibd_cli.classification.classifier import Classifier
from clibd_cli.classification.contained import READ_SLACK, KmerCounter, kmer_bits, search_held_whole
from clibd_cli.classification.pseudo_queries import Nodes, Reading, search_pseudo_queries
from clibd_cli.classification.queries import Query
from clibd_cli.classification.query_kinds import SHORT_KIND
from clibd_cli.classification.taxonomy import ReferenceTaxonomy
from clibd_cli.embedding.kmer import kmer_profile
from clibd_cli.reference.index_reading import load_index
from models.errors import ClibdError


def _misread(barcode: str) -> str:
    """A 150-base stretch of ``barcode`` with one base in its middle substituted: up to five of its
    5-mers are in no record."""
    cut = stretch(barcode, 150, "read")
    middle = len(cut) // 2
    return cut[:middle] + {"A": "C", "C": "G", "G": "T", "T": "A"}[cut[middle]] + cut[middle + 1:]


def _reads(index, records) -> tuple[np.ndarray, list[str]]:
    """The rows of ``records`` whose misread stretch no record of ``index`` holds whole, and those
    stretches (each missing at most ``READ_SLACK`` 5-mers from the record most holding it)."""
    reads = [_misread(r.barcode) for r in records]
    bits = kmer_bits(kmer_profile(reads, 5))
    missed = bits.sum(axis=1) - KmerCounter.of_holdings(index.holdings)(bits).max(axis=1)
    assert (missed <= READ_SLACK).all()
    kept = np.flatnonzero(missed > 0)
    assert len(kept) >= len(records) // 2
    return kept, [reads[i] for i in kept]


def test_a_read_no_record_holds_whole_is_found_by_its_5_mers_with_slack(barcode_refs):
    """A stretch with an error that no record holds whole keeps its nearest vectors without slack;
    with ``READ_SLACK`` the records holding all its 5-mers but the error's (its own) are found."""
    index = load_index(barcode_refs.index)
    vectors = index.vectors()
    kept, reads = _reads(index, barcode_refs.records)
    counter = KmerCounter.of_holdings(index.holdings)
    queries = np.random.default_rng(0).normal(size=(len(reads), vectors.shape[1])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    rows, sims = np.zeros((len(reads), 4), dtype=np.int64), np.zeros((len(reads), 4), np.float32)
    profiles = kmer_profile(reads, 5)
    assert not search_held_whole(counter, profiles, queries, vectors, rows, sims)[2].any()
    found, _, held = search_held_whole(counter, profiles, queries, vectors, rows, sims, slack=READ_SLACK)
    shared = counter(kmer_bits(profiles))
    most = shared.max(axis=1, keepdims=True)
    assert (shared[np.arange(len(kept)), kept] == most[:, 0]).all()  # its own record holds the most
    assert held.all() and (np.take_along_axis(shared, found, axis=1).max(axis=1) == most[:, 0]).all()


def test_classify_reads_its_calibrations_slack(barcode_refs, monkeypatch):
    """``clibd classify`` searches a partial barcode by its 5-mers with the slack of its kind's
    calibration: a misread stretch by the records holding most of it with it, by its nearest vectors
    without."""
    searched = []

    def spied(*args, **kwargs):
        out = search_held_whole(*args, **kwargs)
        searched.append(out[2])
        return out

    monkeypatch.setattr(classifier_module, "search_held_whole", spied)
    index = load_index(barcode_refs.index)
    kept, reads = _reads(index, barcode_refs.records)
    records = [barcode_refs.records[i] for i in kept]
    queries = [Query(r.id, barcode=b) for r, b in zip(records, reads)]
    found = Classifier(barcode_refs.index)
    assert found.calibrations[SHORT_KIND].contained_search and found.calibrations[SHORT_KIND].contained_slack == 0
    k = found.calibrations[SHORT_KIND].k  # the neighbours the decision reads, reported nearest first
    found.classify(queries, report=k)
    found.calibrations[SHORT_KIND].contained_slack = READ_SLACK
    results = found.classify(queries, report=k)
    assert not searched[0].any() and searched[1].all()
    shared = KmerCounter.of_holdings(index.holdings)(kmer_bits(kmer_profile(reads, 5)))
    near = np.array([[index.ids.index(n.id) for n in res.neighbours] for res in results])
    assert (np.take_along_axis(shared, near, axis=1).max(axis=1) == shared.max(axis=1)).all()


def test_pseudo_queries_read_with_errors_are_held_with_slack(barcode_refs):
    """Fitting searches the calibration's pseudo-queries as it says: a misread stretch no record holds
    whole keeps its nearest vectors without slack; with it, it gets the records (itself left out)
    holding the most of its 5-mers."""
    index = load_index(barcode_refs.index)
    vectors = index.vectors()
    taxonomy = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    cut, reads = _reads(index, barcode_refs.records)
    shared = KmerCounter.of_holdings(index.holdings)(kmer_bits(kmer_profile(reads, 5)))
    shared[np.arange(len(cut)), cut] = -1  # itself, left out
    position = np.full(len(vectors), -1)
    position[cut] = np.arange(len(cut))
    nodes = Nodes(index.node_vectors(), index.nodes)
    found = []
    for contained, slack in ((False, 0), (True, 0), (True, READ_SLACK)):
        read = Reading({"species": [0, vectors.shape[1]]}, ["species"], (kmer_profile(reads, 5), index.holdings),
                       contained, slack)
        queries, rows, _, _ = search_pseudo_queries((vectors[cut], position), nodes, cut, taxonomy, 4,
                                                    [(None, None)], read)[0]
        assert np.array_equal(queries, cut)
        found.append(rows)
    assert np.array_equal(found[0], found[1]) and not np.array_equal(found[0], found[2])
    assert (np.take_along_axis(shared, found[2], axis=1).max(axis=1) == shared.max(axis=1)).all()


def test_calibrations_without_slack_load_and_write_as_before():
    """A calibration written before the slack (or of another kind) has none, reads 0 and is written
    back the same; a slack needs the 5-mer search and is a whole number of 5-mers."""
    data = {"k": 5, "prior_unseen": None, "unseen_genus_fraction": 0.1, "ranks": {}, "fitted_on": {},
            "rank_parts": {"species": [0, 1024]}, "containment": ["species"], "contained_search": True}
    old = Calibration(**data).to_json()
    assert "contained_slack" not in old and Calibration.from_json(old).contained_slack == 0
    assert Calibration.from_json(old).to_json() == old
    slack = Calibration(**data, contained_slack=READ_SLACK).to_json()
    assert Calibration.from_json(slack).contained_slack == READ_SLACK
    for wrong in ({**old, "contained_slack": -1}, {**old, "contained_slack": 2.5},
                  {**old, "contained_search": False, "contained_slack": 3}):
        with pytest.raises(ClibdError, match="unsupported calibration format"):
            Calibration.from_json(wrong)

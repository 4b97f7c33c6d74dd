"""Partial barcodes held whole by a reference record are searched by their 5-mers (contained.py)."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
from fixtures.specimens import Specimen, run, stretch, write_fasta

from clibd_cli.classification.calibration import Calibration
from clibd_cli.classification.classifier import Classifier
from clibd_cli.classification.contained import KmerCounter, contained_neighbours, held_whole, kmer_bits
from clibd_cli.classification.pseudo_queries import Nodes, Reading, search_pseudo_queries
from clibd_cli.classification.queries import Query
from clibd_cli.classification.query_kinds import SHORT_KIND
from clibd_cli.classification.taxonomy import ReferenceTaxonomy
from clibd_cli.embedding.kmer import kmer_profile
from clibd_cli.reference.holdings import kmer_holdings
from clibd_cli.reference.index_reading import load_index
from clibd_cli.reference.index_info import describe_index
from models.errors import ClibdError

SAMPLE = Path(__file__).parents[1] / "examples" / "bold-sample.csv.gz"
RANKS = ("order", "family", "genus", "species")
BARCODE = ("AACATTATATTTTATTTTTGGAATTTGAGCAGGTATAGTAGGAACTTCTTTAAGATTATTAATTCGAGCAGAATTAGGAAATCCAGGAT"
           "CATTAATTGGTGATGACCAAATTTATAATACTATTGTAACAGCTCATGCATTCATTATAATTTTTTTTATAGTTATACCTATTATAATTG")


def neighbours(query: str, references: list[str], sims: list[float], k: int, excluded=None, records=None,
               decide=None):
    """The neighbours of one query with vector similarities ``sims`` to ``references``: by its
    5-mers if a record left in holds it whole (contained_neighbours), else its k nearest vectors."""
    bits = kmer_bits(kmer_profile([query], 5))
    scores = np.array([sims], dtype=np.float32)
    shared = KmerCounter.of_holdings(kmer_holdings(references))(bits)
    excluded = None if excluded is None else np.array([excluded])
    if not held_whole(bits, shared, excluded)[0]:  # as given: the nearest vectors
        rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return rows[0].tolist(), np.take_along_axis(scores, rows, axis=1)[0].tolist()
    rows, found = contained_neighbours(shared, lambda q, c: scores[q, c], k, decide, excluded, records)
    return rows[0].tolist(), found[0].tolist()


def test_a_query_held_whole_gets_the_records_holding_most_of_it_nearest_vector_first():
    query = BARCODE[20:170]
    mutated = query[:70] + ("C" if query[70] != "C" else "G") + query[71:]
    references = [BARCODE, "T" * 200, BARCODE[:180] + "GGGG", mutated, "ACGT" * 50, BARCODE[10:175]]
    sims = [0.1, 0.9, 0.2, 0.5, 0.8, 0.3]
    rows, found = neighbours(query, references, sims, 3)
    # 0, 2 and 5 hold it whole, 3 all but the 5-mers round one base; by vectors 1 and 4 would come first
    assert rows == [5, 2, 0] and found == pytest.approx([0.3, 0.2, 0.1])
    rows, _ = neighbours(query, references, sims, 4)
    assert rows == [3, 5, 2, 0]  # sorted by vector similarity, as every neighbour list
    # records holding as many as the k-th: the nearer vectors go in
    assert neighbours(query, references, sims, 2)[0] == [5, 2]
    # more neighbours asked (--report) than the decision reads: its k first, then the next by 5-mers
    assert neighbours(query, references, sims, 4, decide=2)[0] == [5, 2, 3, 0]
    # no record held whole (those that are left out): the nearest vectors, as given
    assert neighbours(query, references, sims, 3, excluded=[True, False, True, False, False, True])[0] == [1, 4, 3]
    assert neighbours("ACGTTGCA" * 20, references, sims, 2)[0] == [1, 4]
    assert neighbours("ACGNTACN" * 20, references, sims, 2)[0] == [1, 4]  # no 5-mer at all: none held
    base = next(base for base in "ACGT" if not any(query[-5:-1] + base in r for r in references))
    assert neighbours(query[:-1] + base, references, sims, 2)[0] == [1, 4]  # one 5-mer no record holds: none
    # fewer records left than k: those, then none (similarity -inf), as an exact search finds
    rows, found = neighbours(query, references, sims, 3, excluded=[False, True, True, True, True, True])
    assert rows[0] == 0 and found[0] == pytest.approx(0.1) and found[1:] == [-np.inf, -np.inf]
    # the columns may be a subset of the reference (--taxa): rows are given as record rows
    rows, _ = neighbours(query, references[2:], sims[2:], 2, records=np.array([12, 13, 14, 15]))
    assert rows == [15, 12]


def test_the_counter_counts_each_records_5_mers_exactly(monkeypatch):
    """Counts over 256 (a 400-base stretch holds more 5-mers) stay exact: bfloat16 products of 256
    5-mers at a time; float32 ones in numpy from a model-free index's vectors, each record at its
    distinct vector's row."""
    from clibd_cli.classification import contained

    with gzip.open(SAMPLE, "rt") as handle:
        whole = [r["dna_barcode"].replace("-", "") for r in csv.DictReader(handle)][:4]
    barcodes = [BARCODE[i: i + 120] for i in range(0, 60, 6)] + whole  # 345-376 distinct 5-mers each
    bits = kmer_bits(kmer_profile(barcodes[:3] + barcodes[-2:], 5))
    expected = bits @ (kmer_profile(barcodes, 5) > 0).T
    assert expected.max() > 256
    assert np.array_equal(KmerCounter.of_holdings(kmer_holdings(barcodes))(bits), expected)
    assert np.array_equal(kmer_bits(kmer_holdings(barcodes[:3])), bits[:3])  # records read as queries
    twice = KmerCounter.of_holdings(kmer_holdings(barcodes[3:5] + barcodes + barcodes[:1]))  # counted once each
    assert len(twice._groups[0]) == len(np.unique(kmer_holdings(barcodes), axis=0))
    assert np.array_equal(twice(bits), np.hstack([expected[:, 3:5], expected, expected[:, :1]]))
    profiles = kmer_profile(barcodes + barcodes[:2], 5)
    vectors = np.hstack([profiles, np.ones((len(profiles), 7), dtype=np.float32)])  # a part beside the 5-mers
    distinct, of_record = np.unique(vectors, axis=0, return_inverse=True)
    counter = contained.records_counter(None, distinct, [0, 4**5], of_record.ravel())
    assert np.array_equal(counter(bits), np.hstack([expected, expected[:, :2]]))
    monkeypatch.setattr(contained, "_RECORDS_PER_PRODUCT", 3)  # the products a few records at a time
    monkeypatch.setattr(contained, "_ROWS_CONVERTED", 3)
    assert np.array_equal(KmerCounter.of_holdings(kmer_holdings(barcodes))(bits), expected)
    assert np.array_equal(counter(bits), np.hstack([expected, expected[:, :2]]))


def test_a_query_of_no_more_5_mers_than_the_slack_is_held_by_no_record():
    """``held_whole``: a query without a 5-mer, or with no more than ``slack``, is held by none (a
    record holding none of them would hold it "whole"); one more than the slack, held but the slack, is."""
    bits = np.zeros((3, 4**5), dtype=np.float32)
    bits[1, :3] = bits[2, :4] = 1.0
    shared = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    assert held_whole(bits, shared).tolist() == [False, False, False]
    assert held_whole(bits, shared, slack=3).tolist() == [False, False, True]


def test_a_counter_row_of_no_record_holds_no_query_whole():
    """A row of the counter no record is at (``of_record``) holds nothing: a query only it holds
    keeps its nearest vectors (``held_whole_neighbours``)."""
    from clibd_cli.classification.contained import held_whole_neighbours

    held = kmer_profile(["ACGT" * 50, BARCODE], 5) > 0  # the second row: no record's
    counter = KmerCounter(held, np.array([0, 0]), bfloat16=False)
    profiles = kmer_profile([BARCODE[20:170], "ACGT" * 20], 5)
    vectors = np.eye(2, 4, dtype=np.float32)
    _, sims, found = held_whole_neighbours(counter, profiles, vectors, vectors, 1, None, None, None, 256, 0)
    assert found.tolist() == [False, True] and sims[0, 0] == -np.inf


def coleophora() -> list[Specimen]:
    """The 18 *Coleophora* records of the sample's ``train`` split whose species has two or more."""
    with gzip.open(SAMPLE, "rt") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "train" and r["genus"] == "Coleophora"]
    return [Specimen(r["processid"], r["dna_barcode"].replace("-", ""), {rank: r[rank] or None for rank in RANKS})
            for r in rows if sum(o["species"] == r["species"] for o in rows) >= 2]


def test_partial_barcodes_find_their_species_by_5_mers_where_the_vectors_miss_it(tiny_model, tmp_path, monkeypatch):
    """A random-weight model with 3 neighbours a query: by its vectors a stretch's species is
    rarely among them; held whole by its own record, it is found by its 5-mers, with ``--taxa``
    too. Off, the same index names far fewer."""
    records = coleophora()
    result = run("-q", "index", "-m", tiny_model, "-k", "3", write_fasta(tmp_path / "refs.fa", records),
                 "-o", tmp_path / "index")
    assert result.exit_code == 0, result.stderr
    index = load_index(tmp_path / "index")
    partial = Calibration.from_json(index.calibration[SHORT_KIND])
    assert partial.contained_search and partial.to_json()["contained_search"] is True
    assert "those a record holds whole searched by their 5-mers" in describe_index(index)
    queries = [Query(r.id, barcode=stretch(r.barcode, 200, r.id)) for r in records]
    truth = [r.lineage["species"] for r in records]

    def named(**options) -> int:
        results = Classifier(tmp_path / "index", **options).classify(queries, report=3)
        own = [{n.id for n in res.neighbours} for res in results]
        assert all(r.id in ids for r, ids in zip(records, own)) or not partial.contained_search
        return sum(res.prediction.labels["species"] == t for res, t in zip(results, truth))

    assert named() == 18 and named(taxa=["Coleophora"]) == 18
    partial.contained_search = False
    monkeypatch.setattr(Calibration, "from_json", lambda data, _orig=Calibration.from_json: (
        partial if data.get("contained_search") else _orig(data)))
    assert named() <= 10


def test_a_reference_over_the_limit_searches_partial_barcodes_by_vectors_alone(tiny_model, tmp_path, monkeypatch):
    """Over ``contained.MAX_RECORDS`` records the 5-mer search is not fitted (the counter would keep
    over 256 MB), and its queries are searched by their vectors."""
    from clibd_cli.classification import query_kinds

    monkeypatch.setattr(query_kinds, "CONTAINED_RECORDS", 17)
    result = run("-q", "index", "-m", tiny_model, "-k", "3", write_fasta(tmp_path / "refs.fa", coleophora()),
                 "-o", tmp_path / "index")
    assert result.exit_code == 0, result.stderr
    index = load_index(tmp_path / "index")
    partial = Calibration.from_json(index.calibration[SHORT_KIND])
    assert (partial.containment_source, partial.contained_search) == ("holdings", False)
    assert "searched by their 5-mers" not in describe_index(index)


def test_pseudo_queries_held_whole_leave_out_what_their_plan_leaves_out(barcode_refs):
    """Searched by their 5-mers, seen pseudo-queries still never find themselves, and new-species
    ones never their own species, though its records hold them whole."""
    index = load_index(barcode_refs.index)
    barcodes, vectors = [r.barcode for r in barcode_refs.records], index.vectors()
    taxonomy = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    cut = np.arange(len(vectors))
    stretches = [stretch(b, 200, str(i)) for i, b in enumerate(barcodes)]
    read = Reading({"species": [0, vectors.shape[1]]}, ["species"], (kmer_profile(stretches, 5), index.holdings),
                   contained=True)
    seen, unseen = search_pseudo_queries((vectors, cut), Nodes(index.node_vectors(), index.nodes), cut, taxonomy,
                                         4, [(None, None), ("species", "genus")], read)
    queries, rows, _, by_rank = seen
    assert not (rows == queries[:, None]).any()
    shared = KmerCounter.of_holdings(index.holdings)(kmer_bits(kmer_profile([stretches[q] for q in queries], 5)))
    shared[np.arange(len(queries)), queries] = -1  # itself, left out
    held_whole = shared.max(axis=1) == kmer_bits(kmer_profile([stretches[q] for q in queries], 5)).sum(axis=1)
    chosen = np.take_along_axis(shared, rows, axis=1).min(axis=1)
    picked = np.zeros(shared.shape, dtype=bool)
    np.put_along_axis(picked, rows, True, axis=1)
    others = np.where(picked, -1, shared).max(axis=1)
    assert held_whole.sum() >= len(queries) // 2 and (chosen[held_whole] >= others[held_whole]).all()
    twins = [[j for j, b in enumerate(barcodes) if b == barcodes[q] and j != q] for q in queries]
    assert all(set(t) <= set(r) for t, r in zip(twins, rows.tolist()))  # a twin holds it whole: found
    assert (by_rank["species"][:, :1] <= 1.0 + 1e-6).all() and by_rank["species"].max() == pytest.approx(1.0)
    queries, rows, _, _ = unseen
    species = taxonomy.codes["species"]
    assert len(queries) and not (species[rows] == species[queries][:, None]).any()
    with pytest.raises(ValueError, match="read by k-mer containment expected"):
        search_pseudo_queries(None, Nodes(index.node_vectors(), index.nodes), cut, taxonomy, 4, [(None, None)],
                              Reading({}, [], None, contained=True))


def test_only_a_calibration_reading_containment_searches_by_5_mers():
    """From the index's holdings (a learned model's) or its vectors' 5-mer part (a model-free
    index's): either reads a rank by containment; one that reads none cannot search by 5-mers."""
    data = {"k": 5, "prior_unseen": None, "unseen_genus_fraction": 0.1, "ranks": {}, "fitted_on": {}}
    read = {"rank_parts": {"species": [0, 1024]}, "containment": ["species"]}
    for source in ("holdings", "vectors"):
        calibration = Calibration(**data, **read, containment_source=source, contained_search=True)
        assert Calibration.from_json(calibration.to_json()).contained_search
    assert "contained_search" not in Calibration(**data, **read).to_json()  # as calibrations were written before
    with pytest.raises(ClibdError, match="unsupported calibration format"):
        Calibration.from_json({**Calibration(**data).to_json(), "contained_search": True})


def test_held_out_queries_held_whole_are_searched_by_their_5_mers(barcode_refs, tiny_model):
    """``clibd index --calibrate-on`` refits on held-out stretches searched as ``clibd classify``
    searches them: those a record holds whole get the records holding most of them, the others
    keep their nearest vectors; the refit keeps reading so."""
    from clibd_cli.classification import fitting
    from clibd_cli.embedding.embedder import Embedder, load_model_for
    from clibd_cli.reference.search import exact_search

    index = load_index(barcode_refs.index)
    vectors = index.vectors()
    with gzip.open(SAMPLE, "rt") as handle:
        new = [r["dna_barcode"].replace("-", "") for r in csv.DictReader(handle) if r["split"] == "test_unseen"][:6]
    barcodes = [stretch(r.barcode, 200, r.id) for r in barcode_refs.records[:12]] + [stretch(b, 200, "n") for b in new]
    queries = Embedder(load_model_for(str(tiny_model), ["dna"])).barcodes(barcodes)
    profiles = kmer_profile(barcodes, 5)
    rows, sims = exact_search(vectors, queries, 4)
    got, got_sims = fitting._contained(queries, profiles, vectors, index.holdings, rows, sims, [], block=5)
    shared = KmerCounter.of_holdings(index.holdings)(kmer_bits(profiles))
    whole = shared.max(axis=1) == kmer_bits(profiles).sum(axis=1)
    assert whole[:12].all() and (~whole).sum() >= 3
    assert np.array_equal(got[~whole], rows[~whole]) and np.array_equal(got_sims[~whole], sims[~whole])
    assert (np.take_along_axis(shared, got, axis=1)[:12] == shared[:12].max(axis=1, keepdims=True)).any(axis=1).all()
    assert np.allclose(got_sims, np.einsum("qd,qkd->qk", queries, vectors[got]), atol=1e-5)
    assert (np.diff(got_sims, axis=1) <= 1e-6).all()  # best first


def test_classify_searches_the_queries_held_whole_as_the_held_out_refit_does(barcode_refs, monkeypatch):
    """``clibd classify``'s 5-mer search (``Classifier._contained``) finds what the held-out refit's
    does (``fitting._contained``), a few queries at a time: twins share a graph node (nodes are not
    records), ``--taxa``'s records are a subset given back as record rows, and with more neighbours
    asked than the decision reads (``--report``) its ``k`` come first; those no record holds whole
    keep the neighbours given."""
    from clibd_cli.classification import classifier, fitting
    from clibd_cli.reference.search import exact_search

    index = load_index(barcode_refs.index)
    vectors = index.vectors()
    assert len(index.node_vectors()) < len(vectors)
    with gzip.open(SAMPLE, "rt") as handle:
        new = [r["dna_barcode"].replace("-", "") for r in csv.DictReader(handle) if r["split"] == "test_unseen"][:4]
    barcodes = [stretch(r.barcode, 150, r.id) for r in barcode_refs.records[::3]] + [stretch(b, 150, "n") for b in new]
    queries = np.random.default_rng(0).normal(size=(len(barcodes), vectors.shape[1])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    profiles = kmer_profile(barcodes, 5)
    monkeypatch.setattr(classifier, "CONTAINED_SCORES", 3 * len(vectors))  # 3 queries a block
    genera = sorted({r.lineage["genus"] for r in barcode_refs.records if r.lineage["genus"]})[:2]
    for taxa in (None, genera):
        found = Classifier(barcode_refs.index, taxa=taxa)
        within = np.arange(len(vectors)) if taxa is None else found.within
        assert len(within) < len(vectors) or taxa is None
        local, sims = exact_search(vectors[within], queries, 8)
        rows, got, _ = found._contained(profiles, queries, within[local[:, :3]], sims[:, :3], 3, [])
        held, held_sims = fitting._contained(queries, profiles, vectors[within], index.holdings[within],
                                             local[:, :3], sims[:, :3], [], block=4)
        whole = (held != local[:, :3]).any(axis=1)
        assert whole.any() and (~whole).any()
        assert np.array_equal(rows, within[held]) and np.allclose(got, held_sims, atol=1e-6)
        wider, _, searched = found._contained(profiles, queries, within[local], sims, 3, [])  # --report 8, k 3
        bits = kmer_bits(profiles)
        most = KmerCounter.of_holdings(index.holdings[within])(bits).max(axis=1)
        assert np.array_equal(searched, most == bits.sum(axis=1))
        assert np.array_equal(np.sort(wider[:, :3], axis=1), np.sort(rows, axis=1))
        assert not np.array_equal(wider[whole, :3], found._contained(profiles, queries, within[local], sims, 8, [])[0][
            whole, :3])  # the decision's 3 by 5-mers, not the nearest 3 of the 8


def test_a_pseudo_query_held_whole_only_by_records_its_plan_leaves_out_keeps_its_nearest_vectors(barcode_refs):
    """A new-species pseudo-query whose stretch only its own species' records hold whole is searched
    by its vectors, as exactly as before, among the records left in; a short one another species
    holds whole, by its 5-mers."""
    index = load_index(barcode_refs.index)
    vectors, taxonomy = index.vectors(), ReferenceTaxonomy.from_labels(index.ids, index.labels)
    cut = np.arange(len(vectors))
    stretches = [stretch(r.barcode, 200 if i % 4 else 30, str(i)) for i, r in enumerate(barcode_refs.records)]
    read = Reading({"species": [0, vectors.shape[1]]}, ["species"], (kmer_profile(stretches, 5), index.holdings),
                   contained=True)
    queries, rows, sims, _ = search_pseudo_queries((vectors, cut), Nodes(index.node_vectors(), index.nodes), cut,
                                                   taxonomy, 4, [("species", "genus")], read)[0]
    species, genus = taxonomy.codes["species"], taxonomy.codes["genus"]
    left = ~((species == species[queries][:, None]) | ((genus == genus[queries][:, None]) & (species < 0)))
    bits = kmer_bits(kmer_profile([stretches[q] for q in queries], 5))
    shared = KmerCounter.of_holdings(index.holdings)(bits)
    whole = np.where(left, shared, -1).max(axis=1) == bits.sum(axis=1)
    nearest = -np.sort(-np.where(left, vectors[queries] @ vectors.T, -np.inf), axis=1)[:, :4]
    assert (~whole).sum() >= 3 and whole.any()
    assert np.allclose(sims[~whole], nearest[~whole], atol=1e-6)
    assert (np.take_along_axis(shared, rows, axis=1)[whole] == bits.sum(axis=1)[whole, None]).any(axis=1).all()
    assert np.allclose(sims, np.einsum("qd,qkd->qk", vectors[queries], vectors[rows]), atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # best first


def test_a_model_free_index_searches_partial_barcodes_by_its_vectors_5_mers(tmp_path, monkeypatch):
    """``--model kmer-aa`` keeps no holdings: its vectors' 5-mer part is what a record holds. A
    stretch of a record gets the records holding the most of its 5-mers (its own among them), as
    the pseudo-query fit searched, and PyTorch is never imported; off, the nearest 5-mer vectors
    are other records for some of them."""
    import subprocess
    import sys

    records = coleophora()
    result = run("-q", "index", "-m", "kmer-aa", "-k", "3", write_fasta(tmp_path / "refs.fa", records),
                 "-o", tmp_path / "index")
    assert result.exit_code == 0, result.stderr
    index = load_index(tmp_path / "index")
    partial = Calibration.from_json(index.calibration[SHORT_KIND])
    assert (partial.containment_source, partial.contained_search) == ("vectors", True) and index.holdings is None
    assert "those a record holds whole searched by their 5-mers" in describe_index(index)
    cuts = [stretch(r.barcode, 120, r.id) for r in records]
    held = kmer_profile([r.barcode for r in records], 5) > 0
    bits = kmer_bits(kmer_profile(cuts, 5))
    shared = bits @ held.T
    top = -np.sort(-shared, axis=1)[:, :3]  # the counts of the 3 records holding the most of each

    def found(**options) -> list[list[int]]:
        results = Classifier(tmp_path / "index", **options).classify([Query(r.id, barcode=c)
                                                                      for r, c in zip(records, cuts)], report=3)
        rows = {r.id: i for i, r in enumerate(records)}
        return [[rows[n.id] for n in res.neighbours] for res in results]

    for near in (found(), found(taxa=["Coleophora"])):
        assert all(i in rows for i, rows in enumerate(near))
        assert np.array_equal(np.sort(np.take_along_axis(shared, np.array(near), axis=1), axis=1)[:, ::-1], top)
    code = ("import sys; from clibd_cli.classification.classifier import Classifier; "
            "from clibd_cli.classification.queries import Query; "
            f"r = Classifier({str(tmp_path / 'index')!r}).classify([Query('q', barcode={cuts[0]!r})]); "
            "assert r[0].prediction.labels['species'], r; assert 'torch' not in sys.modules, 'torch imported'")
    checked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    partial.contained_search = False
    monkeypatch.setattr(Calibration, "from_json", lambda data, _orig=Calibration.from_json: (
        partial if data.get("contained_search") else _orig(data)))
    near = found()
    assert not np.array_equal(np.sort(np.take_along_axis(shared, np.array(near), axis=1), axis=1)[:, ::-1], top)


@pytest.fixture(scope="module")
def beetles(tmp_path_factory) -> tuple[Path, list[Specimen]]:
    """A ``--model kmer-aa`` index (no holdings: its vectors' 5-mer part stands for them) of the
    sample's ``train`` Coleoptera, and the records."""
    with gzip.open(SAMPLE, "rt") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "train" and r["order"] == "Coleoptera"]
    records = [Specimen(r["processid"], r["dna_barcode"].replace("-", ""), {rank: r[rank] or None for rank in RANKS})
               for r in rows]
    work = tmp_path_factory.mktemp("beetles")
    result = run("-q", "index", "-m", "kmer-aa", "-k", "3", write_fasta(work / "refs.fa", records),
                 "-o", work / "index")
    assert result.exit_code == 0, result.stderr
    return work / "index", records


def test_a_model_free_index_fits_and_classifies_partial_barcodes_searched_alike(beetles, monkeypatch):
    """By the vectors' 5-mer part: the pseudo-query fit, the held-out refit and ``clibd classify``
    give a stretch a record holds whole the records holding the most of its 5-mers, ties to the
    higher product of the 5-mer part (the part the stretch is searched by), as
    ``contained_neighbours`` does; new species' stretches keep their nearest vectors."""
    from clibd_cli.classification import fitting
    from clibd_cli.classification.calibration import part_only
    from clibd_cli.embedding.unit import unit_rows

    path, records = beetles
    index, classifier = load_index(path), Classifier(path)
    partial = classifier.calibrations[SHORT_KIND]
    assert partial.contained_search and partial.containment_source == "vectors" and index.holdings is None
    with gzip.open(SAMPLE, "rt") as handle:
        new = [r for r in csv.DictReader(handle) if r["split"] == "test_unseen" and r["order"] == "Coleoptera"][:20]
    cuts = [stretch(r.barcode, length, r.id) for r in records for length in (100, 200)]
    cuts += [stretch(r["dna_barcode"], 200, r["processid"]) for r in new]
    results = classifier.classify(asked := [Query(f"q{i}", barcode=c) for i, c in enumerate(cuts)], report=3)
    cuts = [q.barcode for q in asked]  # on the strand the sketch reads them (one 100-base stretch turned)
    queries = classifier.embedder.barcodes(cuts)
    unit_rows(queries)
    vectors, n = index.vectors(), len(cuts)
    bits = kmer_bits(queries[:, :1024])
    shared = bits @ (vectors[:, :1024] > 0).T
    scores = part_only(queries, [0, 1024]) @ vectors.T

    def expected(at: np.ndarray, excluded: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        whole = held_whole(bits[at], shared[at], excluded)
        rows, _ = contained_neighbours(shared[at], lambda q, c: scores[at][q, c], 3, excluded=excluded)
        return whole, rows

    whole, rows = expected(np.arange(n))  # the refit and classify: every record searched
    assert whole[: 2 * len(records)].mean() > 0.99 and (~whole).sum() >= 10
    read, measure = [], fitting.rank_similarities
    monkeypatch.setattr(fitting, "rank_similarities", lambda *args, **kw: read.append(args[3]) or measure(*args, **kw))
    labels = {rank: [r.lineage[rank] for r in records for _ in (0, 1)] + [r[rank] or None for r in new]
              for rank in RANKS}
    fitting.fit_calibration_held_out(index, queries, labels, partial, query_bases=np.full(n, 150.0))
    assert np.array_equal(read[0][whole], rows[whole])
    ids = {r.id: i for i, r in enumerate(records)}
    found = np.array([[ids[nb.id] for nb in res.neighbours] for res in results])
    assert np.array_equal(np.sort(found[whole], axis=1), np.sort(rows[whole], axis=1))
    sample = np.arange(len(records))  # the pseudo-queries: their 100-base stretches, themselves left out
    seen = search_pseudo_queries((queries, 2 * sample), Nodes(index.node_vectors(), index.nodes), sample,
                                 ReferenceTaxonomy.from_labels(index.ids, index.labels), 3, [(None, None)],
                                 Reading(partial.rank_parts, partial.containment, None, True))[0]
    at = 2 * seen[0]
    whole, rows = expected(at, np.eye(len(records), dtype=bool)[seen[0]])
    assert whole.sum() > len(at) / 2 and np.array_equal(seen[1][whole], rows[whole])


def test_more_neighbours_reported_keep_the_decision_of_a_model_free_index(beetles):
    """``--report`` more than the calibration's k lists more records; the decision still reads the
    k it reads without (for a stretch searched by its 5-mers, the records holding the most of them,
    not the nearest by cosine of the longer list)."""
    path, records = beetles
    queries = [Query(f"{r.id}-{length}", barcode=stretch(r.barcode, length, r.id))
               for r in records for length in (100, 150, 300)]
    k = Classifier(path).calibrations[SHORT_KIND].k
    plain, wide = (Classifier(path).classify(queries, report=report) for report in (k, k + 5))
    assert [[n.id for n in r.neighbours] for r in plain] == [[n.id for n in r.neighbours[:k]] for r in wide]
    assert [(r.prediction.labels, r.prediction.confidence) for r in plain] == [
        (r.prediction.labels, r.prediction.confidence) for r in wide]


def test_stretches_held_whole_are_counted_by_node_and_not_searched_in_the_graph(beetles, barcode_refs, monkeypatch):
    """The 5-mers are counted once per distinct row of the counter (``KmerCounter.distinct``, each
    record at its row): the same neighbours as counted by record. ``clibd classify`` searches the
    graph only for the stretches no record holds whole (those held whole take their 5-mers')."""
    from clibd_cli.classification.contained import search_held_whole

    index = load_index(barcode_refs.index)
    counter = KmerCounter.of_holdings(index.holdings)
    assert counter.of_record is not None and counter.of_record.max() + 1 < len(index.holdings)  # twins share a row
    bits = kmer_bits(kmer_profile([stretch(r.barcode, 150, r.id) for r in barcode_refs.records[::2]], 5))
    shared, scores = counter.distinct(bits), np.random.default_rng(1).random((len(bits), len(index.holdings)))
    assert np.array_equal(counter(bits), shared[:, counter.of_record])
    for width, k in ((5, 3), (12, None)):
        got = contained_neighbours(shared, lambda q, c: scores[q, c], width, k, members=counter.members)
        want = contained_neighbours(counter(bits), lambda q, c: scores[q, c], width, k)
        assert all(np.array_equal(a, b) for a, b in zip(got, want))

    path, records = beetles
    with gzip.open(SAMPLE, "rt") as handle:
        new = [r for r in csv.DictReader(handle) if r["split"] == "test_unseen" and r["order"] == "Coleoptera"][:20]
    cuts = [stretch(r.barcode, 150, r.id) for r in records] + [stretch(r["dna_barcode"], 150, r["processid"])
                                                               for r in new]
    classifier, searched = Classifier(path), []
    graph, index = classifier.index.search, classifier.index
    monkeypatch.setattr(index, "search", lambda q, k, **kw: searched.append(q) or graph(q, k, **kw))
    classifier.classify([Query(f"q{i}", barcode=c) for i, c in enumerate(cuts)])
    queries = np.concatenate(searched)  # their 5-mer part: the rest zero
    assert 0 < len(queries) < len(cuts) / 2  # most are held whole: not searched in the graph
    counter = KmerCounter(index.node_vectors()[:, :1024] > 0, index.nodes, bfloat16=False)
    blank = np.zeros((len(queries), 50))
    assert not search_held_whole(counter, queries[:, :1024], queries, index.node_vectors(), blank, blank)[2].any()

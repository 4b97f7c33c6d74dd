"""The 5-mers each record of a learned model's index holds (``reference/holdings.py``): partial
barcodes' species by k-mer containment where the vectors are not k-mer profiles."""

from __future__ import annotations

import csv
import gzip
import json
from concurrent.futures import ThreadPoolExecutor as ThreadPool
from pathlib import Path

import numpy as np
import pytest
from fixtures.specimens import Specimen, run, specimens, stretch, write_fasta

from clibd_cli.classification.barcode_gap import NEIGHBOURS, fit_gaps
from clibd_cli.classification.calibration import Calibration, rank_similarities
from clibd_cli.classification.classifier import Classifier
from clibd_cli.classification.fitting import (fit_calibration, fit_calibration_held_out,
                                              reference_gaps)
from clibd_cli.classification.pseudo_queries import Nodes, Reading, search_pseudo_queries
from clibd_cli.classification.queries import Query
from clibd_cli.classification.query_kinds import (SHORT_KIND, PartialQueries, _regapped, partial_calibration,
                                                  short_pseudo_queries, short_queries)
from clibd_cli.classification.taxonomy import ReferenceTaxonomy
from clibd_cli.embedding.embedder import Embedder, load_model_for
from clibd_cli.embedding.kmer import kmer_profile
from clibd_cli.indexing.pack import add_holdings, pack_index, resketch_pack, unpack_index
from clibd_cli.io.sequences import reverse_complement
from clibd_cli.reference.holdings import HOLDINGS_FILE, kmer_holdings, load_holdings
from clibd_cli.reference.index_reading import load_index
from clibd_cli.reference.index_info import describe_index
from models.errors import ClibdError

SAMPLE = Path(__file__).parents[1] / "examples" / "bold-sample.csv.gz"
RANKS = ("order", "family", "genus", "species")


def reference_stretches(barcodes: list[str], model: Path) -> PartialQueries:
    """The partial-barcode pseudo-queries ``clibd index`` cuts from ``barcodes`` (seed 0), embedded by ``model``."""
    embedder = Embedder(load_model_for(str(model), ["dna"]))
    return short_queries(embedder, short_pseudo_queries(barcodes, range(len(barcodes)), 0), None, 0)


def share_held(query: str, barcode: str, distinct: bool = False) -> float:
    """The share of ``query``'s 5-mers (each once if ``distinct``) that ``barcode`` holds, counted
    from the strings themselves."""
    kmers = [query[i: i + 5] for i in range(len(query) - 4) if set(query[i: i + 5]) <= set("ACGT")]
    kmers = sorted(set(kmers)) if distinct else kmers
    held = {barcode[i: i + 5] for i in range(len(barcode) - 4)}
    return sum(kmer in held for kmer in kmers) / len(kmers)


def test_holdings_read_the_containment_the_k_mer_profiles_give(barcode_refs):
    barcodes = [r.barcode for r in barcode_refs.records]
    profiles, held = kmer_profile(barcodes, 5), kmer_holdings(barcodes)
    assert held.shape == (len(barcodes), 128) and held.dtype == np.uint8
    assert np.array_equal(np.unpackbits(held, axis=1).astype(bool), profiles > 0)
    rows = np.random.default_rng(0).integers(0, len(barcodes), (6, 5))
    queries = kmer_profile([stretch(b, 150, str(i)) for i, b in enumerate(barcodes[:6])], 5)
    parts, contained = {"species": [0, 1024]}, ["species"]
    by_profiles = rank_similarities(parts, queries, profiles, rows, containment=contained)["species"]
    by_holdings = rank_similarities(parts, np.zeros((6, 8)), np.zeros((len(barcodes), 8)), rows,
                                    containment=contained, holdings=(queries, held, rows))["species"]
    assert np.allclose(by_profiles, by_holdings) and by_profiles.max() == pytest.approx(1.0)
    # a record read as a query (packed, each 5-mer once) is contained whole in itself
    own = rank_similarities(parts, np.zeros((6, 8)), np.zeros((len(barcodes), 8)), rows, containment=contained,
                            holdings=(held[rows[:, 0]], held, rows))["species"]
    assert np.allclose(own[:, 0], 1.0) and (own <= 1.0 + 1e-6).all()


def test_partial_barcodes_of_a_learned_model_read_species_from_the_holdings(tiny_model, tmp_path, monkeypatch):
    """Eight *Coleophora* species (18 records) through a random-weight model, every record a
    neighbour of every query: by its vectors a stretch's species is a guess (measured: 3 of 18
    named), by the holdings it is its own record's, whose 5-mers hold it whole. A third of the
    references and half of the queries are given reverse-complemented: the holdings are of the
    reference's strand, and the queries are read on it. The holdings are mapped, not read (128 MB
    at 1M records), and only the neighbours' are unpacked."""
    with gzip.open(SAMPLE, "rt") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "train" and r["genus"] == "Coleophora"]
    records = [Specimen(r["processid"], r["dna_barcode"].replace("-", ""), {rank: r[rank] or None for rank in RANKS})
               for r in rows if sum(o["species"] == r["species"] for o in rows) >= 2]
    assert len(records) == 18
    turned = [Specimen(r.id, reverse_complement(r.barcode) if i % 3 == 1 else r.barcode, r.lineage)
              for i, r in enumerate(records)]
    result = run("index", "-m", tiny_model, "-k", "40", write_fasta(tmp_path / "refs.fa", turned),
                 "-o", tmp_path / "index")
    assert result.exit_code == 0 and "6 reference barcodes reverse-complemented" in result.stderr, result.stderr
    index = load_index(tmp_path / "index")
    assert np.array_equal(index.holdings, kmer_holdings([r.barcode for r in records]))
    partial = Calibration.from_json(index.calibration[SHORT_KIND])
    assert (partial.containment, partial.containment_source) == (["species"], "holdings")
    with pytest.raises(ClibdError, match="unsupported calibration format"):  # nowhere else to read containment
        Calibration.from_json({**index.calibration[SHORT_KIND], "containment_source": "sketch"})
    assert "Partial barcodes' species: by k-mer containment" in describe_index(index)
    classifier = Classifier(tmp_path / "index")
    assert isinstance(classifier.index.holdings, np.memmap)
    unpacked = []
    monkeypatch.setattr("clibd_cli.classification.calibration.unpacked",
                        lambda held: unpacked.append(held.shape) or np.unpackbits(held, axis=-1))
    stretches = [stretch(r.barcode, 200, r.id) for r in records]
    results = classifier.classify([Query(r.id, barcode=reverse_complement(s) if i % 2 else s)
                                   for i, (r, s) in enumerate(zip(records, stretches))])
    assert [res.prediction.labels["species"] for res in results] == [r.lineage["species"] for r in records]
    # [queries, neighbours, WIDTH]: the neighbours' holdings unpacked a block of queries at a time
    assert sum(shape[0] for shape in unpacked) == 18
    assert {shape[1:] for shape in unpacked} == {(classifier.calibrations[SHORT_KIND].k, 128)}
    # an index whose calibration reads holdings it lacks is refused with a clear error
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    del manifest["sha256"][HOLDINGS_FILE]
    (tmp_path / "index" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ClibdError, match="holdings.npy"):
        Classifier(tmp_path / "index")


def test_holdings_of_the_wrong_shape_are_refused(barcode_refs, tmp_path):
    np.save(tmp_path / HOLDINGS_FILE, np.zeros((3, 128), dtype=np.uint8))
    with pytest.raises(ClibdError, match=r"expected the 5-mers of each of the 4 records"):
        load_holdings(tmp_path / HOLDINGS_FILE, 4, "rebuild")
    np.save(tmp_path / HOLDINGS_FILE, np.zeros((4, 128), dtype=np.int16))  # right shape, not packed bits
    with pytest.raises(ClibdError, match=r"\[4, 128\] uint8\), found int16 \[4, 128\]; rebuild"):
        load_holdings(tmp_path / HOLDINGS_FILE, 4, "rebuild")
    (tmp_path / HOLDINGS_FILE).write_text("not numpy")
    with pytest.raises(ClibdError, match="not a numpy array file"):
        load_holdings(tmp_path / HOLDINGS_FILE, 4, "rebuild")


def test_holdings_in_blocks_are_those_of_each_barcode_alone(monkeypatch):
    """:func:`kmer_holdings` reads the barcodes ``_BLOCK`` at a time: every barcode, a lone one
    and the last of a short block included, holds its own 5-mers."""
    from clibd_cli.reference import holdings

    barcodes = ["ACGTACGTAA", "TTTTTTTTTT", "ACGTN", "GGGGGCCCCCA", "CATCATCAT"]
    alone = np.stack([np.packbits(kmer_profile([b], 5)[0] > 0) for b in barcodes])
    assert np.array_equal(kmer_holdings(barcodes[:1]), alone[:1])
    monkeypatch.setattr(holdings, "_BLOCK", 2)
    assert np.array_equal(kmer_holdings(barcodes), alone) and not alone[2].any()


def test_a_pack_gets_holdings_and_a_partial_calibration_reading_them_the_rest_unchanged(barcode_refs, tiny_model,
                                                                                     tmp_path):
    """How the bundled pack got its holdings (``benchmarks/add_holdings.py``): the vectors, records,
    sketches and whole-barcode calibration stay byte for byte; only ``dna<500`` is refitted."""
    index = load_index(barcode_refs.index)
    barcodes = [r.barcode for r in barcode_refs.records]
    short = reference_stretches(barcodes, tiny_model)
    index.holdings = None  # an index built before holdings
    pack_index(index, tmp_path / "pack", short=short)
    before = json.loads((tmp_path / "pack" / "pack.json").read_text())
    assert "containment_source" not in before["calibration"][SHORT_KIND]
    files = {f.name: f.read_bytes() for f in (tmp_path / "pack").iterdir() if f.name != "pack.json"}
    # one row of holdings per record of the pack, no more, no fewer (were an IndexError, or a pack unpacking refused)
    for wrong in (kmer_holdings(barcodes[1:]), kmer_holdings(barcodes + barcodes[:1])):
        with pytest.raises(ClibdError, match="5-mers of each of the 56 records"):
            add_holdings(tmp_path / "pack", wrong, short, None)
    add_holdings(tmp_path / "pack", kmer_holdings(barcodes), short, None)
    after = json.loads((tmp_path / "pack" / "pack.json").read_text())
    assert after["calibration"]["dna"] == before["calibration"]["dna"] and after["manifest"] == before["manifest"]
    assert after["calibration"][SHORT_KIND]["containment_source"] == "holdings"
    assert all((tmp_path / "pack" / name).read_bytes() == data for name, data in files.items())
    unpacked = unpack_index(tmp_path / "pack")
    assert np.array_equal(unpacked.holdings, kmer_holdings(barcodes))
    # a pack whose holdings were altered is refused
    data = bytearray((tmp_path / "pack" / HOLDINGS_FILE).read_bytes())
    data[-1] ^= 1
    (tmp_path / "pack" / HOLDINGS_FILE).write_bytes(bytes(data))
    with pytest.raises(ClibdError, match="holdings.npy: missing or corrupted"):
        unpack_index(tmp_path / "pack")


def test_a_pack_gets_a_calibration_for_partial_reads_the_rest_unchanged(barcode_refs, tiny_model, tmp_path):
    """How the bundled pack got its ``dna<500~`` calibration (``benchmarks/add_partial_reads.py``):
    fitted on the records' stretches copied with errors (those still partial, with a stop or not,
    embedded as reads), placed after ``dna<500`` as ``clibd index`` places it; every file and other calibration
    byte for byte as it was."""
    from clibd_cli.classification.contained import READ_SLACK
    from clibd_cli.classification.read_errors import partial_read_queries
    from clibd_cli.indexing.pack import add_partial_reads

    index = load_index(barcode_refs.index)
    barcodes = [r.barcode for r in barcode_refs.records]
    pack_index(index, tmp_path / "pack", short=reference_stretches(barcodes, tiny_model))
    before = json.loads((tmp_path / "pack" / "pack.json").read_text())
    files = {f.name: f.read_bytes() for f in (tmp_path / "pack").iterdir() if f.name != "pack.json"}
    embedder = Embedder(load_model_for(str(tiny_model), ["dna"]))
    plan = short_pseudo_queries(barcodes, range(len(barcodes)), 0)
    short_reads, labels = partial_read_queries(embedder, plan, None, 0)
    assert labels is None and 0 < len(short_reads.rows) <= len(barcodes)  # those still partial
    add_partial_reads(tmp_path / "pack", short_reads, labels)
    after = json.loads((tmp_path / "pack" / "pack.json").read_text())
    assert list(after["calibration"]) == ["dna", SHORT_KIND, "dna<500~"]
    assert {kind: after["calibration"][kind] for kind in before["calibration"]} == before["calibration"]
    assert after["calibration"]["dna<500~"]["fitted_on"]["pseudo_queries"][0] == len(short_reads.rows)
    assert after["calibration"]["dna<500~"]["ranks"] != before["calibration"][SHORT_KIND]["ranks"]  # the copies
    assert after["calibration"]["dna<500~"]["contained_slack"] == READ_SLACK  # held missing a few 5-mers
    assert all((tmp_path / "pack" / name).read_bytes() == data for name, data in files.items())
    unpacked = unpack_index(tmp_path / "pack")
    assert list(unpacked.calibration) == ["dna", SHORT_KIND, "dna<500~"]
    assert f"(reads with errors: all but {READ_SLACK} of them)" in describe_index(unpacked)


def test_a_pack_gets_a_calibration_for_whole_reads_that_reads_the_rate_the_rest_unchanged(barcode_refs, tiny_model,
                                                                                          tmp_path, monkeypatch):
    """How the bundled pack got its ``dna~`` calibration reading the run's error rate
    (``benchmarks/add_reads.py``): fitted on the records' copies with errors at ``DEFAULT_RATES``, with
    their stop model, refitted on held-out copies; every file and other calibration byte for byte as it was."""
    from clibd_cli.classification.read_errors import DEFAULT_RATES, held_out_reads, read_pseudo_queries
    from clibd_cli.indexing.pack import add_reads
    from clibd_cli.reference.sources import References

    barcodes = [r.barcode for r in barcode_refs.records]
    pack_index(load_index(barcode_refs.index), tmp_path / "pack", short=reference_stretches(barcodes, tiny_model))
    before = json.loads((tmp_path / "pack" / "pack.json").read_text())
    files = {f.name: f.read_bytes() for f in (tmp_path / "pack").iterdir() if f.name != "pack.json"}
    embedder = Embedder(load_model_for(str(tiny_model), ["dna"]))
    rows, copies, rates, stop_model = read_pseudo_queries(barcodes, range(len(barcodes)), DEFAULT_RATES, seed=0)
    held = References("dna")
    for record in specimens(n_species=16, per_species=4, unnamed=0):  # a fourth of each species, and 8 new ones
        if record.barcode not in barcodes:
            held.add(record.id, record.lineage, record.barcode)
    reads, held_rates = held_out_reads(held, DEFAULT_RATES)
    monkeypatch.setattr("clibd_cli.classification.query_kinds.FEW_READS", 10)
    add_reads(tmp_path / "pack", (rows, embedder.reads(copies), rates, stop_model),
              (embedder.reads(reads.items), reads.labels, held_rates))
    after = json.loads((tmp_path / "pack" / "pack.json").read_text())
    assert {kind: after["calibration"][kind] for kind in before["calibration"]} == before["calibration"]
    assert after["manifest"] == before["manifest"]
    fitted = Calibration.from_json(after["calibration"]["dna~"])
    assert fitted.stop_model == stop_model and fitted.held_out  # refitted on the held-out copies, by rate
    assert all((tmp_path / "pack" / name).read_bytes() == data for name, data in files.items())
    assert unpack_index(tmp_path / "pack").calibration["dna~"] == after["calibration"]["dna~"]


def test_a_pack_of_an_index_with_holdings_keeps_them_through_a_new_sketch(barcode_refs, tiny_model, tmp_path):
    """``pack_index`` carries the holdings and refits ``dna<500`` to read them; ``resketch_pack``
    (a new k-mer sketch) keeps them."""
    index = load_index(barcode_refs.index)
    pack_index(index, tmp_path / "pack", short=reference_stretches([r.barcode for r in barcode_refs.records],
                                                                   tiny_model))
    pack = json.loads((tmp_path / "pack" / "pack.json").read_text())
    assert HOLDINGS_FILE in pack["sha256"] and pack["calibration"][SHORT_KIND]["containment_source"] == "holdings"
    resketch_pack(tmp_path / "pack", index.sketch)
    assert HOLDINGS_FILE in json.loads((tmp_path / "pack" / "pack.json").read_text())["sha256"]
    assert np.array_equal(unpack_index(tmp_path / "pack").holdings, index.holdings)


def test_an_index_built_before_holdings_appends_without_them_and_reads_partial_barcodes_by_its_vectors(
        barcode_refs, tiny_model, tmp_path):
    """An index saved before holdings (none, and a ``dna<500`` calibration reading the vectors)
    takes no holdings for its appended records, keeps that calibration and classifies as before."""
    index = load_index(barcode_refs.index)
    index.holdings = None  # as clibd wrote it before holdings
    index.calibration[SHORT_KIND] = partial_calibration(index, reference_stretches(
        [r.barcode for r in barcode_refs.records], tiny_model), None, k=20, prior_unseen=None, seed=0)
    index.save(tmp_path / "old")
    with pytest.raises(ValueError, match="holdings"):  # an index without holdings takes none
        index.append(index.vectors()[:1], ["x"], {}, holdings=np.zeros((1, 128), np.uint8))
    with gzip.open(SAMPLE, "rt") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "test"][:6]
    new = [Specimen(r["processid"], r["dna_barcode"].replace("-", ""), {rank: r[rank] or None for rank in RANKS})
           for r in rows]
    result = run("index", "-m", tiny_model, write_fasta(tmp_path / "new.fa", new), "-o", tmp_path / "old", "--append")
    assert result.exit_code == 0, result.stderr
    appended = load_index(tmp_path / "old")
    assert appended.holdings is None and not (tmp_path / "old" / HOLDINGS_FILE).exists() and len(appended) == 62
    assert "containment_source" not in appended.calibration[SHORT_KIND]
    queries = write_fasta(tmp_path / "q.fa", [Specimen(r.id, stretch(r.barcode, 300, r.id)) for r in new],
                          sintax=False)
    result = run("classify", "--index", tmp_path / "old", queries)
    assert result.exit_code == 0 and "dna<500 queries" in result.stderr, result.stderr


def test_pseudo_queries_read_their_own_stretch_in_their_neighbours_records(barcode_refs):
    """The ``dna<500`` pseudo-queries read each neighbour's holdings by its record row (twins share
    a graph node: node numbers would read another record's) and their own stretch's 5-mers by
    where it lies among the query vectors, not by its record row."""
    index = load_index(barcode_refs.index)
    barcodes, vectors = [r.barcode for r in barcode_refs.records], index.vectors()
    cut = np.array([41, 3, 17, 8, 30, 54])  # out of order, as no record row
    stretches = [stretch(barcodes[i], 180, str(i)) for i in cut]
    position = np.full(len(vectors), -1)
    position[cut] = np.arange(len(cut))
    nodes = Nodes(index.node_vectors(), index.nodes)
    assert len(nodes.vectors) < len(vectors)
    read = Reading({"species": [0, vectors.shape[1]]}, ["species"], (kmer_profile(stretches, 5), index.holdings))
    queries, near, _, by_rank = search_pseudo_queries((vectors[cut], position), nodes, cut,
                                                      ReferenceTaxonomy.from_labels(index.ids, index.labels), 10,
                                                      [(None, None)], read)[0]
    expected = [[share_held(stretches[position[q]], barcodes[r]) for r in row] for q, row in zip(queries, near)]
    assert np.allclose(by_rank["species"], expected, atol=1e-5)


def test_pseudo_queries_on_threads_find_what_one_thread_finds(barcode_refs, monkeypatch):
    """``clibd --threads N index`` searches the pseudo-queries in one block of the sample per thread:
    every plan's queries, neighbours, similarities and rank similarities as on one thread, in the
    same order (sister species left out, holdings read, more threads than queries, chunks of any size)."""
    from clibd_cli.classification import pseudo_queries

    index = load_index(barcode_refs.index)
    barcodes, vectors = [r.barcode for r in barcode_refs.records], index.vectors()
    cut = np.arange(0, len(vectors), 2)
    position = np.full(len(vectors), -1)
    position[cut] = np.arange(len(cut))
    profiles = kmer_profile([stretch(barcodes[i], 180, str(i)) for i in cut], 5)
    taxonomy = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    plans = [(None, None), ("species", "genus"), ("genus", "family")]
    read = Reading({"species": [0, vectors.shape[1]]}, ["species"], (profiles, index.holdings))

    def found(threads: int, sample: np.ndarray = cut) -> list:
        return search_pseudo_queries((vectors[cut], position), Nodes(index.node_vectors(), index.nodes), sample,
                                     taxonomy, 5, plans, read, sisters=1, threads=threads)

    def same(a: list, b: list) -> bool:
        return all(all(np.array_equal(x, y) for x, y in zip(p[:3], q[:3]))
                   and all(np.array_equal(p[3][rank], q[3][rank]) for rank in p[3]) for p, q in zip(a, b))

    one = found(1)
    assert sum(len(plan[0]) for plan in one) > 2 * len(cut) // 2
    assert same(one, found(2)) and same(one, found(3, cut[::-1]))  # the sample in any order
    monkeypatch.setattr(pseudo_queries, "_SCORES_PER_CHUNK", 8 * len(vectors))  # chunks: 8 rows on one thread, 2 on 3
    monkeypatch.setattr(pseudo_queries, "_ROWS_PER_BLOCK", 1)
    assert same(one, found(1)) and same(one, found(3))
    # a block of one query: numpy multiplies a lone row otherwise (gemv), its scores in other bits
    assert same(found(1, cut[:2]), found(8, cut[:2])) and same(found(1, cut[:9]), found(2, cut[:9]))


def test_pseudo_queries_on_more_threads_than_a_chunk_has_rows_keep_memory_flat(barcode_refs, monkeypatch):
    """The queries searched at once, on all threads together, stay within one thread's chunk
    (``_SCORES_PER_CHUNK`` scores; here 8 rows) however many ``--threads``."""
    from clibd_cli.classification import pseudo_queries

    index = load_index(barcode_refs.index)
    vectors, nearest, searched = index.vectors(), pseudo_queries._nearest, []
    monkeypatch.setattr(pseudo_queries, "_SCORES_PER_CHUNK", 8 * len(vectors))
    monkeypatch.setattr(pseudo_queries, "_ROWS_PER_BLOCK", 1)
    monkeypatch.setattr(pseudo_queries, "_nearest", lambda costs, *args: (searched.append(len(costs)),
                                                                          nearest(costs, *args))[1])
    pools = []
    monkeypatch.setattr(pseudo_queries, "ThreadPoolExecutor", lambda workers: (pools.append(workers),
                                                                               ThreadPool(workers))[1])
    taxonomy = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    search_pseudo_queries(None, Nodes(index.node_vectors(), index.nodes), np.arange(len(vectors)), taxonomy, 5,
                          [(None, None)], Reading({}, []), threads=32)
    assert sum(searched) == len(vectors) and max(pools, default=1) * max(searched) <= 8
    pools.clear(), searched.clear()
    monkeypatch.setattr(pseudo_queries, "_ROWS_PER_BLOCK", 64)  # as by default: chunks of 8 rows are not split
    search_pseudo_queries(None, Nodes(index.node_vectors(), index.nodes), np.arange(len(vectors)), taxonomy, 5,
                          [(None, None)], Reading({}, []), threads=32)
    assert not pools and max(searched) == 8


def test_barcode_gaps_of_a_calibration_reading_holdings_are_measured_in_them(barcode_refs):
    """Fitted, measured again after an append (``query_kinds._regapped``) or alone, the species gaps
    of a calibration reading holdings come from each record's 5-mers held in its neighbours'."""
    index = load_index(barcode_refs.index)
    barcodes = [r.barcode for r in barcode_refs.records]
    reference, parts = ReferenceTaxonomy.from_labels(index.ids, index.labels), {"species": [0, index.manifest["dim"]]}
    near, sims = index.search(index.vectors(), min(NEIGHBOURS + 1, len(index)))
    held = np.array([[share_held(barcodes[i], barcodes[r], distinct=True) for r in row] for i, row in enumerate(near)])
    expected = fit_gaps(reference, near, sims, {"species": held})["species"]

    def species_gaps(gaps: dict) -> np.ndarray:
        gap = gaps["species"] if isinstance(gaps["species"], dict) else gaps["species"].to_json()
        return np.array([gap["within"], gap["nearest_other"]])

    assert np.allclose(species_gaps(reference_gaps(index, reference, parts, ["species"], "holdings")),
                       species_gaps({"species": expected}), atol=2e-4)
    fitted = fit_calibration(index, barcode_gaps=True, rank_parts=parts, containment=["species"],
                             containment_source="holdings")
    assert np.allclose(species_gaps(fitted.gaps), species_gaps({"species": expected}), atol=2e-4)
    by_vectors = fit_calibration(index, barcode_gaps=True, rank_parts=parts, containment=["species"]).gaps
    assert not np.allclose(species_gaps(by_vectors), species_gaps(fitted.gaps), atol=2e-4)
    regapped = _regapped(index, {**fitted.to_json(), "gaps": by_vectors})
    assert np.allclose(species_gaps(regapped["gaps"]), species_gaps(fitted.gaps))


def test_the_held_out_refit_reads_each_querys_own_stretch_and_keeps_reading_holdings(barcode_refs, tiny_model):
    """Held-out stretches unlabelled at species are left out of the refit: they change nothing (the
    profiles stay with their queries), and the refitted calibration still reads the holdings."""
    index = load_index(barcode_refs.index)
    parts = {"species": [0, index.manifest["dim"]]}
    decisions = fit_calibration(index, rank_parts=parts, containment=["species"], containment_source="holdings")
    with gzip.open(SAMPLE, "rt") as handle:
        new = [r for r in csv.DictReader(handle) if r["split"] == "test_unseen"][:8]
    known = sorted(barcode_refs.records[::2], key=lambda r: r.lineage["species"] is not None)  # unlabelled first
    barcodes = [stretch(r.barcode, 250, r.id) for r in known] + [stretch(r["dna_barcode"], 250, r["processid"])
                                                                 for r in new]
    labels = {rank: [r.lineage[rank] for r in known] + [r[rank] or None for r in new] for rank in RANKS}
    vectors = Embedder(load_model_for(str(tiny_model), ["dna"])).barcodes(barcodes)
    labelled = np.array([species is not None for species in labels["species"]])
    assert not labelled.all()
    refits = [fit_calibration_held_out(index, vectors[rows], {rank: [v[i] for i in np.flatnonzero(rows)]
                                                               for rank, v in labels.items()}, decisions,
                                       query_profiles=kmer_profile(barcodes, 5)[rows]).to_json()
              for rows in (np.ones(len(barcodes), bool), labelled)]
    assert refits[0] == refits[1] and refits[0]["containment_source"] == "holdings"

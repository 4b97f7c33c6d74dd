"""The 5-mers each record of a learned model's index holds (``reference/holdings.py``): partial
barcodes' species by k-mer containment where the vectors are not k-mer profiles."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.specimens import Specimen, run, stretch, write_fasta

from clibd_cli.classification.calibration import Calibration, rank_similarities
from clibd_cli.classification.classifier import Classifier
from clibd_cli.classification.queries import Query
from clibd_cli.classification.query_kinds import SHORT_KIND, short_pseudo_queries, short_queries
from clibd_cli.embedding.embedder import Embedder, load_model_for
from clibd_cli.embedding.kmer import kmer_profile
from clibd_cli.indexing.pack import add_holdings, pack_index, unpack_index
from clibd_cli.reference.holdings import HOLDINGS_FILE, kmer_holdings, load_holdings
from clibd_cli.reference.hnsw_index import load_index
from clibd_cli.reference.index_info import describe_index
from models.errors import ClibdError

SAMPLE = Path(__file__).parents[1] / "examples" / "bold-sample.csv.gz"
RANKS = ("order", "family", "genus", "species")


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


def test_partial_barcodes_of_a_learned_model_read_species_from_the_holdings(tiny_model, tmp_path):
    """Eight *Coleophora* species (18 records) through a random-weight model, every record a
    neighbour of every query: by its vectors a stretch's species is a guess (measured: 3 of 18
    named), by the holdings it is its own record's, whose 5-mers hold it whole."""
    with gzip.open(SAMPLE, "rt") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "train" and r["genus"] == "Coleophora"]
    records = [Specimen(r["processid"], r["dna_barcode"].replace("-", ""), {rank: r[rank] or None for rank in RANKS})
               for r in rows if sum(o["species"] == r["species"] for o in rows) >= 2]
    assert len(records) == 18
    result = run("-q", "index", "-m", tiny_model, "-k", "40", write_fasta(tmp_path / "refs.fa", records),
                 "-o", tmp_path / "index")
    assert result.exit_code == 0, result.stderr
    index = load_index(tmp_path / "index")
    partial = Calibration.from_json(index.calibration[SHORT_KIND])
    assert (partial.containment, partial.containment_source) == (["species"], "holdings")
    assert "Partial barcodes' species: by k-mer containment" in describe_index(index)
    classifier = Classifier(tmp_path / "index")
    results = classifier.classify([Query(r.id, barcode=stretch(r.barcode, 200, r.id)) for r in records])
    assert [res.prediction.labels["species"] for res in results] == [r.lineage["species"] for r in records]
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
    (tmp_path / HOLDINGS_FILE).write_text("not numpy")
    with pytest.raises(ClibdError, match="not a numpy array file"):
        load_holdings(tmp_path / HOLDINGS_FILE, 4, "rebuild")


def test_a_pack_gets_holdings_and_a_partial_calibration_reading_them_the_rest_unchanged(barcode_refs, tiny_model,
                                                                                     tmp_path):
    """How the bundled pack got its holdings (``benchmarks/add_holdings.py``): the vectors, records,
    sketches and whole-barcode calibration stay byte for byte; only ``dna<500`` is refitted."""
    index = load_index(barcode_refs.index)
    barcodes = [r.barcode for r in barcode_refs.records]
    embedder = Embedder(load_model_for(str(tiny_model), ["dna"]))
    short = short_queries(embedder, short_pseudo_queries(barcodes, range(len(barcodes)), 0), None, 0)
    index.holdings = None  # an index built before holdings
    pack_index(index, tmp_path / "pack", short=short)
    before = json.loads((tmp_path / "pack" / "pack.json").read_text())
    assert "containment_source" not in before["calibration"][SHORT_KIND]
    files = {f.name: f.read_bytes() for f in (tmp_path / "pack").iterdir() if f.name != "pack.json"}
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

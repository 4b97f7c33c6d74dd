"""The translation sketch (clibd_cli/reference/protein_sketch.py): fitted with the k-mer sketch,
held only under the floor of barcodes that read as no protein, stored with the index and a pack."""

import csv
import gzip
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from clibd_cli.classification.read_errors import with_errors
from clibd_cli.indexing.pack import pack_index, resketch_pack, unpack_index
from clibd_cli.io.sequences import reverse_complement, unambiguous_bases
from clibd_cli.reference import sketch as sketch_module
from clibd_cli.reference.centroids import PARTIAL_LENGTHS
from clibd_cli.reference.hnsw_index import load_index
from clibd_cli.reference.protein_sketch import PROTEIN_COLUMNS, PROTEIN_FILE, ProteinSketch
from clibd_cli.reference.sketch import fit_sketch, load_sketch
from fixtures.specimens import run, tsv
from models.errors import ClibdError

SAMPLE = Path(__file__).parents[1] / "examples" / "bold-sample.csv.gz"


@pytest.fixture(scope="module")
def real_index(tmp_path_factory) -> Path:
    """A 3-mer index of 300 real BOLD barcodes of the committed sample: they read as protein."""
    root = tmp_path_factory.mktemp("protein")
    with gzip.open(SAMPLE, "rt") as handle:
        rows = [r for r in csv.DictReader(handle) if r["species"]][:300]
    (root / "ref.fa").write_text("".join(
        f">{r['processid']};tax=o:{r['order']},f:{r['family']},g:{r['genus']},s:{r['species'].replace(' ', '_')};\n"
        f"{r['dna_barcode'].replace('-', '')}\n" for r in rows))
    built = run("index", "-m", "kmer", "-k", "3", root / "ref.fa", "-o", root / "index")
    assert built.exit_code == 0, built.stderr
    return root / "index"


def test_the_translation_sketch_is_fitted_on_a_reference_that_reads_as_protein():
    """Fitted with the k-mer sketch on the reference's strand, its floors rise with length to the
    whole-barcode one; every real barcode of a sample passes its own reference's, 1 % errors
    included; a reference that reads as no protein (shuffled) gets none."""
    with gzip.open(SAMPLE, "rt") as handle:
        real = [r["dna_barcode"].replace("-", "") for r in csv.DictReader(handle)][:1500]
    sketch = fit_sketch([reverse_complement(b) if i % 10 == 0 else b for i, b in enumerate(real[:500])])[0]
    protein = sketch.protein
    assert protein is not None and protein.centroids.shape == (10, PROTEIN_COLUMNS)
    assert list(protein.short_floors) == sorted(protein.short_floors) and protein.short_floors[-1] <= protein.floor
    assert 0.4 < protein.floor < 0.95
    rng = random.Random(2)
    for barcodes in (real[500:], [with_errors(b, 0.01, rng) for b in real[500:1000]]):
        reverse, similarity = sketch.look(barcodes)
        turned = [reverse_complement(b) if r else b for b, r in zip(barcodes, reverse)]
        assert (protein.similarity(turned) >= protein.floors([unambiguous_bases(b) for b in turned])).mean() > 0.995
        assert not sketch.off_target(similarity, turned).any()
    shuffled = ["".join(rng.sample(b, len(b))) for b in real[:500]]
    assert fit_sketch(shuffled)[0].protein is None


def test_a_protein_at_its_floor_is_on_target_and_one_under_it_only_under_the_stop_floor(monkeypatch):
    """The translation sketch's floor is met at equality, and only a barcode under the k-mer
    sketch's floor for barcodes that read as no protein is held to it."""
    protein = ProteinSketch(np.zeros((1, PROTEIN_COLUMNS), np.float32), floor=0.6)
    sketch = sketch_module.Sketch(np.zeros((1, 4 ** 5), np.float32), floor=0.8, stop_floor=0.9, protein=protein)
    barcode = "ACGT" * 200
    monkeypatch.setattr(sketch_module, "frame_stops", lambda barcodes: np.zeros(len(barcodes), int))
    for similarity, protein_similarity, off in ((0.85, 0.6, False), (0.85, 0.59, True), (0.9, 0.1, False)):
        monkeypatch.setattr(ProteinSketch, "similarity", lambda self, b, p=protein_similarity: np.full(len(b), p))
        why = sketch.judge(np.array([similarity]), [barcode])[0]
        assert (why is not None) == off and (not off or why.startswith("translates to a protein unlike"))


def test_an_index_stores_its_translation_sketch_and_one_without_it_still_loads(real_index, tmp_path):
    manifest = json.loads((real_index / "manifest.json").read_text())
    entry = manifest["sketch"]["protein"]
    assert entry["file"] == PROTEIN_FILE and PROTEIN_FILE in manifest["sha256"]
    sketch = load_index(real_index).sketch
    assert np.array_equal(sketch.protein.centroids, np.load(real_index / PROTEIN_FILE))
    assert (sketch.protein.floor, sketch.protein.short_floors) == (entry["floor"], entry["short_floors"])
    old = tmp_path / "old"  # as an index built before translation sketches
    shutil.copytree(real_index, old)
    (old / PROTEIN_FILE).unlink()
    del manifest["sketch"]["protein"], manifest["sha256"][PROTEIN_FILE]
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert load_index(old).sketch.protein is None
    query = tmp_path / "q.fa"
    query.write_text(">q\n" + (real_index.parent / "ref.fa").read_text().splitlines()[1] + "\n")
    assert [r["status"] for r in tsv(run("classify", "--index", old, query).stdout)] == ["assigned"]


def test_a_translation_sketch_that_is_not_one_clibd_wrote_is_a_clear_error(real_index, tmp_path):
    manifest = json.loads((real_index / "manifest.json").read_text())
    folder = tmp_path / "sketch"
    folder.mkdir()
    shutil.copy(real_index / "sketch.npy", folder)
    np.save(folder / PROTEIN_FILE, np.zeros((4, 20), np.float32))
    with pytest.raises(ClibdError, match=rf"{PROTEIN_FILE}: expected \[C, 400\] protein centroids.*; rebuild"):
        load_sketch(folder, manifest, "rebuild")
    np.save(folder / PROTEIN_FILE, np.zeros(PROTEIN_COLUMNS, np.float32))
    with pytest.raises(ClibdError, match=rf"{PROTEIN_FILE}: expected \[C, 400\] protein centroids.*shape \[400\]"):
        load_sketch(folder, manifest, "rebuild")
    np.save(folder / PROTEIN_FILE, np.zeros((4, PROTEIN_COLUMNS), np.float32))
    for floor, short in (("0.5", None), (0.5, [0.1, 0.2]), (0.5, ["0.1"] * len(PARTIAL_LENGTHS))):
        entry = {**manifest["sketch"], "protein": {"file": PROTEIN_FILE, "floor": floor, "short_floors": short}}
        with pytest.raises(ClibdError, match=rf"{PROTEIN_FILE}: expected .*floors? .*; rebuild"):
            load_sketch(folder, {**manifest, "sketch": entry}, "rebuild")
    with pytest.raises(ClibdError, match=r"sketch.npy: expected .* floors by length"):  # as for the k-mer sketch's
        load_sketch(folder, {**manifest, "sketch": {**manifest["sketch"], "short_stop_floors": [0.1]}}, "rebuild")
    (folder / PROTEIN_FILE).write_text("not numpy")
    with pytest.raises(ClibdError, match=f"{PROTEIN_FILE}: not a numpy array file clibd wrote"):
        load_sketch(folder, manifest, "rebuild")
    (folder / PROTEIN_FILE).unlink()
    with pytest.raises(ClibdError, match=f"{PROTEIN_FILE}: not a numpy array file clibd wrote"):
        load_sketch(folder, manifest, "rebuild")


def test_a_pack_keeps_the_translation_sketch_and_a_new_sketch_leaves_the_rest_as_it_was(real_index, tmp_path):
    """``resketch_pack`` (how the bundled pack got its translation sketch) rewrites only the sketch."""
    index = load_index(real_index)
    pack = tmp_path / "pack"
    pack_index(index, pack)
    unpacked = unpack_index(pack)
    assert np.array_equal(unpacked.sketch.protein.centroids, index.sketch.protein.centroids)
    assert unpacked.sketch.protein.short_floors == index.sketch.protein.short_floors
    before = {f.name: f.read_bytes() for f in pack.iterdir()}
    bare = index.sketch
    protein, bare.protein = bare.protein, None
    resketch_pack(pack, bare)
    assert unpack_index(pack).sketch.protein is None and not (pack / PROTEIN_FILE).exists()
    bare.protein = protein
    resketch_pack(pack, bare)
    assert {f.name: f.read_bytes() for f in pack.iterdir()} == before
    data = bytearray((pack / PROTEIN_FILE).read_bytes())
    data[-1] ^= 1
    (pack / PROTEIN_FILE).write_bytes(bytes(data))
    with pytest.raises(ClibdError, match=f"{PROTEIN_FILE}: missing or corrupted"):
        unpack_index(pack)

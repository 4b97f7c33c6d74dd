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

from clibd_cli.indexing.pack import pack_index, resketch_pack, unpack_index
from clibd_cli.io.sequences import reverse_complement, unambiguous_bases, with_errors
from clibd_cli.reference import protein_sketch
from clibd_cli.reference import sketch as sketch_module
from clibd_cli.reference.centroids import PARTIAL_LENGTHS, Clusters, length_floors
from clibd_cli.reference.index_reading import load_index
from clibd_cli.reference.protein_sketch import PROTEIN_COLUMNS, PROTEIN_FILE, ProteinSketch, protein_profile
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


def test_a_partial_barcode_that_meets_a_stop_in_every_frame_is_held_to_the_read_floor(monkeypatch):
    """Under ``WHOLE_FROM`` bases, a barcode that meets a stop in every frame (a frame shift counting
    as one) is off target under the read floor of its length (interpolated between lengths) and on
    target at it; one that meets none, a whole one, or one judged without read floors (an index of
    an earlier clibd) is not held to it."""
    protein = ProteinSketch(np.zeros((1, PROTEIN_COLUMNS), np.float32), floor=0.3,
                            read_floors=[0.4, 0.5, 0.6, 0.7, 0.8])
    sketch = sketch_module.Sketch(np.zeros((1, 4 ** 5), np.float32), floor=0.1, stop_floor=0.2, protein=protein)

    def why(barcode: str, stops: int, similarity: float) -> str | None:
        monkeypatch.setattr(sketch_module, "frame_breaks", lambda barcodes: np.full(len(barcodes), stops))
        monkeypatch.setattr(ProteinSketch, "similarity", lambda self, b: np.full(len(b), similarity, np.float32))
        return sketch.judge(np.array([0.9], np.float32), [barcode])[0]

    partial, longer, whole = "ACGT" * 75, "ACGT" * 112 + "AC", "ACGT" * 150  # 300, 450 and 600 bases
    assert why(partial, 1, 0.59).startswith("a partial barcode whose every reading frame meets a stop codon (1 in")
    assert "(similarity 0.59 < 0.60, the floor of reads of its length" in why(partial, 2, 0.59)
    assert why(partial, 1, 0.6) is None and why(partial, 0, 0.1) is None and why(whole, 3, 0.1) is None
    assert why(longer, 1, 0.749) is not None and why(longer, 1, 0.751) is None
    assert why("ACGT" * 50, 1, 0.5) is None and why("ACGT" * 50, 1, 0.499) is not None  # at 200 bases' floor
    assert why("ACGT" * 137, 1, 0.799) is not None and why("ACGT" * 137, 1, 0.801) is None  # 548: 500's floor
    protein.read_floors = None
    assert why(partial, 1, 0.1) is None


def test_the_read_floors_fitted_on_real_barcodes_let_their_reads_through(thousand):
    """Fitted on stretches of the reference's own barcodes read with ``READ_ERRORS`` errors: they
    rise with length, and stretches of other real barcodes, clean or read with 1 % or 3 % errors,
    are turned away by them rarely (none clean, where no stretch meets a stop)."""
    real, sketch = thousand
    floors = sketch.protein.read_floors
    assert len(floors) == len(PARTIAL_LENGTHS) and floors == sorted(floors) and 0.3 < floors[0] < floors[-1] < 0.9
    rng, draws = np.random.default_rng(4), random.Random(4)
    others = [b for b in _real(1600)[1000:] if len(b) >= 600]
    for rate, most in ((0.0, 0), (0.01, 0.005), (0.03, 0.01)):  # none of 432 at each
        for length in (150, 313):
            cut = [with_errors(b[start : start + length], rate, draws)
                   for b in others for start in [int(rng.integers(0, len(b) - length + 1))]]
            why = sketch.judge(sketch.look(cut)[1], cut)
            assert sum(w is not None and w.startswith("a partial barcode") for w in why) <= most * len(cut)


def test_an_index_stores_its_translation_sketch_and_one_without_it_still_loads(real_index, tmp_path):
    manifest = json.loads((real_index / "manifest.json").read_text())
    entry = manifest["sketch"]["protein"]
    assert entry["file"] == PROTEIN_FILE and PROTEIN_FILE in manifest["sha256"]
    sketch = load_index(real_index).sketch
    assert np.array_equal(sketch.protein.centroids, np.load(real_index / PROTEIN_FILE))
    assert (sketch.protein.floor, sketch.protein.short_floors, sketch.protein.read_floors) == \
        (entry["floor"], entry["short_floors"], entry["read_floors"])
    assert len(entry["short_floors"]) == len(entry["read_floors"]) == len(PARTIAL_LENGTHS)
    older = tmp_path / "older"  # as an index built before read floors: loads, without the rule
    shutil.copytree(real_index, older)
    manifest_older = json.loads(json.dumps(manifest))
    del manifest_older["sketch"]["protein"]["read_floors"]
    (older / "manifest.json").write_text(json.dumps(manifest_older))
    assert load_index(older).sketch.protein.read_floors is None
    old = tmp_path / "old"  # as an index built before translation sketches
    shutil.copytree(real_index, old)
    (old / PROTEIN_FILE).unlink()
    del manifest["sketch"]["protein"], manifest["sha256"][PROTEIN_FILE]
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert load_index(old).sketch.protein is None
    query = tmp_path / "q.fa"
    query.write_text(">q\n" + (real_index.parent / "ref.fa").read_text().splitlines()[1] + "\n")
    assert [r["status"] for r in tsv(run("classify", "--index", old, query).stdout)] == ["assigned"]


def test_an_index_whose_manifest_names_a_sketch_it_has_no_checksum_for_is_refused(real_index, tmp_path):
    """A sketch file the manifest describes but does not checksum would load unverified; a sketch
    entry that is not a mapping is an unreadable sketch, not an internal error."""
    for name in ("sketch.npy", PROTEIN_FILE):
        copy = tmp_path / name
        shutil.copytree(real_index, copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        del manifest["sha256"][name]
        (copy / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ClibdError, match=f"manifest.json: no checksum for {name}; rebuild"):
            load_index(copy)
    manifest = json.loads((real_index / "manifest.json").read_text())
    manifest["sketch"] = "sketch.npy"
    with pytest.raises(ClibdError, match="expected \\[C, 4\\*\\*k\\] k-mer centroids and a manifest 'sketch' entry"):
        load_sketch(real_index, manifest, "rebuild")
    del manifest["sha256"]["sketch.npy"]  # and its file unlisted: the index was loaded without its sketch
    shutil.copytree(real_index, tmp_path / "entry")
    (tmp_path / "entry" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ClibdError, match="expected \\[C, 4\\*\\*k\\] k-mer centroids and a manifest 'sketch' entry"):
        load_index(tmp_path / "entry")
    manifest = json.loads((real_index / "manifest.json").read_text())
    del manifest["sketch"]  # its file still checksummed: not loaded without its off-target guard
    shutil.copytree(real_index, tmp_path / "no entry")
    (tmp_path / "no entry" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ClibdError, match="expected \\[C, 4\\*\\*k\\] k-mer centroids and a manifest 'sketch' entry"):
        load_index(tmp_path / "no entry")


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
    for floor, short, reads in (("0.5", None, None), (0.5, [0.1, 0.2], None), (0.5, ["0.1"] * len(PARTIAL_LENGTHS), None),
                                (0.5, None, [0.1]), (0.5, None, 0.4)):
        entry = {**manifest["sketch"], "protein": {"file": PROTEIN_FILE, "floor": floor, "short_floors": short,
                                                   "read_floors": reads}}
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
    np.save(folder / "sketch.npy", np.zeros((4, 4 ** 4), np.float32))  # 4-mer centroids under a k of 5
    with pytest.raises(ClibdError, match=r"sketch.npy: expected \[C, 4\*\*k\] k-mer centroids .*shape \[4, 256\]"):
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


def _real(count: int) -> list[str]:
    """The first ``count`` barcodes of the committed sample, gaps removed."""
    with gzip.open(SAMPLE, "rt") as handle:
        return [r["dna_barcode"].replace("-", "") for r in csv.DictReader(handle)][:count]


@pytest.fixture(scope="module")
def thousand() -> tuple[list[str], sketch_module.Sketch]:
    """1,000 real barcodes on their own strand and the sketch fitted on them."""
    real = _real(1000)
    return real, fit_sketch(real)[0]


def test_all_but_a_thousandth_of_the_references_own_barcodes_reach_the_translation_floor(thousand):
    """The floor is the 0.1 % quantile of the reference's barcodes held out from their own
    centroid (here: the nearest one)."""
    real, sketch = thousand
    sims = protein_profile(real) @ sketch.protein.centroids.T
    sims[np.arange(len(real)), sims.argmax(axis=1)] = -1.0
    assert (sims.max(axis=1) < sketch.protein.floor).sum() <= 2  # 1; 10 at a 1 % quantile


def test_the_translation_sketch_is_seeded_read_on_the_references_strand_and_leaves_the_kmer_sketch_as_it_was(
        thousand, monkeypatch):
    """Barcodes given reverse-complemented are fitted turned around: the same sketch, run after run;
    the k-mer sketch is the one fitted without a translation sketch (the bundled pack kept its own)."""
    real, sketch = thousand
    mixed = fit_sketch([reverse_complement(b) if i % 7 == 0 else b for i, b in enumerate(real)])[0]
    assert np.array_equal(mixed.protein.centroids, sketch.protein.centroids)
    assert (mixed.protein.floor, mixed.protein.short_floors) == (sketch.protein.floor, sketch.protein.short_floors)
    monkeypatch.setattr(sketch_module, "fit_protein_sketch", lambda barcodes, rng: None)
    bare = fit_sketch(real)[0]
    assert bare.protein is None and np.array_equal(bare.centroids, sketch.centroids)
    assert (bare.floor, bare.short_floors, bare.stop_floor, bare.short_stop_floors) == \
        (sketch.floor, sketch.short_floors, sketch.stop_floor, sketch.short_stop_floors)


def test_stretches_are_scored_without_their_own_barcodes_centroid_and_under_the_whole_barcode_floor():
    """Six barcodes, each its own centroid (orthogonal profiles): a stretch of one is like no other
    centroid (0), and no stretch floor passes the whole-barcode floor it is given."""
    barcodes = [letter * 700 for letter in "abcdef"]
    eye = np.eye(6, dtype=np.float32)
    clusters = Clusters(eye, eye, eye.copy(), np.arange(6))
    floors = length_floors(clusters, barcodes, lambda cut: eye[["abcdef".index(c[0]) for c in cut]],
                           np.random.default_rng(0), [0.5, 0.5], [1.0, -0.5])
    assert floors == [[0.0] * len(PARTIAL_LENGTHS), [-0.5] * len(PARTIAL_LENGTHS)]


def test_a_length_where_no_read_meets_a_stop_in_every_frame_has_no_read_floor_and_lowers_none(monkeypatch):
    """No 500-base stretch read with errors meets a stop in every frame (forced here): no read floor
    there (0), and the shorter lengths keep theirs (a longer stretch's floor caps them only where
    there is one)."""
    from clibd_cli.reference import centroids

    breaks = centroids.frame_breaks
    monkeypatch.setattr(centroids, "frame_breaks",
                        lambda cut: breaks(cut) * (np.array([len(c) for c in cut], dtype=int) < 450))
    whole = [b for b in _real(300) if len(b) >= 600][:200]
    floors = protein_sketch.fit_protein_sketch(whole, np.random.default_rng(0)).read_floors
    assert floors[-1] == 0.0 and all(0.2 < f for f in floors[:-1]) and floors[:-1] == sorted(floors[:-1])


def test_no_stretch_floor_of_the_translation_sketch_passes_its_whole_barcode_floor(monkeypatch):
    """Even where whole barcodes are held out worse than their stretches (forced here)."""
    held_out = protein_sketch.held_out_similarity
    monkeypatch.setattr(protein_sketch, "held_out_similarity", lambda clusters: held_out(clusters) - 0.5)
    protein = protein_sketch.fit_protein_sketch(_real(200), np.random.default_rng(0))
    assert max(protein.short_floors) <= protein.floor


def test_a_partial_barcode_is_held_to_the_translation_floor_of_its_length(monkeypatch):
    protein = ProteinSketch(np.zeros((1, PROTEIN_COLUMNS), np.float32), floor=0.6,
                            short_floors=[0.3] * len(PARTIAL_LENGTHS))
    sketch = sketch_module.Sketch(np.zeros((1, 4 ** 5), np.float32), floor=0.8, stop_floor=0.9, protein=protein)
    monkeypatch.setattr(sketch_module, "frame_stops", lambda barcodes: np.zeros(len(barcodes), int))
    monkeypatch.setattr(ProteinSketch, "similarity", lambda self, barcodes: np.full(len(barcodes), 0.5))
    partial, whole = sketch.judge(np.array([0.85, 0.85]), ["ACGT" * 50, "ACGT" * 200])
    assert partial is None and whole.startswith("translates to a protein unlike")


def test_an_append_keeps_the_translation_sketch(real_index, tmp_path):
    grown = tmp_path / "grown"
    shutil.copytree(real_index, grown)
    with gzip.open(SAMPLE, "rt") as handle:
        row = [r for r in csv.DictReader(handle) if r["species"]][300]
    extra = tmp_path / "extra.fa"
    extra.write_text(f">{row['processid']};tax=o:{row['order']},f:{row['family']},g:{row['genus']};\n"
                     f"{row['dna_barcode'].replace('-', '')}\n")
    result = run("index", "-m", "kmer", "-k", "3", extra, "-o", grown, "--append")
    assert result.exit_code == 0, result.stderr
    before, after = (json.loads((d / "manifest.json").read_text()) for d in (real_index, grown))
    assert after["sketch"]["protein"] == before["sketch"]["protein"]
    assert after["sha256"][PROTEIN_FILE] == before["sha256"][PROTEIN_FILE]
    assert load_index(grown).sketch.protein is not None


def test_a_new_sketch_for_a_pack_is_checked_first_and_keeps_what_it_does_not_change(real_index, tmp_path):
    """``resketch_pack`` refuses a corrupted pack (it would give it fresh checksums), writes the new
    translation sketch's checksum, and keeps the number of references turned around."""
    index = load_index(real_index)
    index.manifest["sketch"]["turned"] = 3
    pack = tmp_path / "pack"
    pack_index(index, pack)
    sketch = index.sketch
    sketch.protein = ProteinSketch(sketch.protein.centroids[::-1].copy(), 0.5, [0.25] * len(PARTIAL_LENGTHS))
    resketch_pack(pack, sketch)
    unpacked = unpack_index(pack)
    assert np.array_equal(unpacked.sketch.protein.centroids, sketch.protein.centroids)
    assert (unpacked.sketch.protein.floor, unpacked.manifest["sketch"]["turned"]) == (0.5, 3)
    data = bytearray((pack / "vectors.npy").read_bytes())
    data[-1] ^= 1
    (pack / "vectors.npy").write_bytes(bytes(data))
    with pytest.raises(ClibdError, match="vectors.npy: missing or corrupted"):
        resketch_pack(pack, sketch)

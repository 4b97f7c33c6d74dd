"""Photo and ``image+dna`` queries checked against the vectors of ``clibd embed``.

Real BIOSCAN photos all look alike to a random tiny ViT (within 1e-4 in cosine), so here every
photo is a flat colour with a square of another colour: the same random tower maps those far
apart (cosine 0.6-0.98), so a query's nearest reference and similarity depend on its photo's
embedding. The index is a barcode index built with a photo of every reference specimen, so it
has ``dna``, ``image`` and ``image+dna`` calibrations. Everything runs in fp32 so the vectors of
``clibd embed`` and those of ``clibd classify`` are the same.
"""

import json

import numpy as np
import pytest
from PIL import Image

from fixtures.specimens import run, specimens, twins, write_fasta

RANKS = ("order", "family", "genus", "species")


def _photo(path, colours) -> None:
    """A 64×64 PNG: background colour, a centred square of the second colour."""
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:] = colours[0]
    pixels[16:48, 16:48] = colours[1]
    Image.fromarray(pixels).save(path)


def _embedded(path) -> dict[tuple[str, str], np.ndarray]:
    """``clibd embed`` output: (id, modality) -> vector."""
    from clibd_cli.embedding.embeddings_file import read_embeddings

    ids, kinds, vectors, _ = read_embeddings(path)
    return {(i, m): v for i, m, v in zip(ids, kinds, vectors)}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


@pytest.fixture(scope="module")
def fused(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("fused")
    rng = np.random.default_rng(11)
    refs = twins(specimens(n_species=4, per_species=2, unnamed=0))
    fasta = write_fasta(root / "refs.fasta", refs)
    (root / "ref_photos").mkdir()
    colours = {r.id: rng.integers(0, 256, (2, 3)) for r in refs}
    for r in refs:
        _photo(root / "ref_photos" / f"{r.id}.png", colours[r.id])
    index = root / "index"
    result = run("-q", "--precision", "fp32", "index", "-m", tiny_model, "-k", "8", fasta,
                 "--images", root / "ref_photos", "-o", index)
    assert result.exit_code == 0, result.stderr
    # queries: a reference barcode with the photo of another specimen, slightly recoloured, and photos alone
    (root / "queries").mkdir()
    pairs = [(refs[0], refs[6]), (refs[4], refs[10]), (refs[8], refs[2])]
    lines = []
    for n, (dna, photo) in enumerate(pairs):
        lines += [f">f{n}", dna.barcode]
        _photo(root / "queries" / f"f{n}.png", np.clip(colours[photo.id] + 12, 0, 255))
    for n, r in enumerate(refs[1:8:3]):
        _photo(root / "queries" / f"p{n}.png", np.clip(colours[r.id] - 9, 0, 255))
    (root / "queries.fasta").write_text("\n".join(lines) + "\n")
    result = run("-q", "--precision", "fp32", "classify", "-i", index, root / "queries.fasta", "--images",
                 root / "queries", "--format", "jsonl", "--top-k", 1)
    assert result.exit_code == 0, result.stderr
    out = {json.loads(line)["query_id"].rsplit("/", 1)[-1].removesuffix(".png"): json.loads(line)
           for line in result.stdout.splitlines()}
    embedded = root / "embedded.h5"
    result = run("-q", "--precision", "fp32", "embed", "-m", tiny_model, root / "queries.fasta", fasta,
                 root / "queries", "-o", embedded)
    assert result.exit_code == 0, result.stderr
    vectors = _embedded(embedded)
    return {"refs": refs, "index": index, "out": out, "root": root,
            "queries": {q: vectors[(str(root / "queries" / f"{q}.png"), "image")] for q in out},
            "barcodes": {q: vectors[(q, "dna")] for q in out if q.startswith("f")},
            "keys": np.stack([vectors[(r.id, "dna")] for r in refs])}


def _nearest(keys, query):
    sims = keys @ query
    return int(np.argmax(sims)), float(np.max(sims))


def test_photo_query_is_its_photo_embedding_searched_among_the_barcodes(fused):
    ids = [r.id for r in fused["refs"]]
    for q in ("p0", "p1", "p2"):
        record = fused["out"][q]
        assert record["modality"] == "image"
        row, sim = _nearest(fused["keys"], fused["queries"][q])
        assert record["neighbours"][0]["similarity"] == pytest.approx(sim, abs=2e-4)
        assert record["neighbours"][0]["id"] in (ids[row], ids[row ^ 1])  # twins tie


def test_fused_query_is_the_normalised_sum_of_photo_and_barcode(fused):
    ids = [r.id for r in fused["refs"]]
    for q in ("f0", "f1", "f2"):
        record = fused["out"][q]
        assert record["modality"] == "image+dna"
        image, dna = fused["queries"][q], fused["barcodes"][q]
        row, sim = _nearest(fused["keys"], _unit(image + dna))
        assert record["neighbours"][0]["similarity"] == pytest.approx(sim, abs=2e-4)
        assert record["neighbours"][0]["id"] in (ids[row], ids[row ^ 1])
        # neither part alone gives that similarity: the check sees both
        assert abs(_nearest(fused["keys"], dna)[1] - sim) > 1e-3
        assert abs(_nearest(fused["keys"], image)[1] - sim) > 1e-3


def test_fused_query_uses_the_image_dna_calibration(fused):
    from clibd_cli.classification.calibration import calibrations
    from clibd_cli.classification.decision import predict
    from clibd_cli.classification.taxonomy import ReferenceTaxonomy
    from clibd_cli.reference.index_reading import load_index

    index = load_index(fused["index"])
    reference = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    kinds = calibrations(index.calibration)
    assert set(kinds) == {"dna", "dna<500", "image", "image+dna"}

    prior = fused["out"]["f0"]["prior_unseen"]  # the share of new species classify estimated on the run

    def confidences(kind, vectors):
        rows, sims = index.search(vectors, kinds[kind].k, exact=True)
        shares = kinds[kind].shares(prior)
        return [p.confidence[r] for p in predict(rows, sims, reference, kinds[kind], shares=shares) for r in RANKS]

    names = ["f0", "f1", "f2"]
    vectors = np.stack([_unit(fused["queries"][q] + fused["barcodes"][q]) for q in names]).astype(np.float32)
    printed = [fused["out"][q]["ranks"][r]["confidence"] for q in names for r in RANKS]
    assert printed == pytest.approx(confidences("image+dna", vectors), abs=2e-4)
    assert printed != pytest.approx(confidences("dna", vectors), abs=2e-4)  # the calibrations differ here

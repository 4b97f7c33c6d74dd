"""A reference index packed small enough to ship: int8 vectors and records, no HNSW graph.

Layout of a pack directory::

    pack.json        format, the index manifest (model fingerprint, HNSW parameters, seed, ...),
                     the confidence calibration and the sha256 of every other file
    vectors.npy      int8 [nodes, D]: each distinct reference vector, scaled so its largest
                     component is ±127
    scales.npy       float32 [nodes]: the scale of each row
    nodes.npy        int32 [N]: the vector (node) of each record
    records.tsv.gz   the index's records.tsv, gzipped
    sketch.npy       the index's k-mer sketch, if it has one (clibd_cli/reference/sketch.py)
    protein_sketch.npy  its translation sketch, if it has one (clibd_cli/reference/protein_sketch.py)
    holdings.npy     the 5-mers each record holds, if the index keeps them (clibd_cli/reference/holdings.py)

Unpacking rebuilds the graph from the dequantised vectors with the pack's seed on one thread,
so every unpacked copy is the same index. Packing refits the calibration on exactly that
index, so the shipped confidences belong to the vectors users search.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from clibd_cli.classification.calibration import Calibration, search_part
from clibd_cli.classification.query_kinds import (READ_KIND, SHORT_KIND, SHORT_READ_KIND, PartialQueries, calibrate,
                                                  partial_calibration, reads_calibration, refit_reads)
from clibd_cli.embedding.unit import unit_rows
from clibd_cli.reference.hnsw_index import RECORDS_FILE, ReferenceIndex, build_index
from clibd_cli.reference.holdings import HOLDINGS_FILE, checked_holdings, load_holdings, save_holdings
from clibd_cli.reference.records import read_records, write_records
from clibd_cli.reference.sketch import Sketch, holds_sketch, load_sketch, save_sketch, sketch_files
from models.errors import ClibdError
from models.files import atomic_path, sha256_file

PACK_FORMAT = "clibd-reference-pack/1"
PACK_FILE = "pack.json"
_FILES = ("vectors.npy", "scales.npy", "nodes.npy", f"{RECORDS_FILE}.gz")


def pack_index(index: ReferenceIndex, path: str | Path, held_out: tuple[np.ndarray, dict] | None = None,
               short: PartialQueries | None = None, pseudo_reads: tuple[list[int], np.ndarray] | None = None,
               held_reads: tuple[np.ndarray, dict] | None = None,
               short_reads: tuple[PartialQueries, dict | None] | None = None) -> ReferenceIndex:
    """Write ``index`` as a pack at ``path`` (atomically); returns the index users will unpack.

    Only the calibration for queries of the index's own modality is carried over, refitted on the
    packed vectors, and on ``held_out`` queries (their vectors and labels by rank, as
    ``clibd index --calibrate-on`` reads them) if given; with ``short`` (partial barcodes,
    ``query_kinds.short_queries``) the partial-barcode one too, and with ``pseudo_reads`` (copies of
    reference records with errors) and ``held_reads`` (of the held-out queries;
    ``read_errors.py``) the one for reads, with ``short_reads`` (``read_errors.partial_read_queries``)
    the one for partial reads. Photo calibrations need the photos, which a pack does not hold.
    """
    modality = index.manifest["modality"]
    if not index.calibration or modality not in index.calibration:
        raise ClibdError(f"{index.path}: the index has no {modality} calibration to pack")
    vectors, scales = quantize(index.node_vectors())
    packed = _rebuild(vectors, scales, index.nodes, index.ids, index.labels, index.manifest, progress=False)
    packed.holdings = index.holdings
    fitted = Calibration.from_json(index.calibration[modality])
    if fitted.held_out and held_out is None:
        raise ClibdError(f"{index.path}: the index is calibrated on held-out queries; pass them to refit "
                         "the pack's calibration, or pack an index built without --calibrate-on")
    partial = index.calibration.get(SHORT_KIND)
    partial = partial and Calibration.from_json(partial)
    packed.calibration = calibrate(packed, None, (), k=fitted.k, seed=fitted.fitted_on.get("seed", 0),
                                   prior_unseen=fitted.prior_unseen if fitted.adaptive else None,
                                   held_out=held_out, held_reads=held_reads, short=short, pseudo_reads=pseudo_reads,
                                   short_reads=short_reads,
                                   rank_parts=fitted.rank_parts,
                                   partial_part=partial and search_part(partial.rank_parts, index.ranks),
                                   partial_containment=partial.containment if partial else (),
                                   sisters=fitted.fitted_on.get("sisters", 0),
                                   species_weight=fitted.fitted_on.get("species_weight", 1.0),
                                   gap_ranks=list(fitted.gaps or ()))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, directory=True) as tmp:
        np.save(tmp / "vectors.npy", vectors, allow_pickle=False)
        np.save(tmp / "scales.npy", scales, allow_pickle=False)
        np.save(tmp / "nodes.npy", index.nodes.astype(np.int32), allow_pickle=False)
        with gzip.GzipFile(tmp / f"{RECORDS_FILE}.gz", "wb", mtime=0) as raw, \
                io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as handle:
            write_records(handle, index.ids, index.labels)
        files = list(_FILES)
        if index.sketch is not None:
            files += save_sketch(index.sketch, tmp)
        files += save_holdings(index.holdings, tmp)
        packed.sketch = index.sketch
        manifest = {k: v for k, v in index.manifest.items() if k != "sha256"}
        pack = {"format": PACK_FORMAT, "manifest": manifest, "calibration": packed.calibration,
                "sha256": {name: sha256_file(tmp / name) for name in files}}
        (tmp / PACK_FILE).write_text(json.dumps(pack, indent=1) + "\n")
    return packed


def unpack_index(path: str | Path, *, progress: bool = False) -> ReferenceIndex:
    """The index a pack holds (verified against its checksums), in memory: save it with ``.save``."""
    path = Path(path)
    pack = _verified(path)
    manifest, calibration, digests = pack["manifest"], pack["calibration"], pack["sha256"]
    with gzip.open(path / f"{RECORDS_FILE}.gz", "rt", encoding="utf-8") as handle:
        ids, labels = read_records(handle, path / f"{RECORDS_FILE}.gz", manifest["ranks"])
    index = _rebuild(np.load(path / "vectors.npy", allow_pickle=False),
                     np.load(path / "scales.npy", allow_pickle=False),
                     np.load(path / "nodes.npy", allow_pickle=False).astype(np.int64),
                     ids, labels, manifest, progress=progress)
    index.calibration = calibration
    if holds_sketch(manifest, digests):
        index.sketch = load_sketch(path, manifest, "reinstall clibd")
    if HOLDINGS_FILE in digests:
        index.holdings = np.array(load_holdings(path / HOLDINGS_FILE, len(ids), "reinstall clibd"))
    return index


def resketch_pack(path: str | Path, sketch: Sketch) -> None:
    """Give the pack at ``path`` a new ``sketch`` (files, manifest entry, checksums), its vectors,
    records and calibration as they are: how the bundled pack got its translation sketch
    (``benchmarks/add_protein_sketch.py``) without refitting what the model's vectors decide."""
    path = Path(path)
    pack = _verified(path)
    turned = (pack["manifest"].get("sketch") or {}).get("turned", 0)
    pack["manifest"]["sketch"] = sketch.to_manifest(turned)
    _rewrite(path, pack, lambda tmp: [*save_sketch(sketch, tmp), *_copied(path, tmp, [HOLDINGS_FILE])])


def add_holdings(path: str | Path, holdings: np.ndarray, short: PartialQueries,
                 held_out_labels: dict | None) -> None:
    """Give the pack at ``path`` its records' 5-mers (``reference/holdings.py``) and the partial-barcode
    calibration that reads them, refitted on ``short`` (``query_kinds.partial_calibration``, the
    held-out stretches labelled by ``held_out_labels``), with the neighbours, seed and fixed share
    of the one it replaces; its vectors, records, sketches and other calibrations as they are
    (``benchmarks/add_holdings.py``)."""
    path = Path(path)
    pack, index = _verified(path), unpack_index(path)
    index.holdings = checked_holdings(np.asarray(holdings), len(index), path / HOLDINGS_FILE,
                                      "give kmer_holdings of the pack's records, in order")
    pack["calibration"][SHORT_KIND] = _partial_like(path, pack, index, short, held_out_labels)
    _rewrite(path, pack, lambda tmp: [*_copied(path, tmp, sketch_files(pack["manifest"])),
                                      *save_holdings(holdings, tmp)])


def add_partial_reads(path: str | Path, short_reads: PartialQueries, held_out_labels: dict | None) -> None:
    """Give the pack at ``path`` the ``dna<500~`` calibration, fitted on ``short_reads`` (partial
    barcodes of its records with errors, ``read_errors.partial_read_queries``, and of held-out
    queries labelled by ``held_out_labels``) as ``query_kinds.partial_calibration`` fits it, with the
    neighbours, seed and fixed share of its ``dna<500`` one; its files and other calibrations as they
    are (``benchmarks/add_partial_reads.py``)."""
    path = Path(path)
    pack = _verified(path)
    fitted = _partial_like(path, pack, unpack_index(path), short_reads, held_out_labels, reads=True)
    kinds = [kind for kind in pack["calibration"] if kind != SHORT_READ_KIND]
    at = kinds.index(SHORT_KIND) + 1  # as clibd index orders them
    pack["calibration"] = {kind: fitted if kind == SHORT_READ_KIND else pack["calibration"][kind]
                           for kind in [*kinds[:at], SHORT_READ_KIND, *kinds[at:]]}
    _rewrite(path, pack, lambda tmp: _copied(path, tmp, _side_files(pack)))


def add_reads(path: str | Path, pseudo_reads: tuple, held_reads: tuple) -> None:
    """Give the pack at ``path`` a ``dna~`` calibration fitted on ``pseudo_reads`` (rows, vectors, rates
    and stop model of copies of its records with errors, ``read_errors.read_pseudo_queries``) and
    refitted on ``held_reads`` (``query_kinds.refit_reads``), as ``clibd index`` fits it, with the
    neighbours, seed, fixed share and pseudo-query recipe of its ``dna`` one; its files and other
    calibrations as they are (``benchmarks/add_reads.py``)."""
    path = Path(path)
    pack, index = _verified(path), unpack_index(path)
    dna = Calibration.from_json(pack["calibration"][index.manifest["modality"]])
    fitted = reads_calibration(index, pseudo_reads, k=dna.k, seed=dna.fitted_on.get("seed", 0),
                               prior_unseen=dna.prior_unseen if dna.adaptive else None, barcode_gaps=dna.held_out,
                               rank_parts=dna.rank_parts, sisters=dna.fitted_on.get("sisters", 0),
                               species_weight=dna.fitted_on.get("species_weight", 1.0))
    calibration = {**pack["calibration"], READ_KIND: fitted}
    refit_reads(calibration, index, held_reads, dna.prior_unseen if dna.adaptive else None)
    pack["calibration"][READ_KIND] = calibration[READ_KIND]
    _rewrite(path, pack, lambda tmp: _copied(path, tmp, _side_files(pack)))


def _side_files(pack: dict) -> list[str]:
    """The files beside the vectors and records that a calibration's refit copies as they are."""
    return [*sketch_files(pack["manifest"]), HOLDINGS_FILE]


def _partial_like(path: Path, pack: dict, index: ReferenceIndex, short: PartialQueries,
                  held_out_labels: dict | None, reads: bool = False) -> dict:
    """A partial-barcode calibration (JSON-able) of the pack's ``index`` fitted on ``short``
    (``query_kinds.partial_calibration``; ``reads``: copies with errors) with the neighbours, seed and
    fixed share of its ``dna<500`` one."""
    if SHORT_KIND not in pack["calibration"]:
        raise ClibdError(f"{path / PACK_FILE}: no {SHORT_KIND} calibration to fit a partial-barcode one like")
    partial = Calibration.from_json(pack["calibration"][SHORT_KIND])
    return partial_calibration(index, short, held_out_labels, k=partial.k, prior_unseen=partial.prior_unseen,
                               seed=partial.fitted_on.get("seed", 0), reads=reads)


def _rewrite(path: Path, pack: dict, write: Callable[[Path], list[str]]) -> None:
    """Write ``pack`` (its ``pack.json``) at ``path`` again: the vectors and records copied, then
    the files ``write`` puts in the new folder, every file checksummed."""
    with atomic_path(path, directory=True) as tmp:
        files = [*_copied(path, tmp, _FILES), *write(tmp)]
        pack["sha256"] = {name: sha256_file(tmp / name) for name in files}
        (tmp / PACK_FILE).write_text(json.dumps(pack, indent=1) + "\n")


def _copied(path: Path, tmp: Path, names: Sequence[str]) -> list[str]:
    """The files among ``names`` that the pack at ``path`` has, copied into ``tmp``."""
    kept = [name for name in names if (path / name).is_file()]
    for name in kept:
        shutil.copy2(path / name, tmp / name)
    return kept


def _verified(path: Path) -> dict:
    """The pack's ``pack.json``, every file it lists checked against its checksum first."""
    try:
        pack = json.loads((path / PACK_FILE).read_text())
        if pack["format"] != PACK_FORMAT:
            raise ValueError(f"format {pack['format']!r}, expected {PACK_FORMAT}")
        manifest, digests, _ = pack["manifest"], pack["sha256"], pack["calibration"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClibdError(f"{path / PACK_FILE}: not a readable reference pack ({exc})") from None
    extra = [*sketch_files(manifest),  # the sketch its manifest describes, listed or not
             *([HOLDINGS_FILE] if HOLDINGS_FILE in digests else [])]
    for name in (*_FILES, *extra):
        if not (path / name).is_file() or sha256_file(path / name) != digests.get(name):
            raise ClibdError(f"{path / name}: missing or corrupted (checksum mismatch); reinstall clibd")
    return pack


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of float vectors -> (int8 rows, float32 scale per row)."""
    scales = np.abs(vectors).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    return np.round(vectors / scales[:, None]).astype(np.int8), scales.astype(np.float32)


def dequantize(vectors: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """int8 rows and their scales -> L2-normalised float32 rows."""
    out = vectors.astype(np.float32) * scales[:, None]
    return unit_rows(out)


def _rebuild(vectors: np.ndarray, scales: np.ndarray, nodes: np.ndarray, ids: list[str],
             labels: dict[str, list[str | None]], manifest: dict, *, progress: bool) -> ReferenceIndex:
    """The index of the dequantised vectors, with the HNSW parameters and provenance of ``manifest``."""
    hnsw = manifest["hnsw"]
    index = build_index(dequantize(vectors, scales)[nodes], ids, labels,
                        model_fingerprint=manifest["model_fingerprint"], modality=manifest["modality"],
                        M=hnsw["M"], ef_construction=hnsw["ef_construction"], ef=hnsw["ef"],
                        seed=hnsw["seed"], threads=1, command=manifest.get("command", ""),
                        progress=progress)
    for key in ("model", "created", "appended", "sketch", "above_order"):
        if key in manifest:
            index.manifest[key] = manifest[key]
    index.manifest["packed"] = True
    return index

"""Confidence calibrations of a reference index, one per kind of query it can answer.

Every index is calibrated for queries of its own modality. A barcode index built with photos of
its reference specimens (``clibd index --images``) is also calibrated for photo queries
(``image``: a photo searched among the barcodes) and for specimens with both (``image+dna``:
the normalised sum of the two embeddings), with the photos as pseudo-queries standing in for
their records.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

import numpy as np

from clibd_cli.classification.calibration import Calibration
from clibd_cli.classification.fitting import fit_calibration, fit_calibration_held_out
from clibd_cli.data.fasta import photos_by_id
from clibd_cli.defaults import CALIBRATION
from clibd_cli.embedding.embedder import Embedder, batched
from clibd_cli.io.images import find_images, load_image, load_photos

log = logging.getLogger("clibd")
MAX_PHOTOS = 3000  # pseudo-queries per scenario in fit_calibration: more photos add nothing
FEW_PHOTOS = 50


def calibrate(index, embedder: Embedder | None, images: Sequence[str], first: int = 0, *,
              k: int = CALIBRATION.neighbours, prior_unseen: float | None = None, seed: int = 0,
              held_out: tuple[np.ndarray, dict] | None = None) -> dict[str, dict]:
    """Calibrations (JSON-able) by query kind for ``index``; photos under ``images`` are matched
    to the records from row ``first`` on (the ones just added). Kinds that cannot be refitted
    (an append without photos) are kept from ``index.calibration``. With ``held_out`` (query
    vectors and their labels by rank), the confidences for queries of the index's own modality
    are refitted on those queries, reading the reference's barcode gaps too (``barcode_gap.py``;
    with pseudo-queries alone they made the confidences of real new species worse:
    benchmarks/README.md). ``prior_unseen`` fixes the share of new species the confidences
    assume (None: estimated per run by clibd classify). ``embedder`` is needed only with ``images``."""

    def fit(query_vectors=None, barcode_gaps: bool = False) -> dict:
        return fit_calibration(index, query_vectors=query_vectors, k=k, prior_unseen=prior_unseen,
                               seed=seed, barcode_gaps=barcode_gaps).to_json()

    modality = index.manifest["modality"]
    calibration = {modality: fit(barcode_gaps=held_out is not None)}
    before = (index.calibration or {}).get(modality)
    if held_out is None and before and Calibration.from_json(before).held_out:
        log.warning("the index was calibrated on held-out queries; now on its own records (give "
                    "--calibrate-on again to keep the held-out calibration)")
    if held_out is not None:
        decisions = Calibration.from_json(calibration[modality])
        calibration[modality] = fit_calibration_held_out(
            index, *held_out, decisions, prior_unseen=prior_unseen).to_json()
    photos = _photo_vectors(index, embedder, images, first, seed) if images else None
    if photos is not None:
        has_photo = np.abs(photos).sum(axis=1, keepdims=True) > 0
        fused = photos + np.where(has_photo, index.vectors(), 0.0)
        fused /= np.maximum(np.linalg.norm(fused, axis=1, keepdims=True), 1e-12)
        calibration["image"] = fit(photos)
        calibration["image+dna"] = fit(fused.astype(np.float32))
    kept = {kind: data for kind, data in (index.calibration or {}).items() if kind not in calibration}
    if kept:
        log.warning("the %s calibration is kept from before (give --images to refit it)", ", ".join(kept))
    return {**calibration, **kept}


def _photo_vectors(index, embedder: Embedder, images: Sequence[str], first: int,
                   seed: int) -> np.ndarray | None:
    """``[records, D]`` photo embeddings, zero for records without a (sampled, readable) photo."""
    photos = photos_by_id(find_images(images))
    rows = [i for i in range(first, len(index)) if index.ids[i] in photos]
    if not rows:
        log.warning("no photo under %s is named after a reference record (ID.jpg); the index is not "
                    "calibrated for photos", ", ".join(images))
        return None
    if len(rows) > MAX_PHOTOS:
        rows = sorted(np.random.default_rng(seed).choice(rows, MAX_PHOTOS, replace=False).tolist())
    vectors = np.zeros((len(index), index.manifest["dim"]), dtype=np.float32)
    used = 0
    for chunk in batched(rows, embedder.batch_size):
        kept, pixels = load_photos(((row, partial(load_image, photos[index.ids[row]])) for row in chunk),
                                   embedder.pixels)
        if kept:
            vectors[kept] = embedder.images(pixels)
            used += len(kept)
    if used == 0:
        return None
    if used < FEW_PHOTOS:
        log.warning("only %d reference photos: the photo calibration is rough", used)
    log.info("calibrating for photo queries with %d reference photos", used)
    return vectors

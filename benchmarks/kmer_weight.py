"""A DNA embedding through clibd's own index, held-out calibration and decisions, in one process;
optionally with the 5-mer profile added to the embedding's cosine.

Reference: BOLD `train`; confidences fitted on `val` + `val_unseen` exactly as the bundled pack's
(`clibd_cli/classification/query_kinds.calibrate` with held-out queries); then three batches
(`test`, `test_unseen`, a seeded 70:30 mix of 4,000) decided with the share of new species
estimated on each batch (`--prior-unseen auto`). With `--kmer-weight W` every vector is the
embedding and the square-root 5-mer profile (`clibd_cli/embedding/kmer.py`) concatenated with
weights so that the cosine is (embedding cosine + W x profile cosine) / (1 + W). Barcodes are read
as the BOLD file has them (no orientation, gaps dropped): a quick way to compare embeddings and
weights before building anything; `classify_bold.py` measures the product.

    .venv/bin/python benchmarks/kmer_weight.py MODEL [--kmer-weight 0,1,3] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import time
from pathlib import Path

import numpy as np
import torch
from nearest_neighbour_bold import BOLD, embed

from clibd_cli.classification.calibration import calibrations
from clibd_cli.classification.decision import confidences, label
from clibd_cli.classification.query_kinds import calibrate
from clibd_cli.classification.taxonomy import ReferenceTaxonomy
from clibd_cli.embedding.kmer import kmer_profile
from clibd_cli.evaluation.metrics import reliability
from clibd_cli.reference.hnsw_index import build_index
from models import load_model
from models.config import PRETRAINED_DIR, RANKS

SPLITS = ("train", "val", "val_unseen", "test", "test_unseen")
CUTOFF = 0.8
MIX = 4000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a model name (clibd-fast-bold) or directory (RUN/best)")
    parser.add_argument("--kmer-weight", default="0", help="comma-separated weights W of the profile cosine")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for row in csv.DictReader(gzip.open(BOLD, "rt")):
        if row["split"] in rows:
            rows[row["split"]].append(row)
    model = load_model(args.model if Path(args.model).is_dir() else PRETRAINED_DIR / args.model).float().eval()
    embedded = {split: embed(model, part) for split, part in rows.items()}
    profiles = {split: kmer_profile([r["dna_barcode"].replace("-", "").upper() for r in part], 5)
                for split, part in rows.items()}
    for weight in (float(w) for w in args.kmer_weight.split(",")):
        a, b = np.sqrt(1 / (1 + weight)), np.sqrt(weight / (1 + weight))
        vectors = {split: np.hstack([a * _unit(embedded[split]), b * profiles[split]]).astype(np.float32)
                   for split in rows}
        started = time.perf_counter()
        index = build_index(vectors["train"], [r["processid"] for r in rows["train"]], _labels(rows["train"]),
                            model_fingerprint=args.model, modality="dna", threads=args.threads)
        held_out = (np.vstack([vectors["val"], vectors["val_unseen"]]), _labels(rows["val"] + rows["val_unseen"]))
        index.calibration = calibrate(index, None, (), held_out=held_out)
        print(json.dumps({"model": args.model, "kmer_weight": weight,
                          "index+calibration s": round(time.perf_counter() - started)}), flush=True)
        for name, (batch, records) in _batches(vectors, rows).items():
            print(json.dumps({"batch": name, **_measure(index, batch, records, rows["train"])}), flush=True)


def _measure(index, batch: np.ndarray, records: list[dict], reference: list[dict]) -> dict:
    """ECE per rank and the open-set numbers of one batch, decided as clibd classify does."""
    calibration = calibrations(index.calibration)["dna"]
    taxonomy = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    decisions = label(*index.search(batch, calibration.k), taxonomy, calibration)
    shares = calibration.estimate_shares(decisions.stacked())
    confidence = confidences(decisions, taxonomy, calibration, shares)
    new = np.array([r["split"] == "test_unseen" for r in records])
    genera = {r["genus"] for r in reference}
    new_in_genus = new & np.array([r["genus"] in genera for r in records])
    out = {"new species estimated": round(100 * calibration.unseen_share(shares), 1)}
    for rank in RANKS:
        call = np.array([*taxonomy.names[rank], None], dtype=object)[decisions.codes[rank]]
        truth = np.array([r[rank] or None for r in records], dtype=object)
        right, named = call == truth, confidence[rank] >= CUTOFF
        labelled = truth != None  # noqa: E711 (object array)
        out[f"ECE {rank}"] = round(100 * reliability(confidence[rank][labelled], right[labelled]).ece, 1)
        if rank == "species" and (~new).any():
            out["known species named"] = _percent(right & named, ~new)
            out["known species best label"] = _percent(right, ~new)
        if rank == "species" and new.any():
            out["new species asserted"] = _percent(named & (call != None), new)  # noqa: E711
        if rank == "genus" and new_in_genus.any():
            out["new species' genus named"] = _percent(right & named, new_in_genus)
            out["new species' genus best label"] = _percent(right, new_in_genus)
        if rank == "order" and new.any():
            out["new species' order best label"] = _percent(right, new)
    return out


def _batches(vectors: dict[str, np.ndarray], rows: dict[str, list[dict]]) -> dict:
    rng = np.random.default_rng(0)
    known = rng.choice(len(rows["test"]), int(0.7 * MIX), replace=False)
    new = rng.choice(len(rows["test_unseen"]), MIX - len(known), replace=False)
    mix = (np.vstack([vectors["test"][known], vectors["test_unseen"][new]]),
           [rows["test"][i] for i in known] + [rows["test_unseen"][i] for i in new])
    return {"test": (vectors["test"], rows["test"]), "test_unseen": (vectors["test_unseen"], rows["test_unseen"]),
            "mix 70:30": mix}


def _labels(records: list[dict]) -> dict[str, list[str | None]]:
    return {rank: [r[rank] or None for r in records] for rank in RANKS}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _percent(hit: np.ndarray, among: np.ndarray) -> float:
    return round(100 * float(hit[among].mean()), 2)


if __name__ == "__main__":
    main()

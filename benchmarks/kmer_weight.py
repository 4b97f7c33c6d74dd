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
from batch_calibration import batch_table
from nearest_neighbour_bold import BOLD, embed

from clibd_cli.classification.calibration import calibrations
from clibd_cli.classification.decision import confidences, label
from clibd_cli.classification.query_kinds import calibrate
from clibd_cli.classification.taxonomy import ReferenceTaxonomy
from clibd_cli.embedding.kmer import kmer_profile
from clibd_cli.embedding.unit import unit_rows
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
    genera = {r["genus"] for r in rows["train"]}
    for weight in (float(w) for w in args.kmer_weight.split(",")):
        a, b = np.sqrt(1 / (1 + weight)), np.sqrt(weight / (1 + weight))
        vectors = {split: np.hstack([a * unit_rows(embedded[split].copy()), b * profiles[split]]).astype(np.float32)
                   for split in rows}
        started = time.perf_counter()
        index = build_index(vectors["train"], [r["processid"] for r in rows["train"]], _labels(rows["train"]),
                            model_fingerprint=args.model, modality="dna", threads=args.threads)
        held_out = (np.vstack([vectors["val"], vectors["val_unseen"]]), _labels(rows["val"] + rows["val_unseen"]))
        index.calibration = calibrate(index, None, (), held_out=held_out)
        print(json.dumps({"model": args.model, "kmer_weight": weight,
                          "index+calibration s": round(time.perf_counter() - started)}), flush=True)
        calibration = calibrations(index.calibration)["dna"]
        taxonomy = ReferenceTaxonomy.from_labels(index.ids, index.labels)
        for name, (batch, records) in _batches(vectors, rows).items():
            decided = _measure(index, calibration, taxonomy, batch, records, genera)
            print(json.dumps({"batch": name, **decided}), flush=True)


def _measure(index, calibration, taxonomy: ReferenceTaxonomy, batch: np.ndarray, records: list[dict],
             genera: set[str]) -> dict:
    """ECE per rank and the open-set numbers of one batch (``batch_calibration.batch_table``, at
    the cutoff and for the best label), decided as clibd classify does."""
    decisions = label(*index.search(batch, calibration.k), taxonomy, calibration)
    shares = calibration.estimate_shares(decisions.stacked())
    confidence = confidences(decisions, taxonomy, calibration, shares)
    names = {rank: np.array([*taxonomy.names[rank], ""], dtype=object)[decisions.codes[rank]] for rank in RANKS}
    scores = {r["processid"]: {rank: (names[rank][i], float(confidence[rank][i])) for rank in RANKS}
              for i, r in enumerate(records)}
    new = {r["processid"] for r in records if r["split"] == "test_unseen"}
    named, best = (batch_table(scores, records, new, genera, cutoff) for cutoff in (CUTOFF, 0.0))
    out = {"new species estimated": round(100 * calibration.unseen_share(shares), 1),
           **{f"ECE {rank}": round(named[f"ece_{rank}"], 1) for rank in RANKS}}
    if len(new) < len(records):
        out["known species named"] = round(named["species_named_right"], 2)
        out["known species best label"] = round(best["species_named_right"], 2)
    if new:
        out["new species asserted"] = round(named["species_asserted"], 2)
        out["new species' genus named"] = round(named["new_genus_right"], 2)
        out["new species' genus best label"] = round(best["new_genus_right"], 2)
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


if __name__ == "__main__":
    main()

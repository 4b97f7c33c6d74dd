"""How far calibration can take the genus of new species: a yardstick per DNA embedding.

For each `test_unseen` record whose genus is in the `train` reference, the nearest reference
record's genus is the call; clibd's own map (logistic, refined by isotonic regression:
`clibd_cli/classification/probability_map.py`) from three features of the call (log distance
of the nearest record, margin over the nearest record of another genus, share of that genus
among the 50 nearest) to "the call is right" is fitted on these same queries. The share of
queries whose call is right *and* mapped to >= 0.8 is a yardstick of what a calibration of
these features can name at the default cutoff (fitted on the test queries themselves: an
analysis, never a setting, and not a strict bound). `--kmer-weight W` scores references by
(embedding cosine + W x 5-mer profile cosine) / (1 + W) instead: the embedding plus the
model-free profile. MODEL `kmer` is the 5-mer profile alone (`clibd index --model kmer`), `kmer-aa`
the 5-mer profile plus the amino-acid triplets of the translation (`--model kmer-aa`, whose cosine
this is; its species rank reads the nucleotides alone, which this genus yardstick does not use;
`--peptide-weight W` sets its weight, `--peptide-k K` its amino-acid k-mers and `--peptide-columns C`
the columns they are hashed into, 0 for none: `kmer-aa`'s own by default). `--split val_unseen` measures on those
records instead of `test_unseen` (to choose settings apart from the test queries).
`--identity` rescores each query's 50 nearest records by alignment identity (1 - edit distance /
the shorter length, end gaps of the longer free; Biopython) and re-sorts them: what a k-mer
search refined by alignment, as vsearch does, would give these features.

    .venv/bin/python benchmarks/genus_headroom.py MODEL [MODEL ...] [--kmer-weight 1] [--identity]
        [--peptide-weight W] [--peptide-k K] [--peptide-columns C] [--split val_unseen]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json

import numpy as np
import torch
from Bio.Align import PairwiseAligner
from nearest_neighbour_bold import BOLD, embed

from clibd_cli.classification.fitting import MAP_RIDGE
from clibd_cli.classification.probability_map import apply_map, fit_map
from clibd_cli.embedding.kmer import MODEL_FREE, PEPTIDE_MODEL, KmerProfileModel, kmer_profile
from models import load_model

NEIGHBOURS = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--kmer-weight", type=float, default=0.0)
    parser.add_argument("--identity", action="store_true", help="rescore the 50 nearest by alignment identity")
    parser.add_argument("--peptide-weight", type=float, default=None, help="kmer-aa's weight of the peptide profile")
    parser.add_argument("--peptide-k", type=int, default=None, help="kmer-aa's amino-acid k-mers (k)")
    parser.add_argument("--peptide-columns", type=int, default=None, help="columns they are hashed into (0: none)")
    parser.add_argument("--split", default="test_unseen", choices=["test_unseen", "val_unseen"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {"train": [], args.split: []}
    for row in csv.DictReader(gzip.open(BOLD, "rt")):
        if row["split"] in rows:
            rows[row["split"]].append(row)
    genera, orders = (np.array([r[rank] for r in rows["train"]]) for rank in ("genus", "order"))
    known = set(genera)
    queries = [r for r in rows[args.split] if r["genus"] in known]
    truth, truth_order = (np.array([r[rank] for r in queries]) for rank in ("genus", "order"))
    profiles = [kmer_profile([r["dna_barcode"].replace("-", "") for r in part], 5)
                if args.kmer_weight else None for part in (rows["train"], queries)]
    for name in args.models:
        if name in MODEL_FREE:
            model = MODEL_FREE[name]()
            if name == PEPTIDE_MODEL:
                model = KmerProfileModel(
                    peptide_k=model.peptide_k if args.peptide_k is None else args.peptide_k,
                    peptide_weight=model.peptide_weight if args.peptide_weight is None else args.peptide_weight,
                    peptide_columns=model.peptide_columns if args.peptide_columns is None else args.peptide_columns)
            scores = (model.embed_barcodes([r["dna_barcode"] for r in queries])
                      @ model.embed_barcodes([r["dna_barcode"] for r in rows["train"]]).T)
        else:
            model = load_model(name).float().eval()
            scores = embed(model, queries) @ embed(model, rows["train"]).T
        if args.kmer_weight and name not in MODEL_FREE:
            scores = (scores + args.kmer_weight * profiles[1] @ profiles[0].T) / (1 + args.kmer_weight)
        order = np.argsort(-scores, axis=1)[:, :NEIGHBOURS]
        sims = np.take_along_axis(scores, order, axis=1)
        if args.identity:
            sims = identities(queries, rows["train"], order)
            resort = np.argsort(-sims, axis=1, kind="stable")
            order, sims = np.take_along_axis(order, resort, axis=1), np.take_along_axis(sims, resort, axis=1)
        calls = genera[order]
        same = calls == calls[:, :1]
        other = np.where(same, -np.inf, sims).max(axis=1)
        other = np.where(np.isfinite(other), other, sims[:, -1])
        features = np.stack([np.log(np.maximum(1 - sims[:, 0], 1e-4)), sims[:, 0] - other, same.mean(axis=1)], 1)
        right = calls[:, 0] == truth
        p = apply_map(fit_map(features, right.astype(float), np.ones(len(right)), MAP_RIDGE), features)
        print(json.dumps({"model": name, "split": args.split, "kmer_weight": args.kmer_weight,
                          "profile": model.fingerprint() if name in MODEL_FREE else None,
                          "identity": args.identity,
                          "queries": len(queries),
                          "nearest order right": round(100 * (orders[order[:, 0]] == truth_order).mean(), 1),
                          "nearest genus right": round(100 * right.mean(), 1),
                          "right and >= 0.8 (in-sample map)": round(100 * (right & (p >= 0.8)).mean(), 1)}), flush=True)


def identities(queries: list[dict], reference: list[dict], order: np.ndarray) -> np.ndarray:
    """``[Q, K]`` alignment identity of each query to its candidate reference records: 1 - edit
    distance / the shorter length, the longer sequence's end gaps free."""
    aligner = PairwiseAligner(mode="global", match_score=0, mismatch_score=-1, gap_score=-1, end_deletion_score=0)
    bases = [r["dna_barcode"].replace("-", "").upper() for r in reference]
    out = np.zeros(order.shape)
    for q, query in enumerate(queries):
        mine = query["dna_barcode"].replace("-", "").upper()
        for j, row in enumerate(order[q]):
            longer, shorter = sorted((mine, bases[row]), key=len, reverse=True)
            out[q, j] = 1 + aligner.score(longer, shorter) / max(len(shorter), 1)
    return out


if __name__ == "__main__":
    main()

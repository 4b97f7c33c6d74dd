"""Does the predictor's confidence mean what it says? A model-free test on real BOLD barcodes.

Embeds barcodes with the k-mer profile, builds the reference index from the ``train`` split
(seen species; ``key_unseen`` left out, so the ``test_unseen`` species are absent from the
reference), fits the calibration on the reference itself, then classifies ``test`` (species in
the reference) and ``test_unseen`` (species absent) and reports accuracy, open-set behaviour,
calibration error and throughput::

    .venv/bin/python benchmarks/calibration_kmer.py [--with-pretrain] [--queries val] [--k 50]
        [--prior-unseen 0.5] [--exact] [--kmer 5] [--json results.json]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import time
from pathlib import Path

import numpy as np

from clibd_cli.classification.decision import decide
from clibd_cli.classification.fitting import fit_calibration
from clibd_cli.classification.taxonomy import ReferenceTaxonomy
from clibd_cli.embedding.kmer import kmer_profile
from clibd_cli.evaluation import metrics
from clibd_cli.reference.hnsw_index import build_index
from models.config import RANKS

DATA = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "bold-coi" / "metadata.csv.gz")


def load(path: str) -> dict[str, dict[str, list]]:
    """Records per split: ``{split: {"id": [...], "barcode": [...], rank: [...]}}``."""
    splits: dict[str, dict[str, list]] = {}
    with gzip.open(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            part = splits.setdefault(row["split"], {"id": [], "barcode": [], **{r: [] for r in RANKS}})
            part["id"].append(row["processid"])
            part["barcode"].append(row["dna_barcode"])
            for rank in RANKS:
                part[rank].append(row[rank] or None)
    return splits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--kmer", type=int, default=5, help="k-mer length of the profile")
    ap.add_argument("--k", type=int, help="neighbours the predictor looks at (default: library's)")
    ap.add_argument("--n-queries", type=int, default=4000, help="calibration pseudo-queries")
    ap.add_argument("--prior-unseen", type=float, default=0.5)
    ap.add_argument("--min-confidence", type=float, default=0.8)
    ap.add_argument("--with-pretrain", action="store_true", help="add pretrain records (no species)")
    ap.add_argument("--exact", action="store_true", help="brute-force search instead of HNSW")
    ap.add_argument("--queries", choices=("test", "val"), default="test",
                    help="classify test + test_unseen, or val + val_unseen")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    splits = load(args.data)
    ref_splits = ["train", "pretrain"] if args.with_pretrain else ["train"]
    ref = {key: sum((splits[s][key] for s in ref_splits), []) for key in splits["train"]}
    t0 = time.perf_counter()
    index = build_index(kmer_profile(ref["barcode"], args.kmer), ref["id"],
                        {r: ref[r] for r in RANKS}, model_fingerprint=f"kmer-profile-{args.kmer}",
                        modality="dna", seed=args.seed, threads=2)
    t1 = time.perf_counter()
    options = {} if args.k is None else {"k": args.k}
    calibration = fit_calibration(index, n_queries=args.n_queries, prior_unseen=args.prior_unseen,
                                  seed=args.seed, **options)
    t2 = time.perf_counter()
    print(f"reference: {len(index)} records from {'+'.join(ref_splits)}; index {t1 - t0:.1f} s, "
          f"calibration {t2 - t1:.1f} s (k {calibration.k})")
    for rank, fit in calibration.ranks.items():
        print(f"  {rank}: vote temperature {fit['tau_vote']}, vote-share temperature "
              f"{fit['tau_share']}, logistic coef {np.round(fit['coef'], 2).tolist()}")
    taxonomy = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    known = {r: set(filter(None, index.labels[r])) for r in RANKS}

    results: dict[str, dict] = {}
    pooled: dict[str, list] = {r: [] for r in RANKS}
    splits_used = (args.queries, f"{args.queries}_unseen")
    for name in splits_used:
        part = splits[name]
        clock = [time.perf_counter()]
        queries = kmer_profile(part["barcode"], args.kmer)
        clock.append(time.perf_counter())
        rows, sims = index.search(queries, calibration.k, exact=args.exact, threads=2)
        clock.append(time.perf_counter())
        codes, conf = decide(rows, sims, taxonomy, calibration)
        clock.append(time.perf_counter())
        steps = np.diff(clock)
        res: dict = {"queries": len(rows), "queries_per_s": len(rows) / steps.sum(),
                     "stage_queries_per_s": dict(zip(("embed", "search", "predict"),
                                                     (len(rows) / steps).tolist()))}
        _, species, counts = np.unique(part["species"], return_inverse=True, return_counts=True)
        balance = 1.0 / counts[species]
        neighbours = {r: np.array(index.labels[r], dtype=object)[rows[:, :1]] for r in RANKS}
        res["top1_nn"] = metrics.accuracy_table(neighbours, {r: part[r] for r in RANKS}, ks=(1,))
        for rank in RANKS:
            vocabulary = np.array([*taxonomy.names[rank], None], dtype=object)
            best = vocabulary[codes[rank]]  # code -1 picks the trailing None
            truth = np.array(part[rank], dtype=object)
            correct = (best == truth) & (codes[rank] >= 0)
            called = conf[rank] >= args.min_confidence
            res[rank] = {
                "best_accuracy": float(correct.mean()),
                "assigned_rate": float(called.mean()),
                "assigned_accuracy": float(correct[called].mean()) if called.any() else float("nan"),
                "known_assigned_correct": metrics.known_label_accuracy(
                    np.where(called, best, None), part[rank], known[rank]),
                "ece": metrics.reliability(conf[rank], correct).ece,
                # each species weighs the same: a few abundant species do not dominate
                "ece_species_balanced": metrics.reliability(conf[rank], correct, weights=balance).ece,
            }
            pooled[rank].append((conf[rank], correct))
        results["seen" if name == args.queries else "unseen"] = res
    reliability = {r: metrics.reliability(np.concatenate([c for c, _ in v]),
                                          np.concatenate([k for _, k in v]))
                   for r, v in pooled.items()}
    results["pooled_ece"] = {r: rel.ece for r, rel in reliability.items()}
    report(results, args)
    for rank, rel in reliability.items():
        print(f"\nreliability, {rank}, {' + '.join(splits_used)}:\n{rel.table()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "calibration": calibration.to_json(), **results}, f, indent=1)


def report(results: dict, args: argparse.Namespace) -> None:
    """The headline numbers against the product targets."""
    seen, unseen = results["seen"], results["unseen"]
    cut = args.min_confidence
    print(f"\nseen ({args.queries}, {seen['queries']} queries):")
    print(f"  species accuracy, best label: {seen['species']['best_accuracy']:.4f} "
          f"(top-1 NN micro {seen['top1_nn']['species'][1]['micro']:.4f}, "
          f"macro {seen['top1_nn']['species'][1]['macro']:.4f})")
    print(f"  species assigned at {cut}: {seen['species']['assigned_rate']:.4f}, "
          f"accuracy of those: {seen['species']['assigned_accuracy']:.4f}   [target >= 0.993]")
    print(f"unseen ({args.queries}_unseen, {unseen['queries']} queries, species absent from reference):")
    print(f"  species asserted at {cut}: {unseen['species']['assigned_rate']:.4f}   [target <= 0.02]")
    for rank in ("genus", "family", "order"):
        target = "   [target >= 0.70]" if rank == "genus" else ""
        print(f"  {rank} assigned & right / {rank} in reference: "
              f"{unseen[rank]['known_assigned_correct']:.4f} "
              f"(assigned {unseen[rank]['assigned_rate']:.4f}, "
              f"accuracy of assigned {unseen[rank]['assigned_accuracy']:.4f}){target}")
    print("ECE per rank: seen / unseen / pooled (seen + unseen); species-balanced seen / unseen:")
    for rank in RANKS:
        print(f"  {rank:8s} {seen[rank]['ece']:.4f} / {unseen[rank]['ece']:.4f} / "
              f"{results['pooled_ece'][rank]:.4f};   {seen[rank]['ece_species_balanced']:.4f} / "
              f"{unseen[rank]['ece_species_balanced']:.4f}")
    print(f"throughput incl. embedding, search, prediction: {seen['queries_per_s']:.0f} / "
          f"{unseen['queries_per_s']:.0f} queries/s (seen / unseen); by stage (seen): "
          + ", ".join(f"{k} {v:.0f}/s" for k, v in seen["stage_queries_per_s"].items()))


if __name__ == "__main__":
    main()

"""Variants of the confidence calibration, chosen on val / val_unseen, reported on test / test_unseen.

    PYTHONPATH=benchmarks .venv/bin/python benchmarks/calibration_variants.py --index DIR [VARIANT ...]

DIR: a model-free index of the BOLD `train` split (`clibd index -m kmer` or `-m kmer-aa`, e.g. the
one `classify_bold.py --batches` builds); queries are embedded with the index's model. Each variant is fitted in-process on that index and every
batch classified as `clibd classify --prior-unseen auto` would (share of new species estimated
by EM on the batch): `val`, `val_unseen` and their seeded 70:30 mix (to choose), then the same
for `test` (to report). Printed per batch: the estimated / true share of new species, per-rank
ECE (points), known species named right at 0.8, new species asserted, new species' genus named
right (of those whose genus is in the reference); on the batches of new species only, per rank
the ECE with every species weighing the same and the species that weigh most on it.

Variants: `base` (the default index: pseudo-queries, three features, and what the model's
`calibration_hints` add), `gaps` (+ barcode gaps, ``clibd_cli/classification/barcode_gap.py``),
`sister` / `sisterN` (unseen-species pseudo-queries also leave out the N species nearest to them;
`--model kmer-aa` leaves out 1 unless `sister0`), `rarityP` (unseen pseudo-queries drawn with probability
proportional to (records of their species)^-P: P = 0 draws records uniformly, 1 is the default,
`--model kmer-aa` uses 2 unless `rarity1`; joined with `:`, e.g. `sister0:rarity1`), `seedN` (the
pseudo-queries drawn with seed N, 0 by default: how far a variant moves the numbers against how far
another draw of the same recipe does, e.g. `base:seed1`), `queriesN` (N pseudo-queries per scenario, 3,000
by default, ``defaults.CalibrationDefaults.pseudo_queries``), and
`base+ho` / `gaps+ho` (maps refitted on val + val_unseen, as `clibd index --calibrate-on`;
reported on test only). Every query is read with the whole-barcode (`dna`) calibration.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import time

import numpy as np

from batch_calibration import species_weights
from classify_bold import BOLD
from clibd_cli.classification import fitting
from clibd_cli.classification.calibration import rank_similarities
from clibd_cli.classification.decision import confidences, label
from clibd_cli.classification.taxonomy import ReferenceTaxonomy
from clibd_cli.defaults import CALIBRATION
from clibd_cli.embedding.embedder import load_model_for
from clibd_cli.evaluation.metrics import reliability
from clibd_cli.reference.index_reading import load_index
from models.config import RANKS

SPLITS = ("val", "val_unseen", "test", "test_unseen")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("variants", nargs="*", default=["base", "gaps", "sister", "base+ho", "gaps+ho"])
    args = parser.parse_args()
    index = load_index(args.index, verify=False)
    reference = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    rows = list(csv.DictReader(gzip.open(BOLD, "rt")))
    data = {}
    model = index_model(index)
    for split in SPLITS:
        part = [r for r in rows if r["split"] == split]
        vectors = model.embed_barcodes([r["dna_barcode"] for r in part])
        data[split] = (*index.search(vectors, 50), {k: [r[k] or None for r in part] for k in RANKS}, vectors)
    data["vectors"] = index.vectors()
    genera = set(filter(None, index.labels["genus"]))
    for variant in args.variants:
        start = time.perf_counter()
        calibration = fit(index, variant, data)
        print(f"== {variant} (fit {time.perf_counter() - start:.0f} s)", flush=True)
        for seen, unseen in ([] if variant.endswith("+ho") else [("val", "val_unseen")]) + [("test", "test_unseen")]:
            for name, (si, ui) in batches(len(data[seen][0]), len(data[unseen][0]), seen, unseen).items():
                print("  " + evaluate(calibration, reference, data, seen, unseen, si, ui, name, genera), flush=True)


def index_model(index):
    """The profile the index was built with (an index of ``kmer-aa``'s earlier amino-acid pairs is
    searched with them, not with today's triplets: ``embedder.load_model_for(built_with=)``)."""
    model = load_model_for(index.manifest["model"], ["dna"], index.manifest["model_fingerprint"])
    index.check_model(model.fingerprint(), index.manifest["model"])
    return model


def fit(index, variant: str, data: dict):
    """The calibration of one variant."""
    hints = index_model(index).calibration_hints
    parts = variant.removesuffix("+ho").split(":")  # e.g. sister0:rarity1
    rarity, sisters, seed = hints.get("species_weight", 1.0), hints.get("sisters", 0), 0
    n_queries = CALIBRATION.pseudo_queries
    for part in parts:
        if part.startswith("seed"):
            seed = int(part.removeprefix("seed"))
        elif part.startswith("queries"):
            n_queries = int(part.removeprefix("queries"))
        elif part.startswith("rarity"):
            rarity = float(part.removeprefix("rarity"))
        elif part.startswith("sister"):
            sisters = int(part.removeprefix("sister") or 1)
    calibration = fitting.fit_calibration(index, barcode_gaps="gaps" in parts, rank_parts=hints.get("rank_parts"),
                                          species_weight=rarity, sisters=sisters, seed=seed, n_queries=n_queries,
                                          gap_ranks=hints.get("gap_ranks", ()))
    if variant.endswith("+ho"):
        vectors = np.concatenate([data["val"][3], data["val_unseen"][3]])
        labels = {r: data["val"][2][r] + data["val_unseen"][2][r] for r in RANKS}
        calibration = fitting.fit_calibration_held_out(index, vectors, labels, calibration)
    return calibration


def batches(n_seen: int, n_unseen: int, seen: str, unseen: str) -> dict:
    """Seen alone, unseen alone, and all seen with a seeded 30 % of unseen."""
    n_new = min(n_unseen, round(n_seen * 0.3 / 0.7))
    chosen = np.random.default_rng(0).choice(n_unseen, n_new, replace=False)
    return {seen: (np.arange(n_seen), np.zeros(0, int)), unseen: (np.zeros(0, int), np.arange(n_unseen)),
            f"mix70:30 {seen}": (np.arange(n_seen), chosen)}


def evaluate(calibration, reference, data, seen, unseen, si, ui, name, genera) -> str:
    rows = np.concatenate([data[seen][0][si], data[unseen][0][ui]])
    sims = np.concatenate([data[seen][1][si], data[unseen][1][ui]])
    truth = {r: np.array([data[seen][2][r][i] for i in si] + [data[unseen][2][r][i] for i in ui], dtype=object)
             for r in RANKS}
    new = np.r_[np.zeros(len(si), bool), np.ones(len(ui), bool)]
    queries = np.concatenate([data[seen][3][si], data[unseen][3][ui]])
    decisions = label(rows, sims, reference, calibration, rank_sims=rank_similarities(
        calibration.rank_parts, queries, data["vectors"], rows, containment=calibration.containment))
    shares = calibration.estimate_shares(decisions.stacked())
    conf = confidences(decisions, reference, calibration, shares)
    right = {r: np.array([*reference.names[r], None], dtype=object)[decisions.codes[r]] == truth[r] for r in RANKS}
    ece = " ".join(f"{100 * reliability(conf[r], right[r]).ece:.1f}" for r in RANKS)
    line = f"{name:18s} new share {100 * (1 - shares[0]):5.1f} / {100 * new.mean():5.1f} | ECE o/f/g/s {ece}"
    named = conf["species"] >= 0.8
    if (~new).any():
        line += f" | known species named {100 * np.mean(named[~new] & right['species'][~new]):.2f}"
    if new.any():
        known_genus = new & np.array([g in genera for g in truth["genus"]])
        genus_named = right["genus"] & (conf["genus"] >= 0.8)
        line += (f" | new species asserted {100 * np.mean(named[new]):.2f}, genus named right "
                 f"{100 * np.mean(genus_named[known_genus]):.1f}")
    if new.all():
        line += "".join(f"\n    {species_weights(conf[r], right[r], truth['species'], r)}"
                        for r in ("order", "family", "genus"))
    return line


if __name__ == "__main__":
    main()

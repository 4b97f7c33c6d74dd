"""Per-batch reliability of clibd, SINTAX and RDP on BOLD (``classify_bold.py --batches``).

Three batches against the `train` reference, each classified in its own `clibd classify` run
(so the share of new species is estimated per batch): `test` only (0 % new species),
`test_unseen` only (100 %), and a seeded 70:30 mix (all of `test` and a random 30/70 of that
count from `test_unseen`). Per batch and tool: per-rank ECE (10 equal-width bins over the
confidence of the reported best label at each rank; label right = 1, a species absent from the
reference is never right), named-right at the tool's default cutoff, species asserted for new
species, new species' genus named right (of those whose genus is in the reference), and for
clibd the estimated share of new species (the `prior_unseen` column) against the truth.

RDP (Debian `rdp-classifier` 2.10.2) is trained on the same reference, as `clibd evaluate
--baselines rdp` trains it (`clibd_cli/evaluation/rdp.py`).
"""

from __future__ import annotations

import csv
import random
import subprocess
from pathlib import Path

import numpy as np

from clibd_cli.evaluation import rdp
from clibd_cli.evaluation.metrics import reliability
from clibd_cli.evaluation.scores import CURVE_CUTOFFS
from clibd_cli.io.pipeline_formats import read_sintax
from models.config import RANKS

BOOTSTRAP = 500  # draws: species resamplings for species_weights' ECE interval, and calibrated_ece's


def batches(queries: dict[str, list[dict]], seed: int = 0,
            shares: tuple[float, ...] = ()) -> dict[str, list[dict]]:
    """`test`, `test_unseen`, the seeded 70:30 mix of the two and a mix at each other share of new
    species in ``shares`` (``mix50:50``: as many of either kind as the smaller split allows), each
    shuffled (clibd estimates the share of new species on a run's first 10,000 queries: a batch
    sorted by kind would mislead it)."""
    seen, unseen = queries["test"], queries["test_unseen"]
    out = {"test": seen, "test_unseen": unseen}
    for share in (0.3, *sorted(set(shares) - {0.3})):
        n_new = round(len(seen) * share / (1 - share))  # with every known species' record, if enough are new
        n_seen = len(seen) if n_new <= len(unseen) else round(len(unseen) * (1 - share) / share)
        rng = random.Random(seed)
        mix = seen if n_seen == len(seen) else rng.sample(seen, n_seen)
        mix = mix + rng.sample(unseen, min(n_new, len(unseen)))
        rng.shuffle(mix)
        out[f"mix{round(100 * (1 - share))}:{round(100 * share)}"] = mix
    return out


def train_rdp(reference: list[dict], work: Path) -> Path | None:
    """The RDP classifier trained on ``reference`` (its properties file), or None without java/RDP."""
    if rdp.missing():
        return None
    rdp.write_training_set(work, [r["processid"] for r in reference], [r["dna_barcode"] for r in reference],
                           [[r[rank] for rank in RANKS] for r in reference])
    subprocess.run(rdp.train_command(work), check=True, stdout=subprocess.DEVNULL)
    return rdp.finish(work)


def read_sintax_scores(path: Path) -> dict[str, dict[str, tuple[str, float]]]:
    """--tabbedout column 2: every rank's best label with its bootstrap support."""
    return {line.query.split(";")[0]: {rank: (label.replace("_", " "), support)
                                       for rank, (label, support) in line.ranks.items() if rank in RANKS}
            for line in read_sintax(path)}


def best_labels(lineage: str) -> dict[str, str]:
    """Rank letter -> best label of a clibd ``lineage`` (``o:Diptera(1.00),...,s:Aedes_albopictus(0.41)``),
    underscores read as spaces; the confidence is the last parenthesis, as SINTAX's reader takes it."""
    return {letter: label.rpartition("(")[0].replace("_", " ")
            for letter, _, label in (p.partition(":") for p in lineage.split(",") if p)}


def read_clibd_scores(path: Path) -> tuple[dict[str, dict[str, tuple[str, float]]], float]:
    """Best label and confidence per rank, and the share of new species the run assumed: the
    mean over its records of ``prior_unseen`` (estimated per kind of query, `dna`, `dna<500`,
    `dna~`: each record carries its kind's share; NaN if no record does)."""
    scores, priors = {}, []
    with open(path) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            best = best_labels(row["lineage"])
            scores[row["query_id"]] = {r: (best.get(r[0], ""), float(row[f"{r}_conf"] or 0)) for r in RANKS}
            if row["prior_unseen"]:
                priors.append(float(row["prior_unseen"]))
    return scores, float(np.mean(priors)) if priors else float("nan")


def batch_table(scores: dict, batch: list[dict], new: set[str], ref_genera: set[str], cutoff: float) -> dict:
    """Per-rank ECE and the open-set numbers of one tool on one batch at ``cutoff``."""
    out = {}
    for rank in RANKS:
        conf = np.array([scores.get(r["processid"], {}).get(rank, ("", 0.0))[1] for r in batch])
        right = np.array([scores.get(r["processid"], {}).get(rank, ("", 0.0))[0] == r[rank] for r in batch])
        out[f"ece_{rank}"] = 100 * reliability(conf, right).ece
    named = named_at(scores, cutoff)
    seen = [r for r in batch if r["processid"] not in new]
    unseen = [r for r in batch if r["processid"] in new]
    known = [r for r in unseen if r["genus"] in ref_genera]
    out["species_named_right"] = _share(seen, lambda r: named(r, "species") == r["species"])
    out["species_asserted"] = _share(unseen, lambda r: bool(named(r, "species")))
    out["new_genus_right"] = _share(known, lambda r: named(r, "genus") == r["genus"])
    out["new_genus_wrong"] = _share(known, lambda r: named(r, "genus") not in ("", r["genus"]))
    out["true_new_share"] = len(unseen) / max(len(batch), 1)
    return out


def by_species(scores: dict, batch: list[dict], rank: str) -> str:
    """:func:`species_weights` of one tool's ``scores`` on ``batch``."""
    conf = np.array([scores.get(r["processid"], {}).get(rank, ("", 0.0))[1] for r in batch])
    right = np.array([scores.get(r["processid"], {}).get(rank, ("", 0.0))[0] == r[rank] for r in batch])
    return species_weights(conf, right, np.array([r["species"] for r in batch], dtype=object), rank)


def species_weights(conf: np.ndarray, right: np.ndarray, species: np.ndarray, rank: str, n: int = 3) -> str:
    """How a few species weigh on ``rank``'s calibration: the ECE with every species weighing the
    same (each record 1 / its species' records), its 90 % interval when the batch's species are
    resampled (``BOOTSTRAP`` draws of as many species, with replacement, seed 0: how much the ECE
    of a batch of this many species moves with which species it holds), and the species adding most to the gap
    between mean confidence and accuracy (records x (confidence - accuracy) / batch, in points);
    and the ECE a perfectly calibrated tool giving these very confidences would show on this batch
    (:func:`calibrated_ece`)."""
    names, inverse, counts = np.unique(species, return_inverse=True, return_counts=True)
    balanced = reliability(conf, right, weights=1.0 / counts[inverse]).ece
    rng = np.random.default_rng(0)
    draws = [reliability(conf, right, weights=np.bincount(rng.integers(0, len(names), len(names)),
                                                          minlength=len(names))[inverse]).ece
             for _ in range(BOOTSTRAP)]
    low, high = 100 * np.quantile(draws, [0.05, 0.95])
    gap = np.bincount(inverse, weights=conf - right) / len(conf)
    worst = np.argsort(-np.abs(gap))[:n]
    parts = [f"{names[i]} ({counts[i]} records, conf {conf[inverse == i].mean():.2f}, right "
             f"{right[inverse == i].mean():.2f}: {100 * gap[i]:+.1f})" for i in worst]
    calibrated = 100 * calibrated_ece(conf, inverse, len(names))
    return (f"{rank}: ECE {100 * reliability(conf, right).ece:.1f} (species resampled: {low:.1f}-{high:.1f}), "
            f"species-balanced {100 * balanced:.1f}; if calibrated: {calibrated[0]:.1f} ({calibrated[1]:.1f}-{calibrated[2]:.1f}); "
            f"largest gaps (points): {'; '.join(parts)}")


def calibrated_ece(conf: np.ndarray, species: np.ndarray, n_species: int) -> np.ndarray:
    """Median and 90 % interval (fractions, not points) of the ECE of a tool whose confidences ``conf`` are exactly right
    (a record at 0.8 is right with probability 0.8) on a batch whose records share their
    species' fate, as records of one species do (their neighbours are nearly the same): one
    uniform draw ``u`` per species (``species``: each record's species index), record right if
    ``u < conf`` (``BOOTSTRAP`` draws, seed 0). A batch of few species, some with hundreds of
    records, leaves even a calibrated tool several points of ECE unless its confidences are near 0 or 1."""
    rng = np.random.default_rng(0)
    draws = [reliability(conf, rng.random(n_species)[species] < conf).ece for _ in range(BOOTSTRAP)]
    return np.quantile(draws, [0.5, 0.05, 0.95])


def curve(scores: dict, batch: list[dict], new: set[str], ref_genera: set[str]) -> list[str]:
    """Operating points across cutoffs: known species named right vs new species asserted, and
    new species' genus right vs wrong (of those whose genus is in the reference)."""
    lines = []
    for cutoff in CURVE_CUTOFFS:
        t = batch_table(scores, batch, new, ref_genera, cutoff)
        lines.append(f"{cutoff:.2f}: known species named {t['species_named_right']:.2f}%, new species asserted "
                     f"{t['species_asserted']:.2f}%, new genus right {t['new_genus_right']:.1f}% / wrong "
                     f"{t['new_genus_wrong']:.1f}%")
    return lines


def named_at(scores: dict, cutoff: float):
    """``named(record, rank)``: the label a tool's ``scores`` give ``record`` at ``rank`` if its
    confidence reaches ``cutoff``, else ""."""
    def named(record: dict, rank: str) -> str:
        label, conf = scores.get(record["processid"], {}).get(rank, ("", 0.0))
        return label if conf >= cutoff else ""
    return named


def _share(records: list[dict], hit) -> float:
    return 100 * sum(map(hit, records)) / len(records) if records else float("nan")


def format_row(tool: str, t: dict, estimate: float | None = None) -> str:
    """One line of the per-batch table."""
    est = f"{100 * estimate:5.1f}" if estimate is not None else "    -"
    return (f"  {tool:8s} ECE o/f/g/s {t['ece_order']:4.1f} {t['ece_family']:4.1f} {t['ece_genus']:4.1f} "
            f"{t['ece_species']:4.1f} | known sp named {t['species_named_right']:6.2f} | new sp asserted "
            f"{t['species_asserted']:5.2f} | new genus right {t['new_genus_right']:5.1f} | new share est {est} "
            f"truth {100 * t['true_new_share']:5.1f}")

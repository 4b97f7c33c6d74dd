"""Batches of new species cut from the reference itself: how far one batch's calibration error moves.

    PYTHONPATH=benchmarks .venv/bin/python benchmarks/new_species_batches.py --work DIR \\
        [--model kmer-aa] [--folds 5] [--sintax] [--rank species|genus|family]

BOLD's `test_unseen` is one batch of new species, 138 of them, two holding a third of its records,
so its per-rank ECE says as much about those species as about the tool. Here the species of BOLD
`train` are dealt into ``--folds`` seeded folds; for each fold an index of `train` without that
fold's species is built (`clibd index -m MODEL`, default settings) and the fold's records are
classified in one run (`clibd classify`, share of new species estimated by the run): a batch made
only of new species, as `test_unseen` is, but of other species. Printed per fold, as in
`classify_bold.py --batches` (`batch_calibration.py`): per-rank ECE, new species given a species
and new species' genus named right at 0.8 (of those whose genus stays in the reference), the run's
estimated share of new species; and at genus the species-balanced ECE and the ECE that a
perfectly calibrated tool giving the same confidences would show on that batch. With
``--sintax``, `vsearch --sintax` on the same folds and references.

``--rank genus`` or ``family`` deals that rank's taxa into the folds instead: each batch is then of
genera (families) absent from the reference, and also printed is the share of its records given a
label at that rank at 0.8 (always wrong: none is in the reference) and its order named right.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import random
import shutil
from pathlib import Path

import numpy as np

import batch_calibration as bc
from classify_bold import BOLD, CLIBD, timed, write_fasta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--model", default="kmer-aa", help="`clibd index -m` MODEL (default kmer-aa)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--sintax", action="store_true", help="also run vsearch --sintax on each fold")
    parser.add_argument("--rank", choices=("species", "genus", "family"), default="species",
                        help="the rank whose taxa are left out of the reference, a fold at a time")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    with gzip.open(BOLD, "rt") as handle:
        train = [r for r in csv.DictReader(handle) if r["split"] == "train"]
    taxa = sorted({r[args.rank] for r in train if r[args.rank]})
    random.Random(0).shuffle(taxa)
    fold_of = {name: i % args.folds for i, name in enumerate(taxa)}
    rank_ece = {}  # per tool: the left-out rank's ECE per fold (genus where species are left out)
    summed = "genus" if args.rank == "species" else args.rank
    for fold in range(args.folds):
        batch = [r for r in train if fold_of.get(r[args.rank]) == fold]
        reference = [r for r in train if fold_of.get(r[args.rank]) != fold]
        work = args.work / f"fold{fold}"
        work.mkdir(exist_ok=True)
        names = ("reference.fasta", "batch.fasta", "index", "clibd.tsv")
        ref_fasta, fasta, index, out = (work / name for name in names)
        write_fasta(ref_fasta, reference, sintax=True)
        write_fasta(fasta, batch, sintax=False)
        if index.exists():
            shutil.rmtree(index)
        clibd = [CLIBD, "-q", "--threads", "2"]
        built = timed([*clibd, "index", "-m", args.model, str(ref_fasta), "-o", str(index)])
        took = timed([*clibd, "classify", "--index", str(index), str(fasta), "-o", str(out)])
        genera = {r["genus"] for r in reference if r["genus"]}
        new = {r["processid"] for r in batch}
        n_taxa = len({r[args.rank] for r in batch})
        print(f"fold {fold}: {len(batch)} records of {n_taxa} new {args.rank} names, reference {len(reference)} "
              f"(index {built:.0f} s, classify {took:.1f} s)", flush=True)
        tools = {"clibd": bc.read_clibd_scores(out)}
        if args.sintax:
            sintax = work / "sintax.tsv"
            timed(["vsearch", "--sintax", str(fasta), "--db", str(ref_fasta), "--tabbedout", str(sintax),
                   "--sintax_cutoff", "0.8", "--randseed", "1", "--threads", "2", "--quiet"])
            tools["sintax"] = (bc.read_sintax_scores(sintax), None)
        for tool, (scores, estimate) in tools.items():
            table = bc.batch_table(scores, batch, new, genera, 0.8)
            rank_ece.setdefault(tool, []).append(table[f"ece_{summed}"])
            print(bc.format_row(tool, table, estimate))
            if args.rank != "species":
                named = bc.named_at(scores, 0.8)
                given = np.mean([bool(named(r, args.rank)) for r in batch])
                order = np.mean([named(r, "order") == r["order"] for r in batch])
                print(f"    {tool}: given a {args.rank} at 0.8 (all wrong) {100 * given:.1f} %, "
                      f"order named right {100 * order:.1f} %")
            print(f"    {bc.by_species(scores, batch, 'genus' if args.rank == 'species' else args.rank)}", flush=True)
    for tool, values in rank_ece.items():
        print(f"{tool}: {summed} ECE over {args.folds} folds: median {np.median(values):.1f}, range "
              f"{min(values):.1f}-{max(values):.1f}; folds at or under 3 points: "
              f"{sum(v <= 3 for v in values)}")


if __name__ == "__main__":
    main()

"""Where a partial barcode's neighbours come from: the model's vectors or the 5-mers it shares.

For the stretches `classify_bold.py --fragment N --work WORK` wrote (WORK/queries.fasta: every
BOLD `test` and `test_unseen` barcode cut to N bases), searched in the bundled reference (BOLD
`train`): for known species (`test`), the share whose species is among the k nearest vectors,
and whose best label (every rank, no cutoff) is right with the neighbours taken from the vectors
alone and with those held whole searched by their 5-mers (clibd_cli/classification/contained.py,
what `clibd classify` does since session 24, and with every stretch searched by its 5-mers,
as if each were held whole), and the share whose species is that of the records
sharing the most of its 5-mers, exactly over every record (a vote among the ties, as the
decision's vote would be: many sister species share a stretch); for new species (`test_unseen`
whose genus is in the reference), the share whose best genus is right each way, and the share
held whole by some record. Run before the contained search was in the bundled pack, "vectors
alone" was what clibd did; the search switch is made in-process, with the pack's calibration
(best labels are the decision's vote: they do not depend on the confidences, nor on the share of
new species the first block estimated, which the later runs keep).

    PYTHONPATH=$PWD:$PWD/benchmarks .venv/bin/python benchmarks/partial_neighbours.py WORK/queries.fasta
"""

from __future__ import annotations

import argparse
import csv
import gzip
from pathlib import Path

import numpy as np
from classify_bold import BOLD

from clibd_cli.classification import contained as contained_module
from clibd_cli.classification.classifier import Classifier
from clibd_cli.classification.contained import KmerCounter, kmer_bits
from clibd_cli.classification.queries import Query
from clibd_cli.classification.query_kinds import SHORT_KIND
from clibd_cli.embedding.kmer import kmer_profile
from clibd_cli.indexing.bundled import default_index
from models.config import RANKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queries", type=Path, help="queries.fasta written by classify_bold.py --fragment N --work")
    args = parser.parse_args()
    truth = {r["processid"]: r for r in csv.DictReader(gzip.open(BOLD, "rt"))}
    ids, barcodes = [], []
    for line in args.queries.read_text().splitlines():
        (ids if line.startswith(">") else barcodes).append(line[1:].strip() if line.startswith(">") else line)
    classifier = Classifier(default_index())
    k = classifier.calibrations[SHORT_KIND].k
    genera = set(classifier.index.labels["genus"])
    known = [i for i, q in enumerate(ids) if truth[q]["split"] == "test"]
    new = [i for i, q in enumerate(ids) if truth[q]["split"] == "test_unseen" and truth[q]["genus"] in genera]
    species = np.array(classifier.index.labels["species"], dtype=object)
    row_of = {record: row for row, record in enumerate(classifier.index.ids)}
    print(f"{args.queries}: {len(known)} known species' stretches, {len(new)} new species' (genus in the reference); "
          f"{k} neighbours")
    held_whole = contained_module.held_whole  # search_held_whole reads it there
    for contained in ("vectors alone", "held whole: by 5-mers", "every stretch by 5-mers"):
        classifier.calibrations[SHORT_KIND].contained_search = contained != "vectors alone"
        contained_module.held_whole = held_whole if contained != "every stretch by 5-mers" else (
            lambda bits, *rest: np.ones(len(bits), dtype=bool))  # as if every one were held whole
        results = []
        for start in range(0, len(ids), 1024):
            block = [Query(ids[i], barcodes[i]) for i in range(start, min(start + 1024, len(ids)))]
            results += classifier.classify(block, report=k)
        labels = [r.prediction.labels for r in results]
        among = None if contained != "vectors alone" else np.mean([truth[ids[i]]["species"] in set(
            species[[row_of[n.id] for n in results[i].neighbours]]) for i in known])
        right = {rank: 100 * np.mean([labels[i][rank] == truth[ids[i]][rank] for i in known]) for rank in RANKS}
        genus = 100 * np.mean([labels[i]["genus"] == truth[ids[i]]["genus"] for i in new])
        print(f"  {contained}: known species best label right " + ", ".join(f"{r} {v:.2f}%" for r, v in right.items())
              + f"; new species' genus right {genus:.1f}%"
              + ("" if among is None else f"; known species among the {k} nearest vectors {100 * among:.2f}%"))
    bits = kmer_bits(kmer_profile([barcodes[i] for i in known + new], 5))
    best, whole, counter = [], [], KmerCounter.of_holdings(classifier.index.holdings)
    for start in range(0, len(bits), 256):
        shared = counter(bits[start: start + 256])
        top = shared.max(axis=1)
        whole += (top >= bits[start: start + 256].sum(axis=1) - 0.5).tolist()
        for row, most in zip(shared, top):
            names, votes = np.unique(species[row == most], return_counts=True)
            best.append(names[np.argmax(votes)])
    right = [best[j] == truth[ids[i]]["species"] for j, i in enumerate(known)]
    print(f"  records sharing the most 5-mers, exact over every record: known species' species right "
          f"{100 * np.mean(right):.2f}%; held whole by a record: known {100 * np.mean(whole[:len(known)]):.2f}%, "
          f"new {100 * np.mean(whole[len(known):]):.2f}%")


if __name__ == "__main__":
    main()

"""What reading partial barcodes' species by k-mer containment could give the bundled model (an analysis).

The bundled model names the species of 87.9 % of known species' 313-base stretches and gives a
species to 4.5 % of new species' (`classify_bold.py --model bundled --fragment 313`): by its
vectors a stretch of a known species lies about as far from its species as a new species' stretch
from its congeners. The model-free indexes read partial barcodes' species by k-mer containment
instead (the share of the stretch's 5-mers a reference barcode holds), which the bundled pack
cannot: it holds no barcodes. This takes the `train` barcodes from the BOLD file, searches each
stretch's `NEIGHBOURS` nearest records with the bundled model and index, and asserts the species of
the neighbour that contains the stretch best when that containment reaches a threshold. The
thresholds are chosen on these very queries: an upper bound on what a calibrated rule would give,
not a product number.

    PYTHONPATH=$PWD:$PWD/benchmarks .venv/bin/python benchmarks/bundled_containment.py [--lengths 313,150]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import random

import numpy as np
from classify_bold import BOLD, fragment

from clibd_cli.embedding.embedder import Embedder, load_model_for
from clibd_cli.embedding.kmer import kmer_profile
from clibd_cli.indexing.bundled import DEFAULT_MODEL, default_index
from clibd_cli.io.sequences import reverse_complement
from clibd_cli.reference.hnsw_index import load_index

NEIGHBOURS = 50
THRESHOLDS = (0.9, 0.95, 0.97, 0.98, 0.99, 1.0)


def oriented(index, barcodes: list[str]) -> list[str]:
    """The barcodes on the reference's strand, as `clibd classify` reads them."""
    reverse, _ = index.sketch.look(barcodes)
    return [reverse_complement(b) if r else b for b, r in zip(barcodes, reverse)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="313,150", help="stretch lengths, as classify_bold.py --fragment cuts them")
    args = parser.parse_args()
    index = load_index(default_index())
    rows = list(csv.DictReader(gzip.open(BOLD, "rt")))
    train = {r["processid"]: r["dna_barcode"].replace("-", "") for r in rows if r["split"] == "train"}
    holds = kmer_profile(oriented(index, [train[i] for i in index.ids]), 5) > 0  # [records, 4**5] 5-mers held
    species = np.array(index.labels["species"], dtype=object)
    queries = [r for r in rows if r["split"] in ("test", "test_unseen")]
    known = np.array([r["split"] == "test" for r in queries])
    embedder = Embedder(load_model_for(DEFAULT_MODEL, ["dna"]))
    for length in (int(n) for n in args.lengths.split(",")):
        stretches = oriented(index, [fragment(r, length, random.Random(r["processid"]))["dna_barcode"]
                                     for r in queries])
        neighbours, _ = index.search(embedder.barcodes(stretches), NEIGHBOURS)
        has = kmer_profile(stretches, 5) > 0
        best = np.zeros(len(queries))
        right = np.zeros(len(queries), dtype=bool)
        for i, near in enumerate(neighbours):
            contained = (holds[near] & has[i]).sum(axis=1) / max(1, has[i].sum())
            j = int(np.argmax(contained))
            best[i], right[i] = contained[j], species[near[j]] == queries[i]["species"]
        print(f"{length}-base stretches: {known.sum()} of known species, {(~known).sum()} of new species")
        for t in THRESHOLDS:
            print(f"  containment >= {t:.2f}: known species named right {100 * (known & right & (best >= t)).mean() / known.mean():.2f} %, "
                  f"new species given a species {100 * (~known & (best >= t)).sum() / (~known).sum():.2f} %")


if __name__ == "__main__":
    main()

"""The off-target guard on partial barcodes: how many stretches of real barcodes, and of random
DNA, fall below the k-mer sketch's floor (`clibd_cli/reference/sketch.py`).

The sketch is fitted on the BOLD `train` split as `clibd index` fits it; queries are seeded
random stretches of N bases of the `test` and `test_unseen` barcodes, and 500 random sequences
of each length. Printed per length: the share turned away by the floor of its length (what
`clibd classify` uses), and by the whole-barcode floor alone (what it used before).

    .venv/bin/python benchmarks/sketch_floors.py [--lengths 150,200,300,400,500,658]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import random
import time

import numpy as np
from classify_bold import BOLD, fragment

from clibd_cli.reference.sketch import fit_sketch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="150,200,300,400,500,658")
    args = parser.parse_args()
    rows = list(csv.DictReader(gzip.open(BOLD, "rt")))
    started = time.perf_counter()
    sketch, _ = fit_sketch([r["dna_barcode"].replace("-", "") for r in rows if r["split"] == "train"])
    print(f"sketch of train fitted in {time.perf_counter() - started:.1f} s: floor {sketch.floor:.3f}, "
          f"partial-barcode floors {', '.join(f'{f:.3f}' for f in sketch.short_floors)}")
    queries = [r for r in rows if r["split"] in ("test", "test_unseen")]
    for length in map(int, args.lengths.split(",")):
        cut = [fragment(r, length, random.Random(r["processid"]))["dna_barcode"] for r in queries]
        randoms = ["".join(random.Random(i).choices("ACGT", k=length)) for i in range(500)]
        shares = []
        for barcodes in (cut, randoms):
            similarity = sketch.look(barcodes)[1]
            shares += [100 * sketch.off_target(similarity, barcodes).mean(), 100 * np.mean(similarity < sketch.floor)]
        print(f"{length} bases: {len(cut)} stretches of test barcodes turned away {shares[0]:.2f} % "
              f"(whole-barcode floor: {shares[1]:.2f} %); random DNA {shares[2]:.1f} % ({shares[3]:.1f} %)")


if __name__ == "__main__":
    main()

"""The off-target guard by length: how many stretches of real barcodes, of random DNA and of
base-shuffled barcodes the k-mer sketch turns away (`clibd_cli/reference/sketch.py`).

The sketch is fitted on the BOLD `train` split as `clibd index` fits it; queries are seeded
random stretches of N bases of the `test` and `test_unseen` barcodes, 500 random sequences of
each length, and stretches of the first 1,000 of those barcodes with their bases shuffled
(seeded). Printed per length: the share turned away by the guard as `clibd classify` applies it
(the floor of its length, and the higher floor of barcodes that read as no protein), by the
floor of its length alone, and by the whole-barcode floor alone.

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

from clibd_cli.io.sequences import reverse_complement, unambiguous_bases
from clibd_cli.reference.sketch import fit_sketch


def shuffled(barcode: str, seed: int) -> str:
    bases = list(barcode)
    random.Random(seed).shuffle(bases)
    return "".join(bases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="150,200,300,400,500,658")
    args = parser.parse_args()
    rows = list(csv.DictReader(gzip.open(BOLD, "rt")))
    started = time.perf_counter()
    sketch, _ = fit_sketch([r["dna_barcode"].replace("-", "") for r in rows if r["split"] == "train"])
    print(f"sketch of train fitted in {time.perf_counter() - started:.1f} s: floor {sketch.floor:.3f}, "
          f"partial-barcode floors {', '.join(f'{f:.3f}' for f in sketch.short_floors)}; for barcodes that read "
          f"as no protein {sketch.stop_floor:.3f}, {', '.join(f'{f:.3f}' for f in sketch.short_stop_floors)}")
    queries = [r for r in rows if r["split"] in ("test", "test_unseen")]
    print("turned away, %: by the guard / by the floor of their length alone / by the whole-barcode floor alone")
    for length in map(int, args.lengths.split(",")):
        cut = [fragment(r, length, random.Random(r["processid"]))["dna_barcode"] for r in queries]
        randoms = ["".join(random.Random(i).choices("ACGT", k=length)) for i in range(500)]
        mixed = [shuffled(r["dna_barcode"].replace("-", ""), i)[:length] for i, r in enumerate(queries[:1000])]
        shares = []
        for barcodes in (cut, randoms, mixed):
            reverse, similarity = sketch.look(barcodes)
            barcodes = [reverse_complement(b) if r else b for b, r in zip(barcodes, reverse)]
            shares.append(" / ".join(f"{100 * share:.2f}" for share in (
                sketch.off_target(similarity, barcodes).mean(),
                np.mean(similarity < sketch.floors([unambiguous_bases(b) for b in barcodes])),
                np.mean(similarity < sketch.floor))))
        print(f"{length} bases: {len(cut)} stretches of test barcodes {shares[0]}; random DNA {shares[1]}; "
              f"shuffled {shares[2]}")


if __name__ == "__main__":
    main()

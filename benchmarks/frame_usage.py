"""How likely each amino acid is in COI's own reading frame against its two others
(``translation.IN_FRAME_LOG_ODDS``, by which ``--model kmer-aa`` reads a read's frame shifts through).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/frame_usage.py [--records 5000] [--reads 0.01,0.03] [--shift-costs 2,4,8]

Each barcode's frame with the fewest stop codons is its own (``translation.py``); the log ratio of
each amino acid's frequency there and in the two other frames (a count of one added to each), over
the first ``--records`` BOLD ``train`` barcodes (``../shared/data/bold-coi``). Prints the table as
``translation.py`` holds it. With ``--reads``: the first 2,000 ``val`` barcodes of 600 bases or
more given seeded errors at each rate (``io.sequences.with_errors``), and for those that read with
a frame break the cosine of their amino-acid profile to the clean barcode's, translated through
their frame shifts (``peptide_profile(reads=True)``, at each of ``--shift-costs``, default
``translation.FRAME_SHIFT_COST``) and in their best frame.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clibd_cli.io.sequences import with_errors
from clibd_cli.embedding import translation

BOLD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bold-coi" / "metadata.csv.gz"


def in_frame_log_odds(barcodes: Sequence[str]) -> np.ndarray:
    """``[22]`` log frequency of each amino-acid code (0..19, STOP, UNKNOWN) in the barcodes' own
    frame over that in their other two; 0 for UNKNOWN."""
    own, other = np.ones(translation.UNKNOWN + 1), np.ones(translation.UNKNOWN + 1)
    for _, codons in translation.codon_blocks(barcodes):
        best = codons.best_frame()
        own += np.bincount(codons.codes[best], minlength=len(own))
        other += np.bincount(codons.codes[codons.whole & ~best], minlength=len(other))
    odds = np.log(own / own.sum()) - np.log(other / other.sum())
    odds[translation.UNKNOWN] = 0.0
    return odds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--reads", default="", help="error rates per base, comma-separated")
    parser.add_argument("--shift-costs", default=str(translation.FRAME_SHIFT_COST), help="comma-separated")
    args = parser.parse_args()
    with gzip.open(BOLD, "rt") as handle:
        rows = list(csv.DictReader(handle))
    barcodes = [row["dna_barcode"].replace("-", "").strip("N") for row in rows if row["split"] == "train"]
    odds = in_frame_log_odds(barcodes[: args.records])
    names = list(translation.AMINO_ACIDS) + ["stop", "unknown"]
    print(", ".join(f"{name} {value:.2f}" for name, value in zip(names, odds)))
    tests = [(row["processid"], row["dna_barcode"].replace("-", "").strip("N")) for row in rows if row["split"] == "val"]
    tests = [(key, barcode) for key, barcode in tests if len(barcode) >= 600][:2000]
    clean = translation.peptide_profile([barcode for _, barcode in tests])
    for rate in [float(r) for r in args.reads.split(",") if r]:
        reads = [with_errors(barcode, rate, random.Random(key)) for key, barcode in tests]
        broken = translation.frame_breaks(reads) > 0
        plain = np.einsum("ij,ij->i", translation.peptide_profile(reads), clean)[broken]
        print(f"{rate:g} errors per base: {broken.sum()} of {len(reads)} read with a frame break; cosine to the clean "
              f"barcode's amino-acid profile, median (10th-90th percentile): best frame {_spread(plain)}")
        for cost in [float(c) for c in args.shift_costs.split(",")]:
            through = np.einsum("ij,ij->i", translation.peptide_profile(reads, reads=True, shift_cost=cost), clean)[broken]
            print(f"    read through, a change of frame costing {cost:g}: {_spread(through)}")


def _spread(values: np.ndarray) -> str:
    return f"{np.median(values):.3f} ({np.percentile(values, 10):.3f}-{np.percentile(values, 90):.3f})"


if __name__ == "__main__":
    main()

"""The off-target guard against barcodes no more like the reference than their own shuffles
(`clibd_cli/reference/sketch.py`, `Sketch.judge`), by reference size.

Sketches are fitted as `clibd index` fits them: on the whole BOLD `train` split, and on N
barcodes per order drawn from it (seeded). Queries: the whole (600 bases or more) `test` and
`test_unseen` barcodes; 2,000 of them with 1 % and with 5 % sequencing errors
(`io.sequences.with_errors`); 1,000 of them with their bases shuffled; 500 pairs of them joined and
shuffled (long sequences, whose many k-mers lift their similarity). Printed per sketch and query
set: the share turned away by the guard, and without the shuffle rule; and the guard's time per
query with and without it.

    PYTHONPATH=$PWD:$PWD/benchmarks .venv/bin/python benchmarks/composition_guard.py [--per-order 32,256]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import random
import time
from unittest import mock

import numpy as np
from classify_bold import BOLD

from clibd_cli.io.sequences import reverse_complement, unambiguous_bases, with_errors
from clibd_cli.reference import sketch as sketch_module


def turned_away(sketch: sketch_module.Sketch, barcodes: list[str], rule: bool) -> tuple[float, float]:
    """Share of ``barcodes`` the guard turns away, and its seconds per barcode (orientation excluded)."""
    reverse, similarity = sketch.look(barcodes)
    barcodes = [reverse_complement(b) if r else b for b, r in zip(barcodes, reverse)]
    unruled = mock.patch.object(sketch_module.Sketch, "composition_limit", lambda self, b: np.zeros(len(b)))
    with unruled if not rule else contextlib.nullcontext():  # no whole barcode under its limit: no rule
        started = time.perf_counter()
        off = sketch.off_target(similarity, barcodes)
        return float(off.mean()), (time.perf_counter() - started) / len(barcodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-order", default="32,256", help="barcodes per order of the small references")
    args = parser.parse_args()
    rows = list(csv.DictReader(gzip.open(BOLD, "rt")))
    train = [r for r in rows if r["split"] == "train"]
    rng = random.Random(0)
    references = {"train": [r["dna_barcode"].replace("-", "") for r in train]}
    for n in map(int, args.per_order.split(",")):
        by_order: dict[str, list[str]] = {}
        for r in train:
            by_order.setdefault(r["order"], []).append(r["dna_barcode"].replace("-", ""))
        references[f"{n} per order"] = [b for order in sorted(by_order) for b in rng.sample(by_order[order], n)]
    whole = [b for b in (r["dna_barcode"].replace("-", "") for r in rows if r["split"] in ("test", "test_unseen"))
             if unambiguous_bases(b) >= sketch_module.WHOLE_FROM]
    picked = rng.sample(whole, 3000)
    queries = {"real whole": whole,
               "1 % errors": [with_errors(b, 0.01, rng) for b in picked[:2000]],
               "5 % errors": [with_errors(b, 0.05, rng) for b in picked[:2000]],
               "shuffled": ["".join(rng.sample(b, len(b))) for b in picked[:1000]],
               "two joined, shuffled": ["".join(rng.sample(a + b, len(a + b))) for a, b in zip(picked[1000:1500],
                                                                                             picked[1500:2000])]}
    print("turned away, % (with the shuffle rule / without); guard time per query, ms (with / without)")
    for name, barcodes in references.items():
        sketch, _ = sketch_module.fit_sketch(barcodes)
        print(f"{name} ({len(barcodes)} barcodes): floor {sketch.floor:.3f}, no-protein floor {sketch.stop_floor:.3f}")
        for label, batch in queries.items():
            (on, t_on), (off, t_off) = turned_away(sketch, batch, True), turned_away(sketch, batch, False)
            print(f"  {label} ({len(batch)}): {100 * on:.2f} / {100 * off:.2f}; {1000 * t_on:.3f} / {1000 * t_off:.3f}")


if __name__ == "__main__":
    main()

"""The translation sketch's guard (`clibd_cli/reference/protein_sketch.py`): what it turns away
beyond the sketch's other rules, on real barcodes and on other markers.

The bundled reference's sketch (or `--index DIR`'s) judges each set as `clibd classify` does
(`Sketch.judge`, each sequence on the reference's strand). Sets: every BOLD barcode; the `test` +
`test_unseen` barcodes with 1, 3 and 5 % sequencing errors, and cut to 150 and 313 bases with 0,
1, 3 and 5 % errors (seeded as `classify_bold.py --fragment` and `--errors` make them); real
sequences of other markers (`off_target_markers.py`), whole and cut to a seeded random stretch of
150, 313 and 450 bases. Printed per set: sequences, turned away with the translation sketch /
without its floors for partial barcodes that meet a stop in every frame
(`ProteinSketch.read_floors`) / without it at all, the share in the band where the translation
is computed for every barcode (between the k-mer floor and the floor for barcodes that read as
no protein), the guard's time per sequence in the three, and the first BOLD records the read
floors add. First, what fitting it costs `clibd index`: the sketch fitted on BOLD's `train`
split with the translation sketch and without it.

    PYTHONPATH=$PWD:$PWD/benchmarks .venv/bin/python benchmarks/protein_guard.py [--index DIR] [--work DIR]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import time
from pathlib import Path
from unittest import mock

from classify_bold import BOLD, fragment, with_errors
from off_target_markers import SETS, extract, stretches

from clibd_cli.indexing.bundled import PACK
from clibd_cli.io.sequences import checked_barcode, read_sequences, reverse_complement, unambiguous_bases
from clibd_cli.reference.index_reading import load_index
from clibd_cli.reference import sketch as sketch_module
from clibd_cli.reference.sketch import Sketch, load_sketch

MARKERS = [name for name in SETS if name != "16SCore"]  # 16SCore's regions are all under 100 bases


def judged(sketch: Sketch, barcodes: list[str]) -> tuple[list[str | None], float, float]:
    """Why each barcode is off target (None: on target), the share in the translation's band,
    and seconds per barcode for the judgement (orientation excluded)."""
    reverse, similarity = sketch.look(barcodes)
    barcodes = [reverse_complement(b) if r else b for b, r in zip(barcodes, reverse)]
    bases = [unambiguous_bases(b) for b in barcodes]
    band = (similarity >= sketch.floors(bases)) & (similarity < sketch.stop_floors(bases))
    started = time.perf_counter()
    why = sketch.judge(similarity, barcodes, bases)
    return why, float(band.mean()), (time.perf_counter() - started) / max(1, len(barcodes))


def report(name: str, sketch: Sketch, barcodes: list[str], ids: list[str] | None = None) -> None:
    checked = [checked_barcode(b) for b in barcodes]  # as clibd classify reads them; the invalid left out
    kept = [i for i, (_, problem) in enumerate(checked) if problem is None]
    barcodes, ids = [checked[i][0] for i in kept], ids and [ids[i] for i in kept]
    protein, read_floors = sketch.protein, sketch.protein.read_floors
    sketch.protein = None
    without, _, plain = judged(sketch, barcodes)
    sketch.protein, protein.read_floors = protein, None
    no_reads, _, unread = judged(sketch, barcodes)
    protein.read_floors = read_floors
    with_it, band, ruled = judged(sketch, barcodes)
    added = [i for i, (a, b) in enumerate(zip(no_reads, with_it)) if a is None and b is not None]
    print(f"{name}: {len(barcodes)}; turned away {sum(w is not None for w in with_it)} / "
          f"{sum(w is not None for w in no_reads)} without the read floors / "
          f"{sum(w is not None for w in without)} without the translation sketch; in band {100 * band:.2f} %; "
          f"{1e3 * ruled:.4f} / {1e3 * unread:.4f} / {1e3 * plain:.4f} ms each"
          + (f"; added by the read floors: {', '.join(ids[i] for i in added[:5])}" if ids and added else ""))


def fit_time(barcodes: list[str]) -> None:
    """Seconds to fit the sketch on ``barcodes`` with the translation sketch and without it (twice each)."""
    seconds = {True: [], False: []}
    for _ in range(2):
        for protein in (True, False):
            fit = sketch_module.fit_protein_sketch if protein else (lambda sample, rng: None)
            with mock.patch.object(sketch_module, "fit_protein_sketch", fit):
                started = time.perf_counter()
                sketch_module.fit_sketch(barcodes)
                seconds[protein].append(time.perf_counter() - started)
    print(f"fitting the sketch on {len(barcodes)} barcodes: " + " / ".join(
        f"{min(s):.1f}–{max(s):.1f} s {'with' if protein else 'without'} the translation sketch"
        for protein, s in seconds.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=None, help="an index directory (default: the bundled reference)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/clibd-off-target"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.index:
        sketch = load_index(args.index).sketch
    else:
        sketch = load_sketch(PACK, json.loads((PACK / "pack.json").read_text())["manifest"], "reinstall clibd")
    if sketch is None or sketch.protein is None:
        raise SystemExit("the index has no translation sketch (rebuild it with this clibd)")
    rows = list(csv.DictReader(gzip.open(BOLD, "rt")))
    fit_time([r["dna_barcode"] for r in rows if r["split"] == "train"])
    report("BOLD, every barcode", sketch, [r["dna_barcode"] for r in rows], [r["processid"] for r in rows])
    queries = [r for r in rows if r["split"] in ("test", "test_unseen")]
    for rate in (0.01, 0.03, 0.05):
        noisy = [with_errors(r, rate, random.Random(f"errors {r['processid']}")) for r in queries]
        report(f"test + test_unseen, {rate:.0%} errors", sketch, [r["dna_barcode"] for r in noisy],
               [r["processid"] for r in noisy])
    for length in (150, 313):
        cut = [fragment(r, length, random.Random(r["processid"])) for r in queries]
        report(f"test + test_unseen, {length} bases", sketch, [r["dna_barcode"] for r in cut],
               [r["processid"] for r in cut])
        for rate in (0.01, 0.03, 0.05):
            noisy = [with_errors(r, rate, random.Random(f"errors {r['processid']}")) for r in cut]
            report(f"test + test_unseen, {length} bases, {rate:.0%} errors", sketch,
                   [r["dna_barcode"] for r in noisy], [r["processid"] for r in noisy])
    for name in MARKERS:
        sequences = [record.seq.upper() for record in read_sequences(extract(name, args.work))]
        report(name, sketch, sequences)
        for length in (150, 313, 450):
            report(f"{name}, {length} bases", sketch, stretches(sequences, length, name))


if __name__ == "__main__":
    main()

"""The off-target guard on real sequences of other markers: what `clibd classify` names among them.

Sequences come from the BLAST databases of Debian's ncbi-data (installed with ncbi-blast+:
`make peers`), extracted with `blastdbcmd`: bacterial 16S rRNA, plastid and mitochondrial rRNAs
of both subunits, plant plastid matK and rbcL (protein-coding genes), vector sequences
(UniVec_Core) and human repeats (`humrep.fsa`); alignment gaps are dropped as clibd drops them.
Each set is classified against the bundled reference (or `--index DIR`) as a user would: with
every rule of the sketch (`Sketch.judge`), without the translation sketch's floors for partial
barcodes that meet a stop in every frame (`ProteinSketch.read_floors`), without the translation
sketch at all (`protein_sketch.py`), and without that and the shuffle rule. Printed per set:
records, invalid (under 100 bases), turned away and by which rule, and records given an order in
each of the four runs. With `--stretch N`
each sequence of N bases or more is cut to a seeded random stretch of N bases first (a partial
barcode's length; shorter ones are left out).

    PYTHONPATH=$PWD:$PWD/benchmarks .venv/bin/python benchmarks/off_target_markers.py [--index DIR] [--stretch N] [--work DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import random
import subprocess
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np

from clibd_cli.io.sequences import read_sequences
from clibd_cli.main import cli
from clibd_cli.reference import sketch as sketch_module
from clibd_cli.reference.protein_sketch import ProteinSketch

DATA = Path("/usr/share/ncbi/data")
SETS = ("bacteria-archea16SrRNA", "16SCore", "SSU_plast_rRNA", "LSU_chloro_rRNA", "SSU-mito-rRNA",
        "LSU_mito_rRNA", "64-matK-FINAL-aligned-DNA.fas", "64-rbcL-FINAL-aligned-DNA.fas", "UniVec_Core")
RULES = {"unlike every reference barcode": "floor", "reads as no protein": "no protein",
         "translates to a protein unlike": "protein", "no more like the reference's barcodes": "shuffles",
         "a partial barcode whose every reading frame": "stops", "invalid": "invalid"}
TURNED_AWAY = ("floor", "no protein", "protein", "stops", "shuffles")


def extract(name: str, work: Path) -> Path:
    """The set as FASTA in ``work`` (a BLAST database by blastdbcmd, or humrep.fsa as it is)."""
    out = work / f"{name}.fasta"
    if name == "humrep":
        out.write_text((DATA / "humrep.fsa").read_text())
    else:
        out.write_text(subprocess.run(["blastdbcmd", "-db", str(DATA / name), "-entry", "all"],
                                      check=True, capture_output=True, text=True).stdout.replace("-", ""))
    return out


def stretches(sequences: list[str], length: int, seed: str) -> list[str]:
    """A random stretch of ``length`` bases of each sequence that long or longer (seeded by ``seed``)."""
    rng = random.Random(f"{seed} {length}")
    out = []
    for seq in sequences:
        if len(seq) >= length:
            start = rng.randrange(len(seq) - length + 1)
            out.append(seq[start:start + length])
    return out


def classify(fasta: Path, index: str | None, protein: bool = True, shuffles: bool = True,
             reads: bool = True) -> tuple[list[dict], Counter]:
    """Rows of `clibd -v classify` and how many stderr notes name each rule (without the
    translation sketch's rules, its floors for partial barcodes that meet a stop, or the shuffle
    rule, if so told)."""
    args = ["-v", "classify", str(fasta), *(["--index", index] if index else [])]
    margin = sketch_module.COMPOSITION_MARGIN if shuffles else -np.inf
    none = lambda self, bases: np.full(len(bases), -np.inf)  # noqa: E731
    floors = ProteinSketch.floors if protein else none
    read_floor = ProteinSketch.read_floor if protein and reads else none
    stderr = io.StringIO()
    with mock.patch.object(sketch_module, "COMPOSITION_MARGIN", margin), mock.patch.object(ProteinSketch, "floors", floors), \
            mock.patch.object(ProteinSketch, "read_floor", read_floor), \
            contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()) as stdout:
        cli(args, standalone_mode=False)
    notes = Counter({rule_name: stderr.getvalue().count(text) for text, rule_name in RULES.items()})
    return list(csv.DictReader(io.StringIO(stdout.getvalue()), delimiter="\t")), notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=None, help="an index directory (default: the bundled reference)")
    parser.add_argument("--stretch", type=int, default=0, help="cut each sequence to a random stretch of N bases")
    parser.add_argument("--work", type=Path, default=Path("/tmp/clibd-off-target"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print("set: records; invalid / turned away (by floor, no protein, protein unlike, partial with stops, shuffles) "
          "/ given an order; given an order without the floors for partial barcodes with stops; without the "
          "translation sketch; and without the shuffle rule too")
    for name in (*SETS, "humrep"):
        fasta = extract(name, args.work)
        if args.stretch:
            cut = stretches([r.seq for r in read_sequences(fasta)], args.stretch, name)
            fasta = args.work / f"{name}-{args.stretch}.fasta"
            fasta.write_text("".join(f">s{i}\n{seq}\n" for i, seq in enumerate(cut)))
        rows, notes = classify(fasta, args.index)
        named = [sum(bool(r["order"]) for r in classify(fasta, args.index, **rules)[0])
                 for rules in ({"reads": False}, {"protein": False}, {"protein": False, "shuffles": False})]
        print(f"{name}: {len(rows)}; {notes['invalid']} / {sum(notes[r] for r in TURNED_AWAY)} "
              f"({', '.join(str(notes[r]) for r in TURNED_AWAY)}) / {sum(bool(r['order']) for r in rows)}; "
              + "; ".join(map(str, named)))


if __name__ == "__main__":
    main()

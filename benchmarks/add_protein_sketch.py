"""Give the bundled pack a translation sketch, its vectors, records and calibration unchanged (maintainers only).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/add_protein_sketch.py bold.h5

The bundled pack (clibd_cli/bundled/default-reference) was built before sketches had a
translation part (clibd_cli/reference/protein_sketch.py). Exporting it again
(export_default_model.py) would fit one, but from the fp16 weights shipped rather than the
training run's own, so its vectors, and with them the calls the benchmarks measured, would move.
This fits the sketch as `clibd index` fits it (`fit_sketch`, seed 0) on the `train` split's
barcodes as `clibd index` read them for the pack (turned by the pack's own k-mer sketch), and
writes it into the pack with `indexing.pack.resketch_pack`; the k-mer sketch stays as it was.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clibd_cli.indexing.bundled import PACK
from clibd_cli.indexing.pack import resketch_pack, unpack_index
from clibd_cli.reference.sketch import fit_sketch, orient_references
from clibd_cli.reference.sources import read_references


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="BOLD dataset HDF5 from clibd prepare")
    args = parser.parse_args()
    index = unpack_index(PACK)
    records = read_references([str(args.data)], "dna", splits=["train"])
    if records.ids != index.ids:
        sys.exit(f"{PACK}: its records are not the train split of {args.data} in order")
    orient_references(records.items, index.sketch)
    sketch = index.sketch
    sketch.protein = fit_sketch(records.items, seed=0)[0].protein
    if sketch.protein is None:
        sys.exit(f"{args.data}: the train split's barcodes do not read as protein")
    resketch_pack(PACK, sketch)
    print(f"{PACK}: translation sketch of {len(sketch.protein.centroids)} centroids, "
          f"floor {sketch.protein.floor:.3f} (stretches {sketch.protein.short_floors})")


if __name__ == "__main__":
    main()

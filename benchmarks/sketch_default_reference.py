"""Add the k-mer sketch to the bundled reference pack without rebuilding it (maintainers only).

    .venv/bin/python benchmarks/sketch_default_reference.py [../shared/data/bold-coi/metadata.csv.gz]

Fits :func:`clibd_cli.reference.sketch.fit_sketch` on the barcodes of the pack's records (the
BOLD ``train`` split, cleaned as ``clibd index`` cleans them), prints the records it finds
reverse-complemented, and writes ``sketch.npy`` with its checksum and manifest entry into
``clibd_cli/bundled/default-reference/``. The pack's vectors stay as embedded, so ``turned`` is
0; a pack rebuilt by ``export_default_model.py`` orients those records before embedding them.
"""

from __future__ import annotations

import csv
import gzip
import json
import sys
from pathlib import Path

import numpy as np

from clibd_cli.io.sequences import barcode_problem, clean_barcode
from clibd_cli.reference.bundled import PACK
from clibd_cli.reference.sketch import SKETCH_FILE, fit_sketch
from models.files import sha256_file

METADATA = Path(__file__).parents[2] / "shared" / "data" / "bold-coi" / "metadata.csv.gz"


def main() -> None:
    metadata = Path(sys.argv[1]) if len(sys.argv) > 1 else METADATA
    pack = json.loads((PACK / "pack.json").read_text())
    with gzip.open(PACK / "records.tsv.gz", "rt", encoding="utf-8") as handle:
        ids = {line.split("\t", 1)[0] for line in handle}
    barcodes, kept = [], []
    with gzip.open(metadata, "rt", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["split"] == "train" and row["processid"] in ids:
                barcode = clean_barcode(row["dna_barcode"].strip().upper())
                if not barcode_problem(barcode):
                    barcodes.append(barcode)
                    kept.append(row["processid"])
    print(f"{len(barcodes)} barcodes of the pack's {pack['manifest']['count']} records")
    sketch, reverse = fit_sketch(barcodes, seed=pack["manifest"]["hnsw"]["seed"])
    print("reverse-complemented:", ", ".join(kept[i] for i in np.flatnonzero(reverse)) or "none",
          f"; floor {sketch.floor:.4f}")
    np.save(PACK / SKETCH_FILE, sketch.centroids, allow_pickle=False)
    pack["manifest"]["sketch"] = sketch.to_manifest(0)
    pack["sha256"][SKETCH_FILE] = sha256_file(PACK / SKETCH_FILE)
    (PACK / "pack.json").write_text(json.dumps(pack, indent=1) + "\n")


if __name__ == "__main__":
    main()

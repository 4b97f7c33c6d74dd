"""Install a trained run as the bundled default model and reference (maintainers only).

    .venv/bin/python benchmarks/export_default_model.py RUN/best bold.h5 [--workdir DIR]

1. the model, its floating-point weights in fp16, -> models/pretrained/<DEFAULT_MODEL>/
   (clibd-fast-bold; with MODEL_CARD.md kept if it is there);
2. `clibd index --model <DEFAULT_MODEL> bold.h5 --split train` (the seen-species reference
   of the BOLD split protocol; reverse-complemented records turned, k-mer sketch) with its
   confidences fitted on the held-out `val` + `val_unseen` records (`--calibrate-on`: real
   known and new species, never `test`/`test_unseen`), and those for reads with sequencing
   errors on copies of reference and held-out records with 1 and 2 % simulated errors in turn
   (`--calibrate-errors`; partial barcodes' at 0.5, 1, 2, 3 and 5 %, `read_errors.PARTIAL_RATES`)
   -> DIR/reference;
3. that index packed (int8 vectors, calibrations refitted on them as clibd index fits them: on the
   same held-out records, stretches of them and of reference records for partial barcodes, and the
   copies with errors for reads) -> clibd_cli/bundled/default-reference/.

The whole recipe, training included, is benchmarks/build_default_model.sh.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from clibd_cli.classification.query_kinds import short_pseudo_queries, short_queries
from clibd_cli.classification.read_errors import (DEFAULT_RATES, held_out_reads, partial_read_queries,
                                                 read_pseudo_queries)
from clibd_cli.embedding.embedder import Embedder, load_model_for
from clibd_cli.indexing.bundled import DEFAULT_MODEL, PACK
from clibd_cli.reference.index_reading import load_index
from clibd_cli.indexing.pack import pack_index, unpack_index
from clibd_cli.reference.sketch import orient_references
from clibd_cli.reference.sources import read_references
from models import load_model, save_model
from models.config import PRETRAINED_DIR

CARD = "MODEL_CARD.md"
HELD_OUT = ("val", "val_unseen")  # calibration queries: known and new species, never the test splits


def pack_splits(data: Path, index, where: Path) -> tuple:
    """The ``train`` records of ``data`` (the index's, in order, or exit) and the held-out queries,
    each barcode turned by the index's k-mer sketch, as ``clibd index`` read them."""
    records, queries = (read_references([str(data)], "dna", splits=splits) for splits in (["train"], HELD_OUT))
    if records.ids != index.ids:
        sys.exit(f"{where}: its records are not the train split of {data} in order")
    for part in (records, queries):
        orient_references(part.items, index.sketch)
    return records, queries


def bundled_pack_splits(doc: str) -> tuple:
    """For a script that mends the bundled pack (its docstring ``doc``): the pack unpacked, and
    :func:`pack_splits` of the BOLD dataset the command line names."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("data", type=Path, help="BOLD dataset HDF5 from clibd prepare")
    index = unpack_index(PACK)
    return (index, *pack_splits(parser.parse_args().data, index, PACK))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="trained model directory (RUN/best)")
    parser.add_argument("data", type=Path, help="BOLD dataset HDF5 from clibd prepare")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "clibd-default")
    parser.add_argument("--calibrate-errors", default=",".join(map(str, DEFAULT_RATES)),
                        help="errors per base of the reads' copies, in turn (clibd index's option)")
    args = parser.parse_args()

    target = PRETRAINED_DIR / DEFAULT_MODEL
    card = (target / CARD).read_text() if (target / CARD).is_file() else None
    model = load_model(args.model)
    save_model(model, target, extra=model.extra, dtype=torch.float16)
    if card is not None:
        (target / CARD).write_text(card)
    print(f"model -> {target} ({sum(f.stat().st_size for f in target.iterdir()) / 1e6:.1f} MB)")

    reference = args.workdir / "reference"
    subprocess.run([str(Path(sys.executable).with_name("clibd")), "--threads", "2", "index", "--model", DEFAULT_MODEL,
                    str(args.data), "--split", "train", "--calibrate-on", str(args.data),
                    *(f"--calibrate-split={split}" for split in HELD_OUT),
                    f"--calibrate-errors={args.calibrate_errors}", "-o", str(reference)], check=True)
    index = load_index(reference)
    records, queries = pack_splits(args.data, index, reference)
    embedder = Embedder(load_model_for(DEFAULT_MODEL, ["dna"]))
    partial = short_pseudo_queries(records.items, range(len(records)), seed=0)
    short = short_queries(embedder, partial, queries.items, seed=0)
    rates = tuple(float(r) for r in args.calibrate_errors.split(","))
    short_reads = partial_read_queries(embedder, partial, (queries.items, queries.labels), seed=0)  # at PARTIAL_RATES
    rows, copies, each, stops = read_pseudo_queries(records.items, range(len(records)), rates, seed=0)
    reads, held_each = held_out_reads(queries, rates)  # as clibd index copies them
    pack_index(index, PACK, held_out=(embedder.barcodes(queries.items), queries.labels), short=short,
               pseudo_reads=(rows, embedder.reads(copies), each, stops),
               held_reads=(embedder.reads(reads.items), reads.labels, held_each),
               short_reads=short_reads)
    print(f"reference -> {PACK} ({sum(f.stat().st_size for f in PACK.iterdir()) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

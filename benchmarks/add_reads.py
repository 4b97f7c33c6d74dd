"""Give the bundled pack a calibration for whole reads with errors that reads the run's error rate (maintainers only).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/add_reads.py bold.h5

The bundled pack's `dna~` calibration (whole barcodes read with a frame break,
clibd_cli/classification/query_kinds.py) was fitted on copies with 1 and 2 % errors, so reads with
more errors looked like new species' (benchmarks/README.md, *A run's error rate*). Exporting the pack
again (export_default_model.py) would refit it, but from the fp16 weights shipped rather than the
training run's own, so its vectors, and with them every call the benchmarks measured, would move.
This copies up to 6,000 `train` records (turned by the pack's own k-mer sketch, seed 0) and each
held-out `val` + `val_unseen` record with errors at 0.5, 1, 2, 3 and 5 % in turn
(`read_errors.DEFAULT_RATES`, `clibd index --calibrate-errors`'s default), embeds those that read
with a frame break as reads, fits the calibration on the first and refits it on the second, its
maps reading the run's error rate (`error_rate.py`), with `indexing.pack.add_reads`; the vectors,
records, sketches, holdings and other calibrations stay byte for byte as they were.
"""

from __future__ import annotations

from export_default_model import bundled_pack_splits

from clibd_cli.classification.read_errors import DEFAULT_RATES, held_out_reads, read_pseudo_queries
from clibd_cli.embedding.embedder import Embedder, load_model_for
from clibd_cli.indexing.bundled import DEFAULT_MODEL, PACK
from clibd_cli.indexing.pack import add_reads


def main() -> None:
    _, records, queries = bundled_pack_splits(__doc__)
    embedder = Embedder(load_model_for(DEFAULT_MODEL, ["dna"]))
    rows, copies, rates, stop_model = read_pseudo_queries(records.items, range(len(records)), DEFAULT_RATES, seed=0)
    reads, held_rates = held_out_reads(queries, DEFAULT_RATES)
    add_reads(PACK, (rows, embedder.reads(copies), rates, stop_model),
              (embedder.reads(reads.items), reads.labels, held_rates))
    print(f"{PACK}: dna~ calibration fitted on {len(rows):,} reads of the reference and {len(reads):,} of the "
          f"held-out queries (errors {DEFAULT_RATES})")


if __name__ == "__main__":
    main()

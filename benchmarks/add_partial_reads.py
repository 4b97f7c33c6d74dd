"""Give the bundled pack its calibration for partial barcodes read with errors (maintainers only).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/add_partial_reads.py bold.h5

The bundled pack (clibd_cli/bundled/default-reference) was built before indexes were calibrated
for partial barcodes read with a frame break (`dna<500~`, clibd_cli/classification/query_kinds.py).
Exporting it again (export_default_model.py) would fit one, but from the fp16 weights shipped
rather than the training run's own, so its vectors, and with them every call the benchmarks
measured, would move. This cuts the `dna<500` pseudo-queries from the `train` split's barcodes as
`clibd index` cuts them (turned by the pack's own k-mer sketch, seed 0), copies them with errors
at 0.5, 1, 2, 3 and 5 % in turn (`read_errors.PARTIAL_RATES`: the maps read the run's error rate,
`error_rate.py`), embeds those that stay partial as reads, fits the calibration on them and refits it
on stretches of the held-out `val` + `val_unseen` records copied so (as the pack's `dna<500` one
was refitted on their clean stretches), with `indexing.pack.add_partial_reads`; the vectors,
records, sketches, holdings and other calibrations stay byte for byte as they were (only
`pack.json`'s `dna<500~` entry changes). Since session 29 the calibration is fitted, and classifies,
with a read held by a record missing up to `contained.READ_SLACK` of its 5-mers (`contained_slack`).
"""

from __future__ import annotations

from export_default_model import bundled_pack_splits

from clibd_cli.classification.query_kinds import short_pseudo_queries
from clibd_cli.classification.read_errors import PARTIAL_RATES, partial_read_queries
from clibd_cli.embedding.embedder import Embedder, load_model_for
from clibd_cli.indexing.bundled import DEFAULT_MODEL, PACK
from clibd_cli.indexing.pack import add_partial_reads


def main() -> None:
    _, records, queries = bundled_pack_splits(__doc__)
    embedder = Embedder(load_model_for(DEFAULT_MODEL, ["dna"]))
    partial = short_pseudo_queries(records.items, range(len(records)), seed=0)
    short_reads, labels = partial_read_queries(embedder, partial, (queries.items, queries.labels), seed=0)
    add_partial_reads(PACK, short_reads, labels)
    print(f"{PACK}: dna<500~ calibration fitted on {len(short_reads.rows):,} partial reads of the reference and "
          f"{len(short_reads.held_stretches):,} of the held-out queries (errors {PARTIAL_RATES})")


if __name__ == "__main__":
    main()

"""Give the bundled pack its records' 5-mers and a partial-barcode calibration that reads them (maintainers only).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/add_holdings.py bold.h5

The bundled pack (clibd_cli/bundled/default-reference) was built before indexes of a learned
model kept the 5-mers each record holds (clibd_cli/reference/holdings.py), so its partial
barcodes read their species by the model's vectors. Exporting it again (export_default_model.py)
would keep them, but from the fp16 weights shipped rather than the training run's own, so its
vectors, and with them every call the benchmarks measured, would move. This computes the holdings
from the `train` split's barcodes as `clibd index` read them for the pack (turned by the pack's
own k-mer sketch), and refits only the `dna<500` calibration, on the stretches
export_default_model.py cut (of the reference records and of the held-out `val` + `val_unseen`
records, seed 0), with `indexing.pack.add_holdings`; the vectors, records, sketches and the `dna`
and `dna~` calibrations stay byte for byte as they were.
"""

from __future__ import annotations

from export_default_model import bundled_pack_splits

from clibd_cli.classification.query_kinds import short_pseudo_queries, short_queries
from clibd_cli.embedding.embedder import Embedder, load_model_for
from clibd_cli.indexing.bundled import DEFAULT_MODEL, PACK
from clibd_cli.indexing.pack import add_holdings
from clibd_cli.reference.holdings import kmer_holdings


def main() -> None:
    _, records, queries = bundled_pack_splits(__doc__)
    embedder = Embedder(load_model_for(DEFAULT_MODEL, ["dna"]))
    short = short_queries(embedder, short_pseudo_queries(records.items, range(len(records)), seed=0),
                          queries.items, seed=0)
    add_holdings(PACK, kmer_holdings(records.items), short, queries.labels)
    print(f"{PACK}: 5-mers of {len(records):,} records; dna<500 calibration refitted "
          f"({len(short.rows):,} reference stretches, {len(queries):,} held-out)")


if __name__ == "__main__":
    main()

"""What reading partial barcodes' species by k-mer containment could give the bundled model (an analysis).

The bundled model names the species of 87.9 % of known species' 313-base stretches and gives a
species to 4.5 % of new species' (`classify_bold.py --model bundled --fragment 313`): by its
vectors a stretch of a known species lies about as far from its species as a new species' stretch
from its congeners. The model-free indexes read partial barcodes' species by k-mer containment
instead (the share of the stretch's 5-mers a reference barcode holds), which the bundled pack
cannot: it holds no barcodes. This takes the `train` barcodes from the BOLD file, searches each
stretch's `NEIGHBOURS` nearest records with the bundled model and index, and asserts the species of
the neighbour that contains the stretch best when that containment reaches a threshold, on the
`test` + `test_unseen` stretches at each of `THRESHOLDS` (chosen on these very queries: an upper
bound), and at the one chosen on the held-out `val` + `val_unseen` stretches instead: the lowest
that gives a species to at most `HELD_OUT_ASSERTED` of `val_unseen`'s (`val_unseen` holds the same
new species as `test_unseen`, so even this is kind to the rule). First, how small the reference's
barcodes would be in a pack (one a line, in record order, `xz -9e`).

    PYTHONPATH=$PWD:$PWD/benchmarks .venv/bin/python benchmarks/bundled_containment.py [--lengths 313,150]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import lzma
import random

import numpy as np
from classify_bold import BOLD, fragment

from clibd_cli.embedding.embedder import Embedder, load_model_for
from clibd_cli.embedding.kmer import kmer_profile
from clibd_cli.indexing.bundled import DEFAULT_MODEL, default_index
from clibd_cli.io.sequences import reverse_complement
from clibd_cli.reference.hnsw_index import load_index

NEIGHBOURS = 50
THRESHOLDS = (0.9, 0.95, 0.97, 0.98, 0.99, 1.0)
HELD_OUT_ASSERTED = 0.02  # share of val_unseen's stretches the held-out threshold may give a species


def oriented(index, barcodes: list[str]) -> list[str]:
    """The barcodes on the reference's strand, as `clibd classify` reads them."""
    reverse, _ = index.sketch.look(barcodes)
    return [reverse_complement(b) if r else b for b, r in zip(barcodes, reverse)]


def containment(index, embedder, holds: np.ndarray, species: np.ndarray, records: list[dict],
                length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per record's stretch: the largest share of its 5-mers one of its nearest records holds, and
    whether that record is of the record's species."""
    stretches = oriented(index, [fragment(r, length, random.Random(r["processid"]))["dna_barcode"] for r in records])
    neighbours, _ = index.search(embedder.barcodes(stretches), NEIGHBOURS)
    has = kmer_profile(stretches, 5) > 0
    best, right = np.zeros(len(records)), np.zeros(len(records), dtype=bool)
    for i, near in enumerate(neighbours):
        contained = (holds[near] & has[i]).sum(axis=1) / max(1, has[i].sum())
        j = int(np.argmax(contained))
        best[i], right[i] = contained[j], species[near[j]] == records[i]["species"]
    return best, right


def rates(best: np.ndarray, right: np.ndarray, known: np.ndarray, t: float) -> str:
    return (f"known species named right {100 * (known & right & (best >= t)).sum() / known.sum():.2f} %, "
            f"new species given a species {100 * (~known & (best >= t)).sum() / (~known).sum():.2f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="313,150", help="stretch lengths, as classify_bold.py --fragment cuts them")
    args = parser.parse_args()
    index = load_index(default_index())
    rows = list(csv.DictReader(gzip.open(BOLD, "rt")))
    train = {r["processid"]: r["dna_barcode"].replace("-", "") for r in rows if r["split"] == "train"}
    text = "".join(f"{train[i]}\n" for i in index.ids).encode()
    packed = lzma.compress(text, preset=9 | lzma.PRESET_EXTREME)
    print(f"the {len(index.ids)} reference barcodes: {len(text) / 1e6:.1f} MB, {len(packed) / 1e3:.0f} KB with xz -9e")
    holds = kmer_profile(oriented(index, [train[i] for i in index.ids]), 5) > 0  # [records, 4**5] 5-mers held
    species = np.array(index.labels["species"], dtype=object)
    queries = [r for r in rows if r["split"] in ("test", "test_unseen")]
    known = np.array([r["split"] == "test" for r in queries])
    held = [r for r in rows if r["split"] in ("val", "val_unseen")]
    held_known = np.array([r["split"] == "val" for r in held])
    embedder = Embedder(load_model_for(DEFAULT_MODEL, ["dna"]))
    for length in (int(n) for n in args.lengths.split(",")):
        best, right = containment(index, embedder, holds, species, queries, length)
        print(f"{length}-base stretches: {known.sum()} of known species, {(~known).sum()} of new species")
        for t in THRESHOLDS:
            print(f"  containment >= {t:.2f}: {rates(best, right, known, t)}")
        held_best, _ = containment(index, embedder, holds, species, held, length)
        new = held_best[~held_known]
        meeting = [t for t in np.unique(new) if (new >= t).mean() <= HELD_OUT_ASSERTED]
        chosen = f"at most {HELD_OUT_ASSERTED:.0%} of val_unseen's stretches given a species"
        if meeting:
            print(f"  chosen on val + val_unseen ({chosen}): containment >= {min(meeting):.4f}: "
                  f"{rates(best, right, known, min(meeting))}")
        else:
            print(f"  chosen on val + val_unseen: no threshold leaves {chosen} ({(new >= 1).mean():.1%} are contained whole)")


if __name__ == "__main__":
    main()

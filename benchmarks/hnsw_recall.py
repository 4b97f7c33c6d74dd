"""HNSW recall@1 and recall@10 of the clibd reference index against exact search, on real BOLD.

Reference: the BOLD `train` split (52,202 records), embedded with ``--model`` (``kmer``, the
model-free k-mer profile, or a learned model directory) and indexed with the `clibd index`
defaults (M 32, ef_construction 200, seed 0; ``--threads`` insert threads) — or an existing
index given with ``--index``. Queries: the `test` (seen species) and `test_unseen` (species
absent from the reference) splits. For each query split and each ``--ef``, the HNSW top 10
(``ReferenceIndex.search``) is compared with brute force (``search(..., exact=True)``).

Ties: records with identical vectors share one graph node and many records are exact
duplicates, so which record id comes back first among equals is arbitrary. A hit therefore
counts by similarity: recall@1 is the share of queries whose HNSW top-1 similarity equals the
exact top-1 similarity (to 1e-5); recall@10 is the mean share of the 10 HNSW hits whose
similarity reaches the exact 10th similarity. Also reported: HNSW queries/s (``--threads``)
and the peak memory of a fresh process that loads the index and searches it, minus that of
the same process without the index (``/usr/bin/time``).

    nice -n 19 .venv/bin/python benchmarks/hnsw_recall.py [--model kmer|DIR] [--index DIR]
        [--ef 16,32,64,128,256] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classify_bold import BOLD, RANKS  # noqa: E402

TOLERANCE = 1e-5
MEMORY_PROBE = """
import sys, numpy as np
from clibd_cli.reference.index_reading import load_index
if sys.argv[1] != "-":
    index = load_index(sys.argv[1])
    index.search(np.load(sys.argv[2]), 10, threads=int(sys.argv[3]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", default="kmer", help="kmer or a model directory")
    parser.add_argument("--index", type=Path, help="use this index (built from train with --model)")
    parser.add_argument("--ef", default="16,32,64,128,256", help="comma-separated search widths")
    parser.add_argument("--limit", type=int, default=0, help="queries per query split (0 = all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=BOLD, help="BIOSCAN-5M layout metadata CSV(.gz)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/clibd-bench-recall"))
    args = parser.parse_args()
    from clibd_cli.embedding.embedder import Embedder, load_model_for
    from clibd_cli.reference.hnsw_index import build_index
    from clibd_cli.reference.index_reading import load_index

    args.work.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader(gzip.open(args.data, "rt")))
    splits = {s: [r for r in rows if r["split"] == s] for s in ("train", "test", "test_unseen")}
    if args.limit:
        splits = {s: (q if s == "train" else q[:args.limit]) for s, q in splits.items()}
    model = load_model_for(args.model, ["dna"])
    embedder = Embedder(model, "cpu", 256)

    if args.index:
        index = load_index(args.index, model_fingerprint=model.fingerprint())
        path = args.index
    else:
        train = splits["train"]
        start = time.perf_counter()
        vectors = embedder.barcodes([r["dna_barcode"] for r in train])
        embedded = time.perf_counter() - start
        index = build_index(vectors, [r["processid"] for r in train],
                            {rank: [r[rank] for r in train] for rank in RANKS},
                            model_fingerprint=model.fingerprint(), modality="dna", threads=args.threads)
        print(f"embedded {len(train):,} references in {embedded:.1f} s; HNSW graph built in "
              f"{time.perf_counter() - start - embedded:.1f} s ({args.threads} threads)")
        path = args.work / f"index-{Path(args.model).name}"
        index.save(path)
    print(f"reference: {len(index):,} records, {index.graph.get_current_count():,} graph nodes, "
          f"dim {index.manifest['dim']}, M {index.manifest['hnsw']['M']}, ef_construction "
          f"{index.manifest['hnsw']['ef_construction']}, default ef {index.manifest['hnsw']['ef']}")

    efs = [int(e) for e in args.ef.split(",")]
    lines = ["| queries | ef | recall@1 | recall@10 | HNSW queries/s |", "|---|---|---|---|---|"]
    probe = None
    for split in ("test", "test_unseen"):
        queries = embedder.barcodes([r["dna_barcode"] for r in splits[split]])
        probe = queries if probe is None else probe
        start = time.perf_counter()
        _, exact = index.search(queries, 10, exact=True)
        exact_s = time.perf_counter() - start
        lines.append(f"| {split} ({len(queries):,}) | exact | 1 | 1 | {len(queries) / exact_s:,.0f} |")
        for ef in efs:
            start = time.perf_counter()
            _, found = index.search(queries, 10, ef=ef, threads=args.threads)
            took = time.perf_counter() - start
            at1 = np.mean(found[:, 0] >= exact[:, 0] - TOLERANCE)
            at10 = np.mean(found >= exact[:, 9:10] - TOLERANCE)
            default = " (default)" if ef == index.manifest["hnsw"]["ef"] else ""
            lines.append(f"| {split} | {ef}{default} | {at1:.4f} | {at10:.4f} | {len(queries) / took:,.0f} |")
            print(lines[-1], flush=True)
    np.save(args.work / "probe.npy", probe)
    base = peak_rss(["-", "-", "1"])
    loaded = peak_rss([str(path), str(args.work / "probe.npy"), str(args.threads)])
    size = sum(p.stat().st_size for p in Path(path).iterdir()) / 2**20
    print()
    print("\n".join(lines))
    print(f"\nindex on disk {size:,.0f} MB; peak RSS loading it and searching the test queries "
          f"{loaded:,.0f} MB, of which the index {loaded - base:,.0f} MB (Python + numpy alone: {base:,.0f} MB)")


def peak_rss(argv: list[str]) -> float:
    """Peak RSS (MB) of a fresh Python running MEMORY_PROBE with ``argv``."""
    report = Path("/tmp") / f"clibd-recall-time-{id(argv)}.txt"
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(report), sys.executable, "-c", MEMORY_PROBE, *argv],
                   check=True)
    rss = int(report.read_text().split()[-1]) / 1024
    report.unlink()
    return rss


if __name__ == "__main__":
    main()

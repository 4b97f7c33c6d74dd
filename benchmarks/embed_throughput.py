"""DNA-tower throughput on CPU by arithmetic and forward batch size (what `--precision` and the
Embedder's CPU forward batch were chosen from).

Embeds the first ``--n`` BOLD `test` barcodes with ``--model`` (default: the bundled
clibd-fast-bold) through :class:`clibd_cli.embedding.embedder.Embedder`, once per arithmetic — fp32,
bf16 autocast, and fp32 weights with PyTorch's dynamic int8 quantisation of the linear layers —
and forward batch, after a warm-up batch. Prints barcodes/s and the smallest cosine between each
vector and its fp32 counterpart.

    .venv/bin/python benchmarks/embed_throughput.py [--model NAME|DIR] [--n 1024] [--threads 2]
        [--batches 8,16,32,64,256]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classify_bold import BOLD  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="clibd-fast-bold")
    parser.add_argument("--n", type=int, default=1024, help="barcodes to embed per run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="8,16,32,64,256", help="forward batch sizes")
    args = parser.parse_args()
    import torch

    from clibd_cli.embedding import embedder as embedding

    torch.set_num_threads(args.threads)
    rows = [r for r in csv.DictReader(gzip.open(BOLD, "rt")) if r["split"] == "test"][: args.n]
    barcodes = [r["dna_barcode"] for r in rows]
    model = embedding.load_model_for(args.model, ["dna"])
    quantised = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    reference = embedding.Embedder(model, precision="fp32").barcodes(barcodes)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"{args.model}, {len(barcodes)} barcodes, {args.threads} threads: barcodes/s by forward batch")
    print("| arithmetic | " + " | ".join(str(b) for b in batches) + " | min cosine to fp32 |")
    print("|---|" + "---|" * (len(batches) + 1))
    for name, net, precision in (("fp32", model, "fp32"), ("bf16 autocast", model, "bf16"),
                                 ("int8 dynamic", quantised, "fp32")):
        rates = []
        for batch in batches:
            embedding.CPU_FORWARD_BATCH = batch  # the forward batch under test
            embedder = embedding.Embedder(net, batch_size=batch, precision=precision)
            embedder.barcodes(barcodes[:batch])  # warm-up
            start = time.perf_counter()
            vectors = embedder.barcodes(barcodes)
            rates.append(len(barcodes) / (time.perf_counter() - start))
        cosine = float((vectors * reference).sum(axis=1).min())
        print(f"| {name} | " + " | ".join(f"{r:.0f}" for r in rates) + f" | {cosine:.5f} |", flush=True)


if __name__ == "__main__":
    main()

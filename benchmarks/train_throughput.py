"""Training throughput of `clibd train` (samples/s), measured on the real training loop.

For each modality set, runs `clibd train` on the synthetic tri-modal dataset (real BOLD
barcodes + generated images; written to a temporary file unless --data is given) for
``--warmup + --steps`` optimiser steps and reports the samples/s of the timed steps, as the
training loop itself logs them to metrics.jsonl (data loading in workers, forward, loss,
backward, optimiser step; start-up and the final validation are not counted).

    .venv/bin/python benchmarks/train_throughput.py [--model clibd-small] [--batch-size 64]
        [--modalities dna,text image,dna image,dna,text] [--steps 10] [--workers 2] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from clibd_cli.data.synthetic import write_synthetic_dataset
from clibd_cli.training.loop import TrainConfig, run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="clibd-small")
    parser.add_argument("--data", type=Path, help="dataset HDF5 with images (default: a new synthetic one)")
    parser.add_argument("--modalities", nargs="+", default=["dna,text", "image,dna", "image,dna,text"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="clibd-train-bench-") as tmp:
        data = args.data or Path(tmp) / "synthetic.h5"
        if args.data is None:
            write_synthetic_dataset(data, n_species=60, images_per_species=20, image_size=96)
        print(f"# {args.model}, batch {args.batch_size}, {args.device} "
              f"({torch.get_num_threads() if args.threads is None else args.threads} threads, "
              f"{platform.processor() or platform.machine()}), precision {args.precision}")
        print("| modalities | samples/s | s/step |\n|---|---|---|")
        for modalities in args.modalities:
            run = Path(tmp) / modalities.replace(",", "-")
            run_training(TrainConfig(
                model=args.model, data=str(data), out=str(run), modalities=tuple(modalities.split(",")),
                epochs=1000, max_steps=args.warmup + args.steps, batch_size=args.batch_size,
                workers=args.workers, log_every=1, val_limit=args.batch_size, precision=args.precision,
                device=args.device, threads=args.threads))
            lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            rates = [line["samples_per_s"] for line in lines if line["kind"] == "train"][args.warmup:]
            rate = statistics.median(rates)
            print(f"| {modalities} | {rate:.1f} | {args.batch_size / rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()

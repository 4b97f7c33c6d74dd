"""The measuring steps of benchmarks/gpu_check.sh (run that script, not this file).

    gpu_check.py data OUT.h5 --species N --per-species N --image-size PX [--bold CSV]
    gpu_check.py train --model M --data D --out DIR --device D --max-batch 500 --json F
    gpu_check.py queries DATA.h5 OUT.fasta [--split test]
    gpu_check.py timed --name NAME --json F [--count-h5 F | --count-tsv F] -- COMMAND ...
    gpu_check.py summary WORK FOLDER

``train`` runs the real training loop (clibd_cli/training/loop.py) in this process at the largest
per-GPU batch of 500, 400, 320, ... that fits, and reports the median samples/s of the timed
steps, the model FLOPs utilisation, the share of step time spent waiting for the DataLoader
(``data_share`` in metrics.jsonl) and the peak GPU memory.

FLOPs are counted, not estimated: ``torch.utils.flop_counter.FlopCounterMode`` over one forward
and backward pass of the three towers (matrix products, convolutions, attention) on a small batch
of the same data, divided by its size. The contrastive loss (batch² x embedding width) is left
out: under 0.1 % of a step at batch 500. MFU = FLOPs per sample x samples/s / the GPU's dense
bf16 peak (:data:`PEAK_BF16`, from NVIDIA's datasheets; ``--peak-tflops`` overrides it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Dense bf16 tensor-core peaks in TFLOP/s (without sparsity), by a name torch reports.
PEAK_BF16 = {"H200": 989.0, "GH200": 989.0, "H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0,
             "A100": 312.0, "L40S": 362.0}
BATCHES = (500, 400, 320, 256, 200, 160, 128, 96, 64, 32, 16, 8, 4)


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU by its name (the first entry of PEAK_BF16 it contains), or None."""
    return next((tflops for name, tflops in PEAK_BF16.items() if name in device_name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    data = steps.add_parser("data")
    data.add_argument("out", type=Path)
    data.add_argument("--species", type=int, default=150)
    data.add_argument("--per-species", type=int, default=30)
    data.add_argument("--image-size", type=int, default=224)
    data.add_argument("--bold", type=Path, default=None, help="BOLD metadata CSV (default: ../shared/...)")
    train = steps.add_parser("train")
    train.add_argument("--model", required=True)
    train.add_argument("--data", required=True)
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--device", default="cuda")
    train.add_argument("--max-batch", type=int, default=500)
    train.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    train.add_argument("--steps", type=int, default=10, help="timed steps")
    train.add_argument("--workers", type=int, default=8)
    train.add_argument("--threads", type=int, default=None)
    train.add_argument("--peak-tflops", type=float, default=None)
    train.add_argument("--json", type=Path, required=True)
    queries = steps.add_parser("queries")
    queries.add_argument("data")
    queries.add_argument("out", type=Path)
    queries.add_argument("--split", default="test")
    timed = steps.add_parser("timed")
    timed.add_argument("--name", required=True)
    timed.add_argument("--json", type=Path, required=True)
    timed.add_argument("--count-h5", type=Path)
    timed.add_argument("--count-tsv", type=Path)
    timed.add_argument("command", nargs=argparse.REMAINDER)
    summary = steps.add_parser("summary")
    summary.add_argument("work", type=Path)
    summary.add_argument("folder", type=Path)
    args = parser.parse_args()
    {"data": make_data, "train": measure_training, "queries": write_queries, "timed": run_timed,
     "summary": write_summary}[args.step](args)


def make_data(args) -> None:
    from clibd_cli.data.synthetic import BOLD_CSV, write_synthetic_dataset

    bold = args.bold or BOLD_CSV
    if not Path(bold).is_file():
        sys.exit(f"gpu_check: {bold}: BOLD metadata CSV not found; give it with --bold")
    start = time.perf_counter()
    summary = write_synthetic_dataset(args.out, n_species=args.species, images_per_species=args.per_species,
                                      image_size=args.image_size, bold_csv=bold)
    print(f"data: {summary['total']['records']} records, {args.image_size}-px photos, "
          f"written in {time.perf_counter() - start:.1f} s")


def measure_training(args) -> None:
    import torch

    from clibd_cli.training.loop import TrainConfig, run_training
    from models.errors import ClibdError

    cuda = args.device.startswith("cuda")
    name = torch.cuda.get_device_name() if cuda else "CPU"
    tried = []
    for batch in [args.max_batch] + [b for b in BATCHES if b < args.max_batch]:
        run = args.out / f"batch-{batch}"
        shutil.rmtree(run, ignore_errors=True)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            run_training(TrainConfig(
                model=args.model, data=args.data, out=str(run), modalities=("image", "dna", "text"),
                epochs=10_000, max_steps=args.warmup + args.steps, batch_size=batch, precision="bf16",
                val_every=10**9, val_limit=64, log_every=1, workers=args.workers, device=args.device,
                threads=args.threads, command=["gpu_check.py", "train"]))
            break
        except ClibdError as exc:
            if "out of memory" not in str(exc) and "fewer than" not in str(exc):
                raise
            tried.append(batch)
            print(f"train: batch {batch} does not fit ({exc}); trying a smaller one", flush=True)
    else:
        sys.exit("gpu_check: no batch size fits")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    timed = [line for line in lines if line["kind"] == "train"][args.warmup:]
    rate = statistics.median(line["samples_per_s"] for line in timed)
    data_share = statistics.median(line["data_share"] for line in timed)
    flops, towers = count_flops(args.model, args.data, args.device)
    peak = args.peak_tflops or (peak_tflops(name) if cuda else None)
    result = {
        "device": name, "model": args.model, "precision": "bf16", "batch_per_gpu": batch,
        "batches_that_did_not_fit": tried, "timed_steps": len(timed), "samples_per_s": rate,
        "step_s": batch / rate, "data_wait_share": data_share,
        "flops_per_sample": flops, "flops_per_sample_by_tower": towers, "peak_tflops_bf16": peak,
        "mfu": flops * rate / (peak * 1e12) if peak else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
        "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
        "run": str(run), "flop_count": "FlopCounterMode, one forward+backward of the three towers",
    }
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    mfu = f"{100 * result['mfu']:.1f} % of {peak:.0f} TFLOP/s (bf16 dense, {name})" if peak else \
        f"n/a (no bf16 peak known for {name}; give --peak-tflops)"
    memory = (f"{result['peak_memory_gib']:.1f} GiB allocated, {result['peak_reserved_gib']:.1f} GiB reserved "
              f"of {result['gpu_memory_gib']:.0f} GiB") if cuda else "n/a (CPU)"
    print(f"train: {args.model} bf16, batch {batch} per GPU on {name}\n"
          f"  {rate:.1f} samples/s ({batch / rate:.3f} s/step, median of {len(timed)} steps)\n"
          f"  {flops / 1e9:.4g} GFLOP per sample, forward+backward ("
          + ", ".join(f"{t} {f / 1e9:.4g}" for t, f in towers.items()) + ")\n"
          f"  MFU {mfu}\n  waiting for data: {100 * data_share:.1f} % of step time\n"
          f"  peak GPU memory: {memory}", flush=True)


def count_flops(model_name: str, data: str, device: str, n: int = 4) -> tuple[float, dict[str, float]]:
    """FLOPs per sample of one forward+backward of the three towers, in all and per tower."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from clibd_cli.training.datasets import SpecimenDataset, make_loader
    from models import create_model

    modalities = ("image", "dna", "text")
    model = create_model(model_name, modalities=modalities).to(device).train()
    dataset = SpecimenDataset(data, ("train",), modalities, model, train=True)
    batch = next(iter(make_loader(dataset, [list(range(n))], workers=0)))
    inputs = {k: v.to(device) for k, v in batch["inputs"].items()}
    encoders = {"image": lambda: model.encode_image(inputs["image"]),
                "dna": lambda: model.encode_dna(inputs["dna_input_ids"], inputs["dna_attention_mask"]),
                "text": lambda: model.encode_text(inputs["text_input_ids"], inputs["text_attention_mask"])}
    towers = {}
    for tower, encode in encoders.items():  # one tower at a time: backward FLOPs are not per module
        with FlopCounterMode(display=False) as counter:
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
                out = encode()
            out.float().sum().backward()
        towers[tower] = counter.get_total_flops() / n
    return sum(towers.values()), towers


def write_queries(args) -> None:
    from clibd_cli.data.store import open_dataset

    with open_dataset(args.data) as dataset:
        part = dataset.splits_union([args.split])
        ids, barcodes = part.ids(), part.column("barcode", 0, len(part))
    args.out.write_text("".join(f">{i}\n{b}\n" for i, b in zip(ids, barcodes) if b))
    print(f"queries: {len(ids)} barcodes of the {args.split} split")


def run_timed(args) -> None:
    """Run a command; its wall time (start-up included) and items/s, counted in its output."""
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    start = time.perf_counter()
    done = subprocess.run(command)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"gpu_check: {args.name} failed (exit {done.returncode}): {' '.join(command)}")
    items = None
    if args.count_h5:
        import h5py

        with h5py.File(args.count_h5, "r") as f:
            items = len(f["ids"])
    elif args.count_tsv:
        items = sum(1 for line in open(args.count_tsv) if line.strip() and not line.startswith("#")) - 1
    result = {"name": args.name, "command": command, "wall_s": seconds, "items": items,
              "items_per_s": items / seconds if items is not None else None}
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    rate = f", {items} items, {items / seconds:.1f} items/s (start-up included)" if items is not None else ""
    print(f"{args.name}: ok in {seconds:.1f} s{rate}", flush=True)


def write_summary(args) -> None:
    """FOLDER/results.json (every step's JSON) and FOLDER/SUMMARY.md from the steps' files in WORK."""
    train = json.loads((args.work / "train.json").read_text())
    steps = [json.loads(p.read_text()) for p in sorted(args.work.glob("timed-*.json"), key=lambda p: p.stat().st_mtime)]
    mfu = f"{100 * train['mfu']:.1f} % of {train['peak_tflops_bf16']:.0f} TFLOP/s" if train["mfu"] else "n/a"
    memory = f"{train['peak_memory_gib']:.1f} GiB" if train["peak_memory_gib"] is not None else "n/a"
    rows = ["| step | result |", "|---|---|",
            f"| train {train['model']} bf16, batch {train['batch_per_gpu']}/GPU | {train['samples_per_s']:.1f} "
            f"samples/s; MFU {mfu}; data wait {100 * train['data_wait_share']:.1f} %; peak memory {memory} "
            f"({train['device']}) |"]
    for step in steps:
        rate = f"; {step['items_per_s']:.1f} items/s" if step["items_per_s"] is not None else ""
        rows.append(f"| {step['name']} | ok, {step['wall_s']:.1f} s{rate} |")
    (args.folder / "results.json").write_text(json.dumps({"train": train, "steps": steps}, indent=1) + "\n")
    (args.folder / "SUMMARY.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

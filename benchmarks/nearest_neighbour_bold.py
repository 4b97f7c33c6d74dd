"""Exact nearest-neighbour accuracy of DNA towers on the real BOLD barcodes, no calibration.

Reference: the `train` split (cosine, top 1). `val`/`test`: the nearest record's species is
right; `val_unseen`/`test_unseen` (species absent from the reference): its order, family and
genus are right (genus over the queries whose genus is in the reference). A quick check of an
embedding before it is packed and calibrated (`classify_bold.py` measures the product path).

    .venv/bin/python benchmarks/nearest_neighbour_bold.py MODEL [MODEL ...]   # a name or a directory
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from pathlib import Path

import numpy as np
import torch

from classify_bold import BOLD
from models import load_model
from models.config import PRETRAINED_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits: dict[str, list[dict]] = {}
    for row in csv.DictReader(gzip.open(BOLD, "rt")):
        splits.setdefault(row["split"], []).append(row)
    reference = splits["train"]
    genera = {r["genus"] for r in reference}
    for name in args.models:
        model = load_model(name if Path(name).is_dir() else PRETRAINED_DIR / name).float().eval()
        keys = embed(model, reference)
        result = {"model": name}
        for split in ("val", "test", "val_unseen", "test_unseen"):
            queries = splits[split]
            nearest = [reference[j] for j in (embed(model, queries) @ keys.T).argmax(1)]
            if "unseen" not in split:
                result[f"{split} species"] = rate(nearest, queries, "species")
                continue
            for rank in ("order", "family"):
                result[f"{split} {rank}"] = rate(nearest, queries, rank)
            known = [i for i, q in enumerate(queries) if q["genus"] in genera]
            result[f"{split} genus"] = rate([nearest[i] for i in known], [queries[i] for i in known], "genus")
        print(json.dumps(result), flush=True)


def embed(model, rows: list[dict], batch: int = 1024) -> np.ndarray:
    barcodes = [r["dna_barcode"] for r in rows]
    with torch.no_grad():
        return np.concatenate([model.encode_dna(**model.tokenize_dna(barcodes[i:i + batch])).numpy()
                               for i in range(0, len(barcodes), batch)])


def rate(nearest: list[dict], queries: list[dict], rank: str) -> float:
    return round(100 * float(np.mean([a[rank] == b[rank] for a, b in zip(nearest, queries)])), 2)


if __name__ == "__main__":
    main()

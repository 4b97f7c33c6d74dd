"""Validation accuracy of a `clibd train` run next to chance level.

Chance is the top-1 macro accuracy of a classifier that returns a uniformly random key: for a
query class c it is right with probability (keys labelled c) / (keys), and macro accuracy
averages that over the classes of the queries. Keys and queries are those of the trainer's
validation (``all_keys`` against ``val`` / ``val_unseen``), restricted to records that have
the key modality.

    .venv/bin/python benchmarks/retrieval_chance.py --data synthetic.h5 --run runs/synthetic \
        [--pair image-dna] [--ranks genus species]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from clibd_cli.data.store import open_dataset


def chance(query_labels: list, key_labels: list) -> float:
    """Expected macro accuracy of a uniformly random key."""
    keys = Counter(label for label in key_labels if label)
    classes = {label for label in query_labels if label}
    total = sum(keys.values())
    return sum(keys[c] / total for c in classes) / len(classes) if classes and total else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True, help="run directory with metrics.jsonl")
    parser.add_argument("--pair", default="image-dna", help="query-key modalities, as in the metric names")
    parser.add_argument("--ranks", nargs="+", default=["order", "family", "genus", "species"])
    args = parser.parse_args()

    key_modality = args.pair.split("-")[1]
    vals = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines()
            if '"kind": "val"' in line]
    last = vals[-1]
    with open_dataset(args.data) as ds:
        keys = ds.split("all_keys")
        usable = [i for i in range(len(keys))
                  if (keys.image_bytes(i) is not None if key_modality == "image" else True)]
        print(f"{args.pair} top-1 macro accuracy, validation at step {last['step']} "
              f"(epoch {last['epoch']}) vs a random key ({len(usable)} keys)\n")
        print("| rank | seen | chance (seen) | unseen | chance (unseen) |\n|---|---|---|---|---|")
        for rank in args.ranks:
            column = keys.column(rank)
            key_labels = [column[i] for i in usable]
            row = [rank]
            for part, split in (("seen", "val"), ("unseen", "val_unseen")):
                value = last.get(f"{args.pair}.{rank}.macro.{part}")
                row += [f"{100 * value:.1f}" if value is not None else "–",
                        f"{100 * chance(ds.split(split).column(rank), key_labels):.1f}"]
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

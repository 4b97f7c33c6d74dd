"""Benchmark and check `clibd prepare` on the real 89k-record BOLD set (BIOSCAN-5M CSV layout).

Times the command as a user runs it, then checks that the file holds exactly the CSV: the
same records per split, in CSV order, with every barcode and label identical. With
``--photos``, also times photo ingestion: the 620 real BIOSCAN-5M photos, each linked 4 times
into the 5M folder layout under 2,480 BOLD records, read, checked and stored with 1 and 4
``--workers``, then compared byte for byte with the originals.

    .venv/bin/python benchmarks/prepare_bold.py [--csv PATH] [--out PATH] [--repeat N] [--photos]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from classify_bold import BOLD, CLIBD, ROOT
from clibd_cli.data.store import open_dataset

PHOTOS = ROOT.parent / "shared" / "data" / "images" / "bioscan5m-specimens"
CHECKED = {"processid": "processid", "sampleid": "sampleid", "barcode": "dna_barcode", "order": "order",
           "family": "family", "genus": "genus", "species": "species", "dna_bin": "dna_bin"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=BOLD)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "clibd-bench-bold.h5")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--photos", action="store_true", help="also time photo ingestion")
    args = parser.parse_args()
    times = [timed(args.csv, args.out) for _ in range(args.repeat)]
    records, mismatches = check_round_trip(args.csv, args.out)
    report = {"records": records, "mismatches": mismatches, "seconds_best": round(min(times), 2),
              "seconds_all": [round(t, 2) for t in times], "file_mb": round(args.out.stat().st_size / 1e6, 1)}
    if args.photos:
        report["photos"] = photo_benchmark(args.csv)
        mismatches += report["photos"]["mismatches"]
    print(json.dumps(report, indent=1))
    sys.exit(1 if mismatches else 0)


def timed(csv_path: Path, out: Path, *options: str) -> float:
    """Wall seconds of one `clibd prepare --format bioscan-5m` run, as a user starts it."""
    start = time.perf_counter()
    subprocess.run([CLIBD, "-q", "prepare", "--format", "bioscan-5m", str(csv_path), "-o", str(out),
                    *options], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def photo_benchmark(csv_path: Path, copies: int = 4) -> dict:
    """Photo ingestion speed: the real 5M photos (each linked ``copies`` times under its own
    processid) in the 5M layout ``original_full/train/{chunk}/{processid}.jpg``."""
    photos = [photo for photo in sorted(PHOTOS.glob("*.jpg")) for _ in range(copies)]
    with gzip.open(csv_path, "rt", newline="") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames, list(itertools.islice(reader, len(photos)))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for k, (row, photo) in enumerate(zip(rows, photos)):
            row.update(processid=f"{photo.name.split('.')[0]}-{k % copies}", split="train", chunk=str(k % 16))
            folder = tmp / "images" / "original_full" / "train" / row["chunk"]
            folder.mkdir(parents=True, exist_ok=True)
            os.symlink(photo, folder / f"{row['processid']}.jpg")
        with gzip.open(tmp / "photos.csv.gz", "wt", newline="") as handle:
            writer = csv.DictWriter(handle, header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        options = ("--images", str(tmp / "images"), "--image-package", "original_full")
        result = {"photos": len(rows), "mb": round(sum(p.stat().st_size for p in photos) / 1e6, 1)}
        for workers in (1, 4):
            seconds = min(timed(tmp / "photos.csv.gz", tmp / "p.h5", *options, "--workers", str(workers))
                          for _ in range(2))
            result[f"workers_{workers}"] = {"seconds": round(seconds, 2),
                                            "photos_per_s": round(len(rows) / seconds)}
        with open_dataset(tmp / "p.h5") as dataset:
            train = dataset.split("train")
            stored = [train.image_bytes(i) for i in range(len(train))]
        result["mismatches"] = sum(data != photo.read_bytes() for data, photo in zip(stored, photos))
    return result


def check_round_trip(csv_path: Path, h5_path: Path) -> tuple[int, int]:
    """(records, mismatching values): CSV rows vs. the dataset, split by split, in order."""
    expected: dict[str, list[dict]] = defaultdict(list)
    with gzip.open(csv_path, "rt", newline="") as handle:
        for row in csv.DictReader(handle):
            expected[row["split"]].append(row)
    mismatches = 0
    with open_dataset(h5_path) as dataset:
        counts = {name: len(dataset.split(name)) for name in dataset.splits}
        in_csv = {name: len(rows) for name, rows in expected.items()}
        if counts != in_csv:
            print(f"split sizes differ: file {counts}, CSV {in_csv}", file=sys.stderr)
            mismatches += 1
        for name, rows in expected.items():
            split = dataset.split(name)
            for field, column in CHECKED.items():
                stored = split.column(field)
                missing = "" if field in ("processid", "sampleid", "barcode") else None  # labels read as None
                mismatches += sum(value != (row[column] or missing) for value, row in zip(stored, rows))
    return sum(len(rows) for rows in expected.values()), mismatches


if __name__ == "__main__":
    main()

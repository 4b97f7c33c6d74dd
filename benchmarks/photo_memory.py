"""Peak memory of `clibd classify --images` as a run's photos grow (its first block holds up to 10,000).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/photo_memory.py [--sizes 2000 10000] [--work DIR]

No photo model is trained here, so this builds one with random weights (the `clibd-small` preset:
160-pixel photos), an image index of the 20 real BIOSCAN photos the tests use (twins of 10, with a
taxonomy), and a folder of N links to those photos; each size is one `clibd --threads 2 classify
--images` run. Printed per size: wall seconds, peak RSS (`/usr/bin/time -f %M`) and the rows written.
What it measures is the pixels held at once (a photo at 160 pixels is 0.3 MB as the model's input),
not the accuracy of a model that has learned nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from classify_bold import CLIBD  # noqa: E402
from fixtures.specimens import copy_photos, run, specimens, twins, write_taxonomy  # noqa: E402


def photo_index(work: Path) -> Path:
    """The image index of a random `clibd-small` model over the tests' real photos (built once)."""
    import torch

    from models import create_model, save_model

    if (work / "index").is_dir():
        return work / "index"
    torch.manual_seed(0)
    model = save_model(create_model("clibd-small"), work / "model")
    records = twins(specimens(n_species=5, per_species=2, unnamed=0))
    for i, record in enumerate(records):
        copy_photos(work / "photos", [record.id], first=i // 2)
    taxonomy = write_taxonomy(work / "taxonomy.tsv", {r.id: r.lineage for r in records})
    built = run("-q", "index", "-m", model, "--modality", "image", work / "photos", "--taxonomy", taxonomy,
                "-o", work / "index")
    if built.exit_code:
        sys.exit(built.stderr)
    return work / "index"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "clibd-photo-memory")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    index = photo_index(args.work)
    photos = sorted((args.work / "photos").glob("*.jpg"))
    for n in args.sizes:
        folder = args.work / f"queries-{n}"
        folder.mkdir(exist_ok=True)
        for i in range(n):
            link = folder / f"q{i:06d}.jpg"
            if not link.exists():
                link.symlink_to(photos[i % len(photos)])
        out = args.work / f"out-{n}.tsv"
        timed = subprocess.run(["/usr/bin/time", "-f", "%e %M", CLIBD, "-q", "--threads", "2", "classify", "-i",
                                str(index), "--images", str(folder), "-o", str(out)],
                               stderr=subprocess.PIPE, text=True, check=True)
        seconds, peak = timed.stderr.split()[-2:]
        rows = sum(1 for _ in out.open()) - 1
        print(f"{n:>7,} photos: {float(seconds):6.1f} s, peak {int(peak) / 1024:7.0f} MB, {rows:,} rows")


if __name__ == "__main__":
    main()

"""Records of families absent from BOLD `train`: what clibd and SINTAX name for them.

    PYTHONPATH=$PWD:$PWD/benchmarks .venv/bin/python benchmarks/new_families_bold.py --work DIR \\
        [--model bundled|kmer|kmer-aa|RUN/best] [--index DIR] [--no-baselines]

BIOSCAN-5M's new-species splits (`val_unseen`, `test_unseen`, `key_unseen`) hold a few records of
families that `train` lacks (three families, 207 records). Neither the bundled model (trained on
`pretrain` + `train`) nor the model-free indexes have seen them, so they are a clean check of the
default reference on a family it does not hold: every family, genus or species named for them is
wrong, their order is in the reference. `val_unseen`'s records were among the held-out queries the
bundled pack's maps were fitted on, so each line is also given without them.
`--model bundled` classifies without `--index`, as a user does; another model builds an index of
`train` (`clibd index -m MODEL`, default settings) unless `--index` gives one already built.
`vsearch --sintax` (cutoff 0.8) on the same `train` FASTA in the same run, unless `--no-baselines`.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from classify_bold import BOLD, CLIBD, read_clibd, read_sintax, timed, write_fasta

from models.config import RANKS

NEW_SPECIES_SPLITS = ("val_unseen", "test_unseen", "key_unseen")
CALIBRATION_SPLIT = "val_unseen"  # held out to fit the bundled pack's maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--index", type=Path, help="an index of BOLD train already built (not with bundled)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/clibd-bench-new-families"))
    parser.add_argument("--no-baselines", action="store_true", help="skip vsearch --sintax")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader(gzip.open(BOLD, "rt")))
    reference = [r for r in rows if r["split"] == "train"]
    families = {r["family"] for r in reference}
    queries = [r for r in rows if r["split"] in NEW_SPECIES_SPLITS and r["family"] and r["family"] not in families]
    print(f"reference: {len(reference)} train records; queries: {len(queries)} records of "
          f"{len({r['family'] for r in queries})} families absent from it ("
          + ", ".join(f"{f} {n}" for f, n in Counter(r["family"] for r in queries).most_common()) + ")")
    ref_fasta, query_fasta = args.work / "reference.fasta", args.work / "queries.fasta"
    write_fasta(ref_fasta, reference, sintax=True)
    write_fasta(query_fasta, queries, sintax=False)

    where = []
    if args.model != "bundled" or args.index:
        index = args.index or args.work / f"index-{Path(args.model).name}"
        if not args.index:
            took = timed([CLIBD, "-q", "--threads", "2", "index", "-m", args.model, str(ref_fasta), "-o", str(index)])
            print(f"clibd index ({args.model}): {took:.1f} s")
        where = ["--index", str(index)]
    out = args.work / "clibd.tsv"
    took = timed([CLIBD, "-q", "--threads", "2", "classify", *where, str(query_fasta), "-o", str(out)])
    calls = {"clibd": read_clibd(out)}
    print(f"clibd classify: {took:.1f} s")
    if not args.no_baselines and shutil.which("vsearch"):
        out = args.work / "sintax.tsv"
        subprocess.run(["vsearch", "--sintax", str(query_fasta), "--db", str(ref_fasta), "--tabbedout", str(out),
                        "--sintax_cutoff", "0.8", "--randseed", "1", "--threads", "2", "--quiet"], check=True)
        calls["sintax"] = read_sintax(out)
    for tool, called in calls.items():
        for name, subset in (("all", queries),
                             (f"without {CALIBRATION_SPLIT}", [r for r in queries if r["split"] != CALIBRATION_SPLIT])):
            print(f"{tool:6} {name:19} {summary(called, subset)}")
        by_family = Counter((r["family"], called.get(r["processid"], {}).get("family") or "-") for r in queries)
        print(f"{tool:6} families named: " + "; ".join(f"{f} -> {named} {n}" for (f, named), n in sorted(by_family.items())))


def summary(calls: dict[str, dict[str, str]], records: list[dict]) -> str:
    """Order named right and wrong, family / genus / species named (each wrong), in % of ``records``."""
    n = max(len(records), 1)
    said = [(calls.get(r["processid"], {}), r) for r in records]
    right = sum(c.get("order") == r["order"] for c, r in said)
    wrong = sum(bool(c.get("order")) and c.get("order") != r["order"] for c, r in said)
    named = {rank: sum(bool(c.get(rank)) for c, _ in said) for rank in RANKS[1:]}
    return (f"{len(records):4} records: order right {100 * right / n:5.1f} %, wrong {100 * wrong / n:4.1f} %; named "
            + ", ".join(f"{rank} {100 * k / n:5.1f} %" for rank, k in named.items()) + " (each wrong)")


if __name__ == "__main__":
    main()

"""clibd classify vs vsearch --sintax / --usearch_global on the real BOLD barcodes.

Reference: the `train` split (seen species). Queries: `test` (species in the reference) and
`test_unseen` (species absent from the reference; most of their genera are present).
Measures per-rank accuracy, how often a species is asserted for absent species, genus
accuracy for them, and wall-clock throughput of each tool with 2 threads.

    .venv/bin/python benchmarks/classify_bold.py [--model kmer|RUN/best|bundled] [--limit N] [--work DIR]
        [--prior-unseen P] [--calibrate-held-out [--disjoint-species]] [--no-baselines] [--batches]
        [--fragment N] [--errors RATE] [--calibrate-held-out --calibrate-errors RATE]
        [--batches [--shares 0.05,0.5,0.9]] [--index DIR]

`--batches` classifies three batches (`test`, `test_unseen`, a seeded 70:30 mix) in separate
runs and prints, per batch, per-rank ECE and the open-set numbers of clibd, SINTAX and RDP,
then their operating curves on the mix (see benchmarks/batch_calibration.py); `--shares` adds
mixes at other shares of new species (each share a batch of its own).

`--model bundled` runs `clibd classify` without `--index`: the bundled clibd-fast-bold model
and its packed reference of the same train split, as a user gets them (unpacked into the cache
first, outside the timing).

`--fragment N` reads each query as a seeded random stretch of N bases of its barcode (the same
stretch for every tool): partial barcodes, as short amplicons and failed reads give.

`--errors RATE` gives each query seeded sequencing errors, RATE per base, a third each
substitutions, insertions and deletions (as raw nanopore reads have; the same errors for every
tool). `--calibrate-errors RATE` passes `clibd index --calibrate-errors` (copies of reference and
held-out records with such errors calibrate reads with errors apart; 0: none).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import batch_calibration as bc

from clibd_cli.embedding.translation import frame_breaks
from clibd_cli.io import sequences
from clibd_cli.io.pipeline_formats import read_sintax as sintax_lines
from models.config import RANKS

ROOT = Path(__file__).resolve().parents[1]
BOLD = ROOT.parent / "shared" / "data" / "bold-coi" / "metadata.csv.gz"
CLIBD = str(Path(sys.executable).with_name("clibd"))
CUTOFFS = (0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="kmer")
    parser.add_argument("--limit", type=int, default=0, help="queries per query split (0 = all)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/clibd-bench-classify"))
    parser.add_argument("--prior-unseen", type=float, default=None,
                        help="clibd index --prior-unseen for the index built here (not with bundled)")
    parser.add_argument("--calibrate-held-out", action="store_true",
                        help="fit the index's confidences on the val + val_unseen records (--calibrate-on)")
    parser.add_argument("--disjoint-species", action="store_true",
                        help="query the test_unseen records of a seeded half of the new species only; with "
                             "--calibrate-held-out, calibrate on the val_unseen records of the other half only")
    parser.add_argument("--fragment", type=int, default=0, help="cut each query to a random stretch of N bases")
    parser.add_argument("--errors", type=float, default=0.0,
                        help="sequencing errors per base in each query (substitutions, insertions, deletions)")
    parser.add_argument("--calibrate-errors", type=float, default=None,
                        help="clibd index --calibrate-errors RATE (copies with errors calibrate reads; default: clibd's)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the vsearch (and, with --batches, RDP) runs")
    parser.add_argument("--batches", action="store_true",
                        help="per-batch reliability of clibd, SINTAX and RDP (test / test_unseen / 70:30 mix)")
    parser.add_argument("--index", type=Path, help="an index of BOLD train built before, by this script or "
                        "`clibd index` of its reference.fasta (not with bundled): not built again")
    parser.add_argument("--shares", type=lambda text: tuple(float(x) for x in text.split(",")), default=(),
                        help="with --batches, also mixes at these shares of new species (e.g. 0.05,0.5,0.9)")
    args = parser.parse_args()
    if any(not 0 < share < 1 for share in args.shares):
        parser.error("--shares: each share of new species must lie between 0 and 1")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader(gzip.open(BOLD, "rt")))
    reference = [r for r in rows if r["split"] == "train"]
    queries = {s: [r for r in rows if r["split"] == s] for s in ("test", "test_unseen")}
    calibration_new = {r["species"] for r in rows if r["split"] == "val_unseen"}
    if args.disjoint_species:  # BIOSCAN-5M's val_unseen and test_unseen hold the same new species
        new_species = sorted(calibration_new)
        random.Random(0).shuffle(new_species)
        calibration_new = set(new_species[: len(new_species) // 2])
        queries["test_unseen"] = [r for r in queries["test_unseen"] if r["species"] not in calibration_new]
    if args.limit:
        queries = {s: q[:args.limit] for s, q in queries.items()}
    if args.fragment:
        queries = {s: [fragment(r, args.fragment, random.Random(r["processid"])) for r in q] for s, q in queries.items()}
    if args.errors:
        queries = {s: [with_errors(r, args.errors, random.Random(f"errors {r['processid']}")) for r in q]
                   for s, q in queries.items()}
    truth = {r["processid"]: (split, r) for split, qs in queries.items() for r in qs}
    ref_fasta, query_fasta = args.work / "reference.fasta", args.work / "queries.fasta"
    write_fasta(ref_fasta, reference, sintax=True)
    write_fasta(query_fasta, [r for qs in queries.values() for r in qs], sintax=False)
    ref_genera = {r["genus"] for r in reference if r["genus"]}
    print(f"reference: {len(reference)} train records; queries: "
          + ", ".join(f"{len(q)} {s}" for s, q in queries.items()))

    if args.model == "bundled" and (args.prior_unseen is not None or args.calibrate_held_out
                                    or args.calibrate_errors is not None or args.index):
        parser.error("--prior-unseen, --calibrate-held-out, --calibrate-errors and --index need an index of "
                     "their own, not the bundled one")
    if args.model == "bundled":
        subprocess.run([CLIBD, "-q", "classify", str(ROOT / "examples" / "barcodes.fasta")], check=True,
                       stdout=subprocess.DEVNULL)  # unpacks the bundled reference once
        where = []
    elif args.index:
        if args.prior_unseen is not None or args.calibrate_held_out or args.calibrate_errors is not None:
            parser.error("--prior-unseen, --calibrate-held-out and --calibrate-errors are for an index built here")
        where = ["--index", str(args.index)]
    else:
        index = args.work / f"index-{Path(args.model).name}"
        prior = [] if args.prior_unseen is None else ["--prior-unseen", str(args.prior_unseen)]
        if args.calibrate_held_out:
            held_out = args.work / "held_out.fasta"
            held = [r for r in rows if r["split"] == "val"
                    or (r["split"] == "val_unseen" and r["species"] in calibration_new)]
            write_fasta(held_out, held, sintax=True)
            prior += ["--calibrate-on", str(held_out)]
        if args.calibrate_errors is not None:
            prior += [f"--calibrate-errors={args.calibrate_errors}"]
        took = timed([CLIBD, "-q", "--threads", "2", "index", "-m", args.model, str(ref_fasta), "-o", str(index),
                      *prior])
        print(f"clibd index ({args.model}): {took:.1f} s")
        where = ["--index", str(index)]
    if args.batches:
        run_batches(args, reference, queries, ref_fasta, query_fasta, where, ref_genera)
        return
    out = args.work / "clibd.tsv"
    took, said = told([CLIBD, "--threads", "2", "classify", *where, str(query_fasta), "-o", str(out)])
    report("clibd classify", took, len(truth), read_clibd(out), truth, ref_genera)
    report("  (the same, best label at every rank, ignoring the cutoff)", took, len(truth),
           read_clibd(out, cutoff=0.0), truth, ref_genera)
    scores, estimate = bc.read_clibd_scores(out)
    ece = bc.batch_table(scores, [r for qs in queries.values() for r in qs],
                         {r["processid"] for r in queries["test_unseen"]}, ref_genera, 0.8)
    print("  ECE order / family / genus / species, points (10 bins over each rank's best-label confidence): "
          + " / ".join(f"{ece[f'ece_{rank}']:.1f}" for rank in RANKS))
    broken = frame_breaks([r["dna_barcode"] for qs in queries.values() for r in qs]) > 0
    print(f"  share of new species assumed (prior_unseen, mean over the queries): {estimate:.3f} (truth "
          f"{len(queries['test_unseen']) / len(truth):.3f}); queries whose best frame meets a stop: "
          f"{100 * broken.mean():.2f} %{said}")
    print("  other --min-confidence cutoffs (the same run):")
    for cutoff in CUTOFFS:
        print(f"    {cutoff:.2f}: " + summary(read_clibd(out, cutoff=cutoff), truth, ref_genera))
    print("  analysis only (threshold chosen on these queries): nearest-neighbour similarity cut so that")
    for share in (0.02, 0.05):
        print(f"    {100 * share:.0f} % of unseen species pass: seen species right (best label) and passing "
              f"{similarity_bound(out, truth, share):.2f}%")

    if args.no_baselines:
        return
    if shutil.which("vsearch"):
        out = args.work / "sintax.tsv"
        took = timed(["vsearch", "--sintax", str(query_fasta), "--db", str(ref_fasta), "--tabbedout", str(out),
                      "--sintax_cutoff", "0.8", "--randseed", "1", "--threads", "2", "--quiet"])
        report("vsearch --sintax 0.8", took, len(truth), read_sintax(out), truth, ref_genera)
        out = args.work / "global.tsv"
        took = timed(["vsearch", "--usearch_global", str(query_fasta), "--db", str(ref_fasta), "--id", "0.7",
                      "--maxaccepts", "10", "--top_hits_only", "--output_no_hits", "--blast6out", str(out),
                      "--threads", "2", "--quiet"])
        report("vsearch --usearch_global top hit", took, len(truth), read_top_hit(out), truth, ref_genera)
    else:
        print("vsearch not on PATH: baselines skipped")


def run_batches(args, reference: list[dict], queries: dict, ref_fasta: Path, query_fasta: Path,
                where: list[str], ref_genera: set) -> None:
    """Each batch in its own clibd run; SINTAX and RDP once over all queries (they are per-query)."""
    from clibd_cli.evaluation import rdp

    new = {r["processid"] for r in queries["test_unseen"]}
    tools = {}
    if not args.no_baselines and shutil.which("vsearch"):
        out = args.work / "sintax.tsv"
        took = timed(["vsearch", "--sintax", str(query_fasta), "--db", str(ref_fasta), "--tabbedout", str(out),
                      "--sintax_cutoff", "0.8", "--randseed", "1", "--threads", "2", "--quiet"])
        tools["sintax"] = bc.read_sintax_scores(out)
        print(f"vsearch --sintax: {took:.1f} s")
    properties = None if args.no_baselines else bc.train_rdp(reference, args.work / "rdp")
    if properties:
        out = args.work / "rdp.tsv"
        took = timed(rdp.classify_command(properties, query_fasta, out))
        tools["rdp"] = rdp.read_allrank(out)
        print(f"RDP classifier 2.10 (trained on the reference): {took:.1f} s")
    mixed = None
    for name, batch in bc.batches(queries, shares=args.shares).items():
        fasta, out = args.work / f"batch-{name}.fasta", args.work / f"batch-{name}.tsv"
        write_fasta(fasta, batch, sintax=False)
        took = timed([CLIBD, "--threads", "2", "classify", *where, str(fasta), "-o", str(out)])
        scores, estimate = bc.read_clibd_scores(out)
        print(f"batch {name}: {len(batch)} queries ({took:.1f} s for clibd); cutoff 0.8 for every tool")
        print(bc.format_row("clibd", bc.batch_table(scores, batch, new, ref_genera, 0.8), estimate))
        for tool, tool_scores in tools.items():
            print(bc.format_row(tool, bc.batch_table(tool_scores, batch, new, ref_genera, 0.8)))
        if name == "test_unseen":
            for tool, tool_scores in {"clibd": scores, **tools}.items():
                for rank in ("order", "family", "genus"):
                    print(f"  {tool} {bc.by_species(tool_scores, batch, rank)}")
        if name == "mix70:30":
            mixed = (batch, {"clibd": scores, **tools})
    batch, by_tool = mixed
    for tool, scores in by_tool.items():
        print(f"operating curve of {tool} on the 70:30 mix (cutoff: numbers):")
        print("\n".join(f"  {line}" for line in bc.curve(scores, batch, new, ref_genera)))


def fragment(record: dict, length: int, rng: random.Random) -> dict:
    """The record with its barcode (gaps dropped) cut to a random stretch of ``length`` bases."""
    barcode = record["dna_barcode"].replace("-", "")
    start = rng.randrange(max(len(barcode) - length, 0) + 1)
    return {**record, "dna_barcode": barcode[start:start + length]}


def with_errors(record: dict, rate: float, rng: random.Random) -> dict:
    """The record with sequencing errors in its barcode (gaps dropped; io.sequences.with_errors)."""
    return {**record, "dna_barcode": sequences.with_errors(record["dna_barcode"].replace("-", ""), rate, rng)}


def write_fasta(path: Path, records: list[dict], sintax: bool) -> None:
    with open(path, "w") as f:
        for r in records:
            if sintax:
                tax = ",".join(f"{rank[0]}:{r[rank].replace(' ', '_')}" for rank in RANKS if r[rank])
                f.write(f">{r['processid']};tax={tax};\n{r['dna_barcode']}\n")
            else:
                f.write(f">{r['processid']}\n{r['dna_barcode']}\n")


def told(command: list[str]) -> tuple[float, str]:
    """Wall seconds of a clibd classify run, and the error rate it told a run of reads to have, from
    its log on stderr (``error_rate.py``; "" if it told none), which is passed on."""
    start = time.perf_counter()
    done = subprocess.run(command, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - start
    sys.stderr.write(done.stderr)  # its log, warnings included, as a run without -q shows it
    if done.returncode:
        sys.exit(f"clibd classify failed (exit status {done.returncode})")
    rate = re.search(r"reads taken to have ([0-9.]+) % errors per base", done.stderr)
    return took, f"; error rate told: {rate[1]} %" if rate else ""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def read_clibd(path: Path, cutoff: float | None = None) -> dict[str, dict[str, str]]:
    """Labels as assigned in the run, or the best label of each rank (from the lineage) whose
    confidence column reaches ``cutoff`` (0: every best label)."""
    calls = {}
    with open(path) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if cutoff is None:
                calls[row["query_id"]] = {r: row[r] for r in RANKS}
                continue
            lineage = bc.best_labels(row["lineage"])
            calls[row["query_id"]] = {r: lineage.get(r[0], "") if float(row[f"{r}_conf"] or 0) >= cutoff else ""
                                      for r in RANKS}
    return calls


def similarity_bound(path: Path, truth: dict, share: float) -> float:
    """Seen-species queries whose best species is right and whose nearest reference is more
    similar than the threshold that lets ``share`` of the unseen-species queries through, in %:
    what any confidence built on that similarity alone could reach at that unseen share."""
    best = read_clibd(path, cutoff=0.0)
    with open(path) as f:
        nearest = {row["query_id"]: float(row["nearest_sim"] or "nan") for row in csv.DictReader(f, delimiter="\t")}
    unseen = sorted((nearest.get(q, float("nan")) for q, (s, _) in truth.items() if s == "test_unseen"),
                    reverse=True)
    threshold = unseen[int(share * len(unseen))]
    seen = [(q, r) for q, (s, r) in truth.items() if s == "test"]
    right = sum(best.get(q, {}).get("species") == r["species"] and nearest.get(q, 0.0) > threshold for q, r in seen)
    return 100 * right / max(len(seen), 1)


def read_sintax(path: Path) -> dict[str, dict[str, str]]:
    """Column 4 of --tabbedout: the lineage truncated at the cutoff."""
    return {line.query.split(";")[0]: {r: (line.cutoff or {}).get(r, "").replace("_", " ") for r in RANKS}
            for line in sintax_lines(path)}


def read_top_hit(path: Path) -> dict[str, dict[str, str]]:
    """The first (best) hit's full lineage, as a top-hit classifier asserts it."""
    calls = {}
    for line in open(path):
        query, target = line.split("\t")[:2]
        query = query.split(";")[0]
        if query in calls:
            continue
        ranks = dict(p.split(":", 1) for p in target.split("tax=", 1)[1].rstrip(";").split(",")) if "tax=" in target else {}
        calls[query] = {r: ranks.get(r[0], "").replace("_", " ") for r in RANKS}
    return calls


def report(name: str, seconds: float, n: int, calls: dict, truth: dict, ref_genera: set) -> None:
    seen, unseen, known = _groups(calls, truth, ref_genera)
    print(f"{name}: {seconds:.1f} s, {n / seconds:.0f} queries/s (incl. start-up)")
    print("  seen species: " + ", ".join(f"{r} {_rate(seen, r):.2f}%" for r in RANKS))
    print(f"  unseen species: species asserted {_asserted(unseen):.2f}%; genus right "
          f"{_rate(known, 'genus'):.1f}% of {len(known)} whose genus is in the reference; "
          f"family {_rate(unseen, 'family'):.1f}%, order {_rate(unseen, 'order'):.1f}%")


def summary(calls: dict, truth: dict, ref_genera: set) -> str:
    """One line: seen species right, unseen species asserted, unseen genus right (genus known)."""
    seen, unseen, known = _groups(calls, truth, ref_genera)
    return (f"seen species right {_rate(seen, 'species'):.2f}%, unseen species asserted "
            f"{_asserted(unseen):.2f}%, unseen genus right {_rate(known, 'genus'):.1f}%")


def _groups(calls: dict, truth: dict, ref_genera: set) -> tuple[list, list, list]:
    """(call, truth) pairs of the seen queries, the unseen ones, and the unseen whose genus is known."""
    seen = [(calls.get(q, {}), r) for q, (s, r) in truth.items() if s == "test"]
    unseen = [(calls.get(q, {}), r) for q, (s, r) in truth.items() if s == "test_unseen"]
    return seen, unseen, [(c, r) for c, r in unseen if r["genus"] in ref_genera]


def _rate(pairs: list, rank: str) -> float:
    return 100 * sum(c.get(rank) == r[rank] for c, r in pairs) / max(len(pairs), 1)


def _asserted(unseen: list) -> float:
    return 100 * sum(bool(c.get("species")) for c, _ in unseen) / max(len(unseen), 1)


if __name__ == "__main__":
    main()

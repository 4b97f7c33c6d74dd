"""Classify throughput and peak memory as the reference grows: clibd vs vsearch --sintax vs blastn.

For each reference size N (default 10,000, 52,202 = the whole BOLD `train` split, 100,000;
add 1,000,000 with ``--sizes``) the same fixed sample of BOLD `test` barcodes (``--queries``,
default 500, seeded) is classified by

* ``clibd classify`` with an index built by ``clibd index -m kmer`` (and ``-m DIR`` for each
  learned model given with ``--model``, only up to ``--learned-max-size`` records: embedding
  with the previous bundled clibd-small-bold ran ~170 barcodes/s on 2 CPU cores with bf16),
* ``vsearch --sintax`` (cutoff 0.8, 2 threads; no database to build: it reads the FASTA),
* ``blastn -task megablast`` top hit (``-max_target_seqs 1 -max_hsps 1``, 2 threads) after
  ``makeblastdb``.

Every command runs under ``/usr/bin/time``: wall and CPU (user+sys) seconds and peak resident
memory of the process. Each tool also classifies a single query, so the start-up + loading
cost can be told apart from the search: "search q/s" = (Q-1) / (wall(Q) - wall(1)). clibd's
start-up (~8 CPU-s: Python, torch, the index) swamps 500 queries; ``--bulk`` makes it also
classify the whole `test` split (7,634) for its search rate.
Sanity (no accuracy): the share of queries whose top hit has the same species as at 52,202
(the real reference); for SINTAX, the same assigned species (empty counts as a value).

References: N <= 52,202 is a seeded random subset of `train`. Larger references are `train`
plus synthetic records made in rounds r = 1, 2, ...: each round copies every train record
(shuffled, seeded), and all records of one real species s in round r get the same
substitutions — a site set drawn per (s, r) at a rate uniform in 1–3 % of positions, each site
changed to another base (only A/C/G/T are touched) — and are labelled species "s syn<r>" in
the same genus, family and order. So each synthetic species is a sister species 1–3 % away
from its real one and keeps its real within-species variation (and its exact duplicates, which
share one HNSW node, as in real references). Records without a species label get their own
substitutions and stay without species.

Results go to WORK/results.json (merged across runs, so sizes can be added later) and a
markdown table is printed at the end.

    nice -n 19 .venv/bin/python benchmarks/scaling.py [--sizes 10000,52202,100000] \\
        [--model runs/x/best] [--work /tmp/clibd-bench-scaling]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classify_bold import BOLD, CLIBD, read_sintax, read_top_hit, write_fasta  # noqa: E402

ACGT = np.frombuffer(b"ACGT", dtype=np.uint8)
CODES = np.full(256, 255, dtype=np.uint8)
CODES[ACGT] = np.arange(4)
ANCHOR = "52202"  # sizes are compared with the real train reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sizes", default="10000,52202,100000",
                        help="comma-separated reference sizes (add 1000000 for the 1M run)")
    parser.add_argument("--tools", default="clibd,sintax,blastn", help="comma-separated subset")
    parser.add_argument("--model", action="append", default=[],
                        help="a learned model directory to run besides kmer (repeatable; alone with --no-kmer)")
    parser.add_argument("--no-kmer", action="store_true", help="run only the --model indexes, not the k-mer one")
    parser.add_argument("--learned-max-size", type=int, default=10000,
                        help="largest reference embedded with a learned model")
    parser.add_argument("--queries", type=int, default=500, help="test-split queries (seeded sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=BOLD, help="BIOSCAN-5M layout metadata CSV(.gz)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/clibd-bench-scaling"))
    parser.add_argument("--keep", action="store_true", help="keep the per-size reference files")
    parser.add_argument("--bulk", action="store_true",
                        help="clibd also classifies the whole test split (its start-up hides 500 queries)")
    args = parser.parse_args()
    if args.no_kmer and not args.model:
        parser.error("--no-kmer needs a --model to run")
    args.work.mkdir(parents=True, exist_ok=True)
    results_path = args.work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}

    rows = list(csv.DictReader(gzip.open(args.data, "rt")))
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    rng = np.random.default_rng(args.seed)
    sample = [test[i] for i in sorted(rng.choice(len(test), min(args.queries, len(test)), replace=False))]
    queries, single = args.work / "queries.fasta", args.work / "query1.fasta"
    write_fasta(queries, sample, sintax=False)
    write_fasta(single, sample[:1], sintax=False)
    write_fasta(args.work / "queries-bulk.fasta", test, sintax=False)
    print(f"{len(train)} train records, {len(sample)} test queries; work dir {args.work}", flush=True)

    tools = args.tools.split(",")
    for size in [int(s) for s in args.sizes.split(",")]:
        ref = args.work / f"reference-{size}.fasta"
        start = time.perf_counter()
        species = write_fasta_counted(ref, reference_records(train, size, args.seed))
        print(f"\n== {size:,} references ({time.perf_counter() - start:.0f} s to write {ref.name})", flush=True)
        runs = []
        if "clibd" in tools:
            runs += [("clibd kmer", "kmer")] * (not args.no_kmer) + [(f"clibd {Path(m).name}", m) for m in args.model
                                                if size <= args.learned_max_size]
            skipped = [m for m in args.model if size > args.learned_max_size]
            if skipped:
                print(f"skipped learned models {skipped} at {size:,} (> --learned-max-size)")
        if "sintax" in tools and shutil.which("vsearch"):
            runs.append(("vsearch --sintax", None))
        if "blastn" in tools and shutil.which("blastn"):
            runs.append(("blastn megablast", None))
        for name, model in runs:
            entry = run_tool(name, model, ref, size, queries, single, args)
            entry["calls"] = top_species(name, entry.pop("output"), species)
            results[f"{name}@{size}"] = entry
            results_path.write_text(json.dumps(results, indent=1))
            print(json.dumps({k: v for k, v in entry.items() if k != "calls"}), flush=True)
        if not args.keep:
            for path in [*args.work.glob(f"*-{size}"), *args.work.glob(f"*-{size}.*")]:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    print()
    print(table(results))


def reference_records(train: list[dict], size: int, seed: int) -> Iterator[dict]:
    """``size`` records: a subset of train, or train followed by synthetic sister species."""
    rng = np.random.default_rng(seed)
    if size <= len(train):
        yield from (train[i] for i in sorted(rng.choice(len(train), size, replace=False)))
        return
    yield from train
    made, round_ = 0, 0
    longest = max(len(r["dna_barcode"]) for r in train)
    while made < size - len(train):
        round_ += 1
        sites: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for i in rng.permutation(len(train)):
            if made == size - len(train):
                return
            real = train[i]
            key = real["species"] or f"record {real['processid']}"
            if key not in sites:
                sites[key] = substitution_sites(longest, (seed, round_, len(sites)))
            record = dict(real, processid=f"syn{round_}_{real['processid']}",
                          dna_barcode=mutate(real["dna_barcode"], *sites[key]))
            if real["species"]:
                record["species"] = f"{real['species']} syn{round_}"
            made += 1
            yield record


def substitution_sites(length: int, seed: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Positions (rate uniform in 1–3 %) and base shifts 1–3 for one synthetic species."""
    rng = np.random.default_rng(seed)
    positions = np.flatnonzero(rng.random(length) < rng.uniform(0.01, 0.03))
    return positions, rng.integers(1, 4, len(positions)).astype(np.uint8)


def mutate(barcode: str, positions: np.ndarray, shifts: np.ndarray) -> str:
    seq = np.frombuffer(barcode.encode("ascii"), dtype=np.uint8).copy()
    inside = positions < len(seq)
    positions, shifts = positions[inside], shifts[inside]
    codes = CODES[seq[positions]]
    base = codes != 255  # N, IUPAC codes and gaps stay as they are
    seq[positions[base]] = ACGT[(codes[base] + shifts[base]) & 3]
    return seq.tobytes().decode("ascii")


def write_fasta_counted(path: Path, records: Iterator[dict]) -> dict[str, str]:
    """Write the SINTAX FASTA; return record id -> species ('' if none) for the sanity check."""
    species: dict[str, str] = {}

    def tap(rs):
        for r in rs:
            species[r["processid"]] = r["species"]
            yield r

    write_fasta(path, tap(records), sintax=True)
    return species


def run_tool(name: str, model: str | None, ref: Path, size: int, queries: Path, single: Path,
             args: argparse.Namespace) -> dict:
    """Build (if the tool needs it) and classify ``queries`` and ``single``; times and memory."""
    work, threads = args.work, str(args.threads)
    n_queries = sum(1 for line in open(queries) if line.startswith(">"))
    entry: dict = {"tool": name, "size": size, "queries": n_queries}
    tag = name.split()[0] + (f"-{Path(model).name}" if model else "") + f"-{size}"
    out = work / f"{tag}.out"
    if model is not None:
        index = work / f"index-{tag}"
        entry["build"] = timed([CLIBD, "-q", "--threads", threads, "index", "-m", model, str(ref),
                                "-o", str(index)], work)
        entry["index_mb"] = sum(p.stat().st_size for p in index.iterdir()) / 2**20
        manifest = json.loads((index / "manifest.json").read_text())
        entry["nodes"] = manifest.get("nodes")

        def command(q: Path, o: Path) -> list[str]:
            return [CLIBD, "-q", "--threads", threads, "classify", "--index", str(index), str(q), "-o", str(o)]
    elif name.startswith("vsearch"):
        def command(q: Path, o: Path) -> list[str]:
            return ["vsearch", "--sintax", str(q), "--db", str(ref), "--tabbedout", str(o), "--sintax_cutoff",
                    "0.8", "--randseed", "1", "--threads", threads, "--quiet"]
    else:
        db = work / f"blastdb-{size}"
        entry["build"] = timed(["makeblastdb", "-in", str(ref), "-dbtype", "nucl", "-out", str(db)], work)
        entry["index_mb"] = sum(p.stat().st_size for p in work.glob(f"blastdb-{size}.*")) / 2**20

        def command(q: Path, o: Path) -> list[str]:
            return ["blastn", "-task", "megablast", "-query", str(q), "-db", str(db), "-outfmt",
                    "6 qseqid sseqid pident length evalue bitscore", "-max_target_seqs", "1",
                    "-max_hsps", "1", "-num_threads", threads, "-out", str(o)]
    entry["one"] = timed(command(single, work / f"{tag}.one"), work)
    entry["all"] = timed(command(queries, out), work)
    entry["qps"] = n_queries / entry["all"]["wall_s"]
    marginal = entry["all"]["wall_s"] - entry["one"]["wall_s"]
    entry["search_qps"] = (n_queries - 1) / marginal if marginal > 0 else None
    if model is not None and args.bulk:
        bulk = work / "queries-bulk.fasta"
        entry["bulk"] = timed(command(bulk, work / f"{tag}.bulk"), work)
        entry["bulk"]["queries"] = n_bulk = sum(1 for line in open(bulk) if line.startswith(">"))
        extra = entry["bulk"]["wall_s"] - entry["one"]["wall_s"]
        entry["bulk_search_qps"] = (n_bulk - 1) / extra if extra > 0 else None
    entry["output"] = str(out)
    return entry


def timed(command: list[str], work: Path) -> dict:
    """Run ``command`` under /usr/bin/time: wall and CPU seconds, peak RSS (MB)."""
    report = work / "time.txt"
    done = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(report), *command],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    wall, user, system, rss_kb = report.read_text().split()[-4:]
    return {"wall_s": float(wall), "cpu_s": float(user) + float(system), "rss_mb": int(rss_kb) / 1024}


def top_species(name: str, output: str, species: dict[str, str]) -> dict[str, str]:
    """Per query: the top hit's species (clibd, blastn) or the assigned species (SINTAX)."""
    path = Path(output)
    if name.startswith("clibd"):
        with open(path) as f:
            return {row["query_id"]: species.get(row["nearest_id"], "") for row in csv.DictReader(f, delimiter="\t")}
    calls = read_sintax(path) if name.startswith("vsearch") else read_top_hit(path)
    return {q: c.get("species", "") for q, c in calls.items()}


def table(results: dict) -> str:
    """Markdown table of every result, sizes ascending, with the agreement with 52,202."""
    lines = ["| references | tool | build: wall s / CPU s / peak RSS MB | classify Q: wall s / CPU s / peak RSS MB "
             "| 1 query: wall s | queries/s (end to end) | search q/s | same top species as at 52,202 |",
             "|---|---|---|---|---|---|---|---|"]
    for key, e in sorted(results.items(), key=lambda kv: (kv[1]["size"], kv[1]["tool"])):
        anchor = results.get(f"{e['tool']}@{ANCHOR}")
        same = "—"
        if anchor and e["size"] != int(ANCHOR):
            common = [q for q in anchor["calls"] if q in e["calls"]]
            same = f"{100 * sum(anchor['calls'][q] == e['calls'][q] for q in common) / max(len(common), 1):.1f} %"
        b = e.get("build")
        build = f"{b['wall_s']:.1f} / {b['cpu_s']:.1f} / {b['rss_mb']:,.0f}" if b else "none"
        a = e["all"]
        sq = f"{e['search_qps']:,.0f}" if e.get("search_qps") else "—"
        if "bulk" in e:
            rate = e["bulk_search_qps"]
            sq += (f"; {e['bulk']['queries']:,} queries: {e['bulk']['wall_s']:.1f} s, "
                   f"{e['bulk']['queries'] / e['bulk']['wall_s']:,.0f} end to end, search "
                   + (f"{rate:,.0f}/s" if rate and rate > 0 else "lost in start-up noise"))
        lines.append(f"| {e['size']:,} | {e['tool']} | {build} | {a['wall_s']:.1f} / {a['cpu_s']:.1f} / "
                     f"{a['rss_mb']:,.0f} | {e['one']['wall_s']:.1f} | {e['qps']:,.1f} | {sq} | {same} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

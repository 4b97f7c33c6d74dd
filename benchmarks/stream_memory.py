"""Peak memory of `clibd classify` as the number of query records grows (the input streams).

    .venv/bin/python benchmarks/stream_memory.py [--sizes 10000 100000 1000000] [-- CLASSIFY_ARGS ...]

Each size is one `clibd --threads 2 classify -` run (the bundled reference unless CLASSIFY_ARGS
give an --index) reading N barcode records from a pipe: the BOLD `test` and `test_unseen`
barcodes over and over, each copy with its own id, so the estimation block (the first 10,000
records) mixes known and new species as the whole input does. Printed per size: wall seconds,
peak RSS (`/usr/bin/time -f %M`), and the rows written, which must equal N.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import subprocess
import sys
import threading
import time

from classify_bold import BOLD, CLIBD


def barcodes() -> list[str]:
    with gzip.open(BOLD, "rt") as handle:
        return [r["dna_barcode"] for r in csv.DictReader(handle) if r["split"] in ("test", "test_unseen")]


def feed(pipe, seqs: list[str], n: int) -> None:
    """Write ``n`` FASTA records cycling through ``seqs``, then close the pipe."""
    try:
        for start in range(0, n, 1000):
            pipe.write("".join(f">q{i}\n{seqs[i % len(seqs)]}\n" for i in range(start, min(n, start + 1000))))
    except BrokenPipeError:
        pass
    finally:
        pipe.close()


def run(n: int, seqs: list[str], extra: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in MB, rows written, for one run over ``n`` records."""
    command = ["/usr/bin/time", "-f", "%M", CLIBD, "-q", "--threads", "2", "classify", "-", *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    writer = threading.Thread(target=feed, args=(proc.stdin, seqs, n))
    writer.start()
    rows = sum(1 for line in proc.stdout if not line.startswith("query_id\t"))
    stderr = proc.stderr.read()
    proc.wait()
    writer.join()
    if proc.returncode:
        sys.exit(f"clibd classify failed ({proc.returncode}): {stderr[-2000:]}")
    return time.perf_counter() - start, int(stderr.strip().splitlines()[-1]) // 1024, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("extra", nargs="*", help="more clibd classify arguments, after --")
    args = parser.parse_args()
    seqs = barcodes()
    print(f"{'records':>10} {'wall s':>8} {'records/s':>10} {'peak RSS MB':>12} {'rows':>10}", flush=True)
    for n in args.sizes:
        wall, peak, rows = run(n, seqs, args.extra)
        print(f"{n:>10} {wall:>8.1f} {n / wall:>10.0f} {peak:>12} {rows:>10}{'' if rows == n else '  MISSING ROWS'}",
              flush=True)


if __name__ == "__main__":
    main()

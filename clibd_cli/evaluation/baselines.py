"""The alignment baselines users already run: VSEARCH, BLAST+ and MMseqs2 on the same queries and keys.

Each tool reads FASTA files written to a temporary folder (README, *Evaluating a model*):

* ``vsearch-global``: ``vsearch --usearch_global --id 0.8 --maxaccepts 5`` — hits ranked by
  identity (global alignment); the top-k labels are those of the best hits.
* ``vsearch-sintax``: ``vsearch --sintax --sintax_cutoff CUTOFF --randseed SEED --threads 1``
  (one thread: the Debian build is only reproducible so) — one label per rank with its
  bootstrap support, so only top-1 is defined; support ≥ CUTOFF (``--min-confidence``, 0.8 by
  default) asserts the label.
* ``blastn``: ``makeblastdb`` + ``blastn`` (megablast) ``-max_target_seqs 10 -max_hsps 1``,
  hits ranked by bit score.
* ``mmseqs``: ``mmseqs easy-search --search-type 3 -k 11`` (MMseqs2's nucleotide search, forward
  strand as ``vsearch-global``; ``--max-seqs 300`` candidates per query, its default: with 50, 13
  of 300 BOLD queries got a worse top hit), hits ranked by bit score, against the keys' database
  and k-mer index made once (``createdb``, ``createindex``) for every part: searched from the
  FASTA, each part rebuilt them (benchmarks/README.md, *MMseqs2 as a baseline*).
* ``rdp``: the RDP naive Bayesian classifier trained on the keys (``rdp.py``) — one label per
  rank with its bootstrap confidence, asserted at ≥ CUTOFF like SINTAX.

Keys with the same barcode and lineage are written once (half of BOLD's barcodes repeat, and
BLAST slows down with every copy); a hit on one stands for all its copies in key order, as
tied vectors do in the exact search. The top-hit tools assert the top hit's label at a rank
when its identity reaches BOLDigger3's default cutoffs (species 97 %, genus 95 %, family 90 %,
order 85 %); they have no confidence, so no reliability curve.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clibd_cli.defaults import CALIBRATION
from clibd_cli.evaluation import rdp
from clibd_cli.evaluation.protocol import Records
from clibd_cli.evaluation.retrieval import DEPTH, Calls, Outcome, Queries
from clibd_cli.io.lineages import sintax_lineage
from clibd_cli.io.pipeline_formats import read_sintax
from clibd_cli.io.sequences import clean_barcode
from models.config import RANKS
from models.errors import ClibdError
from models.files import cannot_write

log = logging.getLogger("clibd")
MMSEQS_K = 11  # MMseqs2's nucleotide k-mer: its default, 15, takes 8.5 GB and ~30 s per search whatever
# the input; on BOLD, 11 finds the same top hits as 13 (0.2 GB and 0.7 GB)
IDENTITY_CUTOFFS = {"order": 0.85, "family": 0.90, "genus": 0.95, "species": 0.97}
TOOLS = {"vsearch-global": ("vsearch",), "vsearch-sintax": ("vsearch",), "blastn": ("makeblastdb", "blastn"),
         "mmseqs": ("mmseqs",)}


def missing_tools(name: str) -> list[str]:
    """Programs (and for rdp, its jar) baseline ``name`` needs that this machine lacks."""
    if name == "rdp":
        return rdp.missing()
    return [tool for tool in TOOLS[name] if shutil.which(tool) is None]


@dataclass
class _Reference:
    """Distinct (barcode, lineage) keys: FASTA entry ``u{j}`` stands for key rows ``members[j]``."""

    barcodes: list[str]
    lineages: list[tuple]
    members: list[np.ndarray]


@dataclass
class AlignmentBaseline:
    """One external tool run on the DNA barcodes of the keys and queries."""

    name: str
    workdir: Path
    threads: int = 1
    seed: int = 0
    min_confidence: float = CALIBRATION.min_confidence

    @property
    def gives_confidence(self) -> bool:
        """SINTAX and RDP give a support per rank; the top-hit tools an identity only."""
        return self.name in ("vsearch-sintax", "rdp")

    def run(self, embeddings, keys: Records, parts: dict[str, Queries]) -> dict[str, Outcome]:
        folder = self.workdir / self.name
        folder.mkdir(parents=True, exist_ok=True)
        reference = _dereplicate(keys)
        db = self._database(folder, reference)
        out = {}
        for part, queries in parts.items():
            taken = np.flatnonzero(queries.records.has_barcode[queries.positions])
            path = folder / f"{part}.fasta"
            barcodes = [queries.records.barcodes[i] for i in queries.positions[taken]]
            _write_fasta(path, [f"q{j}" for j in range(len(taken))], barcodes)
            outcome = Outcome(queries.labels(taken), {}, missing=len(queries.positions) - len(taken))
            if self.name == "vsearch-sintax":
                self._sintax(outcome, path, db, folder / f"{part}.sintax.tsv", len(taken), reference)
            elif self.name == "rdp":
                self._rdp(outcome, path, db, folder / f"{part}.rdp.tsv", len(taken), reference)
            else:
                # no usable barcode: no search (mmseqs fails on an empty FASTA, where the others write nothing)
                hits = self._hits(path, db, folder / f"{part}.hits.tsv") if len(taken) else []
                _top_hits(outcome, hits, reference, keys, len(taken))
            out[part] = outcome
        return out

    def _database(self, folder: Path, reference: _Reference) -> Path:
        """The keys as the tool reads them: RDP's trained model, a BLAST database, else
        ``keys.fasta`` with SINTAX headers ``u{j};tax=...;`` (vsearch; mmseqs makes its database
        and k-mer index of it; a hit's target is read up to its first ``;``)."""
        path = folder / "keys.fasta"
        if self.name == "rdp":
            ids = [f"u{j}" for j in range(len(reference.barcodes))]
            if not rdp.write_training_set(folder, ids, [_clean(b) for b in reference.barcodes], reference.lineages):
                raise ClibdError(f"rdp: no key record is labelled at every rank ({', '.join(RANKS)})")
            _call(rdp.train_command(folder))
            return rdp.finish(folder)
        if self.name == "blastn":
            _write_fasta(path, [f"u{j}" for j in range(len(reference.barcodes))], reference.barcodes)
            _call(["makeblastdb", "-in", str(path), "-dbtype", "nucl", "-out", str(folder / "keys")])
            return folder / "keys"
        headers = [f"u{j};tax={_sintax_taxonomy(lineage)};" for j, lineage in enumerate(reference.lineages)]
        _write_fasta(path, headers, reference.barcodes)
        if self.name == "mmseqs":
            db = folder / "keys"
            _call(["mmseqs", "createdb", str(path), str(db), "--dbtype", "2", "-v", "1"])
            _call(["mmseqs", "createindex", str(db), str(folder / "mmseqs-tmp"), "--search-type", "3",
                   "-k", str(MMSEQS_K), "--threads", str(self.threads), "-v", "1"])
            return db
        return path

    def _hits(self, queries: Path, db: Path, out: Path) -> list[tuple[int, int, float, float]]:
        """``(query, distinct key, identity 0-1, score)`` rows, best first per query."""
        _call(self._search(queries, db, out))
        rows = []
        for line in out.read_text().splitlines():
            cells = line.split("\t")
            identity = float(cells[2]) / 100
            score = float(cells[3]) if len(cells) > 3 else identity
            rows.append((int(cells[0][1:]), int(cells[1].split(";")[0][1:]), identity, score))
        rows.sort(key=lambda r: (r[0], -r[3]))  # stable: ties keep the tool's order
        return rows

    def _search(self, queries: Path, db: Path, out: Path) -> list[str]:
        """The top-hit tool's command: ``query target identity-% [score]`` TSV rows into ``out``
        (no row for a query without hits)."""
        if self.name == "vsearch-global":
            return ["vsearch", "--usearch_global", str(queries), "--db", str(db), "--id", "0.8",
                    "--maxaccepts", str(DEPTH), "--userout", str(out), "--userfields", "query+target+id",
                    "--threads", str(self.threads), "--quiet", "--no_progress"]
        if self.name == "mmseqs":
            return ["mmseqs", "easy-search", str(queries), str(db), str(out), str(out.parent / "mmseqs-tmp"),
                    "--search-type", "3", "-k", str(MMSEQS_K), "--max-seqs", "300",
                    "--format-output", "query,target,pident,bits",
                    "--threads", str(self.threads), "-v", "1"]
        return ["blastn", "-query", str(queries), "-db", str(db), "-outfmt",
                "6 qseqid sseqid pident bitscore", "-max_target_seqs", "10", "-max_hsps", "1",
                "-num_threads", str(self.threads), "-out", str(out)]

    def _sintax(self, outcome: Outcome, queries: Path, db: Path, out: Path, n: int,
                reference: _Reference) -> None:
        _call(["vsearch", "--sintax", str(queries), "--db", str(db), "--tabbedout", str(out),
               "--sintax_cutoff", str(self.min_confidence), "--randseed", str(self.seed + 1),
               "--threads", "1", "--quiet", "--no_progress"])
        original = {(r, _sintax_name(name)): name for lineage in reference.lineages
                    for r, name in zip(RANKS, lineage) if name}
        labels = {r: np.full(n, None, dtype=object) for r in RANKS}
        support = {r: np.zeros(n) for r in RANKS}
        for line in read_sintax(out):
            q = int(line.query.split()[0][1:])
            for rank, (name, value) in line.ranks.items():
                if rank in labels:
                    labels[rank][q] = original.get((rank, name), name)
                    support[rank][q] = value
        self._confident_calls(outcome, labels, support)

    def _rdp(self, outcome: Outcome, queries: Path, properties: Path, out: Path, n: int,
             reference: _Reference) -> None:
        _call(rdp.classify_command(properties, queries, out))
        original = {(r, rdp.taxon_name(name)): name for lineage in reference.lineages
                    for r, name in zip(RANKS, lineage) if name}
        labels = {r: np.full(n, None, dtype=object) for r in RANKS}
        support = {r: np.zeros(n) for r in RANKS}
        for query, ranks in rdp.read_allrank(out).items():
            for rank, (name, confidence) in ranks.items():
                labels[rank][int(query[1:])] = original.get((rank, name), name)
                support[rank][int(query[1:])] = confidence
        self._confident_calls(outcome, labels, support)

    def _confident_calls(self, outcome: Outcome, labels: dict, support: dict) -> None:
        """One label per rank with its support, asserted at ``min_confidence``."""
        outcome.neighbours = {r: labels[r][:, None] for r in RANKS}
        outcome.depth = 1
        asserted = {r: (support[r] >= self.min_confidence) & (labels[r] != None)  # noqa: E711
                    for r in RANKS}
        outcome.calls = Calls(labels, asserted, support)


def _top_hits(outcome: Outcome, hits, reference: _Reference, keys: Records, n: int) -> None:
    """Neighbour labels (each distinct hit expanded to its key copies) and identity-cutoff calls."""
    rows = np.full((n, DEPTH), -1, dtype=np.int64)
    best = np.zeros(n)
    filled = np.zeros(n, dtype=np.int64)
    for q, target, identity, _ in hits:
        if filled[q] == 0:
            best[q] = identity
        copies = reference.members[target][:DEPTH - filled[q]]
        rows[q, filled[q]:filled[q] + len(copies)] = copies
        filled[q] += len(copies)
    outcome.neighbours = {}
    labels, asserted = {}, {}
    for rank in RANKS:
        table = np.append(keys.labels[rank], None)[rows]  # -1 (no hit) picks the trailing None
        outcome.neighbours[rank] = table
        labels[rank] = table[:, 0]
        asserted[rank] = (best >= IDENTITY_CUTOFFS[rank]) & (labels[rank] != None)  # noqa: E711
    outcome.calls = Calls(labels, asserted)
    outcome.extra["top_hit_identity_mean"] = float(best[filled > 0].mean()) if filled.any() else None
    outcome.extra["no_hit"] = int((filled == 0).sum())


def _dereplicate(keys: Records) -> _Reference:
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i in np.flatnonzero(keys.has_barcode):
        lineage = tuple(keys.labels[r][i] for r in RANKS)
        groups[(_clean(keys.barcodes[i]), lineage)].append(int(i))
    if not groups:
        raise ClibdError("no key record has a usable barcode")
    return _Reference([b for b, _ in groups], [lin for _, lin in groups],
                      [np.array(m, dtype=np.int64) for m in groups.values()])


def _clean(barcode: str) -> str:
    """Upper case, U→T, alignment gaps removed (VSEARCH refuses '-' and '.')."""
    return clean_barcode(barcode).upper()


def _sintax_taxonomy(lineage: tuple) -> str:
    """``o:Diptera,f:Culicidae,...`` (no commas/semicolons/spaces in names; missing ranks left out)."""
    return sintax_lineage({rank: _sintax_name(name) for rank, name in zip(RANKS, lineage) if name})


def _sintax_name(name: str) -> str:
    return rdp.ascii_name(name.replace(" ", "_").replace(",", "_").replace(";", "_").replace(":", "_"))


def _write_fasta(path: Path, headers: list[str], barcodes: list[str]) -> None:
    """A scratch FASTA for a tool (in a temporary folder: a full one is named, as outputs are)."""
    try:
        with open(path, "w", encoding="ascii", errors="replace") as f:
            for header, barcode in zip(headers, barcodes):
                f.write(f">{header}\n{_clean(barcode)}\n")
    except OSError as exc:
        raise cannot_write(path, exc) from None


def _call(command: list[str]) -> None:
    log.debug("running %s", " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ClibdError(f"{command[0]} failed (exit {done.returncode}): {' | '.join(tail)}")

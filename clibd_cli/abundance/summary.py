"""``clibd classify --summary FILE``: reads and features per taxon, at each rank, per sample.

Where the reads come from: a ``--counts`` feature table (``clibd_cli/abundance/counts.py``),
else each record's ``;size=N`` header annotation (VSEARCH/USEARCH dereplication; 1 read
without it). The sample is the table's column, else the header's ``;sample=NAME``, else the
input file's name without its FASTA/FASTQ and compression extensions.

Files written (each atomically), for ``--summary out/run.tsv``:

* ``out/run.tsv``: ``sample rank taxon lineage reads features``, per sample and rank the
  taxa by reads (most first) and one ``unassigned`` row for the reads with no label at that
  rank (below ``--min-confidence``, unreadable, or absent from the table's classification);
  each rank's reads add up to the sample's reads;
* ``out/run.<sample>.krona.txt``: Krona's text input (``ktImportText``), ``reads<TAB>order
  <TAB>family<TAB>genus<TAB>species`` down to the deepest assigned rank (a rank above it with
  no assigned name an empty field, which Krona skips), ``Unassigned`` for reads with no
  assigned rank;
* ``out/run.html``: a self-contained page (``clibd_cli/abundance/html.py``).
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clibd_cli.abundance.counts import CountsTable
from clibd_cli.io.lineages import qiime_taxon
from clibd_cli.io.outputs import PACKERS, UsageError, text_output
from clibd_cli.io.sequences import reverse_complement
from models.config import RANKS
from models.errors import counted

log = logging.getLogger("clibd")
UNASSIGNED = "unassigned"
COLUMNS = ("sample", "rank", "taxon", "lineage", "reads", "features")
_EXTENSIONS = re.compile(r"(\.(fasta|fa|fas|fna|fastq|fq|txt))?(\.(gz|bz2|xz))?$", re.IGNORECASE)

Lineage = tuple  # assigned label per rank (None = not assigned), RANKS order


@dataclass
class Tally:
    """Reads and features of each lineage in each sample."""

    reads: dict[str, dict[Lineage, int]] = field(default_factory=lambda: defaultdict(_counter))
    features: dict[str, dict[Lineage, int]] = field(default_factory=lambda: defaultdict(_counter))

    def add(self, sample: str, lineage: Lineage, reads: int) -> None:
        """Count a feature's reads in a sample (a sample with no reads still gets its rows)."""
        sample_reads = self.reads[sample]
        if reads:
            sample_reads[lineage] += reads
            self.features[sample][lineage] += 1

    def at_rank(self, sample: str, rank: str) -> list[tuple[Lineage | None, int, int]]:
        """``(lineage down to rank or None for unassigned, reads, features)``, most reads first,
        unassigned last (always present)."""
        depth = RANKS.index(rank) + 1
        reads: dict[Lineage | None, int] = defaultdict(int)
        features: dict[Lineage | None, int] = defaultdict(int)
        for lineage, count in self.reads[sample].items():
            key = lineage[:depth] if lineage[depth - 1] else None
            reads[key] += count
            features[key] += self.features[sample][lineage]
        taxa = sorted((k for k in reads if k is not None),
                      key=lambda k: (-reads[k], [name or "" for name in k]))
        return [(k, reads[k], features[k]) for k in [*taxa, None]]

    @property
    def samples(self) -> list[str]:
        return list(self.reads)


class AbundanceSummary:
    """Collects classified records (``classification/classifier.py`` ``Result``) and writes the
    summary files."""

    def __init__(self, counts: CountsTable | None = None):
        self.counts = counts
        self.tally = Tally()
        # with counts: per feature id and barcode as given, the record's number and lineage; the
        # barcodes clibd turned round apart, so that a record given that way is found first
        self._by_feature: dict[str, tuple[int, Lineage]] = {}
        self._turned: dict[str, tuple[int, Lineage]] = {}
        self._records = 0  # records added (with counts)
        self._files: dict[str, str] = {}  # sample named after an input file -> that file
        self._merged: set[str] = set()  # such samples that two files named (warned about)

    def add(self, results) -> None:
        for result in results:
            query = result.query
            lineage = assigned_lineage(result)
            if self.counts is None:
                sample = query.sample or self._file_sample(query.source or "photos")
                self.tally.add(sample, lineage, 1 if query.size is None else query.size)
            else:
                record, self._records = (self._records, lineage), self._records + 1
                self._by_feature.setdefault(query.id, record)
                if query.barcode:
                    barcode = query.barcode.upper()
                    if query.strand == "-":  # the table names it as given, before it was turned round
                        self._turned.setdefault(barcode, record)
                        barcode = reverse_complement(barcode)
                    self._by_feature.setdefault(barcode, record)

    def _file_sample(self, source: str) -> str:
        """The sample named after an input file; a warning when two files give one name
        (``a/derep.fasta``, ``b/derep.fasta``), whose reads are then summed as one sample."""
        sample = sample_name(source)
        first = self._files.setdefault(sample, source)
        if first != source and sample not in self._merged:
            self._merged.add(sample)
            log.warning("%s and %s are both sample %r (the name of the file): their reads are summed as "
                        "one sample; rename a file, or label its records ;sample=NAME, to keep them apart",
                        first, source, sample)
        return sample

    def _record_of(self, feature: str) -> tuple[int, Lineage] | None:
        """The record a table's feature names (its id, or its barcode as given, else as clibd
        turned it round), or None."""
        for table in (self._by_feature, self._turned):
            for key in (feature, feature.upper()):
                if key in table:
                    return table[key]
        return None

    def finish(self) -> Tally:
        """The tally; with a counts table, its reads by the classification of each feature."""
        if self.counts is not None:
            unclassified, matched = 0, set()
            for feature, reads in self.counts.reads.items():
                found = self._record_of(feature)
                if found is None:
                    unclassified += 1
                    lineage = (None,) * len(RANKS)
                else:
                    matched.add(found[0])
                    lineage = found[1]
                for sample, count in zip(self.counts.samples, reads):
                    self.tally.add(sample, lineage, count)
            if unclassified:
                log.warning("%s of the counts table not among the classified records: reads counted as "
                            "unassigned", counted(unclassified, "feature"))
            if len(matched) < self._records:
                log.warning("%s not in the counts table (by id or sequence, or repeating an earlier "
                            "record's): no reads counted",
                            counted(self._records - len(matched), "classified record"))
        return self.tally

    def write(self, path: str | Path, keep: Mapping[str | Path, str] | None = None) -> list[Path]:
        """Write the TSV, one Krona text per sample and the HTML page; returns their paths. None
        of them may be one of ``keep`` (the run's inputs and other outputs, see :func:`refuse_clashes`):
        UsageError, before anything is written."""
        from clibd_cli.abundance.html import render

        tally = self.finish()
        path, kronas, html = summary_files(path, tally.samples)
        refuse_clashes([path, *kronas.values(), html], keep or {})
        with text_output(path) as handle:
            handle.write("\t".join(COLUMNS) + "\n")
            for row in rows(tally):
                handle.write("\t".join(map(str, row)) + "\n")
        for sample, krona in kronas.items():
            with text_output(krona) as handle:
                handle.writelines(krona_lines(tally, sample))
        with text_output(html) as handle:
            handle.write(render(tally))
        return [path, *kronas.values(), html]


def summary_files(path: str | Path, samples: Sequence[str] = ()) -> tuple[Path, dict[str, Path], Path]:
    """The files ``--summary PATH`` writes: the TSV (compressed if ``PATH`` ends in ``.gz``, ``.bz2``
    or ``.xz``), a Krona text per sample (samples whose names clean to the same file name get ``-2``,
    ``-3``, ...), the HTML page."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() in PACKERS else path  # summary.tsv.gz: summary.html
    stem = stem.with_suffix("") if stem.suffix.lower() in (".tsv", ".txt") else stem
    kronas: dict[str, Path] = {}
    taken: set[str] = set()
    for sample in samples:
        name, n = _safe(sample), 1
        while (name if n == 1 else f"{name}-{n}") in taken:
            n += 1
        name = name if n == 1 else f"{name}-{n}"
        taken.add(name)
        kronas[sample] = stem.with_name(f"{stem.name}.{name}.krona.txt")
    return path, kronas, stem.with_name(f"{stem.name}.html")


def refuse_clashes(outputs: Sequence[Path], keep: Mapping[str | Path, str]) -> None:
    """UsageError (exit 2) if one of ``outputs`` (the table first) is one of ``keep``, files the run
    reads or writes (``-``, standard output, is none), each with what it is to the run."""
    kept = {Path(os.path.realpath(k)): role for k, role in keep.items() if str(k) != "-"}
    for out in outputs:
        role = kept.get(Path(os.path.realpath(out)))
        if role is not None:
            what = "the HTML page" if out.suffix == ".html" else "a sample's Krona text"
            writes = "" if out == outputs[0] else f" writes {out} ({what}), which"
            raise UsageError(f"--summary {outputs[0]}{writes} is {role}; give --summary another name")


def assigned_lineage(result) -> Lineage:
    """The labels a record is assigned (None below ``--min-confidence``; all None if invalid)."""
    if result.prediction is None:
        return (None,) * len(RANKS)
    assigned = result.prediction.assigned
    return tuple(assigned.get(rank) for rank in RANKS)


def sample_name(source: str) -> str:
    """``runs/site3.derep.fasta.gz`` -> ``site3.derep``; ``<stdin>`` -> ``stdin``."""
    name = Path(source).name.strip("<>")
    return _EXTENSIONS.sub("", name) or name


def rows(tally: Tally) -> list[tuple]:
    """The summary TSV's rows."""
    out = []
    for sample in tally.samples:
        for rank in RANKS:
            for lineage, reads, features in tally.at_rank(sample, rank):
                if lineage is None:
                    out.append((sample, rank, UNASSIGNED, "", reads, features))
                else:
                    text = qiime_taxon(dict(zip(RANKS, lineage)))
                    out.append((sample, rank, lineage[-1], text, reads, features))
    return out


def krona_lines(tally: Tally, sample: str) -> list[str]:
    """``reads<TAB>level...`` lines, one per distinct assigned lineage, most reads first; a rank
    skipped above the deepest assigned one is an empty field, so that each rank keeps its column
    (``ktImportText`` skips a nameless level, hanging the next name on the one above)."""
    reads: dict[tuple, int] = defaultdict(int)
    for lineage, count in tally.reads[sample].items():
        depth = max((i + 1 for i, name in enumerate(lineage) if name), default=0)
        reads[tuple(name or "" for name in lineage[:depth]) or ("Unassigned",)] += count
    return [f"{count}\t" + "\t".join(levels) + "\n"
            for levels, count in sorted(reads.items(), key=lambda item: (-item[1], item[0])) if count]


def _counter() -> defaultdict:
    return defaultdict(int)


def _safe(sample: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", sample)

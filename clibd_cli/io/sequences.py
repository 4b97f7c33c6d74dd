"""FASTA/FASTQ reading (files, ``-`` for stdin, gzip/bz2/xz) and SINTAX taxonomy headers.

A hand-written line reader: as fast as Biopython's SimpleFastaParser, with line numbers in
every error. Multi-line FASTA and multi-line FASTQ are accepted; FASTQ qualities are checked
for length and then dropped (clibd does not use them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clibd_cli.io.streams import display_name, open_text, reading
from models.errors import ClibdError

SINTAX_RANKS = {"d": "domain", "k": "kingdom", "p": "phylum", "c": "class", "o": "order",
                "f": "family", "g": "genus", "s": "species"}
_TAX = re.compile(r"(?:^|[;\s])tax=([^;]*)")
_SIZE = re.compile(r"(?:^|[;\s])size=(\d+)(?:;|\s|$)")
_SAMPLE = re.compile(r"(?:^|[;\s])sample=([^;\s]+)")
NUCLEOTIDES = "ACGTURYSWKMBDHVN-."  # IUPAC nucleotide codes, U, and alignment gaps
MIN_BASES = 100  # COI-5P barcodes are ~658 nt; under 100 unambiguous bases a call is noise


@dataclass(slots=True)
class SequenceRecord:
    """One FASTA/FASTQ record.

    ``id`` is the first word of the header, cut at the first ``;`` (USEARCH/SINTAX
    annotations such as ``;tax=...;`` or ``;size=3;``); ``description`` is the rest of the
    header after the id (annotations included); ``line`` is the header's line number.
    """

    id: str
    description: str
    seq: str
    line: int


def read_sequences(source: str | Path) -> Iterator[SequenceRecord]:
    """Yield the records of a FASTA or FASTQ file (``-`` = stdin), compressed or not.

    Raises ClibdError ``FILE:LINE: ...`` on malformed input. An empty input yields nothing.
    """
    name = display_name(source)
    with reading(source), open_text(source) as handle:
        lines = enumerate(handle, start=1)
        for number, line in lines:
            if line.strip():
                break
        else:
            return
        if line.startswith(">"):
            yield from _fasta(lines, name, number, line)
        elif line.startswith("@"):
            yield from _fastq(lines, name, number, line)
        else:
            raise ClibdError(f"{name}:{number}: expected a FASTA header ('>') or a FASTQ record ('@'), "
                             f"found {line.strip()[:40]!r}")


def parse_sintax_header(text: str) -> dict[str, str]:
    """The ranks of a SINTAX ``tax=`` annotation, e.g. ``;tax=o:Diptera,s:Aedes_albopictus;``.

    Returns ``{"order": "Diptera", "species": "Aedes albopictus"}`` (underscores read as
    spaces; d/k/p/c kept as domain/kingdom/phylum/class); ``{}`` when there is no ``tax=``.
    Raises ValueError on an entry without ``rank:`` prefix.
    """
    match = _TAX.search(text)
    if match is None:
        return {}
    ranks = {}
    for entry in match.group(1).split(","):
        entry = entry.strip()
        if not entry:
            continue
        letter, sep, value = entry.partition(":")
        if not sep or not letter:
            raise ValueError(f"taxonomy entry {entry!r} is not of the form rank:name (e.g. g:Aedes)")
        value = value.replace("_", " ").strip()
        if value:
            ranks[SINTAX_RANKS.get(letter.strip().lower(), letter.strip())] = value
    return ranks


def parse_abundance(text: str) -> tuple[int | None, str | None]:
    """The read count and sample of a VSEARCH/USEARCH header annotation such as
    ``;size=12;sample=site3;`` (dereplicated reads); None where absent."""
    size, sample = _SIZE.search(text), _SAMPLE.search(text)
    return (int(size.group(1)) if size else None), (sample.group(1) if sample else None)


def barcode_problem(barcode: str, min_bases: int = MIN_BASES) -> str | None:
    """Why a barcode cannot be classified (None if it can): empty, not DNA, too short."""
    if not barcode:
        return "empty sequence"
    upper = barcode.upper()
    foreign = sorted(set(upper) - set(NUCLEOTIDES))
    if foreign:
        shown = "".join(foreign[:8])
        return f"not a nucleotide sequence (contains {shown!r}; protein?)"
    bases = sum(upper.count(base) for base in "ACGTU")
    if bases < min_bases:
        return f"too short: {bases} unambiguous bases (at least {min_bases} needed)"
    return None


def _record(name: str, number: int, header: str, seq: str) -> SequenceRecord:
    text = header[1:].strip()
    word = text.split(None, 1)[0] if text else ""
    record_id = word.split(";", 1)[0]
    if not record_id:
        raise ClibdError(f"{name}:{number}: empty record id in header {header.strip()!r}")
    return SequenceRecord(record_id, text[len(record_id):].lstrip(" \t;"), seq, number)


def _fasta(lines, name: str, number: int, header: str) -> Iterator[SequenceRecord]:
    chunks: list[str] = []
    for line_number, line in lines:
        if line.startswith(">"):
            yield _record(name, number, header, "".join(chunks))
            number, header, chunks = line_number, line, []
        else:
            chunks.append(line.strip())
    yield _record(name, number, header, "".join(chunks))


def _fastq(lines, name: str, number: int, header: str) -> Iterator[SequenceRecord]:
    while True:
        seq: list[str] = []
        for line_number, line in lines:
            if line.startswith("+"):
                break
            seq.append(line.strip())
        else:
            raise ClibdError(f"{name}:{number}: FASTQ record ends before its '+' line")
        sequence = "".join(seq)
        quality = 0
        while quality < len(sequence):
            try:
                line_number, line = next(lines)
            except StopIteration:
                raise ClibdError(f"{name}:{line_number}: FASTQ quality shorter than the sequence "
                                 f"({quality} < {len(sequence)})") from None
            quality += len(line.strip())
        if quality != len(sequence):
            raise ClibdError(f"{name}:{line_number}: FASTQ quality length {quality} differs from "
                             f"sequence length {len(sequence)}")
        yield _record(name, number, header, sequence)
        for number, header in lines:
            if header.strip():
                break
        else:
            return
        if not header.startswith("@"):
            raise ClibdError(f"{name}:{number}: expected a FASTQ header starting with '@', "
                             f"found {header.strip()[:40]!r}")

"""FASTA/FASTQ reading (files, ``-`` for stdin, gzip/bz2/xz), header annotations and barcode checks.

A hand-written line reader: as fast as Biopython's SimpleFastaParser, with line numbers in
every error. Multi-line FASTA and multi-line FASTQ are accepted (spaces between the bases of a FASTA
line are dropped, as vsearch and Biopython drop them); FASTQ qualities are checked
for length and then dropped (clibd does not use them). Memory stays bounded whatever the input:
lines are read in pieces and a record's sequence is kept only up to ``MAX_LENGTH`` + 1
characters (enough for :func:`barcode_problem` to call it too long). Stretches and reads with
sequencing errors made from whole barcodes (:func:`random_stretch`, :func:`with_errors`) stand for
the partial barcodes and raw reads users send, where confidences and floors are fitted.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clibd_cli.io.streams import display_name, open_text, reading
from models.errors import ClibdError, counted

_SIZE = re.compile(r"(?:^|[;\s])size=([^;\s]*)")
_COUNT = re.compile(r"[0-9]+")  # a size= that is a read count
_SAMPLE = re.compile(r"(?:^|[;\s])(?:sample|barcodelabel)=([^;\s]+)")  # vsearch reads either
NUCLEOTIDES = "ACGTURYSWKMBDHVN-."  # IUPAC nucleotide codes, U, and alignment gaps
BASES = "ACGT"
_OTHER_BASES = {base: BASES.replace(base, "") for base in BASES}  # what a substitution may give
MIN_BASES = 100  # COI-5P barcodes are ~658 nt; under 100 unambiguous bases a call is noise
MAX_LENGTH = 5000  # characters of a record; COI-5P barcodes (and their alignments) are under 2 kb
_LINE_PIECE = 1 << 16  # lines are read this many characters at a time
_CLEAN = str.maketrans("Uu", "Tt", "-.")  # RNA read as DNA; alignment gaps dropped
_NOT_NUCLEOTIDE = str.maketrans("", "", NUCLEOTIDES)  # what a barcode holds besides nucleotides is left
_NOT_BASE = str.maketrans("", "", "ACGTUacgtu")  # what it holds besides bases is left (counted in one C pass)
_COMPLEMENT = str.maketrans("ACGTUMRWSYKVHDBNacgtumrwsykvhdbn", "TGCAAKYWSRMBDHVNtgcaakywsrmbdhvn")


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


def read_sequences(source: str | Path, max_length: int | None = MAX_LENGTH) -> Iterator[SequenceRecord]:
    """Yield the records of a FASTA or FASTQ file (``-`` = stdin), compressed or not.

    A sequence longer than ``max_length`` characters is cut to ``max_length + 1`` while it is
    read (``None``: kept whole). Raises ClibdError ``FILE:LINE: ...`` on malformed input. An
    empty input yields nothing.
    """
    name = display_name(source)
    keep = sys.maxsize if max_length is None else max_length + 1
    at = [0]  # the line being read, for the message of a truncated archive
    with reading(source, at), open_text(source) as handle:
        lines = _lines(handle, -1 if max_length is None else _LINE_PIECE, at)
        for number, line, _ in lines:
            if line.strip():
                break
        else:
            return
        if line.startswith(">"):
            yield from _fasta(lines, name, number, line, keep)
        elif line.startswith("@"):
            yield from _fastq(lines, name, number, line, keep)
        else:
            shown = line.rstrip("\r\n")[:40]
            hint = "; '>' or '@' must be the line's first character" if shown.lstrip()[:1] in (">", "@") else ""
            raise ClibdError(f"{name}:{number}: expected a FASTA header ('>') or a FASTQ record ('@'), "
                             f"found {shown!r}{hint}")


def parse_abundance(text: str) -> tuple[int | None, str | None]:
    """The read count and sample of a VSEARCH/USEARCH header annotation such as
    ``;size=12;sample=site3;`` (dereplicated reads; USEARCH's older ``barcodelabel=site3``
    names a sample too, as for ``vsearch --otutabout``); None where absent, and for a ``size=``
    that is not a whole number (:func:`bad_size`)."""
    size, sample = _SIZE.search(text), _SAMPLE.search(text)
    count = size.group(1) if size else ""
    return (int(count) if _COUNT.fullmatch(count) else None), (sample.group(1) if sample else None)


def bad_size(text: str) -> str | None:
    """The value of a ``size=`` annotation that is not a whole number (``abc``, ``1.5``, empty), or None."""
    size = _SIZE.search(text)
    return size.group(1) if size and not _COUNT.fullmatch(size.group(1)) else None


def clean_barcode(barcode: str) -> str:
    """The barcode as the encoders read it: RNA's U as T, alignment gaps (``-``, ``.``) dropped."""
    return barcode.translate(_CLEAN)


def reverse_complement(barcode: str) -> str:
    """The other strand, read 5' to 3' (IUPAC codes complemented)."""
    return barcode.translate(_COMPLEMENT)[::-1]


def unambiguous_bases(barcode: str) -> int:
    """How many of the barcode's letters are A, C, G, T or U (either case)."""
    return len(barcode) - len(barcode.translate(_NOT_BASE))


def random_stretch(barcode: str, rng: np.random.Generator, shortest: int, longest: int | None = None) -> str:
    """A random stretch of ``barcode``, its length uniform between ``shortest`` and ``longest``
    (the whole barcode if None; never more than the barcode): the partial barcodes users send
    (mini-barcodes, metabarcoding amplicons, failed reads), made from whole ones."""
    top = len(barcode) if longest is None else min(longest, len(barcode))
    length = int(rng.integers(min(shortest, top), top + 1))
    start = int(rng.integers(0, len(barcode) - length + 1))
    return barcode[start:start + length]


def with_errors(barcode: str, rate: float, rng: random.Random) -> str:
    """``barcode`` with sequencing errors: each base substituted, followed by an inserted base,
    or deleted, with probability ``rate / 3`` each (as raw nanopore reads have them); read in
    upper case, so that a lower-case (soft-masked) barcode gets the errors its upper-case twin gets."""
    if rate <= 0:
        return barcode
    read, out, kept, draw_next = barcode.upper(), [], 0, rng.random
    for at, base in enumerate(read):
        draw = draw_next() * 3 / rate  # as it always was: u * (3 / rate) rounds some draws the other way
        if draw < 3:  # an error at this base: the bases since the last one kept as they are
            out.append(read[kept:at])
            kept = at + 1
            if draw < 1:
                out.append(rng.choice(_OTHER_BASES.get(base, BASES)))
            elif draw < 2:
                out.append(base + rng.choice(BASES))
    out.append(read[kept:])
    return "".join(out)


def barcode_problem(barcode: str, min_bases: int = MIN_BASES) -> str | None:
    """Why a barcode cannot be classified (None if it can): empty, too long, not DNA, too short."""
    if not barcode:
        return "empty sequence"
    if len(barcode) > MAX_LENGTH:
        return (f"too long: over {MAX_LENGTH:,} characters (the cap; COI-5P barcodes are under 2 kb); "
                "cut out the barcode region")
    upper = barcode.upper()
    foreign = sorted(set(upper.translate(_NOT_NUCLEOTIDE)))
    if foreign:
        shown = "".join(foreign[:8])
        if set(foreign) <= set(" \t"):  # a FASTQ read or a table's barcode (FASTA lines drop them: _fasta)
            return "not a plain nucleotide sequence (spaces inside it; give the bases alone)"
        if set(foreign) <= set("0123456789 \t/"):  # GenBank's ORIGIN block: numbered, spaced
            return (f"not a plain nucleotide sequence (contains {shown!r}: GenBank-style numbering? "
                    "give the bases alone, as FASTA)")
        if "\x00" in foreign:
            return "holds NUL bytes (\\x00): a damaged file (a copy cut short, a disk that filled)?"
        if ">" in foreign:
            return ("holds a '>': two records run together on one line (a file without a final newline "
                    "joined to the next: cat a.fa b.fa?)")
        return f"not a nucleotide sequence (contains {shown!r}; protein?)"
    bases = unambiguous_bases(upper)
    if bases < min_bases:
        return f"too short: {counted(bases, 'unambiguous base')} (at least {min_bases} needed)"
    return None


def checked_barcode(barcode: str, min_bases: int = MIN_BASES) -> tuple[str, str | None]:
    """``(barcode, problem)``: the barcode as the encoders read it (:func:`clean_barcode`) and
    None, or as given and why it cannot be classified (:func:`barcode_problem`, before and
    after cleaning: gaps do not count as bases)."""
    problem = barcode_problem(barcode, min_bases)
    if problem:
        return barcode, problem
    cleaned = clean_barcode(barcode)
    problem = barcode_problem(cleaned, min_bases)
    return (barcode, problem) if problem else (cleaned, None)


def _record(name: str, number: int, header: str, seq: str) -> SequenceRecord:
    text = header[1:].strip()
    word = text.split(None, 1)[0] if text else ""
    record_id = word.split(";", 1)[0]
    if not record_id:
        raise ClibdError(f"{name}:{number}: empty record id in header {header.strip()!r}")
    if "\x00" in header:  # no output can hold it (HDF5 strings, TSV readers)
        raise ClibdError(f"{name}:{number}: a NUL byte (\\x00) in the header: is the file damaged (a copy cut "
                         "short, a disk that filled)?")
    return SequenceRecord(record_id, text[len(record_id):].lstrip(" \t;"), seq, number)


def _lines(handle, piece: int, at: list[int]) -> Iterator[tuple[int, str, int]]:
    """``(number, line, size)``: each line cut to its first ``piece`` characters (the rest is read
    and dropped, so a 200 Mb line never sits in memory; -1: whole) and its full size without
    surrounding white space. ``at[0]`` follows the number of the last line read whole."""
    number = 0
    while line := handle.readline(piece):
        number += 1
        size, last = len(line), line
        while last[-1] not in "\r\n":
            last = handle.readline(piece)
            if not last:
                break
            size += len(last)
        at[0] = number
        if last is line:
            yield number, line, len(line.strip())
        else:
            leading, trailing = len(line) - len(line.lstrip()), len(last) - len(last.rstrip())
            yield number, line, size - leading - trailing


def _fasta(lines, name: str, number: int, header: str, keep: int) -> Iterator[SequenceRecord]:
    chunks: list[str] = []
    size = 0
    for line_number, line, _ in lines:
        if line.startswith(">"):
            yield _record(name, number, header, "".join(chunks))
            number, header, chunks, size = line_number, line, [], 0
        elif line.startswith("@"):  # else the FASTQ records that follow are one invalid "protein?" record
            raise ClibdError(f"{name}:{line_number}: a FASTQ record ({line.strip()[:40]!r}) after FASTA "
                             "records (cat a.fasta b.fastq?); give each file as an input of its own")
        elif size < keep:  # past the cap the rest of the record is read and dropped
            piece = line.strip()
            if " " in piece or "\t" in piece:  # ACGT ACGT: spaces between bases dropped, as vsearch and Biopython do
                piece = "".join(piece.split())
            piece = piece[: keep - size]
            chunks.append(piece)
            size += len(piece)
    yield _record(name, number, header, "".join(chunks))


def _fastq(lines, name: str, number: int, header: str, keep: int) -> Iterator[SequenceRecord]:
    pending = None  # a line read ahead: the next record's header after a short quality

    def next_line():
        nonlocal pending
        item, pending = pending, None
        return item if item is not None else next(lines, None)

    while True:
        seq: list[str] = []
        length = kept = 0
        while (item := next_line()) is not None and not item[1].startswith("+"):
            length += item[2]
            if kept < keep:
                seq.append(item[1].strip()[: keep - kept])
                kept += len(seq[-1])
        if item is None:
            raise ClibdError(f"{name}:{number}: FASTQ record ends before its '+' line")
        quality, quality_line = 0, item[0]
        while quality < length:
            item = next_line()
            if item is not None and item[1].startswith("@") and quality and quality + item[2] != length:
                pending = item  # the next record's header (a quality line would end the record exactly)
                item = None
            if item is None:
                raise ClibdError(f"{name}:{quality_line}: FASTQ quality shorter than the sequence "
                                 f"({quality} < {counted(length, 'character')}); each base needs one "
                                 "quality character")
            quality, quality_line = quality + item[2], item[0]
        if quality != length:
            raise ClibdError(f"{name}:{quality_line}: FASTQ quality length {quality} differs from "
                             f"sequence length {length}")
        yield _record(name, number, header, "".join(seq))
        while (item := next_line()) is not None and not item[1].strip():
            pass
        if item is None:
            return
        number, header = item[0], item[1]
        if not header.startswith("@"):
            raise ClibdError(f"{name}:{number}: expected a FASTQ header starting with '@', "
                             f"found {header.strip()[:40]!r}")

"""FASTA/FASTQ reading: formats, compression (files and stdin), SINTAX headers, errors."""

import bz2
import gzip
import io
import lzma
import re
import sys

import pytest

from clibd_cli.io.lineages import parse_sintax_header
from clibd_cli.io.sequences import read_sequences
from models.errors import ClibdError

FASTA = """>CNRGH063-15;tax=o:Lepidoptera,f:Tortricidae,g:Acleris,s:Acleris_chalybeana; BOLD:AAA7667
ACATTATATTTTATTTTTGG
AATTTGAGCAGG
>q2 second record, with words

>q3
acgtnn
"""
FASTQ = "@r1 run=7\nACGT\n+\nIIII\n@r2\nAC\nGT\n+r2\nII\nI#\n"


def ids_and_seqs(records):
    return [(r.id, r.seq) for r in records]


def test_fasta_multiline_ids_descriptions_and_lines(tmp_path):
    path = tmp_path / "a.fasta"
    path.write_text(FASTA)
    records = list(read_sequences(path))
    assert ids_and_seqs(records) == [("CNRGH063-15", "ACATTATATTTTATTTTTGGAATTTGAGCAGG"), ("q2", ""),
                                     ("q3", "acgtnn")]
    assert records[0].description.startswith("tax=o:Lepidoptera")
    assert records[1].description == "second record, with words"
    assert [r.line for r in records] == [1, 4, 6]


def test_fastq_single_and_multiline(tmp_path):
    path = tmp_path / "a.fq"
    path.write_text(FASTQ)
    assert ids_and_seqs(read_sequences(path)) == [("r1", "ACGT"), ("r2", "ACGT")]
    path.write_text("@r3\nACGTAC\nGT\n+\n@@@I\nIIII\n@r4\nAC\n+\n@I\n")  # '@' is quality 31, also first on a line
    assert ids_and_seqs(read_sequences(path)) == [("r3", "ACGTACGT"), ("r4", "AC")]


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress])
def test_compression_detected_from_bytes_not_name(tmp_path, compress):
    path = tmp_path / "no_suffix.txt"
    path.write_bytes(compress(FASTA.encode()))
    assert len(list(read_sequences(path))) == 3


@pytest.mark.parametrize("data", [FASTA.encode(), gzip.compress(FASTA.encode())])
def test_stdin_plain_and_gzip(monkeypatch, data):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert [r.id for r in read_sequences("-")] == ["CNRGH063-15", "q2", "q3"]


def test_empty_input_yields_nothing(tmp_path):
    path = tmp_path / "empty.fasta"
    path.write_text("\n\n")
    assert list(read_sequences(path)) == []


@pytest.mark.parametrize("text, where, what", [
    ("ACGT\n>a\nAC\n", ":1:", "expected a FASTA header"),
    ("  >a\nAC\n", ":1:", "found '  >a'; '>' or '@' must be the line's first character"),
    (">a\nAC\n>\nAC\n", ":3:", "empty record id"),
    ("@r1\nACGT\n+\nII\n", ":4:", "shorter than the sequence"),
    ("@r1\nACGT\n+\nIIIII\n", ":4:", "differs from sequence length"),
    ("@r1\nACGT\nIIII\n", ":1:", "ends before its '+' line"),
    ("@r1\nAC\n+\nII\nr2\nAC\n+\nII\n", ":5:", "expected a FASTQ header"),
    (">a\nAC\n@r1\nAC\n+\nII\n", ":3:", "a FASTQ record ('@r1') after FASTA records (cat a.fasta b.fastq?)"),
    (">a\nAC\n>b\x00\x00c\nAC\n", ":3:", "a NUL byte (\\x00) in the header: is the file damaged"),
])
def test_malformed_input_names_file_and_line(tmp_path, text, where, what):
    path = tmp_path / "bad.fastx"
    path.write_text(text)
    with pytest.raises(ClibdError, match=re.escape(what)) as error:
        list(read_sequences(path))
    assert f"{path}{where}" in str(error.value)


def test_truncated_gzip_and_binary_input_are_clear_errors(tmp_path):
    truncated = tmp_path / "cut.fasta.gz"
    truncated.write_bytes(gzip.compress(FASTA.encode() * 50)[:60])
    with pytest.raises(ClibdError, match="unreadable compressed file"):
        list(read_sequences(truncated))
    binary = tmp_path / "photo.fasta"
    binary.write_bytes(b">a\n" + bytes(range(128, 256)))
    with pytest.raises(ClibdError, match="not UTF-8 text"):
        list(read_sequences(binary))
    # a Latin-1 byte far down a long file is named on its own line, not the block's first
    latin = tmp_path / "latin.fasta"
    latin.write_bytes(FASTA.encode() * 300 + b">M\xfcller 1\nACGT\n")
    line = FASTA.count("\n") * 300 + 1
    with pytest.raises(ClibdError, match=rf"latin.fasta:{line}: not UTF-8 text \(byte b'\\xfc'\)"):
        list(read_sequences(latin))


def test_sintax_header_parsing():
    assert parse_sintax_header("tax=k:Animalia,p:Arthropoda,c:Insecta,o:Diptera,f:Culicidae,g:Aedes,"
                               "s:Aedes_albopictus;") == ({
        "kingdom": "Animalia", "phylum": "Arthropoda", "class": "Insecta", "order": "Diptera",
        "family": "Culicidae", "genus": "Aedes", "species": "Aedes albopictus"}, [])
    assert parse_sintax_header("size=3;tax=o:Diptera,g:;") == ({"order": "Diptera"}, [])
    assert parse_sintax_header("tax=O:Diptera,x:Foo,t:,g:Aedes;") == ({"order": "Diptera", "genus": "Aedes"},
                                                                       ["x:", "t:"])
    assert parse_sintax_header("a plain description") == ({}, [])
    # a key that only ends in "tax" is another annotation, not SINTAX's (its value is no rank:name list)
    assert parse_sintax_header("AB123;ncbi_tax=7160;size=3;") == ({}, [])
    # a lineage with its confidences, as vsearch --sintax and clibd classify write it, names the
    # same taxa (it made an order 'Diptera(1.00)' beside 'Diptera')
    assert parse_sintax_header("tax=o:Diptera(1.00),g:Aedes(0.9),s:Aedes_albopictus( 0.41 );") == (
        {"order": "Diptera", "genus": "Aedes", "species": "Aedes albopictus"}, [])
    # ranks written with ';' between them are read as with ',' (only the order was kept), and an
    # annotation after them is not a rank
    assert parse_sintax_header("tax=o:Diptera;f:Culicidae;g:Aedes;s:Aedes_albopictus;size=3;") == (
        {"order": "Diptera", "family": "Culicidae", "genus": "Aedes", "species": "Aedes albopictus"}, [])
    assert parse_sintax_header("tax=o:Diptera,f:Culicidae;sample=S1;") == (
        {"order": "Diptera", "family": "Culicidae"}, [])
    with pytest.raises(ValueError, match="rank:name"):
        parse_sintax_header("tax=Diptera,Culicidae")


def test_barcode_problems_say_what_the_text_looks_like():
    from clibd_cli.io.sequences import barcode_problem

    assert "GenBank-style numbering" in barcode_problem("1 aactttatat tttatttttg 61 gtgcttgagc " * 10)
    assert "GenBank-style numbering" in barcode_problem("1aactttatattttatttttg61gtgcttgagc" * 10)  # as FASTA reads it
    spaced = barcode_problem("ACGT ACGT\tACGT " * 20)  # no digits: no numbering (a FASTQ read, a table's barcode)
    assert spaced == "not a plain nucleotide sequence (spaces inside it; give the bases alone)"
    assert "protein?" in barcode_problem("MKVLAAGIVGLLLAAQPAMA" * 10)
    assert "two records run together" in barcode_problem("ACGT" * 50 + ">q2 Aedes" + "ACGT" * 50)
    assert "a damaged file" in barcode_problem("ACGT" * 50 + "\x00" * 4096)
    assert barcode_problem("ACGT" * 50) is None


def test_min_bases_is_the_least_a_barcode_may_have():
    from clibd_cli.io.sequences import MIN_BASES, barcode_problem

    assert barcode_problem("ACGT" * (MIN_BASES // 4)) is None  # exactly MIN_BASES: classified
    assert barcode_problem("ACGT" * (MIN_BASES // 4) + "N") is None
    assert barcode_problem("ACGT" * (MIN_BASES // 4 - 1) + "ACG" + "N" * 50) == \
        f"too short: {MIN_BASES - 1} unambiguous bases (at least {MIN_BASES} needed)"


def test_size_and_sample_are_whole_annotation_keys():
    """``insertsize=250`` or ``subsample=x`` are other annotations, not a read count or a sample;
    ``size=`` and ``sample=`` count first in the header or after ``;`` or white space."""
    from clibd_cli.io.sequences import bad_size, parse_abundance

    assert parse_abundance(";insertsize=250;subsample=x;") == (None, None)
    assert bad_size(";insertsize=abc;") is None
    assert parse_abundance("size=3;sample=pond") == (3, "pond")
    assert parse_abundance("run7 size=4 barcodelabel=site2") == (4, "site2")


def test_a_truncated_archive_names_the_line_it_breaks_off_in(tmp_path):
    """Every whole line before the cut is read; the error names the next one, the line that
    breaks off."""
    import zlib

    data = gzip.compress(FASTA.encode() * 2000)
    cut = data[:len(data) * 2 // 3]
    (tmp_path / "cut.fasta.gz").write_bytes(cut)
    whole_lines = zlib.decompressobj(wbits=31).decompress(cut).count(b"\n")
    read = []
    with pytest.raises(ClibdError, match=rf"cut.fasta.gz:{whole_lines + 1}: unreadable compressed file"):
        read.extend(read_sequences(tmp_path / "cut.fasta.gz"))
    assert 0 < len(read) < 2000 * FASTA.count(">")
    bzip2 = bz2.compress(FASTA.encode() * 2000)  # one block: nothing is read before the cut
    (tmp_path / "cut.fasta.bz2").write_bytes(bzip2[:len(bzip2) // 2])
    with pytest.raises(ClibdError, match=r"cut\.fasta\.bz2:1: unreadable compressed file"):
        list(read_sequences(tmp_path / "cut.fasta.bz2"))


def test_barcodes_are_cleaned_in_either_case():
    """RNA's U is read as T in lower case too (a soft-masked RNA barcode), gaps of both kinds are
    dropped, and a barcode given with them is classified as cleaned."""
    from clibd_cli.io.sequences import checked_barcode, clean_barcode

    assert clean_barcode("ACGU-a.cgu") == "ACGTacgt"
    aligned = "AC-GU.acgu" * 30
    assert checked_barcode(aligned) == ("ACGTacgt" * 30, None)


def test_reverse_complement_of_every_iupac_code_in_either_case():
    """A query turned to the reference's strand keeps its soft-masking and its ambiguity codes."""
    from clibd_cli.io.sequences import reverse_complement

    assert reverse_complement("ACGTUMRWSYKVHDBN") == "NVHDBMRSWYKAACGT"
    assert reverse_complement("acgtumrwsykvhdbn") == "nvhdbmrswykaacgt"
    assert reverse_complement("AacCgGtTN-") == "-NAaCcGgtT"


def test_lower_case_bases_count_as_bases():
    """Soft-masked barcodes are held to the floors of their length, not of an empty barcode."""
    from clibd_cli.io.sequences import unambiguous_bases

    assert unambiguous_bases("acgtuACGTUnN-.") == 10


def test_the_length_cap_is_inclusive():
    from clibd_cli.io.sequences import MAX_LENGTH, barcode_problem

    assert barcode_problem("ACGT" * (MAX_LENGTH // 4)) is None  # exactly MAX_LENGTH characters
    assert barcode_problem("ACGT" * (MAX_LENGTH // 4) + "A").startswith("too long")


def test_windows_line_ends_and_stray_spaces_are_not_bases(tmp_path):
    """A FASTA saved on Windows (CRLF) or with indented lines reads as the same bases."""
    from clibd_cli.io.sequences import MAX_LENGTH, barcode_problem

    path = tmp_path / "crlf.fasta"
    path.write_bytes(b">a;tax=o:Diptera;\r\nACGT \r\n  acgt\r\n>b\r\nAC\r\n")
    assert ids_and_seqs(read_sequences(path)) == [("a", "ACGTacgt"), ("b", "AC")]
    path.write_text(">long\n" + "ACGT\n" * (MAX_LENGTH // 4) + "A\n")  # one base over the cap, read line by line
    assert barcode_problem(next(read_sequences(path)).seq).startswith("too long")


def test_spaces_between_the_bases_of_a_fasta_line_are_dropped_as_vsearch_drops_them(tmp_path):
    """``ACGT ACGT`` on a FASTA line is read as ``ACGTACGT`` (vsearch and Biopython's SeqIO read it so;
    it was unusable, called GenBank-style numbering); a FASTQ read keeps them (vsearch refuses it), and
    is unusable for what it is, GenBank numbering in a FASTA for what that is."""
    from clibd_cli.io.sequences import MAX_LENGTH, barcode_problem

    path = tmp_path / "spaced.fasta"
    path.write_text(">a\nACGT ACGT\tACGT \n AC GT\n>gb\n1 aactttatat tttatttttg\n")
    (a, gb) = read_sequences(path)
    assert (a.seq, gb.seq) == ("ACGTACGTACGTACGT", "1aactttatattttatttttg")
    assert "GenBank-style numbering" in barcode_problem(gb.seq)
    path.write_text(">long\n" + "ACGT ACGT\n" * (MAX_LENGTH // 8) + "A\n")  # the cap counts bases, not spaces
    assert barcode_problem(next(read_sequences(path)).seq).startswith("too long")
    fastq = tmp_path / "spaced.fq"
    fastq.write_text("@r\nACGT ACGT\n+\nIIIIIIIII\n")
    assert "spaces inside it" in barcode_problem(next(read_sequences(fastq)).seq)


def test_a_soft_masked_barcode_gets_the_errors_of_its_upper_case_twin():
    import random

    from clibd_cli.io.sequences import with_errors

    barcode = "ACGTTGCAAT" * 20
    read = with_errors(barcode.lower(), 0.3, random.Random(7))
    assert read == with_errors(barcode, 0.3, random.Random(7)) and read.isupper() and read != barcode


def test_each_error_is_a_substitution_a_base_inserted_after_or_a_deletion():
    """``with_errors`` reads a draw under ``rate / 3`` as a substitution, under ``2 rate / 3`` as
    the base followed by an inserted one, under ``rate`` as a deletion."""
    from clibd_cli.io.sequences import with_errors

    class Drawn:  # each base's draw as given; a new base: the first it may be
        def __init__(self, draws):
            self.random = iter(draws).__next__

        def choice(self, bases):
            return bases[0]

    assert with_errors("ACGT", 0.3, Drawn([0.05, 0.15, 0.25, 0.9])) == "CCAT"
    assert with_errors("TTT", 0.3, Drawn([0.9, 0.15, 0.9])) == "TTAT"


def test_a_random_stretch_takes_every_length_and_start_the_barcode_allows():
    """Partial barcodes made from whole ones (calibration, sketch floors, training crops) cover
    every length from ``shortest`` to ``longest`` inclusive, the whole barcode among them, and
    every place a stretch of that length fits, the last included."""
    import numpy as np

    from clibd_cli.io.sequences import random_stretch

    barcode = "ACGTTGCAAT"  # each stretch of 3 or more bases occurs once: its start is known
    rng = np.random.default_rng(0)
    cuts = [random_stretch(barcode, rng, 3, 6) for _ in range(2000)]
    placed = {(barcode.index(cut), len(cut)) for cut in cuts}
    assert placed == {(start, length) for length in range(3, 7) for start in range(len(barcode) - length + 1)}
    assert {len(random_stretch(barcode, rng, 8)) for _ in range(300)} == {8, 9, 10}  # longest None: up to whole
    assert random_stretch(barcode, rng, 3, 50) in barcode  # longest over the barcode: at most the whole
    assert random_stretch(barcode, rng, 20) == barcode  # shorter than the shortest stretch: left whole
    assert random_stretch(barcode, rng, 10, 10) == barcode

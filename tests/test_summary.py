"""``clibd classify --summary``: reads and features per taxon from ``;size=N`` headers or a
``--counts`` table; the totals equal the input's reads; Krona text and a self-contained HTML
page (rendered in headless Chromium when it is installed)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import subprocess
from collections import defaultdict

import pytest
from fixtures.specimens import error_line, run, specimens, tsv, write_fasta
from fixtures.programs import require_programs

from models.errors import ClibdError

RANKS = ("order", "family", "genus", "species")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A k-mer index; two samples of dereplicated barcodes (``;size=N``), one gzipped, with a
    record too short to classify; clibd's TSV for each record."""
    root = tmp_path_factory.mktemp("summary")
    records = specimens(n_species=6, per_species=4, unnamed=2)
    queries = records[::3]
    reference = [r for r in records if r not in queries]
    ref_fa = write_fasta(root / "ref.fa", reference)
    built = run("-q", "index", "-m", "kmer", "-k", "5", ref_fa, "-o", root / "index")
    assert built.exit_code == 0, built.stderr
    sizes = {}
    texts = {"siteA": "", "siteB": ""}
    for i, r in enumerate(queries):
        sample = "siteA" if i % 2 == 0 else "siteB"
        sizes[r.id] = (sample, 3 * i + 1)
        texts[sample] += f">{r.id};size={3 * i + 1};\n{r.barcode}\n"
    texts["siteB"] += ">short;size=5;\nACGTACGTACGT\n"
    sizes["short"] = ("siteB", 5)
    (root / "siteA.derep.fasta").write_text(texts["siteA"])
    (root / "siteB.fa.gz").write_bytes(gzip.compress(texts["siteB"].encode()))
    inputs = [root / "siteA.derep.fasta", root / "siteB.fa.gz"]
    (root / "out").mkdir()
    result = run("-q", "classify", "--index", root / "index", *inputs, "--summary", root / "out" / "run.tsv")
    assert result.exit_code == 0, result.stderr
    return root, inputs, sizes, tsv(result.stdout)


def expected_reads(rows, sizes, sample_of):
    """{(sample, rank, taxon): reads} computed from the per-record TSV (an unassigned row in
    every sample and rank, if only of 0 reads)."""
    want = defaultdict(int)
    for row in rows:
        reads, sample = sizes[row["query_id"]][1], sample_of(row["query_id"], sizes)
        for rank in RANKS:
            want[(sample, rank, "unassigned")] += 0
            want[(sample, rank, row[rank] or "unassigned")] += reads
    return dict(want)


def test_summary_counts_reads_and_features_per_taxon_and_sample(case):
    root, _, sizes, rows = case
    summary = tsv((root / "out" / "run.tsv").read_text())
    assert list(summary[0]) == ["sample", "rank", "taxon", "lineage", "reads", "features"]
    # samples named after the files (derep/FASTA/gzip extensions dropped)
    assert [s for s in dict.fromkeys(r["sample"] for r in summary)] == ["siteA.derep", "siteB"]
    got = {(r["sample"], r["rank"], r["taxon"]): int(r["reads"]) for r in summary}
    names = {"siteA": "siteA.derep", "siteB": "siteB"}
    assert got == expected_reads(rows, sizes, lambda q, s: names[s[q][0]])
    for sample, site in names.items():  # each rank's reads add up to the sample's reads
        total = sum(n for q, (s, n) in sizes.items() if s == sample)
        n_records = sum(1 for s, _ in sizes.values() if s == sample)
        for rank in RANKS:
            at_rank = [r for r in summary if r["sample"] == site and r["rank"] == rank]
            assert sum(int(r["reads"]) for r in at_rank) == total
            assert sum(int(r["features"]) for r in at_rank) == n_records
            assert at_rank[-1]["taxon"] == "unassigned"  # always present, last
    assert any(r["taxon"] != "unassigned" and r["rank"] == "species" for r in summary)
    genus = next(r for r in summary if r["rank"] == "genus" and r["taxon"] != "unassigned")
    assert genus["lineage"].startswith("o__")
    assert genus["lineage"].endswith(f"g__{genus['taxon'].replace(' ', '_')}")


def test_krona_text_per_sample_holds_every_read(case):
    root, _, sizes, rows = case
    for sample, name in (("siteA", "siteA.derep"), ("siteB", "siteB")):
        krona = (root / "out" / f"run.{name}.krona.txt").read_text()
        lines = [line.split("\t") for line in krona.splitlines()]
        assert sum(int(cells[0]) for cells in lines) == sum(n for s, n in sizes.values() if s == sample)
        expected = defaultdict(int)
        for row in rows:
            if sizes[row["query_id"]][0] == sample:
                named = [row[r] for r in RANKS]
                while named and not named[-1]:
                    named.pop()
                levels = tuple(named) or ("Unassigned",)
                expected[levels] += sizes[row["query_id"]][1]
        assert {tuple(cells[1:]): int(cells[0]) for cells in lines} == dict(expected)


def test_html_summary_is_self_contained_with_a_bar_per_rank_and_sample(case):
    root, *_ = case
    page = (root / "out" / "run.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    for outside in ("http:", "https:", "src=", "<script", "@import", "url(", "<link"):
        assert outside not in page
    bars = re.findall(r'<svg viewBox="0 0 1000 22"[^>]*aria-label="([^"]+)">(.*?)</svg>', page)
    assert [label for label, _ in bars] == ["siteA.derep", "siteB"] * len(RANKS)
    for _, svg in bars:  # the segments fill each bar exactly
        widths = [float(w) for w in re.findall(r'width="([\d.]+)"', svg)]
        assert sum(widths) == pytest.approx(1000, abs=0.05)
    for rank in RANKS:
        assert f"<h2>{rank}</h2>" in page


def test_html_summary_renders_in_headless_chromium(case, tmp_path):
    require_programs("chromium")
    from PIL import Image

    root, *_ = case
    shot = tmp_path / "summary.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1200,1400", (root / "out" / "run.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    colours = {rgb for _, rgb in Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)}
    assert (0x4E, 0x79, 0xA7) in colours  # the most abundant taxon's colour was painted
    assert (0x7F, 0x7F, 0x7F) in colours  # and the unassigned grey (the short record's reads)


def test_counts_table_gives_reads_per_sample(case, tmp_path):
    root, inputs, sizes, rows = case
    ids = [row["query_id"] for row in rows]
    table = ["# Constructed from biom file", "#OTU ID\tS1\tS2\ttaxonomy"]
    table += [f"{q}\t{i}\t{2 * i + 1}.0\tx" for i, q in enumerate(ids)]
    table.append("not_in_fasta\t7\t0\tx")  # a feature not classified: its reads count as unassigned
    (tmp_path / "otutab.tsv").write_text("\n".join(table) + "\n")
    result = run("classify", "--index", root / "index", *inputs, "--summary", tmp_path / "s.tsv",
                 "--counts", tmp_path / "otutab.tsv", "-o", tmp_path / "p.tsv")
    assert result.exit_code == 0, result.stderr
    assert "1 feature of the counts table not among the classified records" in result.stderr
    assert "not in the counts table (by id" not in result.stderr
    summary = tsv((tmp_path / "s.tsv").read_text())
    counts = {q: (i, 2 * i + 1) for i, q in enumerate(ids)}
    for column, sample in enumerate(("S1", "S2")):
        want = defaultdict(int)
        for row in rows:
            for rank in RANKS:
                want[(rank, row[rank] or "unassigned")] += counts[row["query_id"]][column]
        for rank in RANKS:
            want[(rank, "unassigned")] += 7 if sample == "S1" else 0
        got = {(r["rank"], r["taxon"]): int(r["reads"]) for r in summary if r["sample"] == sample}
        assert got == {k: v for k, v in want.items() if v or k[1] == "unassigned"}


def test_counts_from_dadas_sequence_table_match_by_sequence(case, tmp_path):
    root, inputs, sizes, rows = case
    fasta = {}
    for line_block in (inputs[0].read_text().split(">")[1:]):
        header, seq = line_block.split("\n", 1)
        fasta[header.split(";")[0]] = seq.replace("\n", "")
    # R: write.table(t(seqtab), sep="\t") -- quoted, no header cell above the row names
    lines = ['"A"\t"B"'] + [f'"{seq}"\t{n}\t0' for n, seq in enumerate(fasta.values(), start=1)]
    (tmp_path / "seqtab.tsv").write_text("\n".join(lines) + "\n")
    result = run("-q", "classify", "--index", root / "index", inputs[0], "--summary", tmp_path / "s.tsv",
                 "--counts", tmp_path / "seqtab.tsv", "-o", tmp_path / "p.tsv")
    assert result.exit_code == 0, result.stderr
    reads = {record_id: n for n, record_id in enumerate(fasta, start=1)}
    summary = tsv((tmp_path / "s.tsv").read_text())
    got = {(r["sample"], r["rank"], r["taxon"]): int(r["reads"]) for r in summary if r["sample"] == "A"}
    assert got == expected_reads([row for row in rows if row["query_id"] in reads],
                                 {q: ("A", n) for q, n in reads.items()}, lambda q, s: "A")
    assert {int(r["reads"]) for r in summary if r["sample"] == "B"} == {0}  # unassigned rows only


def test_classified_records_missing_from_the_counts_table_are_named(case, tmp_path):
    """A table that names only some of the records (another run's ids, a subset) says how many
    records got no reads, as it says how many of its features were not classified; a barcode given
    on both strands, each its own feature of a table keyed by sequence, is no such record."""
    root, inputs, sizes, rows = case
    ids = [row["query_id"] for row in rows]
    (tmp_path / "part.tsv").write_text("#OTU ID\tS1\n" + "".join(f"{q}\t3\n" for q in ids[:2]))
    result = run("classify", "--index", root / "index", *inputs, "--summary", tmp_path / "s.tsv",
                 "--counts", tmp_path / "part.tsv", "-o", tmp_path / "p.tsv")
    assert result.exit_code == 0, result.stderr
    assert f"{len(ids) - 2} classified records not in the counts table" in result.stderr
    seq = inputs[0].read_text().split("\n")[1]
    turned = seq.translate(str.maketrans("ACGT", "TGCA"))[::-1]
    (tmp_path / "both.fa").write_text(f">minus\n{turned}\n>plus\n{seq}\n")
    (tmp_path / "both.tsv").write_text(f"#OTU ID\tS1\n{turned}\t2\n{seq}\t5\n")
    result = run("classify", "--index", root / "index", tmp_path / "both.fa", "--summary", tmp_path / "b.tsv",
                 "--counts", tmp_path / "both.tsv", "-o", tmp_path / "b.predictions.tsv")
    assert result.exit_code == 0, result.stderr
    assert "not in the counts table (by id" not in result.stderr
    assert sum(int(r["reads"]) for r in tsv((tmp_path / "b.tsv").read_text()) if r["rank"] == "order") == 7


def test_two_files_of_one_name_are_one_sample_with_a_warning(case, tmp_path):
    """Samples are named after the files: per-sample folders holding files of one name
    (``a/derep.fasta``, ``b/derep.fasta``) are summed as one sample, and stderr says so."""
    root, inputs, sizes, rows = case
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "derep.fasta").write_text(inputs[0].read_text())
    files = [tmp_path / "a" / "derep.fasta", tmp_path / "b" / "derep.fasta"]
    result = run("classify", "--index", root / "index", *files, "--summary", tmp_path / "s.tsv",
                 "-o", tmp_path / "p.tsv")
    assert result.exit_code == 0, result.stderr
    assert f"{files[0]} and {files[1]} are both sample 'derep'" in result.stderr
    summary = tsv((tmp_path / "s.tsv").read_text())
    assert {r["sample"] for r in summary} == {"derep"}
    reads = sum(n for sample, n in sizes.values() if sample == "siteA")
    assert sum(int(r["reads"]) for r in summary if r["rank"] == "order") == 2 * reads
    alone = run("classify", "--index", root / "index", *inputs, "--summary", tmp_path / "t.tsv",
                "-o", tmp_path / "q.tsv")
    assert alone.exit_code == 0 and "are both sample" not in alone.stderr


def test_counts_errors_name_the_line(case, tmp_path):
    root, inputs, *_ = case
    (tmp_path / "bad.tsv").write_text("#OTU ID\tS1\nf1\t3\nf2\tlots\n")
    result = run("classify", "--index", root / "index", inputs[0], "--summary", tmp_path / "s.tsv",
                 "--counts", tmp_path / "bad.tsv")
    assert result.exit_code == 1
    assert error_line(result).endswith("bad.tsv:3: 'lots' is not a read count; "
                                       "reads must be whole numbers ≥ 0")
    alone = run("classify", "--index", root / "index", inputs[0], "--counts", tmp_path / "bad.tsv")
    assert alone.exit_code == 2 and "--counts goes with --summary" in alone.stderr


def test_counts_must_be_whole_reads(tmp_path):
    """biom's 3.0 is 3 reads; a share (0.25) or 2.5 reads is not a count, and would drop to 0 or 2."""
    from clibd_cli.abundance.counts import read_counts

    table = tmp_path / "counts.tsv"
    table.write_text("#OTU ID\tS1\tS2\nf1\t3.0\t0\n")
    assert read_counts(table).reads == {"f1": [3, 0]}
    for cell in ("0.25", "2.5"):
        table.write_text(f"#OTU ID\tS1\tS2\nf1\t3\t0\nf2\t1\t{cell}\n")
        with pytest.raises(ClibdError, match=rf"counts.tsv:3: '{cell}' is not a read count"):
            read_counts(table)


def test_a_header_starting_with_hash_is_the_header_whatever_its_first_cell(tmp_path):
    """``#OTU_ID`` (or any ``#`` first cell) with sample columns is the header; only a one-cell
    ``#`` line is a comment (biom's). It was dropped as a comment: the first feature's counts
    became the sample names and that feature was lost."""
    from clibd_cli.abundance.counts import read_counts

    table = tmp_path / "counts.tsv"
    for header in ("#OTU_ID", "#ASV_ID", "#OTU ID"):
        table.write_text(f"# Constructed from biom file\n{header}\tS1\tS2\nf1\t5\t0\nf2\t3\t1\n")
        counts = read_counts(table)
        assert (counts.samples, counts.reads) == (["S1", "S2"], {"f1": [5, 0], "f2": [3, 1]}), header


def test_counts_by_sequence_match_barcodes_read_reverse_complemented(case, tmp_path):
    """A table keyed by the sequences as the input gives them: a barcode the classifier turned
    round (its reverse complement was given) still finds its reads."""
    root, inputs, sizes, rows = case
    turn = str.maketrans("ACGT", "TGCA")
    fasta = {}
    for n, block in enumerate(inputs[0].read_text().split(">")[1:]):
        header, seq = block.split("\n", 1)
        seq = seq.replace("\n", "")
        fasta[header.split(";")[0]] = seq.translate(turn)[::-1] if n % 2 == 0 else seq
    (tmp_path / "q.fa").write_text("".join(f">{i}\n{s}\n" for i, s in fasta.items()))
    lines = ["#OTU ID\tA"] + [f"{seq}\t{n}" for n, seq in enumerate(fasta.values(), start=1)]
    (tmp_path / "seqtab.tsv").write_text("\n".join(lines) + "\n")
    result = run("-q", "classify", "--index", root / "index", tmp_path / "q.fa", "--summary", tmp_path / "s.tsv",
                 "--counts", tmp_path / "seqtab.tsv", "-o", tmp_path / "p.tsv")
    assert result.exit_code == 0, result.stderr
    strands = {row["query_id"]: row for row in tsv((tmp_path / "p.tsv").read_text())}
    assert len(fasta) >= 2 and all(row["genus"] for row in strands.values())
    summary = tsv((tmp_path / "s.tsv").read_text())
    unassigned = {int(r["reads"]) for r in summary if r["taxon"] == "unassigned" and r["rank"] == "genus"}
    assert unassigned == {0}


def test_summary_files_never_replace_the_predictions_or_an_input(case, tmp_path):
    """The HTML page next to --summary may not be -o (refused before any work), a Krona text
    may not be an input (refused before it is written), and samples whose names clean to one
    file name get a file each."""
    root, inputs, *_ = case
    clash = run("classify", "--index", root / "index", inputs[0], "-o", tmp_path / "rep.html",
                "--summary", tmp_path / "rep.tsv")
    assert clash.exit_code == 2 and error_line(clash) == (f"clibd: error: --summary {tmp_path / 'rep.tsv'} writes "
                                                          f"{tmp_path / 'rep.html'} (the HTML page), which is -o, "
                                                          "the predictions; give --summary another name")
    assert not (tmp_path / "rep.html").exists()
    fasta = tmp_path / "s.S1.krona.txt"
    fasta.write_text(inputs[0].read_text())
    first_id = fasta.read_text().split("\n", 1)[0][1:].split(";")[0]
    (tmp_path / "counts.tsv").write_text(f"#OTU ID\tS1\n{first_id}\t3\n")
    clash = run("classify", "--index", root / "index", fasta, "--counts", tmp_path / "counts.tsv",
                "--summary", tmp_path / "s.tsv", "-o", tmp_path / "p.tsv")
    assert clash.exit_code == 2 and f"s.S1.krona.txt (a sample's Krona text), which is the input {fasta};" in clash.stderr
    assert fasta.read_text() == inputs[0].read_text() and not (tmp_path / "p.tsv").exists()
    earlier = tmp_path / "u.S1.krona.txt"  # -o named as a Krona text: refused with exit 2, as it was
    earlier.write_text("an earlier run's predictions\n")
    clash = run("classify", "--index", root / "index", inputs[0], "--counts", tmp_path / "counts.tsv",
                "--summary", tmp_path / "u.tsv", "-o", earlier)
    assert clash.exit_code == 2 and "u.S1.krona.txt (a sample's Krona text), which is -o, the predictions" in clash.stderr
    assert earlier.read_text() == "an earlier run's predictions\n"
    (tmp_path / "two.tsv").write_text(f"#OTU ID\tx/y\tx_y\n{first_id}\t3\t4\n")
    both = run("-q", "classify", "--index", root / "index", inputs[0], "--counts", tmp_path / "two.tsv",
               "--summary", tmp_path / "t.tsv", "-o", tmp_path / "p2.tsv")
    assert both.exit_code == 0, both.stderr
    kronas = sorted(p.name for p in tmp_path.glob("t.*.krona.txt"))
    assert kronas == ["t.x_y-2.krona.txt", "t.x_y.krona.txt"]
    assert {p.read_text().split("\t")[0] for p in tmp_path.glob("t.*.krona.txt")} == {"3", "4"}


def test_samples_from_read_annotations_agree_with_vsearchs_otu_table(case, tmp_path):
    """Reads annotated ``;sample=NAME`` or ``;barcodelabel=NAME`` (both read by vsearch) are
    summarised as vsearch's ``--otutabout`` of the same reads, read back with ``--counts``."""
    require_programs("vsearch")
    root, inputs, *_ = case
    barcodes = {}
    for block in inputs[0].read_text().split(">")[1:]:
        header, seq = block.split("\n", 1)
        barcodes[header.split(";")[0]] = seq.replace("\n", "")
    (tmp_path / "derep.fa").write_text("".join(f">{i}\n{s}\n" for i, s in barcodes.items()))
    reads = [f">r{n}.{copy};{key}={sample}\n{seq}\n" for n, seq in enumerate(barcodes.values())
             for sample, key, copies in (("pond", "sample", n + 1), ("meadow", "barcodelabel", 2))
             for copy in range(copies)]
    (tmp_path / "reads.fa").write_text("".join(reads))
    subprocess.run(["vsearch", "--usearch_global", str(tmp_path / "reads.fa"), "--db", str(tmp_path / "derep.fa"),
                    "--id", "0.97", "--otutabout", str(tmp_path / "otutab.tsv"), "--threads", "1", "--quiet"],
                   check=True)
    summaries = []
    for name, args in (("annotations", [tmp_path / "reads.fa"]),
                       ("otutab", [tmp_path / "derep.fa", "--counts", tmp_path / "otutab.tsv"])):
        result = run("-q", "classify", "--index", root / "index", *args, "--prior-unseen", "0.5",
                     "--summary", tmp_path / f"{name}.summary.tsv", "-o", tmp_path / f"{name}.predictions.tsv")
        assert result.exit_code == 0, result.stderr
        summaries.append({(r["sample"], r["rank"], r["taxon"]): r["reads"] for r in
                          tsv((tmp_path / f"{name}.summary.tsv").read_text())})
    assert {sample for sample, *_ in summaries[0]} == {"pond", "meadow"}
    assert summaries[0] == summaries[1]


def test_a_size_that_is_not_a_read_count_is_named_once_per_input_and_read_as_one(case, tmp_path):
    from clibd_cli.io.sequences import bad_size, parse_abundance

    assert parse_abundance(";size=12;sample=pond;") == (12, "pond")
    assert parse_abundance(";size=abc;sample=pond;") == (None, "pond") and bad_size(";size=abc;") == "abc"
    assert bad_size(";size=1.5") == "1.5" and bad_size(";size=;") == "" and bad_size(";size=7;") is None
    root, inputs, *_ = case
    barcode = inputs[0].read_text().split("\n")[1]
    reads = tmp_path / "reads.fa"
    reads.write_text(f">a;size=abc;\n{barcode}\n>b;size=2.5;\n{barcode}\n>c;size=3;\n{barcode}\n")
    result = run("classify", "--index", root / "index", reads, "--summary", tmp_path / "s.tsv")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("is not a read count") == 1
    assert f"{reads}:1: size=abc is not a read count" in result.stderr
    order = [r for r in tsv((tmp_path / "s.tsv").read_text()) if r["rank"] == "order" and r["taxon"] != "unassigned"]
    assert sum(int(r["reads"]) for r in order) == 1 + 1 + 3


def test_tally_per_rank_most_reads_first_and_unlabelled_at_that_rank_as_unassigned():
    """At each rank: taxa by reads, most first; a record assigned to order only is ``unassigned``
    at genus (not a taxon with no name), and each rank's reads add up."""
    from clibd_cli.abundance.summary import Tally

    tally = Tally()
    tally.add("s", ("Diptera", "Culicidae", "Aedes", None), 2)
    tally.add("s", ("Diptera", "Culicidae", "Culex", None), 5)
    tally.add("s", ("Diptera", None, None, None), 4)
    assert tally.at_rank("s", "genus") == [(("Diptera", "Culicidae", "Culex"), 5, 1),
                                           (("Diptera", "Culicidae", "Aedes"), 2, 1), (None, 4, 1)]
    assert tally.at_rank("s", "order") == [(("Diptera",), 11, 3), (None, 0, 0)]


def test_taxa_with_more_reads_come_first_and_ties_by_name_in_the_table_and_krona_text():
    """Rows and Krona lines are in one order whatever the order of the records: most reads first,
    taxa of as many reads by name."""
    from clibd_cli.abundance.summary import Tally, krona_lines

    tally = Tally()
    tally.add("s", ("Diptera", "Muscidae", None, None), 3)
    tally.add("s", ("Coleoptera", None, None, None), 1)
    tally.add("s", ("Diptera", "Culicidae", None, None), 3)
    assert [row[0] for row in tally.at_rank("s", "family")] == [("Diptera", "Culicidae"),
                                                                ("Diptera", "Muscidae"), None]
    assert krona_lines(tally, "s") == ["3\tDiptera\tCulicidae\n", "3\tDiptera\tMuscidae\n", "1\tColeoptera\n"]


def _results(*records):
    """Results of ``(id, source, labels order..species, confidences)`` records at cutoff 0.8."""
    from clibd_cli.classification.classifier import Result
    from clibd_cli.classification.queries import Query
    from clibd_cli.classification.taxonomy import RankedPrediction

    return [Result(Query(qid, barcode="ACGT" * 40, source=source),
                   RankedPrediction(dict(zip(RANKS, labels)), dict(zip(RANKS, conf)), "r1", 0.9, 0.8))
            for qid, source, labels, conf in records]


def test_a_summary_counts_a_record_under_the_labels_it_is_assigned_not_those_below_the_cutoff():
    """A genus and species below --min-confidence are reads ``unassigned`` at those ranks, as the
    predictions leave them empty, not reads of the best-scoring genus."""
    from clibd_cli.abundance.summary import AbundanceSummary

    summary = AbundanceSummary()
    summary.add(_results(("q1", "s.fa", ("Diptera", "Culicidae", "Aedes", "Aedes vexans"),
                          (0.99, 0.9, 0.5, 0.2))))
    tally = summary.finish()
    assert tally.at_rank("s", "family") == [(("Diptera", "Culicidae"), 1, 1), (None, 0, 0)]
    assert tally.at_rank("s", "genus") == [(None, 1, 1)]


def test_a_counts_table_id_given_to_two_records_counts_for_the_first(clibd_warnings):
    """Two records of one id: the table's reads of that id go to the first record's taxon, and the
    second is said to have had no reads counted."""
    from clibd_cli.abundance.counts import CountsTable
    from clibd_cli.abundance.summary import AbundanceSummary

    summary = AbundanceSummary(CountsTable(["S1"], {"q1": [4]}))
    summary.add(_results(("q1", "a.fa", ("Diptera", None, None, None), (0.9, 0.1, 0.1, 0.1)),
                         ("q1", "a.fa", ("Coleoptera", None, None, None), (0.9, 0.1, 0.1, 0.1))))
    assert summary.finish().at_rank("S1", "order") == [(("Diptera",), 4, 1), (None, 0, 0)]
    assert any("1 classified record not in the counts table" in m for m in clibd_warnings)


def test_three_files_of_one_name_are_one_sample_with_one_warning(caplog):
    from clibd_cli.abundance.summary import AbundanceSummary

    summary = AbundanceSummary()
    labels = (("Diptera", None, None, None), (0.9, 0.1, 0.1, 0.1))
    summary.add(_results(*((f"q{i}", f"{site}/derep.fasta", *labels) for i, site in enumerate("abc"))))
    assert summary.finish().samples == ["derep"]
    assert caplog.text.count("are both sample 'derep'") == 1


def test_krona_text_keeps_each_rank_in_its_column_when_a_rank_is_skipped():
    """A lineage with order and genus but no family: the family field is empty (Krona's
    ``ktImportText`` skips a nameless level), not the genus shifted into the family column;
    ranks below the deepest assigned one are left off."""
    from clibd_cli.abundance.summary import Tally, krona_lines

    tally = Tally()
    tally.add("s", ("Diptera", None, "Drosophila", None), 3)
    tally.add("s", ("Diptera", "Culicidae", None, None), 2)
    tally.add("s", (None, None, None, None), 1)
    assert krona_lines(tally, "s") == ["3\tDiptera\t\tDrosophila\n", "2\tDiptera\tCulicidae\n",
                                       "1\tUnassigned\n"]


def test_counts_by_sequence_match_whatever_the_case_of_the_table():
    """A table naming its features by sequence in lower case finds the records (kept in upper case),
    and a table in upper case finds soft-masked (lower-case) records."""
    from clibd_cli.abundance.counts import CountsTable
    from clibd_cli.abundance.summary import AbundanceSummary
    from clibd_cli.classification.classifier import Result
    from clibd_cli.classification.queries import Query
    from clibd_cli.classification.taxonomy import RankedPrediction

    barcode = "ACGTTGCA" * 20
    prediction = RankedPrediction(dict(zip(RANKS, ("Diptera", None, None, None))),
                                  dict(zip(RANKS, (1.0, 0.1, 0.1, 0.1))), "r1", 0.9, 0.8)
    for feature, record in ((barcode.lower(), barcode), (barcode, barcode.lower())):
        summary = AbundanceSummary(CountsTable(["S1"], {feature: [7]}))
        summary.add([Result(Query("q1", barcode=record, strand="+"), prediction)])
        assert summary.finish().at_rank("S1", "order")[0] == (("Diptera",), 7, 1)


def test_counts_table_taxonomy_column_in_any_case_and_comment_lines_are_left_out(tmp_path):
    """biom's ``taxonomy`` column (``Taxonomy`` in some exports) is not a sample; every one-cell
    ``#`` line before the header is a comment."""
    from clibd_cli.abundance.counts import read_counts

    table = tmp_path / "counts.tsv"
    table.write_text("# Constructed from biom file\n# made by hand\n#OTU ID\tS1\tS2\tTaxonomy\n"
                     "f1\t5\t0\tk__Animalia; o__Diptera\n")
    counts = read_counts(table)
    assert (counts.samples, counts.reads) == (["S1", "S2"], {"f1": [5, 0]})


def test_summary_files_are_named_after_the_tsv_and_never_share_a_krona_file():
    """``--summary run.txt`` (as ``run.tsv``) gives ``run.html`` and ``run.<sample>.krona.txt``;
    samples whose names clean to one file name get -2, -3: no Krona file overwrites another."""
    from pathlib import Path

    from clibd_cli.abundance.summary import summary_files

    path, kronas, html = summary_files("out/run.txt", ["a b", "a:b", "a/b", "c"])
    assert (path, html) == (Path("out/run.txt"), Path("out/run.html"))
    assert [p.name for p in kronas.values()] == ["run.a_b.krona.txt", "run.a_b-2.krona.txt",
                                                 "run.a_b-3.krona.txt", "run.c.krona.txt"]


@pytest.mark.parametrize("source, sample", [("runs/site3.derep.fasta.gz", "site3.derep"),
                                            ("site3.fq.xz", "site3"), ("site3.FASTQ.BZ2", "site3"),
                                            ("<stdin>", "stdin"), ("site3.derep", "site3.derep")])
def test_a_sample_is_named_after_its_file_without_sequence_and_compression_extensions(source, sample):
    from clibd_cli.abundance.summary import sample_name

    assert sample_name(source) == sample


def test_html_summary_tables_have_an_unassigned_row_at_every_rank():
    from clibd_cli.abundance.html import render
    from clibd_cli.abundance.summary import Tally

    tally = Tally()
    tally.add("s1", ("Diptera", "Culicidae", None, None), 3)
    tally.add("s1", (None, None, None, None), 2)
    page = render(tally)
    tables = re.findall(r"<table>(.*?)</table>", page)
    assert len(tables) == len(RANKS)
    assert all("<tr><td>unassigned</td><td>2</td></tr>" in table for table in tables[:2])
    assert all("<tr><td>unassigned</td><td>5</td></tr>" in table for table in tables[2:])


def test_a_feature_without_reads_in_a_sample_is_no_feature_of_it():
    """A counts table's 0 (a feature absent from a sample) adds no feature there, but the sample
    keeps its rows."""
    from clibd_cli.abundance.summary import Tally

    tally = Tally()
    tally.add("s1", ("Diptera", None, None, None), 0)
    tally.add("s1", ("Diptera", None, None, None), 3)
    tally.add("s2", ("Diptera", None, None, None), 0)
    assert tally.at_rank("s1", "order") == [(("Diptera",), 3, 1), (None, 0, 0)]
    assert tally.samples == ["s1", "s2"] and tally.at_rank("s2", "order") == [(None, 0, 0)]


def test_summary_refuses_an_input_by_any_name(tmp_path, monkeypatch):
    """An input given through a link or a relative path is still the file --summary would replace."""
    from clibd_cli.abundance.summary import refuse_clashes
    from clibd_cli.io.outputs import UsageError

    (tmp_path / "run.tsv").write_text("precious\n")
    (tmp_path / "link.tsv").symlink_to(tmp_path / "run.tsv")
    monkeypatch.chdir(tmp_path)
    for given in ("link.tsv", tmp_path / "link.tsv", "run.tsv"):
        with pytest.raises(UsageError, match=f"is the input {given}; give --summary another name"):
            refuse_clashes([tmp_path / "run.tsv"], {given: f"the input {given}"})
    refuse_clashes([tmp_path / "other.tsv"], {"link.tsv": "an input", "-": "-o"})
    refuse_clashes([tmp_path / "-"], {"-": "standard output"})  # '-' is no file named '-'


def test_html_summary_escapes_sample_names():
    from clibd_cli.abundance.html import render
    from clibd_cli.abundance.summary import Tally

    tally = Tally()
    tally.add("<b>site & co", ("Diptera", None, None, None), 2)
    page = render(tally)
    assert "<b>" not in page  # per rank: the bar's title, name and label, the table's head
    assert page.count("&lt;b&gt;site &amp; co") == 4 * len(RANKS)


def test_a_feature_repeated_in_the_counts_table_is_an_error_at_its_line(tmp_path):
    from clibd_cli.abundance.counts import read_counts

    (tmp_path / "counts.tsv").write_text("#OTU ID\tS1\nf1\t3\nf2\t1\nf1\t4\n")
    with pytest.raises(ClibdError, match=r"counts.tsv:4: feature 'f1' repeated"):
        read_counts(tmp_path / "counts.tsv")


@pytest.mark.parametrize("body, problem", [
    ("f1\t3\t0\nf2\t1\t0\t7\n", "counts.tsv:3: expected 3 fields as in the header, found 4"),  # a stray tab
    ("f1\t3\t0\t7\nf2\t1\t0\n", "counts.tsv:2: expected 3 fields as in the header, found 4"),  # on the first row
    ("f1\t-3\t0\n", "counts.tsv:2: '-3' is not a read count"),
    ("f1\t\t0\n", "counts.tsv:2: '' is not a read count"),  # an empty cell is no 0
    ("", "counts.tsv: expected a header line"),  # a header alone holds no feature
])
def test_a_counts_table_row_unlike_its_header_or_not_a_count_is_an_error(tmp_path, body, problem):
    """A row with more fields than the header, a negative or empty count, a table without
    features: each an error naming the line, never reads made up or cells dropped."""
    from clibd_cli.abundance.counts import read_counts

    (tmp_path / "counts.tsv").write_text("#OTU ID\tS1\tS2\n" + body)
    with pytest.raises(ClibdError, match=re.escape(problem)):
        read_counts(tmp_path / "counts.tsv")


def test_counts_feature_ids_are_read_without_spaces_and_rows_of_empty_cells_left_out(tmp_path):
    """A spreadsheet's export pads ids and ends with rows of tabs: ``f1 `` is feature ``f1``
    (the id a record has), a row of empty cells no feature."""
    from clibd_cli.abundance.counts import read_counts

    (tmp_path / "counts.tsv").write_text("#OTU ID\tS1\tS2\n f1 \t5\t0\nf2\t3\t1\n\t\t\n")
    assert read_counts(tmp_path / "counts.tsv").reads == {"f1": [5, 0], "f2": [3, 1]}


def test_html_summary_gives_its_colours_to_the_taxa_with_most_reads():
    from clibd_cli.abundance.html import COLOURS, OTHER, render
    from clibd_cli.abundance.summary import Tally

    tally = Tally()
    tally.add("s1", ("Diptera", None, None, None), 2)
    tally.add("s1", ("Hemiptera", None, None, None), 9)
    tally.add("s2", ("Coleoptera", None, None, None), 5)
    legend = re.search(r'<div class="legend">(.*?)</div>\n', render(tally, top=2)).group(1)
    assert re.findall(r'background:(#\w+)"></span>([^<]+)<', legend) == [
        (COLOURS[0], "Hemiptera"), (COLOURS[1], "Coleoptera"), (OTHER, "other (1 taxa)"),
        ("#7f7f7f", "unassigned")]


@pytest.mark.parametrize("suffix, unpack", [(".gz", gzip.decompress), (".bz2", bz2.decompress),
                                            (".xz", lzma.decompress)])
def test_outputs_named_as_compressed_files_are_compressed(case, tmp_path, suffix, unpack):
    """``-o pred.tsv.gz`` and ``--summary s.tsv.gz`` write what ``zcat`` reads (``.bz2``: ``bzcat``,
    ``.xz``: ``xzcat``, compressions clibd reads), the same text as plain outputs (they wrote plain
    text under such a name); the summary's page and Krona texts are named after ``s``, plain."""
    root, inputs, _, _ = case
    (tmp_path / "gz").mkdir()
    plain = run("-q", "classify", "--index", root / "index", *inputs, "-o", tmp_path / "pred.tsv",
                "--summary", tmp_path / "s.tsv")
    packed = run("-q", "classify", "--index", root / "index", *inputs,
                 "-o", tmp_path / "gz" / f"pred.tsv{suffix}", "--summary", tmp_path / "gz" / f"s.tsv{suffix}")
    assert plain.exit_code == 0 and packed.exit_code == 0, packed.stderr
    for name in ("pred.tsv", "s.tsv"):
        text = unpack((tmp_path / "gz" / f"{name}{suffix}").read_bytes()).decode()
        assert text == (tmp_path / name).read_text(), name
    made = sorted(p.name for p in (tmp_path / "gz").iterdir())
    assert made == sorted([f"pred.tsv{suffix}", f"s.tsv{suffix}", "s.html", "s.siteA.derep.krona.txt",
                           "s.siteB.krona.txt"]), made
    from clibd_cli.abundance.summary import summary_files

    assert summary_files(f"out/run.txt{suffix}", ["c"])[2].name == "run.html"


@pytest.mark.parametrize("option", ["-o", "--summary"])
def test_a_table_named_as_a_compression_clibd_cannot_write_is_refused_before_any_work(case, tmp_path, option):
    """``-o pred.tsv.zst`` wrote plain text under a zstd name: refused (exit 2), nothing written."""
    root, inputs, _, _ = case
    result = run("-q", "classify", "--index", root / "index", *inputs, option, tmp_path / "pred.tsv.zst")
    assert result.exit_code == 2 and "cannot write zstd files" in error_line(result)
    assert list(tmp_path.iterdir()) == []

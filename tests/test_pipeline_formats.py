"""``clibd classify --format qiime2|sintax|blast6``, each checked against the rules of the tool
that reads it (QIIME 2's taxonomy TSV import, vsearch's SINTAX table, BLAST outfmt 6), and
``--taxa``, which restricts a classification to a subtree of the reference."""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import pytest
from fixtures.programs import require_programs
from fixtures.specimens import error_line, run, specimens, tsv, write_fasta

from clibd_cli.io.lineages import parse_lineage
from clibd_cli.io.pipeline_formats import read_sintax

RANK_OF = {"o": "order", "f": "family", "g": "genus", "s": "species"}


@pytest.fixture(scope="module")
def kmer_case(tmp_path_factory):
    """A k-mer index of real barcodes, held-out queries of known and unknown species, a short
    (invalid) record, and clibd's own TSV for them."""
    root = tmp_path_factory.mktemp("pipeline_formats")
    records = specimens(n_species=6, per_species=4, unnamed=2)
    species = sorted({r.lineage["species"] for r in records if r.lineage["species"]})
    held = {}
    for r in records:
        if r.lineage["species"]:
            held.setdefault(r.lineage["species"], r)
    absent = [r for r in records if r.lineage["species"] == species[0]]  # a species the reference lacks
    queries = list(held.values())[1:] + absent[:1]
    reference = [r for r in records if r not in queries and r not in absent]
    ref_fa = write_fasta(root / "ref.fa", reference)
    built = run("-q", "index", "-m", "kmer", "-k", "5", ref_fa, "-o", root / "index")
    assert built.exit_code == 0, built.stderr
    query_fa = write_fasta(root / "q.fa", queries, sintax=False)
    with open(query_fa, "a") as f:
        f.write(">too_short\nACGTACGTAC\n")
    plain = run("-q", "classify", "--index", root / "index", query_fa)
    assert plain.exit_code == 0, plain.stderr
    return root, ref_fa, query_fa, tsv(plain.stdout)


def classify(case, *args) -> str:
    root, _, query_fa, _ = case
    result = run("-q", "classify", "--index", root / "index", query_fa, *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def read_qiime2_taxonomy(text: str) -> dict[str, tuple[str, str]]:
    """Parse as QIIME 2 imports ``FeatureData[Taxonomy]`` from ``TSVTaxonomyFormat``
    (q2-types ``feature_data/_formats.py`` and its transformer): the first non-blank line is
    the header starting ``Feature ID<TAB>Taxon``; every line has as many cells as the header;
    at least one record; some taxon deeper than one level; no line ending in ``;``; unique ids."""
    lines = [line for line in text.split("\n") if line.lstrip(" ") != ""]
    header = lines[0].split("\t")
    assert header[:2] == ["Feature ID", "Taxon"]
    assert len(lines) > 1, "no taxonomy records"
    assert max(line.count(";") for line in lines) > 0, "taxonomic depth of one"
    records = {}
    for line in lines[1:]:
        cells = line.split("\t")
        assert len(cells) == len(header) and not line.endswith(";")
        assert cells[0] not in records, "feature ids must be unique"
        records[cells[0]] = tuple(cells[1:])
    return records


def test_qiime2_taxonomy_follows_qiime2_import_rules_and_clibds_calls(kmer_case):
    *_, rows = kmer_case
    out = classify(kmer_case, "--format", "qiime2")
    assert out.splitlines()[0] == "Feature ID\tTaxon\tConfidence"
    records = read_qiime2_taxonomy(out)
    assert list(records) == [row["query_id"] for row in rows]  # one row per record, in input order
    for row in rows:
        taxon, confidence = records[row["query_id"]]
        assigned = {rank: row[rank] for rank in RANK_OF.values() if row[rank]}
        if not assigned:
            assert taxon == "Unassigned"
            continue
        levels = taxon.split("; ")
        assert [level[:3] for level in levels] == [f"{r[0]}__" for r in assigned]  # ranks in order
        assert parse_lineage(taxon) == (assigned, [])  # read back by clibd's own lineage reader
        assert confidence == row[f"{list(assigned)[-1]}_conf"]  # the deepest assigned rank's
    assert records["too_short"] == ("Unassigned", "0.0000")
    assert any(";" in taxon for taxon, _ in records.values())


def test_qiime2_taxon_keeps_each_level_in_its_position_when_a_rank_has_no_label(tmp_path):
    """References without families: ``o__...; f__; g__...`` (SILVA's empty placeholder), so that
    QIIME 2's ``taxa collapse --p-level 3`` still means genus; clibd reads ``f__`` back as missing."""
    records = specimens(n_species=4, per_species=3, unnamed=0)
    for r in records:
        r.lineage = {**r.lineage, "family": None}
    ref_fa = write_fasta(tmp_path / "ref.fa", records)
    assert run("-q", "index", "-m", "kmer", "-k", "5", ref_fa, "-o", tmp_path / "index").exit_code == 0
    queries = write_fasta(tmp_path / "q.fa", records[::3], sintax=False)
    rows = tsv(run("-q", "classify", "--index", tmp_path / "index", queries).stdout)
    out = run("-q", "classify", "--index", tmp_path / "index", queries, "--format", "qiime2").stdout
    taxa = read_qiime2_taxonomy(out)
    assert any(row["genus"] for row in rows)
    for row in rows:
        taxon, _ = taxa[row["query_id"]]
        if row["genus"]:
            assert taxon.split("; ")[:3] == [f"o__{row['order']}", "f__", f"g__{row['genus'].replace(' ', '_')}"]
            assert parse_lineage(taxon)[0] == {rank: row[rank] for rank in RANK_OF.values() if row[rank]}


def test_a_call_below_the_cutoff_in_every_format():
    """No rank reaches the cutoff (0.7): every format keeps the best guesses and their confidences
    but assigns nothing; qiime2's ``Unassigned`` carries the best order's confidence (0.62), which
    tells a weak call from an unreadable record's 0."""
    from clibd_cli.classification.classifier import Result
    from clibd_cli.classification.queries import Query
    from clibd_cli.classification.taxonomy import RankedPrediction
    from clibd_cli.io.pipeline_formats import qiime2_row, sintax_row
    from clibd_cli.io.predictions import json_record, tsv_row

    labels = {"order": "Diptera", "family": "Culicidae", "genus": "Aedes", "species": "Aedes vexans"}
    confidence = {"order": 0.62, "family": 0.4, "genus": 0.2, "species": 0.1}
    weak = Result(Query("q1", barcode="ACGT"), RankedPrediction(labels, confidence, "r1", 0.8, 0.7))
    assert tsv_row(weak)[2:11] == ["unassigned", "", "", "", "", "0.6200", "0.4000", "0.2000", "0.1000"]
    assert json_record(weak)["ranks"]["order"] == {"label": "Diptera", "confidence": 0.62, "assigned": False}
    assert qiime2_row(weak) == ("q1", "Unassigned", "0.6200")
    assert sintax_row(weak) == ("q1", "o:Diptera(0.62),f:Culicidae(0.40),g:Aedes(0.20),s:Aedes_vexans(0.10)",
                                "+", "")
    unreadable = Result(Query("q2", barcode="AC"), problem="too short")
    assert qiime2_row(unreadable) == ("q2", "Unassigned", "0.0000")


def test_a_label_is_given_where_its_confidence_as_written_reaches_the_cutoff():
    """DESIGN.md: a rank's label is filled iff its confidence >= --min-confidence. The outputs write
    confidences with 4 decimals, so a 0.79996 written 0.8000 has its label at 0.8 (a script checking
    the column against the cutoff agrees with clibd), and a 0.79994 written 0.7999 has none."""
    from clibd_cli.classification.classifier import Result
    from clibd_cli.classification.queries import Query
    from clibd_cli.classification.taxonomy import RankedPrediction
    from clibd_cli.io.pipeline_formats import qiime2_row, sintax_row
    from clibd_cli.io.predictions import json_record, tsv_row

    labels = {"order": "Diptera", "family": "Culicidae", "genus": "Aedes", "species": "Aedes vexans"}
    confidence = {"order": 1.0, "family": 0.99, "genus": 0.79996, "species": 0.79994}
    edge = Result(Query("q1", barcode="ACGT"), RankedPrediction(labels, confidence, "r1", 0.9, 0.8))
    assert tsv_row(edge)[3:11] == ["Diptera", "Culicidae", "Aedes", "", "1.0000", "0.9900", "0.8000", "0.7999"]
    assert json_record(edge)["ranks"]["genus"] == {"label": "Aedes", "confidence": 0.8, "assigned": True}
    assert json_record(edge)["ranks"]["species"] == {"label": "Aedes vexans", "confidence": 0.7999, "assigned": False}
    assert qiime2_row(edge) == ("q1", "o__Diptera; f__Culicidae; g__Aedes", "0.8000")
    assert sintax_row(edge)[3] == "o:Diptera,f:Culicidae,g:Aedes"


def test_sintax_table_has_vsearch_shape_and_round_trips(kmer_case, tmp_path):
    require_programs("vsearch")
    root, ref_fa, query_fa, rows = kmer_case
    ours = classify(kmer_case, "--format", "sintax")
    theirs = tmp_path / "vsearch.sintax"
    subprocess.run(["vsearch", "--sintax", str(query_fa), "--db", str(ref_fa), "--tabbedout", str(theirs),
                    "--sintax_cutoff", "0.8", "--threads", "1", "--randseed", "1", "--quiet"], check=True)
    # the same line shapes as vsearch: id, rank:label(support) list, strand, rank:label list
    entry = r"[dkpcofgs]:[^,:()\t]+"
    supported = rf"{entry}\(\d\.\d\d\)"
    shape = re.compile(rf"^[^\t]+\t({supported}(,{supported})*)?\t[+-]?\t({entry}(,{entry})*)?$")
    for line in theirs.read_text().splitlines() + ours.splitlines():
        assert shape.match(line), line
    vsearch_lines = {line.query.split()[0]: line for line in read_sintax(theirs)}
    ours_lines = list(read_sintax(_write(tmp_path / "ours.sintax", ours)))
    assert [line.query for line in ours_lines] == [row["query_id"] for row in rows]
    for line, row in zip(ours_lines, rows):
        if row["status"] == "invalid":
            assert (line.ranks, line.strand, line.cutoff) == ({}, "", {})
            continue
        assert line.strand == row["strand"] == "+" and line.query in vsearch_lines  # vsearch wrote one too
        assert {rank: f"{label}({support:.2f})" for rank, (label, support) in line.ranks.items()} == \
            {RANK_OF[p[0]]: p[2:] for p in row["lineage"].split(",")}
        assert line.cutoff == {rank: row[rank].replace(" ", "_") for rank in RANK_OF.values() if row[rank]}


def test_a_barcode_unlike_every_reference_is_written_as_vsearch_and_blast_write_no_hits(kmer_case, tmp_path):
    """No support at any rank: ``--format sintax`` writes the id and empty fields (vsearch's
    no-hit row), not a lineage of (0.00) on a strand picked at random; ``blast6`` no line, as
    blastn writes none (not neighbours at a few % 'identity')."""
    require_programs("vsearch", "blastn", "makeblastdb")
    root, ref_fa, _, _ = kmer_case
    query = tmp_path / "random.fa"
    query.write_text(">random\n" + "".join(random.Random(5).choices("ACGT", k=600)) + "\n")
    row = tsv(run("-q", "classify", "--index", root / "index", query).stdout)[0]
    assert row["status"] == "unassigned" and {float(row[f"{rank}_conf"]) for rank in RANK_OF.values()} == {0.0}
    theirs = tmp_path / "vsearch.sintax"
    subprocess.run(["vsearch", "--sintax", str(query), "--db", str(ref_fa), "--tabbedout", str(theirs),
                    "--sintax_cutoff", "0.8", "--strand", "both", "--threads", "1", "--quiet"], check=True)
    assert classify_one(root, query, "sintax") == theirs.read_text() == "random\t\t\t\n"
    subprocess.run(["makeblastdb", "-in", str(ref_fa), "-dbtype", "nucl", "-out", str(tmp_path / "db")],
                   check=True, capture_output=True)
    blast = subprocess.run(["blastn", "-query", str(query), "-db", str(tmp_path / "db"), "-outfmt", "6"],
                           check=True, capture_output=True, text=True)
    assert classify_one(root, query, "blast6", "--top-k", "3") == blast.stdout == ""


def classify_one(root: Path, query: Path, fmt: str, *args) -> str:
    result = run("-q", "classify", "--index", root / "index", query, "--format", fmt, *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_sintax_strand_is_the_strand_the_barcode_was_read_on(kmer_case, tmp_path):
    from clibd_cli.io.sequences import reverse_complement

    root, _, query_fa, rows = kmer_case
    named = [row for row in rows if row["status"] != "invalid"]
    barcodes = {}
    for block in query_fa.read_text().split(">")[1:]:
        header, *lines = block.splitlines()
        barcodes[header.split()[0]] = "".join(lines)
    flipped = tmp_path / "rc.fa"
    flipped.write_text("".join(f">{row['query_id']}\n{reverse_complement(barcodes[row['query_id']])}\n"
                               for row in named))
    result = run("-q", "classify", "--index", root / "index", flipped, "--format", "sintax")
    assert result.exit_code == 0, result.stderr
    lines = list(read_sintax(_write(tmp_path / "rc.sintax", result.stdout)))
    assert [line.strand for line in lines] == ["-"] * len(named)
    assert [line.cutoff for line in lines] == \
        [{rank: row[rank].replace(" ", "_") for rank in RANK_OF.values() if row[rank]} for row in named]
    blast = run("-q", "classify", "--index", root / "index", flipped, "--format", "blast6")
    cells = [line.split("\t") for line in blast.stdout.splitlines()]
    assert len(cells) == len(named)
    assert all(int(c[8]) == int(c[3]) and int(c[9]) == 1 for c in cells)  # minus strand: sstart > send


def test_sintax_reader_reports_the_broken_line(tmp_path):
    from models.errors import ClibdError

    bad = _write(tmp_path / "bad.sintax", "q1\to:Diptera(1.00)\t+\to:Diptera\nq2\to:Diptera\t+\n")
    with pytest.raises(ClibdError, match=r"bad.sintax:2: entry 'o:Diptera' is not of the form rank:label"):
        list(read_sintax(bad))
    wide = _write(tmp_path / "wide.sintax", "q1\to:Diptera(1.00)\t+\to:Diptera\textra\n")
    with pytest.raises(ClibdError, match=r"wide.sintax:1: expected 2-4 tab-separated fields .* found 5"):
        list(read_sintax(wide))


def test_blast6_lists_top_k_hits_in_outfmt6_columns(kmer_case, tmp_path):
    require_programs("vsearch")
    root, ref_fa, query_fa, rows = kmer_case
    out = classify(kmer_case, "--format", "blast6", "--top-k", "3")
    neighbours = tsv(classify(kmer_case, "--top-k", "3"))
    theirs = tmp_path / "vsearch.b6"
    subprocess.run(["vsearch", "--usearch_global", str(query_fa), "--db", str(ref_fa), "--id", "0.5",
                    "--blast6out", str(theirs), "--maxaccepts", "3", "--threads", "1", "--quiet"], check=True)
    columns = [str, str, float, int, int, int, int, int, int, int, float, float]  # BLAST outfmt 6 std
    lines = [line.split("\t") for line in out.splitlines()]
    for cells in lines + [line.split("\t") for line in theirs.read_text().splitlines()]:
        assert len(cells) == 12
        for cast, cell in zip(columns, cells):
            cast(cell)
    valid = [row["query_id"] for row in rows if row["status"] != "invalid"]
    assert [c[0] for c in lines] == [q for q in valid for _ in range(3)]  # no line for too_short
    assert [(c[0], c[1]) for c in lines] == [(n["query_id"], n["reference_id"]) for n in neighbours
                                             if n["reference_id"]]
    for cells, n in zip(lines, (n for n in neighbours if n["reference_id"])):
        assert float(cells[2]) == pytest.approx(100 * float(n["similarity"]), abs=0.051)
        length = int(cells[3])
        assert int(cells[4]) == round(length * (1 - float(cells[2]) / 100)) or abs(
            int(cells[4]) - length * (1 - float(cells[2]) / 100)) <= 1
        assert (cells[6], cells[7], cells[10], cells[11]) == ("1", str(length), "-1", "0")
    top1 = [line.split("\t") for line in classify(kmer_case, "--format", "blast6").splitlines()]
    assert [(c[0], c[1]) for c in top1] == [(r["query_id"], r["nearest_id"]) for r in rows
                                            if r["query_id"] in valid]


def parse_lineage_ranks(text: str) -> dict[str, str]:
    ranks, unknown = parse_lineage(text)
    assert unknown == []
    return ranks


def test_lineage_reader_reads_qiime_unite_greengenes_and_rdp_forms():
    unite = "k__Animalia; p__Arthropoda; o__Diptera; f__Culicidae; g__Aedes; s__Aedes_albopictus"
    assert parse_lineage_ranks(unite) == \
        {"kingdom": "Animalia", "phylum": "Arthropoda", "order": "Diptera", "family": "Culicidae",
         "genus": "Aedes", "species": "Aedes albopictus"}
    assert parse_lineage_ranks("o__Diptera;f__Culicidae;g__Aedes;s__albopictus") == \
        {"order": "Diptera", "family": "Culicidae", "genus": "Aedes", "species": "Aedes albopictus"}
    assert parse_lineage_ranks("o__Diptera; f__Culicidae; g__; s__") == {"order": "Diptera", "family": "Culicidae"}
    for unnamed in ("s__Aedes_sp", "s__Aedes_sp.", "s__Aedes_spp", "s__Aedes_"):  # UNITE: species not identified
        assert parse_lineage_ranks(f"o__Diptera;f__Culicidae;g__Aedes;{unnamed}") == \
            {"order": "Diptera", "family": "Culicidae", "genus": "Aedes"}, unnamed
    assert parse_lineage_ranks("Root;Animalia;Arthropoda;Insecta;Diptera;Culicidae;Aedes;Aedes_albopictus") == \
        {"order": "Diptera", "family": "Culicidae", "genus": "Aedes", "species": "Aedes albopictus"}
    with pytest.raises(ValueError, match="at least 4 levels"):
        parse_lineage("Root;Animalia;Arthropoda")
    with pytest.raises(ValueError, match="lacks a rank prefix"):
        parse_lineage("o__Diptera;Culicidae")


def test_lineage_prefixes_other_than_the_sintax_letters_are_returned_as_written():
    """``sk__`` (superkingdom), ``t__`` (strain), ``x__``: their names are dropped and the prefixes
    returned for one warning per file; ``sk__`` first does not make the lineage read by position."""
    assert parse_lineage("sk__Eukaryota;k__Animalia;o__Diptera;x__Foo;g__Aedes;s__Aedes_albopictus;t__ABC;"
                         "SK__Again") == ({"kingdom": "Animalia", "order": "Diptera", "genus": "Aedes",
                                           "species": "Aedes albopictus"}, ["sk__", "x__", "t__", "SK__"])


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_taxa_restricts_the_classification_to_a_subtree(kmer_case):
    root, ref_fa, query_fa, rows = kmer_case
    order_of = {line[1:].split(";")[0]: line.split("o:")[1].split(",")[0]
                for line in ref_fa.read_text().splitlines() if line.startswith(">")}
    chosen = sorted(set(order_of.values()))[-1]
    assert len(set(order_of.values())) > 1
    near = run("-q", "classify", "--index", root / "index", query_fa, "--taxa", chosen.upper(),
               "--top-k", "4")
    assert near.exit_code == 0, near.stderr
    hits = [row["reference_id"] for row in tsv(near.stdout) if row["reference_id"]]
    assert hits and {order_of[hit] for hit in hits} == {chosen}  # every neighbour from the subtree
    within = tsv(classify(kmer_case, "--taxa", chosen))
    assert [row["query_id"] for row in within] == [row["query_id"] for row in rows]
    assert {row["order"] for row in within} <= {chosen, ""}
    assert {order_of[row["nearest_id"]] for row in within if row["nearest_id"]} == {chosen}
    unknown = run("classify", "--index", root / "index", query_fa, "--taxa", f"{chosen},Nosuchtaxon")
    assert unknown.exit_code == 1
    assert "no reference record is labelled Nosuchtaxon at any rank" in error_line(unknown)


def test_sintax_cut_keeps_a_rank_at_the_cutoff_and_skips_one_no_reference_labels():
    """The cut lineage holds the ranks whose confidence reaches ``--min-confidence`` (as the TSV
    asserts them: a confidence equal to the cutoff counts), and a rank no neighbour labels (a
    reference without families) is skipped, not the end of the lineage."""
    from clibd_cli.classification.classifier import Result
    from clibd_cli.classification.queries import Query
    from clibd_cli.classification.taxonomy import RankedPrediction
    from clibd_cli.io.pipeline_formats import sintax_row

    prediction = RankedPrediction({"order": "Diptera", "family": None, "genus": "Aedes", "species": "Aedes vexans"},
                                  {"order": 1.0, "family": 0.0, "genus": 0.8, "species": 0.5}, "r1", 0.9, 0.8)
    row = sintax_row(Result(Query("q1", barcode="ACGT"), prediction))
    assert row == ("q1", "o:Diptera(1.00),g:Aedes(0.80),s:Aedes_vexans(0.50)", "+", "o:Diptera,g:Aedes")
    assert {r for r, name in prediction.assigned.items() if name} == {"order", "genus"}  # as the TSV asserts


def test_sintax_reader_reads_a_crlf_table_and_labels_with_parentheses(tmp_path):
    """A table saved on Windows (CRLF) reads as the same table; a label holding parentheses
    (a subgenus) keeps them, the support being the last parenthesis."""
    table = tmp_path / "crlf.sintax"
    table.write_bytes(b"q1\to:Diptera(1.00),g:Aedes_(Stegomyia)(0.90)\t+\to:Diptera,g:Aedes_(Stegomyia)\r\n"
                      b"q2\to:Diptera(0.50)\t-\r\n")
    lines = list(read_sintax(table))
    assert [(line.query, line.strand) for line in lines] == [("q1", "+"), ("q2", "-")]
    assert lines[0].ranks == {"order": ("Diptera", 1.0), "genus": ("Aedes_(Stegomyia)", 0.9)}
    assert lines[0].cutoff == {"order": "Diptera", "genus": "Aedes_(Stegomyia)"}


def test_qiime_taxon_writes_names_with_underscores_and_keeps_each_level():
    from clibd_cli.io.lineages import qiime_taxon

    assert qiime_taxon({"order": "Diptera", "family": None, "genus": "Aedes", "species": "Aedes albopictus"}) == (
        "o__Diptera; f__; g__Aedes; s__Aedes_albopictus")
    assert qiime_taxon({"order": "Diptera", "family": None, "genus": None, "species": None}) == "o__Diptera"


def test_edge_calls_in_qiime2_sintax_and_blast6(tmp_path):
    """qiime2's ``Unassigned`` carries the confidence of the coarsest rank the reference labels;
    the SINTAX cut stops at the first rank under the cutoff even where a deeper one reaches it (as
    vsearch cuts); BLAST's identity stays within 0-100 % whatever the float cosine; a record
    without reported neighbours has no blast6 line; an unknown SINTAX rank letter is kept as written."""
    from clibd_cli.classification.classifier import Neighbour, Result
    from clibd_cli.classification.queries import Query
    from clibd_cli.classification.taxonomy import RankedPrediction
    from clibd_cli.io.pipeline_formats import blast6_rows, qiime2_row, sintax_row

    no_order = RankedPrediction({"order": None, "family": "Culicidae", "genus": "Aedes", "species": None},
                                {"order": 0.0, "family": 0.5, "genus": 0.3, "species": 0.0}, "r1", 0.9, 0.7)
    assert qiime2_row(Result(Query("q1", barcode="ACGT"), no_order)) == ("q1", "Unassigned", "0.5000")
    upside = RankedPrediction({"order": "Diptera", "family": "Culicidae", "genus": "Aedes", "species": "Aedes vexans"},
                              {"order": 1.0, "family": 0.9, "genus": 0.6, "species": 0.75}, "r1", 0.9, 0.7)
    assert sintax_row(Result(Query("q2", barcode="ACGT"), upside))[3] == "o:Diptera,f:Culicidae"
    hits = [Neighbour("r1", 1.0000002, {}), Neighbour("r2", -0.25, {})]
    rows = blast6_rows(Result(Query("q3", barcode="ACGT" * 25), upside, neighbours=hits))
    assert [row[2:5] for row in rows] == [("100.0", 100, 0), ("0.0", 100, 100)]
    assert blast6_rows(Result(Query("q4", barcode="ACGT" * 25), upside)) == []
    table = _write(tmp_path / "x.sintax", "q1\tx:Foo(0.50),o:Diptera(1.00)\t+\n")
    assert next(read_sintax(table)).ranks == {"x": ("Foo", 0.5), "order": ("Diptera", 1.0)}

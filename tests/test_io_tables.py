"""Delimited tables: checked headers (missing or renamed columns named), taxonomy tables, stray quotes."""

import gzip
import re

import pytest

from clibd_cli.io.tables import read_rows, read_taxonomy
from models.errors import ClibdError


def test_rows_stream_with_line_numbers_from_gzip(tmp_path):
    path = tmp_path / "t.tsv.gz"
    path.write_bytes(gzip.compress(b"\xef\xbb\xbfid\tspecies\na\tAedes aegypti\n\nb\t\n"))
    columns, rows = read_rows(path, required=["id"])
    assert columns == {"id": 0, "species": 1}
    assert list(rows) == [(2, ["a", "Aedes aegypti"]), (4, ["b", ""])]


def test_missing_and_renamed_columns_are_named(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_text("processid,barcode,genus_name,species\n")
    with pytest.raises(ClibdError) as error:
        read_rows(path, required=["processid", "dna_barcode", "genus"], delimiter=",")
    message = str(error.value)
    assert message.startswith(f"{path}:1: missing columns 'dna_barcode', 'genus'")
    assert "'barcode' for 'dna_barcode'?" in message and "'genus_name' for 'genus'?" in message


def test_wrong_delimiter_and_ragged_rows(tmp_path):
    csv_as_tsv = tmp_path / "a.tsv"
    csv_as_tsv.write_text("sampleid,nucraw\nx,ACGT\n")
    with pytest.raises(ClibdError, match="comma-separated, expected tab-separated"):
        read_rows(csv_as_tsv, required=["sampleid"])
    semicolons = tmp_path / "europe.csv"  # a spreadsheet's CSV where the decimal mark is a comma
    semicolons.write_text("processid;nucraw\nx;ACGT\n")
    with pytest.raises(ClibdError, match="semicolon-separated, expected comma-separated"):
        read_rows(semicolons, required=["processid"], delimiter=",")
    ragged = tmp_path / "b.tsv"
    ragged.write_text("id\tspecies\na\tX\tY\n")
    with pytest.raises(ClibdError, match=f"{ragged}:2: expected 2 fields"):
        list(read_rows(ragged)[1])
    empty = tmp_path / "c.tsv"
    empty.write_text("")
    with pytest.raises(ClibdError, match="empty file"):
        read_rows(empty)


def test_taxonomy_table(tmp_path):
    path = tmp_path / "tax.tsv"
    path.write_text("id\tclass\torder\tgenus\tspecies\tnotes\n"
                    "q1\tInsecta\tDiptera\tAedes\tAedes_albopictus\tx\nq2\t\tDiptera\tnot_classified\t\t\n")
    assert read_taxonomy(path) == {
        "q1": {"class": "Insecta", "order": "Diptera", "genus": "Aedes", "species": "Aedes albopictus"},
        "q2": {"order": "Diptera"}}
    path.write_text("id\tspecies\nq1\tLasioglossum sp. 7\n")  # an interim name, not a MIDORI2 taxid
    assert read_taxonomy(path) == {"q1": {"species": "Lasioglossum sp. 7"}}
    path.write_text("id\torder\nq1\tDiptera\nq1\tLepidoptera\n")
    with pytest.raises(ClibdError, match="tax.tsv:3: id 'q1' repeated \\(first on line 2\\)"):
        read_taxonomy(path)
    path.write_text("id\tnotes\nq1\tx\n")
    with pytest.raises(ClibdError, match="no rank column"):
        read_taxonomy(path)



def test_a_spreadsheets_taxonomy_with_padded_cells_reads_as_a_plain_one(tmp_path):
    """Spaces around column names and ids (a spreadsheet's export) are no part of them: `` id `` is the
    id column and ``q1 `` the id of record q1; of two columns named alike in another case, the first
    is read."""
    path = tmp_path / "tax.tsv"
    path.write_text(" id \t Order\tSpecies\tspecies\nq1 \tDiptera\tAedes vexans\tAedes aegypti\n")
    assert read_taxonomy(path) == {"q1": {"order": "Diptera", "species": "Aedes vexans"}}


def test_a_missing_column_names_the_first_thirty_found():
    """A wide table's message stays one readable line: the first 30 columns, then ``...``."""
    from clibd_cli.io.tables import _missing_message

    header = [f"c{i}" for i in range(40)]
    message = _missing_message(["processid"], header, ",")
    assert message == f"missing column 'processid' (found: {', '.join(header[:30])} ...)"


def test_taxonomy_tables_as_qiime_greengenes_silva_and_unite_ship_them(tmp_path):
    """Headerless ``ID<TAB>lineage`` (QIIME 2's HeaderlessTSVTaxonomyFormat: Greengenes'
    99_otu_taxonomy.txt, UNITE's sh_taxonomy_qiime), biom's ``#OTU ID``/``taxonomy`` and
    headers in another case are read as the tables they are, not refused for lacking ``id``."""
    aedes = {"kingdom": "Animalia", "order": "Diptera", "family": "Culicidae", "genus": "Aedes",
             "species": "Aedes albopictus"}
    culex = {"kingdom": "Animalia", "order": "Diptera", "family": "Culicidae", "genus": "Culex"}
    path = tmp_path / "tax.tsv"
    for text in ["q1\tk__Animalia; o__Diptera; f__Culicidae; g__Aedes; s__Aedes_albopictus\n"
                 "q2\tk__Animalia;o__Diptera;f__Culicidae;g__Culex;s__Culex_sp\n",
                 "#OTU ID\ttaxonomy\tconfidence\nq1\tk__Animalia;o__Diptera;f__Culicidae;g__Aedes;"
                 "s__Aedes_albopictus\t1.0\nq2\tk__Animalia;o__Diptera;f__Culicidae;g__Culex\t0.9\n",
                 "ID\tKingdom\tOrder\tFamily\tGenus\tSpecies\nq1\tAnimalia\tDiptera\tCulicidae\tAedes\t"
                 "Aedes albopictus\nq2\tAnimalia\tDiptera\tCulicidae\tCulex\t\n"]:
        path.write_text(text)
        assert read_taxonomy(path) == {"q1": aedes, "q2": culex}, text
    path.write_text("q1\tRoot;Animalia;Arthropoda;Insecta;Diptera;Culicidae;Aedes;Aedes_albopictus\n")
    assert read_taxonomy(path) == {"q1": {k: v for k, v in aedes.items() if k != "kingdom"}}
    path.write_text("q1\tDiptera;Culicidae;Aedes;Aedes_albopictus\n")  # four levels, the fewest read
    assert read_taxonomy(path) == {"q1": {k: v for k, v in aedes.items() if k != "kingdom"}}
    path.write_text("q0\tUnassigned\nq1\tk__Animalia;o__Diptera\n")  # headerless, its first record unassigned
    assert read_taxonomy(path) == {"q0": {}, "q1": {"kingdom": "Animalia", "order": "Diptera"}}
    path.write_text("name\tgenus\nq1\tAedes\n")
    with pytest.raises(ClibdError, match="tax.tsv:1: missing column 'id' .*or ID<TAB>lineage lines without a header"):
        read_taxonomy(path)


def test_a_stray_double_quote_is_an_error_at_its_line_not_lost_rows(tmp_path):
    """A double quote opens a quoted field; left open it swallowed the rows after it silently
    (three records "not in the taxonomy"). Now the line it starts on is named."""
    path = tmp_path / "tax.tsv"
    path.write_text('id\tgenus\tspecies\na\tAedes\t"Aedes sp. 1\nb\tAedes\tAedes vexans\nc\tCulex\tCulex sp. 2"\n'
                    "d\tCulex\tCulex pipiens\n")
    with pytest.raises(ClibdError, match=r'tax.tsv:2: a double quote \(\"\) opens a field that runs on to line 4'):
        read_taxonomy(path)
    path.write_text('id\tgenus\n"a\tAedes\n' + "b\tAedes\n" * 20000)
    with pytest.raises(ClibdError, match=r"tax.tsv:2: (unreadable row|a double quote)"):
        read_taxonomy(path)
    path.write_text('id\tgenus\tspecies\na\tAedes\t"Aedes vexans"\n')  # quoted on one line: R's write.table
    assert read_taxonomy(path) == {"a": {"genus": "Aedes", "species": "Aedes vexans"}}


def test_counts_table_refuses_repeated_or_empty_samples_and_absurd_counts(tmp_path):
    from clibd_cli.abundance.counts import read_counts

    path = tmp_path / "counts.tsv"
    for text, message in [("#OTU ID\tS1\tS1\nf1\t1\t2\n", "repeated: 'S1'"), ("#OTU ID\tS1\t\nf1\t1\t2\n", "an empty one"),
                          ("#OTU ID\tS1\nf1\t1e300\n", "'1e300' is not a read count"),
                          ('#OTU ID\tS1\n"f1\t3\nf2\t4\n', "counts.tsv:2: ")]:
        path.write_text(text)
        with pytest.raises(ClibdError, match=re.escape(message)):
            read_counts(path)


def test_a_truncated_gzip_table_names_the_line_it_stops_at(tmp_path):
    path = tmp_path / "t.tsv.gz"
    data = gzip.compress(("id\tgenus\n" + "".join(f"r{i}\tAedes\n" for i in range(20000))).encode())
    path.write_bytes(data[: len(data) // 2])
    columns, rows = read_rows(path)
    with pytest.raises(ClibdError, match=r"t\.tsv\.gz:\d+: unreadable compressed file") as error:
        list(rows)
    assert int(str(error.value).split(":")[1]) > 1000  # where it stopped, not line 1


def test_silva_levels_are_read_by_position_not_as_names_with_their_prefix(tmp_path):
    """SILVA 132's ``D_0__...;D_6__...`` levels number positions, not ranks: they were read as an
    unranked lineage with their prefixes in the names (order 'D 3  Diptera'). Now the prefixes
    are dropped and the levels read by position; one that ends above species is refused as
    unranked lineages are, and a level without the prefix is named."""
    from clibd_cli.io.lineages import parse_lineage

    path = tmp_path / "tax.tsv"
    path.write_text("Feature ID\tTaxon\nq1\tD_0__Animalia;D_1__Arthropoda;D_2__Insecta;D_3__Diptera;"
                    "D_4__Culicidae;D_5__Aedes;D_6__Aedes_albopictus\n")
    assert read_taxonomy(path) == {"q1": {"order": "Diptera", "family": "Culicidae", "genus": "Aedes",
                                          "species": "Aedes albopictus"}}
    eukaryote = "D_0__Eukaryota;D_1__Opisthokonta;D_2__Holozoa;D_3__Metazoa (Animalia);D_4__Arthropoda;" \
                "D_5__Insecta;D_6__Diptera"
    for text, message in [(eukaryote, r"\(D_<n>__ numbers levels, not ranks\).* ends with 'Diptera'"),
                          (eukaryote.rsplit(";", 1)[0] + ";D_6__", "ends with 'Insecta'"),
                          ("D_0__Animalia;o__Diptera;f__Culicidae;g__Aedes;s__Aedes_albopictus",
                           "level 'o__Diptera' lacks the D_<n>__ prefix")]:
        with pytest.raises(ValueError, match=message):
            parse_lineage(text)


def test_columns_a_taxonomy_table_does_not_read_are_named_once(tmp_path, clibd_warnings):
    """A column that is no rank (``notes``, ``subfamily``, a misspelt ``specie``) was ignored
    silently. Rank columns come first: BOLD's and BIOSCAN's ``taxon`` (the lowest name) beside
    them was read as a lineage column, and the table refused ('an unranked lineage needs ...')."""
    warnings = clibd_warnings
    path = tmp_path / "tax.tsv"
    path.write_text("id\torder\tsubfamily\tgenus\tspecie\tnotes\t\n"
                    "q1\tDiptera\tCulicinae\tAedes\tAedes albopictus\tx\t\nq2\tDiptera\t\tCulex\t\t\t\n")
    assert read_taxonomy(path) == {"q1": {"order": "Diptera", "genus": "Aedes"},
                                   "q2": {"order": "Diptera", "genus": "Culex"}}
    assert warnings == [f"{path}:1: columns 'subfamily', 'specie', 'notes' ignored: clibd reads the id and the "
                        "ranks (domain, kingdom, phylum, class, order, family, genus, species)"]
    path.write_text("id\ttaxon\torder\tgenus\tspecies\nq1\tAedes albopictus\tDiptera\tAedes\tAedes albopictus\n")
    assert read_taxonomy(path) == {"q1": {"order": "Diptera", "genus": "Aedes", "species": "Aedes albopictus"}}
    assert warnings[1:] == [f"{path}:1: column 'taxon' ignored: clibd reads the id and the ranks (domain, "
                            "kingdom, phylum, class, order, family, genus, species)"]
    path.write_text("Feature ID\tTaxon\tnote\nq1\to__Diptera;g__Aedes\tx\n")
    assert read_taxonomy(path) == {"q1": {"order": "Diptera", "genus": "Aedes"}}
    assert warnings[2:] == [f"{path}:1: column 'note' ignored: clibd reads the id and the lineage"]
    for text in ("Feature ID\tTaxon\tConfidence\nq1\to__Diptera;g__Aedes\t0.9\n",  # QIIME 2's own
                 "q1\to__Diptera;f__Culicidae;g__Aedes\t0.9\n"):  # headerless: no names to give
        path.write_text(text)
        read_taxonomy(path)
    assert len(warnings) == 3

"""Reference records as ``clibd index`` collects them: barcodes cleaned, labels per rank, lineages above order."""

from clibd_cli.reference.sources import References, read_references


def test_reference_barcodes_are_stored_as_the_encoders_read_them(tmp_path):
    """An aligned RNA reference is indexed as the DNA a query of it is read as (no gaps, T for U)."""
    path = tmp_path / "ref.fasta"
    path.write_text(">r1;tax=o:Diptera,f:Culicidae,g:Aedes,s:Aedes_albopictus;\n" + "ACGU-acgu." * 20 + "\n"
                    ">r2;tax=o:Diptera;\nACGT\n")
    refs = read_references([str(path)], "dna")
    assert refs.ids == ["r1"] and refs.items == ["ACGTacgt" * 20]
    assert refs.labels["species"] == ["Aedes albopictus"] and refs.skipped[0].startswith("r2 (too short")


def test_the_lineage_above_an_order_is_the_one_most_of_its_records_name():
    refs = References("dna")
    for i, (klass, phylum) in enumerate([("Arachnida", None), ("Insecta", "Arthropoda"), ("Insecta", None),
                                         (None, "Chordata")]):
        refs.add(f"r{i}", {"order": "Diptera", "class": klass, "phylum": phylum}, "ACGT")
    refs.add("r9", {"order": "Araneae", "class": "Arachnida", "phylum": "Arthropoda"}, "ACGT")
    assert refs.lineages_above_order() == {  # a tie goes to the name read first
        "Araneae": {"phylum": "Arthropoda", "class": "Arachnida"},
        "Diptera": {"phylum": "Arthropoda", "class": "Insecta"}}


def test_records_tsv_labels_are_stripped_and_blanks_unlabelled():
    """What an index stores for a label given with spaces (the Python API takes any strings)."""
    from clibd_cli.reference.records import clean_labels

    assert clean_labels([" Aedes ", "", "  ", None, "Culex"]) == ["Aedes", None, None, None, "Culex"]


def test_a_label_with_a_tab_is_refused_at_its_file_and_line(tmp_path):
    """Not later, when records.tsv is written, without a place; a taxonomy table's likewise."""
    import pytest

    from clibd_cli.io.tables import read_taxonomy
    from models.errors import ClibdError

    path = tmp_path / "ref.fasta"
    path.write_text(f">r1;tax=o:Diptera;\n{'ACGT' * 30}\n>r2;tax=o:Diptera,g:Tab\tname;\n{'ACGT' * 30}\n")
    with pytest.raises(ClibdError, match=r"ref.fasta:3: genus 'Tab\\tname' contains a tab"):
        read_references([str(path)], "dna")
    table = tmp_path / "taxonomy.tsv"
    table.write_text('id\torder\tspecies\nr1\tDiptera\t"Aedes\talbopictus"\n\tDiptera\t\n')
    with pytest.raises(ClibdError, match=r"taxonomy.tsv:2: species 'Aedes\\talbopictus' contains a tab"):
        read_taxonomy(table)
    table.write_text("id\torder\nr1\tDiptera\n\tDiptera\n")
    with pytest.raises(ClibdError, match=r"taxonomy.tsv:3: empty id"):
        read_taxonomy(table)

"""One set of values that name nothing (``models.config.MISSING_LABELS``), read alike by every
reader of labelled records: BOLD TSV, BIOSCAN metadata, SINTAX headers, lineages, taxonomy tables;
provisional identifications (``Aedes cf. albopictus``) read alike by every reader of references."""

from __future__ import annotations

import logging

import pytest

from clibd_cli.data.bioscan import Bioscan5M
from clibd_cli.data.bold import BoldSource
from clibd_cli.data.fasta import FastaSource
from clibd_cli.io.lineages import Provisional, header_lineage, parse_lineage
from clibd_cli.io.tables import read_taxonomy
from models.config import MISSING_LABELS, is_missing_label
from models.tokenizers import label_string

BARCODE = "ACGT" * 60
# as sources write them: BIOSCAN's not_classified, BOLD's None and NA, R's NA, UNITE's unidentified
SPELLINGS = ("", "not_classified", "Not classified", "None", "NA", "unidentified", "Unclassified", "unknown")


def test_the_spellings_cover_the_set():
    assert {s.lower().replace(" ", "_") for s in SPELLINGS} == MISSING_LABELS
    assert all(map(is_missing_label, SPELLINGS)) and is_missing_label(None) and is_missing_label(" NA ")
    assert not any(map(is_missing_label, ("Aedes", "Nabis", "Culicidae")))


@pytest.mark.parametrize("value", SPELLINGS)
def test_a_missing_value_reads_as_unlabelled_through_every_reader(value, tmp_path):
    """Family and species written as ``value``: None (or left out) whichever reader reads them."""
    bold = tmp_path / "bold.tsv"
    bold.write_text("processid\torder_name\tfamily_name\tgenus_name\tspecies_name\tnucleotides\n"
                    f"P1\tDiptera\t{value}\tAedes\t{value}\t{BARCODE}\n")
    bioscan = tmp_path / "metadata.csv"
    bioscan.write_text(f"processid,order,family,genus,species,dna_barcode,split\nP1,Diptera,{value},Aedes,{value},"
                       f"{BARCODE},\n")
    for source in (BoldSource(bold), Bioscan5M(bioscan)):
        (entry,) = source.records()
        record = entry.record
        assert (record.order, record.family, record.genus, record.species) == ("Diptera", None, "Aedes", None), source
    named = {"order": "Diptera", "genus": "Aedes"}
    table = tmp_path / "taxonomy.tsv"
    table.write_text(f"id\torder\tfamily\tgenus\tspecies\nP1\tDiptera\t{value}\tAedes\t{value}\n")
    assert read_taxonomy(table) == {"P1": named}
    written = value.replace(" ", "_")
    sintax = tmp_path / "sintax.fasta"
    sintax.write_text(f">P1;tax=o:Diptera,f:{written},g:Aedes,s:{written};\n{BARCODE}\n")
    (entry,) = FastaSource(sintax).records()
    assert (entry.record.order, entry.record.family, entry.record.genus, entry.record.species) == (
        "Diptera", None, "Aedes", None)
    assert parse_lineage(f"o__Diptera; f__{written}; g__Aedes; s__{written}") == (named, [])
    assert label_string({"order": "Diptera", "family": value, "genus": "Aedes", "species": value}) == "Diptera Aedes"


@pytest.mark.parametrize("value", ["NA", "None", "unknown"])
def test_a_lineage_that_names_nothing_is_unlabelled(value):
    assert parse_lineage(value) == ({}, []) and parse_lineage("Unassigned") == ({}, [])


def reference_labels(tmp_path, species: str) -> dict[str, dict[str, str | None]]:
    """The labels of one record whose species is written ``species`` (underscores for spaces where
    the form wants them), by reader: BOLD TSV, a taxonomy table's rank columns and lineage column,
    a SINTAX header, QIIME and RDP lineage headers."""
    written = species.replace(" ", "_")
    bold = tmp_path / "bold.tsv"
    bold.write_text(f"processid\torder_name\tgenus_name\tspecies_name\tnucleotides\nP1\tDiptera\tAedes\t{species}\t"
                    f"{BARCODE}\n")
    columns, lineage = tmp_path / "columns.tsv", tmp_path / "lineage.tsv"
    columns.write_text(f"id\torder\tgenus\tspecies\nP1\tDiptera\tAedes\t{species}\n")
    lineage.write_text(f"P1\to__Diptera;g__Aedes;s__{written}\n")
    sintax = tmp_path / "sintax.fasta"
    sintax.write_text(f">P1;tax=o:Diptera,g:Aedes,s:{written};\n{BARCODE}\n")
    got = {}
    for reader, source in (("bold", BoldSource(bold)), ("sintax", FastaSource(sintax))):
        (entry,) = source.records()
        got[reader] = {rank: getattr(entry.record, rank) for rank in ("order", "genus", "species")
                       if getattr(entry.record, rank)}
    got |= {"columns": read_taxonomy(columns)["P1"], "lineage": read_taxonomy(lineage)["P1"],
            "qiime": header_lineage("P1", f"o__Diptera; g__Aedes; s__{written}")[1],
            "rdp": {rank: name for rank, name in header_lineage("P1", f"Diptera;Culicidae;Aedes;{written}")[1].items()
                    if rank != "family"}}
    return got


@pytest.mark.parametrize("species", ["Aedes cf. albopictus", "Aedes aff. albopictus", "Aedes nr. albopictus",
                                     "Aedes albopictus?", "Aedes cf albopictus", "Aedes sp. nr. albopictus",
                                     "Aedes (cf. albopictus)", "Aedes [aff. albopictus]"])
def test_a_provisional_identification_names_its_genus_not_a_species_in_every_reference_form(
        species, tmp_path, caplog):
    """Open nomenclature's cf., aff., nr., ?: the record counts for its genus and above, as ``Aedes sp.``
    does, never as a species of its own that a query could be named; one warning per file counts them."""
    with caplog.at_level(logging.WARNING, logger="clibd"):
        got = reference_labels(tmp_path, species)
    assert got == dict.fromkeys(got, {"order": "Diptera", "genus": "Aedes"})
    warned = [r.getMessage() for r in caplog.records if "provisional identification" in r.getMessage()]
    assert len(warned) == 4 and all(f"1 record with a provisional identification (cf., aff., nr. or ?; the first is "
                                    f"{species!r}" in m for m in warned), warned


@pytest.mark.parametrize("species", ["Megaselia sp. BOLD:ACZ1234", "Diptera sp. 3", "Aedes affinis",
                                     "Aedes nearcticus", "Aedes (Stegomyia) albopictus", "Aedes pipiens s.l."])
def test_interim_names_and_epithets_like_a_qualifier_stay_species(species, tmp_path, caplog):
    """BOLD's interim names name a species (a BIN's, a morphospecies) as before; ``affinis`` is no ``aff.``."""
    with caplog.at_level(logging.WARNING, logger="clibd"):
        got = reference_labels(tmp_path, species)
    assert got == dict.fromkeys(got, {"order": "Diptera", "genus": "Aedes", "species": species})
    assert "provisional" not in caplog.text


def test_a_species_not_identified_names_no_species_in_bold_either(tmp_path):
    """``Aedes sp.`` in BOLD's species column is the genus alone, as in every other form."""
    got = reference_labels(tmp_path, "Aedes sp.")
    assert got == dict.fromkeys(got, {"order": "Diptera", "genus": "Aedes"})


def test_a_header_name_a_taxonomy_table_replaces_is_not_counted_as_provisional(tmp_path, caplog):
    """With ``--taxonomy`` the table's names are the record's: a ``cf.`` in the header it replaces lost
    nothing, so no warning says a rank was left unnamed."""
    fasta, table = tmp_path / "refs.fasta", tmp_path / "taxonomy.tsv"
    fasta.write_text(f">P1;tax=o:Diptera,g:Aedes,s:Aedes_cf._albopictus;\n{BARCODE}\n")
    table.write_text("id\torder\tgenus\tspecies\nP1\tDiptera\tAedes\tAedes albopictus\n")
    with caplog.at_level(logging.WARNING, logger="clibd"):
        (entry,) = FastaSource(fasta, table).records()
    assert entry.record.species == "Aedes albopictus" and "provisional" not in caplog.text


def test_a_bold_table_with_a_repeated_id_warns_of_its_provisional_names_once(tmp_path, caplog):
    """The repeated ids' lines are found by reading the table again, silently (it warned twice)."""
    from clibd_cli.reference.sources import read_references
    from models.errors import ClibdError

    bold = tmp_path / "bold.tsv"
    bold.write_text("processid\torder_name\tgenus_name\tspecies_name\tnucleotides\n"
                    + "".join(f"{pid}\tDiptera\tAedes\tAedes cf. albopictus\t{BARCODE}\n" for pid in ("P1", "P2", "P1")))
    with caplog.at_level(logging.WARNING, logger="clibd"), pytest.raises(ClibdError, match="must be unique"):
        read_references([str(bold)], "dna")
    assert caplog.text.count("provisional identification") == 1, caplog.text


def test_the_provisional_warning_counts_each_record_once_and_names_the_first(caplog):
    """A record read twice (its header, then a lineage of the same line) is one record; the
    warning cites the first provisional name met and its line, not the last."""
    provisional = Provisional()
    for line, species in ((3, "Aedes cf. albopictus"), (3, "Aedes cf. albopictus"), (7, "Culex aff. pipiens")):
        assert provisional.named(line, {"genus": species.split()[0], "species": species}) == {
            "genus": species.split()[0]}
    with caplog.at_level(logging.WARNING, logger="clibd"):
        provisional.warn("refs.fasta")
    assert "refs.fasta:3: 2 records with a provisional identification" in caplog.text, caplog.text
    assert "the first is 'Aedes cf. albopictus'" in caplog.text, caplog.text

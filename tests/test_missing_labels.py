"""One set of values that name nothing (``models.config.MISSING_LABELS``), read alike by every
reader of labelled records: BOLD TSV, BIOSCAN metadata, SINTAX headers, lineages, taxonomy tables."""

from __future__ import annotations

import pytest

from clibd_cli.data.bioscan import Bioscan5M
from clibd_cli.data.bold import BoldSource
from clibd_cli.data.fasta import FastaSource
from clibd_cli.io.lineages import parse_lineage
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

"""Lineages carried in FASTA headers (UNITE, MIDORI2, QIIME 2 / RDP, SINTAX), read by position or prefix."""

import pytest

from clibd_cli.data.fasta import FastaSource
from clibd_cli.io.lineages import header_lineage, parse_lineage
from clibd_cli.io.tables import read_taxonomy

AEDES = {"order": "Diptera", "family": "Culicidae", "genus": "Aedes", "species": "Aedes albopictus"}


def test_an_unranked_lineage_of_exactly_the_four_ranks_is_read():
    """An RDP-style header that starts at order (no Root, no phylum) still names the ranks."""
    assert header_lineage("MT153946", "Diptera;Culicidae;Aedes;Aedes_albopictus") == ("MT153946", AEDES, [])
    assert header_lineage("MT153946", "Culicidae;Aedes;Aedes_albopictus") is None  # three levels: not one


def test_an_unranked_lineage_with_an_empty_level_among_its_last_four_is_refused():
    """Read by position, an empty family would shift nothing but name nothing either: it is an
    error that says what the lineage needs, not a lineage read with its family missing."""
    with pytest.raises(ValueError, match="needs at least 4 levels ending with order, family, genus, species"):
        parse_lineage("Root;Animalia;Diptera;;Aedes;Aedes_albopictus")


def test_a_description_of_key_value_annotations_is_no_lineage():
    """BOLD-style ``key=value`` annotations separated by ``;`` are not an unranked lineage, even
    with four of them and a last value of two words."""
    assert header_lineage("BIOUG123", "marker=COI-5P;country=Canada;province=Ontario;site=Long Point") is None


def test_unite_and_midori2_headers_give_the_id_before_the_lineage():
    unite = "Aedes_albopictus|MT153946|SH1227328.09FU|reps|o__Diptera;f__Culicidae;g__Aedes;s__Aedes_albopictus"
    assert header_lineage(unite, "") == ("Aedes_albopictus|MT153946|SH1227328.09FU|reps", AEDES, [])
    midori = "MG559732.1.<1.>690###root_1;Diptera_7147;Culicidae_7157;Aedes_7158;Aedes_albopictus_7160"
    assert header_lineage(midori, "") == ("MG559732.1.<1.>690", AEDES, [])
    assert header_lineage("q1", "size=3;sample=pond") is None  # annotations, not a lineage


def test_an_epithet_only_species_is_joined_to_its_genus_in_sintax_headers_and_tables(tmp_path):
    """``s:albopictus`` below ``g:Aedes`` is Aedes albopictus, as Greengenes' ``s__albopictus`` is,
    not a species ``albopictus`` of no genus (which a ``Culex albopictus`` would share)."""
    sintax = tmp_path / "sintax.fasta"
    sintax.write_text(">MT153946;tax=o:Diptera,f:Culicidae,g:Aedes,s:albopictus;\nACGTACGTACGT\n")
    (entry,) = FastaSource(sintax).records()
    assert {rank: getattr(entry.record, rank) for rank in AEDES} == AEDES
    table = tmp_path / "taxonomy.tsv"
    table.write_text("id\torder\tfamily\tgenus\tspecies\nMT153946\tDiptera\tCulicidae\tAedes\talbopictus\n")
    assert read_taxonomy(table) == {"MT153946": AEDES}
    assert header_lineage("MT153946", "o__Diptera;f__Culicidae;g__Aedes;s__albopictus") == ("MT153946", AEDES, [])


def test_an_epithet_of_several_words_is_joined_to_its_genus_and_a_lower_case_binomial_is_not():
    """``s__pipiens_s.l.`` or a subspecies' ``albopictus albopictus`` below its genus is that genus's species
    (it was a species ``pipiens s.l.`` of no genus, shared by every genus with such an epithet); a binomial
    written in lower case, ``aedes albopictus``, is not given its genus twice."""
    culex = {"order": "Diptera", "genus": "Culex", "species": "Culex pipiens s.l."}
    assert header_lineage("A2", "o__Diptera;g__Culex;s__pipiens_s.l.") == ("A2", culex, [])
    trinomial = header_lineage("A3", "o__Diptera;g__Aedes;s__albopictus_albopictus")[1]
    assert trinomial["species"] == "Aedes albopictus albopictus"
    assert header_lineage("A4", "o__Diptera;g__Aedes;s__aedes_albopictus")[1]["species"] == "aedes albopictus"

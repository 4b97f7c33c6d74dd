"""Reference records whose label looks wrong (``clibd_cli/reference/label_check.py``): a barcode
filed under another genus than its near-identical look-alikes is flagged by ``clibd index``."""

from __future__ import annotations

from fixtures.specimens import Specimen, run, specimens, twins, write_fasta

from clibd_cli.reference.index_reading import load_index
from clibd_cli.reference.label_check import suspect_labels


def misfiled(records: list[Specimen]) -> tuple[list[Specimen], Specimen, Specimen]:
    """``records`` with each barcode twice, plus a copy of the first record's barcode filed under
    the genus (and species) of a record of another genus: the misfiled one and its true kin."""
    kin = records[0]
    other = next(r for r in records if r.lineage["genus"] != kin.lineage["genus"] and r.lineage["species"])
    wrong = Specimen("MISFILED-1", kin.barcode, dict(other.lineage))
    return twins(records) + [wrong], wrong, kin


def variant(barcode: str) -> str:
    """``barcode`` with one base changed in its middle: near-identical, another vector."""
    middle = len(barcode) // 2
    return barcode[:middle] + ("A" if barcode[middle] != "A" else "C") + barcode[middle + 1:]


def test_a_barcode_filed_under_another_genus_is_flagged(tmp_path):
    references, wrong, kin = misfiled(specimens(n_species=6, per_species=3, unnamed=0))
    references.append(Specimen("KIN-VARIANT", variant(kin.barcode), kin.lineage))  # near-identical only
    result = run("index", "-m", "kmer", write_fasta(tmp_path / "ref.fa", references), "-o", tmp_path / "index")
    assert result.exit_code == 0, result.stderr
    assert "1 reference record is near-identical (similarity ≥ 0.99) only to records of another genus" in result.stderr
    assert f"MISFILED-1 ({wrong.lineage['genus']}; like {kin.lineage['genus']}, 1.000)" in result.stderr
    (suspect,) = suspect_labels(load_index(tmp_path / "index"))  # its two look-alikes are not flagged
    assert (suspect.id, suspect.label, suspect.like) == ("MISFILED-1", wrong.lineage["genus"], kin.lineage["genus"])
    assert suspect.similarity == 1.0  # the nearest look-alike is an identical twin, not the variant
    assert suspect_labels(load_index(tmp_path / "index"), rank="tribe") == []  # a rank the index lacks


def test_records_sharing_one_vector_are_all_weighed(tmp_path):
    """A barcode held by more records than the search returns (nine of one genus, five of
    another): each has identical twins of its own genus, so none is flagged; one record of
    another genus among nine is."""
    records = specimens(n_species=6, per_species=3, unnamed=0)
    kin = records[0]
    other = next(r for r in records if r.lineage["genus"] != kin.lineage["genus"])
    copies = [Specimen(f"KIN-{i}", kin.barcode, kin.lineage) for i in range(9)]
    mixed = records[1:] + copies + [Specimen(f"OTHER-{i}", kin.barcode, dict(other.lineage)) for i in range(5)]
    assert run("-q", "index", "-m", "kmer", write_fasta(tmp_path / "mixed.fa", mixed), "-o", tmp_path / "mixed").exit_code == 0
    assert suspect_labels(load_index(tmp_path / "mixed")) == []
    bare = Specimen("BARE-0", kin.barcode, {**kin.lineage, "genus": None, "species": None})  # weighs nothing
    one = records[1:] + copies + [Specimen("OTHER-0", kin.barcode, dict(other.lineage)), bare]
    assert run("-q", "index", "-m", "kmer", write_fasta(tmp_path / "one.fa", one), "-o", tmp_path / "one").exit_code == 0
    assert [s.id for s in suspect_labels(load_index(tmp_path / "one"))] == ["OTHER-0"]


def test_a_clean_reference_and_a_lone_look_alike_are_not_flagged(tmp_path):
    records = specimens(n_species=6, per_species=3, unnamed=0)
    result = run("index", "-m", "kmer", write_fasta(tmp_path / "ref.fa", twins(records)), "-o", tmp_path / "clean")
    assert result.exit_code == 0, result.stderr
    assert "another genus" not in result.stderr
    # one near-identical record of another genus is not enough to doubt a label (WITNESSES = 2)
    kin = records[0]
    other = next(r for r in records if r.lineage["genus"] != kin.lineage["genus"])
    lone = records + [Specimen("LONE-1", kin.barcode, dict(other.lineage))]
    result = run("index", "-m", "kmer", write_fasta(tmp_path / "lone.fa", lone), "-o", tmp_path / "lone")
    assert result.exit_code == 0, result.stderr
    assert "another genus" not in result.stderr
    # nor are near-identical records filed at no genus, identical or not: unlabelled look-alikes say nothing
    bare = {"order": kin.lineage["order"], "family": None, "genus": None, "species": None}
    unlabelled = lone + [Specimen(f"BARE-{i}", barcode, bare)
                         for i, barcode in enumerate([kin.barcode, variant(kin.barcode)] * 2)]
    result = run("index", "-m", "kmer", write_fasta(tmp_path / "bare.fa", unlabelled), "-o", tmp_path / "bare")
    assert result.exit_code == 0, result.stderr
    assert "another genus" not in result.stderr


def test_the_warning_names_the_first_ten_suspects_and_counts_the_others():
    from clibd_cli.reference.label_check import Suspect, suspects_warning

    one = suspects_warning([Suspect("r0", "Aedes", "Culex", 0.995)])
    assert one.startswith("1 reference record is near-identical (similarity ≥ 0.99) only to records of "
                          "another genus: its label may be wrong, and a query that finds it is named after "
                          "it: r0 (Aedes; like Culex, 0.995)")
    eleven = suspects_warning([Suspect(f"r{i}", "Aedes", "Culex", 1.0) for i in range(11)])
    assert eleven.startswith("11 reference records are") and "their labels may be wrong" in eleven
    assert eleven.endswith("r9 (Aedes; like Culex, 1.000) and 1 more") and "r10" not in eleven


def test_suspects_come_in_record_order_each_like_the_label_most_of_its_look_alikes_carry(tmp_path):
    """OTHER-0 (first in the file, in a node of ten records) before ODD-1 (in a node of three,
    searched first); ODD-1 shares its barcode with two records of one genus and is near-identical
    to three of another: it is like the three."""
    records = specimens(n_species=6, per_species=3, unnamed=0)
    k1 = records[0]
    k2 = next(r for r in records if r.lineage["genus"] != k1.lineage["genus"])
    g3 = next(r for r in records if r.lineage["genus"] not in (k1.lineage["genus"], k2.lineage["genus"]))
    group1 = [Specimen(f"KIN-{i}", k1.barcode, k1.lineage) for i in range(9)]
    group1.append(Specimen("OTHER-0", k1.barcode, dict(k2.lineage)))
    group2 = [k2, Specimen(f"{k2.id}-b", k2.barcode, k2.lineage),
              Specimen("ODD-1", k2.barcode, dict(g3.lineage))]
    group2 += [Specimen(f"VARIANT-{i}", variant(k2.barcode), k1.lineage) for i in range(3)]
    rest = [r for r in records if r is not k1 and r.lineage["genus"] != k2.lineage["genus"]]
    fasta = write_fasta(tmp_path / "ref.fa", group1 + rest + group2)
    assert run("-q", "index", "-m", "kmer", fasta, "-o", tmp_path / "index").exit_code == 0
    found = [(s.id, s.like) for s in suspect_labels(load_index(tmp_path / "index"))]
    assert found == [("OTHER-0", k1.lineage["genus"]), ("ODD-1", k1.lineage["genus"])]

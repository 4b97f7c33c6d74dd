"""``clibd index`` on references as they come: QIIME 2 taxonomy TSV + FASTA, UNITE and RDP
lineage headers, BOLD public data TSV (v4 and v5 layouts)."""

from __future__ import annotations

import pytest
from fixtures.specimens import error_line, run, specimens, tsv, write_fasta

from clibd_cli.reference.index_reading import load_index

RANKS = ("order", "family", "genus", "species")


@pytest.fixture(scope="module")
def records():
    return specimens(n_species=5, per_species=3, unnamed=2)


def indexed(tmp_path, *sources, extra=()) -> dict[str, dict[str, str | None]]:
    """Build a k-mer index of ``sources``; its records' labels by id."""
    built = run("-q", "index", "-m", "kmer", "-k", "5", *sources, *extra, "-o", tmp_path / "index")
    assert built.exit_code == 0, built.stderr
    index = load_index(tmp_path / "index")
    return labels_by_id(index)


def labels_by_id(index) -> dict[str, dict[str, str | None]]:
    return {record_id: {rank: index.labels[rank][i] for rank in RANKS}
            for i, record_id in enumerate(index.ids)}


def name(record, rank: str) -> str:
    return (record.lineage[rank] or "").replace(" ", "_")


def fasta(path, headers, records):
    path.write_text("".join(f">{h}\n{r.barcode}\n" for h, r in zip(headers, records)))
    return path


def test_qiime2_taxonomy_tsv_with_plain_fasta(records, tmp_path):
    rows = ["Feature ID\tTaxon\tConfidence"]
    for r in records:
        levels = ["k__Animalia", "p__Arthropoda"] + [f"{rank[0]}__{name(r, rank)}" for rank in RANKS]
        rows.append(f"{r.id}\t{'; '.join(levels)}\t0.99")
    (tmp_path / "taxonomy.tsv").write_text("\n".join(rows) + "\n")
    seqs = write_fasta(tmp_path / "seqs.fasta", records, sintax=False)
    got = indexed(tmp_path, seqs, extra=("--taxonomy", tmp_path / "taxonomy.tsv"))
    assert got == {r.id: r.lineage for r in records}  # empty s__ is a missing species
    assert load_index(tmp_path / "index").manifest["above_order"] == {
        r.lineage["order"]: {"kingdom": "Animalia", "phylum": "Arthropoda"} for r in records}


def test_taxonomy_rows_that_name_no_rank_are_warned_about_once_with_the_first_line(records, tmp_path):
    """``Unassigned`` (as QIIME 2 writes it) or ranks above order only leave a record unlabelled:
    said once, with how many and where the first is, not left silent."""
    rows = ["Feature ID\tTaxon"] + [f"{r.id}\to__{name(r, 'order')}; f__{name(r, 'family')}" for r in records[2:]]
    rows[2:2] = [f"{records[0].id}\tUnassigned", f"{records[1].id}\tk__Animalia; p__Arthropoda"]
    rows[-1] = rows[-1].split("\t")[0] + f"\tk__Animalia; o__{name(records[-1], 'order')}"  # order only: a rank
    (tmp_path / "taxonomy.tsv").write_text("\n".join(rows) + "\n")
    seqs = write_fasta(tmp_path / "seqs.fasta", records, sintax=False)
    built = run("index", "-m", "kmer", "-k", "5", seqs, "--taxonomy", tmp_path / "taxonomy.tsv", "-o", tmp_path / "ix")
    assert built.exit_code == 0, built.stderr
    assert built.stderr.count("naming no rank from order to species") == 1
    assert "taxonomy.tsv:3: 2 ids of the taxonomy table naming no rank from order to species" in built.stderr
    assert f"the first is '{records[0].id}': 'Unassigned'" in built.stderr
    got = labels_by_id(load_index(tmp_path / "ix"))
    assert got[records[0].id] == got[records[1].id] == dict.fromkeys(RANKS)


def test_unknown_rank_prefixes_are_named_once_per_file(records, tmp_path):
    """``x:Foo`` or vsearch's strain ``t:`` in SINTAX headers, ``sk__``, ``t__`` or ``x__`` in lineage
    headers and taxonomy tables are none of d k p c o f g s: their names are dropped, and each file
    says so once, at its first such line, not once per record."""
    def header(r, extra: str) -> str:
        return f"{r.id};tax=o:{name(r, 'order')},f:{name(r, 'family')},{extra}g:{name(r, 'genus')};"

    def lineage(r, extra: str) -> str:
        return f"{r.id} {extra}o__{name(r, 'order')};f__{name(r, 'family')};g__{name(r, 'genus')}"

    first = fasta(tmp_path / "a.fasta", [header(r, "") for r in records[:2]]
                  + [header(r, "x:Foo,t:,") for r in records[2:6]], records[:6])
    second = fasta(tmp_path / "b.fasta", [header(r, "t:strain_1,") for r in records[6:9]], records[6:9])
    third = fasta(tmp_path / "c.fasta", [lineage(r, "k__Animalia;") for r in records[9:11]]
                  + [lineage(r, "sk__Eukaryota;") for r in records[11:13]] + [lineage(r, "t__x;") for r in records[13:]],
                  records[9:])
    built = run("index", "-m", "kmer", "-k", "5", first, second, third, "-o", tmp_path / "ix")
    assert built.exit_code == 0, built.stderr
    assert built.stderr.count("unknown rank prefix") == 3
    assert (f"{first}:5: unknown rank prefixes 'x:', 't:' (in 4 records of this file): their names are "
            "dropped; the ranks clibd reads are d, k, p, c, o, f, g, s (domain to species)") in built.stderr
    assert f"{second}:1: unknown rank prefix 't:' (in 3 records of this file)" in built.stderr
    assert f"{third}:5: unknown rank prefixes 'sk__', 't__' (in {len(records) - 11} records" in built.stderr
    got = labels_by_id(load_index(tmp_path / "ix"))
    assert got == {r.id: {**r.lineage, "species": None} for r in records}

    rows = ["Feature ID\tTaxon", *(f"{r.id}\tk__Animalia; x__Foo; o__{name(r, 'order')}" for r in records[:1]),
            *(f"{r.id}\tk__Animalia; o__{name(r, 'order')}" for r in records[1:])]
    (tmp_path / "taxonomy.tsv").write_text("\n".join(rows) + "\n")
    plain = write_fasta(tmp_path / "plain.fasta", records, sintax=False)
    built = run("index", "-m", "kmer", "-k", "5", plain, "--taxonomy", tmp_path / "taxonomy.tsv", "-o", tmp_path / "iy")
    assert built.exit_code == 0, built.stderr
    assert f"taxonomy.tsv:2: unknown rank prefix 'x__' (in 1 record of this file)" in built.stderr


def test_unite_and_rdp_headers(records, tmp_path):
    unite = [f"{name(r, 'species') or 'unidentified'}|MT{i:06d}|SH{i}.09FU|reps|k__Animalia;p__Arthropoda;"
             + ";".join(f"{rank[0]}__{name(r, rank)}" for rank in RANKS) for i, r in enumerate(records)]
    got = indexed(tmp_path / "u", fasta(tmp_path / "unite.fasta", unite, records))
    ids = [h.rsplit("|", 1)[0] for h in unite]
    assert got == {i: r.lineage for i, r in zip(ids, records)}

    named = [r for r in records if r.lineage["species"]]
    rdp = [f"{r.id}\tRoot;Animalia;Arthropoda;Insecta;" + ";".join(name(r, rank) for rank in RANKS)
           for r in named]
    got = indexed(tmp_path / "r", fasta(tmp_path / "rdp.fasta", rdp, named))
    assert got == {r.id: r.lineage for r in named}


def test_midori2_headers_in_its_raw_rdp_and_sintax_releases(records, tmp_path):
    """MIDORI2 appends each name's NCBI taxid and fills a rank NCBI lacks with the rank's name and
    the taxon below (``order_Culicidae_7157``): the taxids are dropped, a filled rank is missing."""
    named = [r for r in records if r.lineage["species"]]
    filled = named[0].id  # its order filled in by MIDORI2

    def levels(r) -> list[str]:
        names = [f"order_{name(r, 'family')}" if r.id == filled else name(r, "order")]
        names += [name(r, rank) for rank in RANKS[1:]]
        return ["Eukaryota_2759", "Arthropoda_6656", "Insecta_50557"] + [f"{n}_{7000 + k}" for k, n in enumerate(names)]

    expected = {r.id: dict(r.lineage, order=None) if r.id == filled else r.lineage for r in named}
    raw = [f"{r.id}.1.<1.>658###root_1;" + ";".join(levels(r)) for r in named]
    got = indexed(tmp_path / "raw", fasta(tmp_path / "raw.fasta", raw, named))
    assert got == {f"{i}.1.<1.>658": lineage for i, lineage in expected.items()}
    # the RDP release writes the species with a space: "Homo sapiens_9606"
    rdp = [f"{r.id}\troot_1;" + ";".join(levels(r)[:-1] + [levels(r)[-1].replace("_", " ", 1)]) for r in named]
    assert indexed(tmp_path / "rdp", fasta(tmp_path / "rdp.fasta", rdp, named)) == expected
    sintax = [f"{r.id};tax=" + ",".join(f"{k}:{v}" for k, v in zip("kpcofgs", levels(r))) + ";" for r in named]
    assert indexed(tmp_path / "sintax", fasta(tmp_path / "sintax.fasta", sintax, named)) == expected


def test_an_unranked_lineage_that_ends_above_species_is_refused_with_its_line(records, tmp_path):
    """Unranked levels are read by position: a record identified to genus would be read one rank
    off (order = class, ..., species = its genus, even "Tortricidae Acleris"), so it is refused."""
    from clibd_cli.io.lineages import parse_lineage

    with pytest.raises(ValueError, match="must end with a species of two words"):
        parse_lineage("Root;Animalia;Arthropoda;Insecta;Lepidoptera;Tortricidae;Acleris")
    unnamed = next(r for r in records if not r.lineage["species"])
    named = next(r for r in records if r.lineage["species"])
    lineages = {r.id: "Root;Animalia;Arthropoda;Insecta;" + ";".join(name(r, k) for k in RANKS if r.lineage[k])
                for r in (named, unnamed)}
    rdp = fasta(tmp_path / "rdp.fasta", [f"{i}\t{lineage}" for i, lineage in lineages.items()], [named, unnamed])
    result = run("index", "-m", "kmer", rdp, "-o", tmp_path / "ix")
    assert result.exit_code == 1
    assert "rdp.fasta:3: an unranked lineage is read by position" in error_line(result)
    assert f"ends with {name(unnamed, 'genus')!r}" in error_line(result)
    table = tmp_path / "taxonomy.tsv"
    table.write_text("Feature ID\tTaxon\n" + "".join(f"{i}\t{lineage}\n" for i, lineage in lineages.items()))
    plain = write_fasta(tmp_path / "plain.fasta", [named, unnamed], sintax=False)
    result = run("index", "-m", "kmer", plain, "--taxonomy", table, "-o", tmp_path / "iy")
    assert result.exit_code == 1
    assert "taxonomy.tsv:3: an unranked lineage is read by position" in error_line(result)


def test_a_ranked_header_with_an_unranked_level_is_refused_with_its_line(records, tmp_path):
    bad = fasta(tmp_path / "bad.fasta", ["a k__Animalia; o__Diptera", "b k__Animalia; Diptera"], records[:2])
    result = run("index", "-m", "kmer", bad, "-o", tmp_path / "index")
    assert result.exit_code == 1
    assert error_line(result).endswith("bad.fasta:3: lineage level 'Diptera' lacks a rank prefix "
                                       "such as o__ or g__")


@pytest.mark.parametrize("layout", ["v4", "v5"])
def test_bold_public_data_tsv(records, tmp_path, layout):
    if layout == "v4":
        header = ["processid", "sampleid", "bin_uri", "phylum_name", "order_name", "family_name",
                  "genus_name", "species_name", "markercode", "nucleotides"]
    else:
        header = ["processid", "sampleid", "bin_uri", "kingdom", "phylum", "order", "family", "subfamily",
                  "genus", "species", "marker_code", "nuc"]
    lines = ["\t".join(header)]
    for i, r in enumerate(records):
        cells = {"processid": r.id, "sampleid": f"S{i}", "bin_uri": f"BOLD:AAA{i:04d}",
                 "kingdom": "Animalia",
                 "phylum": "Arthropoda", "phylum_name": "Arthropoda", "subfamily": "",
                 "markercode": "COI-5P", "marker_code": "COI-5P",
                 "nucleotides": "--" + r.barcode[:300] + "-" + r.barcode[300:], "nuc": r.barcode}
        for rank in RANKS:
            cells[rank] = cells[f"{rank}_name"] = r.lineage[rank] or ""
        lines.append("\t".join(cells[c] for c in header))
    other = {**dict(zip(header, lines[1].split("\t"))), "processid": "ITS0001", "markercode": "ITS",
             "marker_code": "ITS"}
    lines.append("\t".join(other[c] for c in header))
    (tmp_path / "bold.tsv").write_text("\n".join(lines) + "\n")
    built = run("index", "-m", "kmer", "-k", "5", tmp_path / "bold.tsv", "-o", tmp_path / "index")
    assert built.exit_code == 0, built.stderr
    assert "1 record of other markers than COI-5P skipped (1 ITS)" in built.stderr
    index = load_index(tmp_path / "index")
    assert labels_by_id(index) == {r.id: r.lineage for r in records}
    above = {"phylum": "Arthropoda"} if layout == "v4" else {"kingdom": "Animalia", "phylum": "Arthropoda"}
    assert index.manifest["above_order"] == {r.lineage["order"]: above for r in records}  # kept per order
    # the gaps were dropped: the record's own barcode is its nearest reference, at similarity 1
    query = write_fasta(tmp_path / "q.fa", records[:1], sintax=False)
    row = tsv(run("-q", "classify", "--index", tmp_path / "index", query).stdout)[0]
    assert float(row["nearest_sim"]) == pytest.approx(1.0, abs=1e-3)


def test_a_table_with_a_processid_but_no_sequence_column_is_not_read_as_bold(tmp_path):
    """BOLD's header needs a sequence column too: a taxonomy table keyed by processid given as
    the reference is named as no FASTA, not an internal error of the BOLD reader."""
    (tmp_path / "t.tsv").write_text("processid\tspecies\nX1\tAedes aegypti\n")
    built = run("index", "-m", "kmer", "-k", "5", tmp_path / "t.tsv", "-o", tmp_path / "index")
    assert built.exit_code == 1
    assert error_line(built).startswith(f"clibd: error: {tmp_path / 't.tsv'}:1: expected a FASTA header")


def test_skipped_records_are_named_and_held_out_ones_called_so(tmp_path):
    """Which records were left out, and why; held-out queries are not called reference records."""
    from fixtures.specimens import run, specimens, write_fasta

    records = specimens(n_species=4, per_species=4, unnamed=0)
    reference = write_fasta(tmp_path / "ref.fa", records[:12])
    with open(reference, "a") as handle:
        handle.write(">tiny;tax=o:Diptera,f:Culicidae,g:Aedes,s:Aedes_vexans;\nACGTACGT\n")
    held_out = write_fasta(tmp_path / "held.fa", records[12:])
    with open(held_out, "a") as handle:
        handle.write(">protein;tax=o:Diptera,f:Culicidae,g:Aedes,s:Aedes_vexans;\n" + "MKVL" * 40 + "\n")
    result = run("index", "-m", "kmer", reference, "--calibrate-on", held_out, "-o", tmp_path / "ix")
    assert "reference records skipped (no usable barcode or photo), 1 in all: tiny (too short" in result.stderr
    assert "held-out (--calibrate-on) queries skipped (no usable barcode or photo), 1 in all: protein (not a" \
        in result.stderr



def test_a_taxonomy_table_for_one_input_and_headers_for_another(tmp_path):
    """--taxonomy labels the plain FASTA; the other input carries SINTAX headers: both indexed
    (a table that names none of a file's records is refused only when they have no header
    taxonomy either)."""
    from fixtures.specimens import run, specimens, write_fasta

    records = specimens(n_species=4, per_species=4, unnamed=0)
    plain = write_fasta(tmp_path / "a.fa", records[:8], sintax=False)
    headed = write_fasta(tmp_path / "b.fa", records[8:])
    table = tmp_path / "tax.tsv"
    table.write_text("id\torder\tfamily\tgenus\tspecies\n" + "".join(
        f"{r.id}\t" + "\t".join(r.lineage[k] or "" for k in ("order", "family", "genus", "species")) + "\n"
        for r in records[:8]))
    built = run("-q", "index", "-m", "kmer", plain, headed, "--taxonomy", table, "-o", tmp_path / "ix")
    assert built.exit_code == 0, built.stderr
    wrong = tmp_path / "wrong.tsv"
    wrong.write_text("id\tgenus\nnot-a-record\tAedes\n")
    refused = run("-q", "index", "-m", "kmer", plain, headed, "--taxonomy", wrong, "-o", tmp_path / "iy")
    assert refused.exit_code == 1 and "names no record of" in refused.stderr


def test_names_that_name_nothing_are_missing_ranks_in_sintax_headers_and_tables(records, tmp_path):
    """``Aedes sp.``, ``unidentified``: missing ranks whatever the form (as in UNITE lineages),
    never a species clibd could assert."""
    first, second = records[:2]
    genus = name(first, "genus")
    headers = [f"{first.id};tax=o:{name(first, 'order')},f:unidentified,g:{genus},s:{genus}_sp.;",
               f"{second.id};tax=o:{name(second, 'order')},g:{name(second, 'genus')},s:{name(second, 'genus')};"]
    got = indexed(tmp_path / "s", fasta(tmp_path / "sintax.fasta", headers, [first, second]))
    want = {r.id: {**dict.fromkeys(RANKS), "order": r.lineage["order"], "genus": r.lineage["genus"]}
            for r in (first, second)}
    assert got == want
    table = tmp_path / "taxonomy.tsv"
    table.write_text("id\torder\tfamily\tgenus\tspecies\n"
                     f"{first.id}\t{first.lineage['order']}\tUnidentified\t{first.lineage['genus']}\t"
                     f"{first.lineage['genus']} spp\n"
                     f"{second.id}\t{second.lineage['order']}\t\t{second.lineage['genus']}\t"
                     f"{second.lineage['genus']} sp.\n")
    plain = write_fasta(tmp_path / "plain.fasta", [first, second], sintax=False)
    assert indexed(tmp_path / "t", plain, extra=("--taxonomy", table)) == want


def test_provisional_identifications_leave_the_species_unnamed_in_the_index(records, tmp_path):
    """``Genus_cf._epithet`` and an epithet-only ``s:epithet``: the first counts for its genus (one
    warning for the file), the second is the species of its genus, in the index a query is named from."""
    first, second = records[:2]
    genus, epithet = name(first, "genus"), name(first, "species").split("_", 1)[1]
    headers = [f"{first.id};tax=o:{name(first, 'order')},g:{genus},s:{genus}_cf._{epithet};",
               f"{second.id};tax=o:{name(second, 'order')},g:{name(second, 'genus')},"
               f"s:{name(second, 'species').split('_', 1)[1]};"]
    path = fasta(tmp_path / "refs.fasta", headers, [first, second])
    built = run("index", "-m", "kmer", "-k", "5", path, "-o", tmp_path / "index")
    assert built.exit_code == 0, built.stderr
    assert ("refs.fasta:1: 1 record with a provisional identification (cf., aff., nr. or ?; the first is "
            f"'{first.lineage['genus']} cf. {epithet.replace('_', ' ')}')") in built.stderr
    kept = {r.id: {**dict.fromkeys(RANKS), **{rank: r.lineage[rank] for rank in ("order", "genus", "species")}}
            for r in (first, second)}
    assert labels_by_id(load_index(tmp_path / "index")) == {**kept, first.id: {**kept[first.id], "species": None}}


def test_reference_records_whose_headers_name_no_rank_are_warned_about(records, tmp_path):
    """A SINTAX header with ranks above order only (``tax=k:Animalia``), or none at all, leaves its
    record without a label: one warning names how many and the first ones."""
    headers = [f"{r.id};tax=o:{name(r, 'order')},g:{name(r, 'genus')};" for r in records[2:]]
    path = fasta(tmp_path / "refs.fasta", [f"{records[0].id};tax=k:Animalia,p:Arthropoda;", records[1].id, *headers],
                 records)
    built = run("index", "-m", "kmer", "-k", "5", path, "-o", tmp_path / "ix")
    assert built.exit_code == 0, built.stderr
    assert (f"reference records naming no rank from order to species, 2 in all (e.g. {records[0].id}, {records[1].id}): "
            "kept without a label") in built.stderr
    assert "name no rank" not in run("index", "-m", "kmer", "-k", "5", fasta(tmp_path / "ok.fasta", headers,
                                                                           records[2:]), "-o", tmp_path / "ok").stderr


def test_a_taxonomy_table_that_labels_no_record_is_named_in_the_error(records, tmp_path):
    rows = ["Feature ID\tTaxon"] + [f"{r.id}\tUnassigned" for r in records]
    (tmp_path / "taxonomy.tsv").write_text("\n".join(rows) + "\n")
    seqs = write_fasta(tmp_path / "seqs.fasta", records, sintax=False)
    built = run("index", "-m", "kmer", "-k", "5", seqs, "--taxonomy", tmp_path / "taxonomy.tsv", "-o", tmp_path / "ix")
    assert built.exit_code == 1
    assert "no reference record carries a taxonomy from order to species; the --taxonomy table labels none" in built.stderr

"""``clibd index``: building from FASTA/taxonomy tables/photos/dataset HDF5, ``info``, ``--append``,
photo calibrations, and clear refusals of bad references."""

import json
import shutil

import numpy as np

from clibd_cli.io.images import IMAGE_SUFFIXES
from clibd_cli.io.sequences import barcode_problem
from clibd_cli.reference.index_reading import load_index
from clibd_cli.reference.sources import References, read_references
from fixtures.samples import clibd_hdf5
from models.tokenizers import label_string
from fixtures.specimens import (
    Specimen, copy_photos, error_line, run, specimens, tsv, write_fasta, write_taxonomy,
)

RANKS = ("order", "family", "genus", "species")


def records_tsv(records) -> str:
    return "".join(f"{r.id}\t" + "\t".join(r.lineage[rank] or "" for rank in RANKS) + "\n" for r in records)


def test_build_writes_a_complete_verified_index(barcode_refs, tiny_model):
    from models import load_model

    index = barcode_refs.index
    assert sorted(p.name for p in index.iterdir()) == ["calibration.json", "holdings.npy", "index.bin", "manifest.json",
                                                       "nodes.npy", "protein_sketch.npy", "records.tsv", "sketch.npy"]
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["model_fingerprint"] == load_model(tiny_model).fingerprint()
    assert manifest["model"] == str(tiny_model.resolve())
    assert (manifest["modality"], manifest["dim"], manifest["metric"]) == ("dna", 32, "cosine")
    assert manifest["count"] == len(barcode_refs.records) and manifest["ranks"] == list(RANKS)
    assert manifest["hnsw"] == {"space": "ip", "M": 32, "ef_construction": 200, "ef": 128, "seed": 0}
    assert "index" in manifest["command"] and manifest["clibd_version"]
    assert set(manifest["sha256"]) == {"index.bin", "nodes.npy", "records.tsv", "calibration.json", "sketch.npy",
                                       "protein_sketch.npy", "holdings.npy"}
    # SINTAX headers read with underscores as spaces; records without species stay unlabelled there
    assert (index / "records.tsv").read_text() == "id\torder\tfamily\tgenus\tspecies\n" + \
        records_tsv(barcode_refs.records)
    calibration = json.loads((index / "calibration.json").read_text())
    assert list(calibration) == ["dna", "dna<500"] and calibration["dna"]["k"] == 20
    # a learned model's partial barcodes read their species by containment in the records' 5-mers
    assert "containment_source" not in calibration["dna"]
    assert (calibration["dna<500"]["containment"], calibration["dna<500"]["containment_source"]) == (["species"],
                                                                                                  "holdings")
    holdings = np.load(index / "holdings.npy")
    assert holdings.shape == (len(barcode_refs.records), 128) and holdings.dtype == np.uint8


def test_info_describes_and_verifies(barcode_refs, tmp_path):
    result = run("index", "info", barcode_refs.index)
    assert result.exit_code == 0
    manifest = json.loads((barcode_refs.index / "manifest.json").read_text())
    for text in (f"{len(barcode_refs.records)} records; dna embeddings, 32 dimensions",
                 manifest["model_fingerprint"], "HNSW: M=32", "species: 48 records, 8 labels",
                 "Confidence calibration for queries: dna"):
        assert text in result.stdout
    sketch = manifest["sketch"]
    assert (f"Off-target guard: k-mer sketch of 1 centroid (5-mers), floor {sketch['floor']:.3f}; "
            f"{sketch['stop_floor']:.3f} for barcodes that read as no protein; translation sketch of 1 centroid, "
            f"floor {sketch['protein']['floor']:.3f}; partial barcodes that meet a stop in every frame held to "
            f"{sketch['protein']['read_floors'][0]:.3f}-{sketch['protein']['read_floors'][-1]:.3f} by length") \
        in result.stdout
    broken = tmp_path / "broken"
    shutil.copytree(barcode_refs.index, broken)
    records = broken / "records.tsv"
    records.write_text(records.read_text().replace("Acleris", "ACLERIS"))
    assert "records.tsv: checksum mismatch" in error_line(run("index", "info", broken))
    assert run("index", "info", "--no-verify", broken).exit_code == 0
    assert run("index", "info", tmp_path / "nowhere").exit_code == 2


def test_a_folder_that_never_was_an_index_is_named_so_and_a_damaged_one_is_to_rebuild(barcode_refs, tmp_path):
    """An empty folder, one of FASTA files or a model directory given as an index is a usage error (exit 2)
    saying it is no index (was: exit 1, "rebuild with clibd index", as if one had been there); an index that
    lost its manifest keeps "rebuild with clibd index", exit 1."""
    empty, fastas, damaged = tmp_path / "empty", tmp_path / "fastas", tmp_path / "damaged"
    empty.mkdir()
    fastas.mkdir()
    shutil.copy(barcode_refs.fasta, fastas)
    why = ("not a clibd index directory (no manifest.json, nor any other file clibd index writes); give the "
           "folder clibd index -o wrote, or build one (clibd index -m MODEL REFERENCES -o DIR)")
    for folder in (empty, fastas):
        result = run("index", "info", folder)
        assert result.exit_code == 2, result.stderr
        assert error_line(result) == f"clibd: error: {folder}: {why}"
    (empty / "config.json").write_text("{}")  # a model directory where the index goes: exit 2 too
    result = run("index", "info", empty)
    assert result.exit_code == 2, result.stderr
    assert "(no manifest.json); it holds a model: give it as --model" in error_line(result)
    shutil.copytree(barcode_refs.index, damaged)
    (damaged / "manifest.json").unlink()
    result = run("index", "info", damaged)
    assert result.exit_code == 1, result.stderr
    assert error_line(result) == (f"clibd: error: {damaged}: not a clibd index directory (no manifest.json); "
                                  "rebuild with clibd index")


def test_taxonomy_table_gives_the_same_index_as_sintax_headers(barcode_refs, tiny_model, tmp_path):
    plain = write_fasta(tmp_path / "plain.fa", barcode_refs.records, sintax=False)
    taxonomy = write_taxonomy(tmp_path / "taxonomy.tsv", {r.id: r.lineage for r in barcode_refs.records})
    result = run("-q", "index", "-m", tiny_model, plain, "--taxonomy", taxonomy, "-o", tmp_path / "index")
    assert result.exit_code == 0, result.stderr
    for name in ("records.tsv", "nodes.npy", "index.bin"):
        assert (tmp_path / "index" / name).read_bytes() == (barcode_refs.index / name).read_bytes(), name
    bad = tmp_path / "bad.tsv"
    bad.write_text("processid\torder\nx\tDiptera\n")
    assert "missing column 'id'" in error_line(run("index", "-m", tiny_model, plain, "--taxonomy", bad,
                                                   "-o", tmp_path / "other"))


def test_a_taxonomy_table_wins_over_header_lineages_and_says_where_they_disagree(barcode_refs, tmp_path):
    records = barcode_refs.records
    headed = write_fasta(tmp_path / "headed.fa", records)  # SINTAX headers
    lineages = {r.id: dict(r.lineage) for r in records}
    for r in records[3:5]:
        lineages[r.id]["species"] = "Aedes table"
    taxonomy = write_taxonomy(tmp_path / "taxonomy.tsv", lineages)
    result = run("index", "-m", "kmer", headed, "--taxonomy", taxonomy, "-o", tmp_path / "index")
    assert result.exit_code == 0, result.stderr
    # was silent
    warning = (f"headed.fa: 2 records whose header lineage disagrees with the taxonomy table, whose lineage "
               f"is used, e.g. {records[3].id}: header ")
    assert warning in result.stderr and result.stderr.count("disagrees") == 1
    assert "s:Aedes_table" in result.stderr.split(warning)[1]
    assert "Aedes table" in (tmp_path / "index" / "records.tsv").read_text()


def test_index_with_photos_is_calibrated_for_photo_queries(specimen_refs, barcode_refs):
    calibration = json.loads((specimen_refs.index / "calibration.json").read_text())
    assert list(calibration) == ["dna", "dna<500", "image", "image+dna"]
    photos = len(list(specimen_refs.photos.iterdir()))
    for kind in ("image", "image+dna"):
        assert 0 < calibration[kind]["fitted_on"]["pseudo_queries"][0] <= photos
    # the vectors are the barcodes': the photos only calibrate
    for name in ("records.tsv", "nodes.npy", "index.bin"):
        assert (specimen_refs.index / name).read_bytes() == (barcode_refs.index / name).read_bytes()


def test_photo_references(photo_refs, tiny_model, tmp_path):
    index = load_index(photo_refs.index)
    assert index.manifest["modality"] == "image" and list(index.calibration) == ["image"]
    assert index.ids == [r.id for r in photo_refs.records]  # in taxonomy-table order
    assert index.labels["species"] == [r.lineage["species"] for r in photo_refs.records]
    # unreadable photos and photos missing from the table are skipped; the rest indexed
    folder = tmp_path / "photos"
    copy_photos(folder, ["p1", "p2", "p3", "stray"])
    (folder / "p2.jpg").write_bytes(b"")
    lineages = {p: {"order": "Diptera", "family": f"F{p}", "genus": f"G{p}", "species": f"G{p} s"}
                for p in ("p1", "p2", "p3", "absent")}
    taxonomy = write_taxonomy(tmp_path / "t.tsv", lineages)
    result = run("index", "-m", tiny_model, "--modality", "image", folder, "--taxonomy", taxonomy,
                 "-o", tmp_path / "index")
    assert result.exit_code == 0, result.stderr
    assert "reference skipped" in result.stderr and "p2.jpg: empty image file" in result.stderr
    assert load_index(tmp_path / "index").ids == ["p1", "p3"]
    result = run("index", "-m", tiny_model, "--modality", "image", folder, "-o", tmp_path / "x")
    assert "photo references need --taxonomy" in error_line(result) and result.exit_code == 2  # was 1


def test_a_taxonomy_table_listing_the_photo_files_names_their_records(tiny_model, tmp_path):
    """An id column of file names (p1.jpg) named no photo: every record was "p1.jpg (no photo named
    after it)" beside p1.jpg, and the index was refused."""
    folder = tmp_path / "photos"
    copy_photos(folder, ["p1", "p2"])
    lineages = {f"{p}.jpg": {"order": "Diptera", "family": "F", "genus": "G", "species": f"G {p}"}
                for p in ("p1", "p2")}
    result = run("index", "-m", tiny_model, "--modality", "image", folder, "--taxonomy",
                 write_taxonomy(tmp_path / "t.tsv", lineages), "-o", tmp_path / "index")
    assert result.exit_code == 0, result.stderr
    assert load_index(tmp_path / "index").ids == ["p1.jpg", "p2.jpg"] and "left out" not in result.stderr


def test_photo_references_given_the_wrong_way_are_usage_errors(tiny_model, photo_refs, tmp_path):
    """A FASTA with --modality image was read as a photo ("1 photo left out ... r.fa", then "no usable
    reference records"), and a folder of photos without it was only "a directory, expected a file"."""
    fasta = tmp_path / "r.fa"
    fasta.write_text(">p1;tax=o:Diptera;\n" + "ACGT" * 60 + "\n")
    folder, taxonomy = photo_refs.photos, photo_refs.taxonomy
    result = run("index", "-m", tiny_model, "--modality", "image", fasta, "--taxonomy", taxonomy, "-o", tmp_path / "x")
    assert result.exit_code == 2
    assert error_line(result) == (f"clibd: error: {fasta}: --modality image indexes photos (folders, or "
                                  f"{', '.join(sorted(IMAGE_SUFFIXES))} files), and this is a FASTA/FASTQ file; photos of barcodes' "
                                  "specimens go with --images")
    result = run("index", "-m", tiny_model, folder, "--taxonomy", taxonomy, "-o", tmp_path / "x")
    assert result.exit_code == 2 and "with --modality image and --taxonomy" in error_line(result)
    assert not (tmp_path / "x").exists()


def test_photos_a_photo_reference_leaves_out_are_named(tiny_model, tmp_path):
    # a photo no taxonomy row names, and a second photo of one id (p1.jpg, p1.png), were dropped unannounced
    folder = tmp_path / "photos"
    # and P3.jpg, named after p3 in another case, was left out with no word of why
    copy_photos(folder, ["p1", "p2", "stray", "P3"])
    shutil.copyfile(folder / "p2.jpg", folder / "p1.png")
    lineages = {p: {"order": "Diptera", "family": f"F{p}", "genus": f"G{p}", "species": f"G{p} s"}
                for p in ("p1", "p2", "p3")}
    result = run("index", "-m", tiny_model, "--modality", "image", folder, "--taxonomy",
                 write_taxonomy(tmp_path / "t.tsv", lineages), "-o", tmp_path / "index")
    assert result.exit_code == 0, result.stderr
    assert load_index(tmp_path / "index").ids == ["p1", "p2"]
    stray, second, first = folder / "stray.jpg", folder / "p1.png", folder / "p1.jpg"
    assert f"2 photos left out, named after no id of the taxonomy table: {folder / 'P3.jpg'}, {stray}" \
        in result.stderr
    assert "1 record has more than one photo, the first in path order used and the others left out: " \
           f"p1: {first} (not {second})" in result.stderr
    assert f"1 photo is named after a record id in another case only, and not paired with it, e.g. " \
           f"{folder / 'P3.jpg'} ~ p3: ids are matched case-sensitively; rename the photo" in result.stderr


def test_photos_none_of_which_can_be_read_leave_the_index_uncalibrated_for_photos_and_say_so(
        barcode_refs, tiny_model, tmp_path):
    # each photo was warned about, but not that --images had come to nothing
    folder = tmp_path / "photos"
    folder.mkdir()
    for record in barcode_refs.records[:6]:
        (folder / f"{record.id}.jpg").write_bytes(b"")
    result = run("index", "-m", tiny_model, barcode_refs.fasta, "--images", folder, "-o", tmp_path / "index")
    assert result.exit_code == 0, result.stderr
    assert "image" not in json.loads((tmp_path / "index" / "calibration.json").read_text())
    assert "none of the 6 photos named after a reference record could be read; the index is not calibrated " \
           "for photos" in result.stderr


def test_a_second_photo_or_one_named_after_no_record_given_with_images_is_named(
        barcode_refs, tiny_model, tmp_path):
    # ID.jpg beside ID.png: the first calibrated the index, the second was left out unmentioned
    folder = tmp_path / "photos"
    folder.mkdir()
    record = barcode_refs.records[0]
    slip = f"{barcode_refs.records[1].id.swapcase()}.jpg"  # named after a record in another case
    for name in (f"{record.id}.jpg", f"{record.id}.png", "typo.jpg", slip):
        (folder / name).write_bytes(b"")
    result = run("index", "-m", tiny_model, barcode_refs.fasta, "--images", folder, "-o", tmp_path / "index")
    assert result.exit_code == 0, result.stderr
    assert "1 record has more than one photo, the first in path order used and the others not used to " \
           f"calibrate: {record.id}: {folder / record.id}.jpg (not {folder / record.id}.png)" in result.stderr
    # a photo named after no reference record (a typo) was left out unmentioned, as index --modality
    # image and prepare --images name theirs
    assert "2 photos not used to calibrate, named after no reference record: " \
           f"{folder / slip}, {folder / 'typo.jpg'}" in result.stderr
    assert f"e.g. {folder / slip} ~ {barcode_refs.records[1].id}: ids are matched case-sensitively" in result.stderr


def test_append_adds_records_and_refits(barcode_refs, specimen_refs, tiny_model, tmp_path):
    records = barcode_refs.records
    first, second = write_fasta(tmp_path / "a.fa", records[:30]), write_fasta(tmp_path / "b.fa", records[30:])
    index = tmp_path / "index"
    assert run("-q", "index", "-m", tiny_model, first, "-o", index).exit_code == 0
    result = run("index", second, "-o", index, "--append")  # without -m: the model the index names
    assert result.exit_code == 0, result.stderr
    assert f"Appended {len(records) - 30} records" in result.stdout
    appended = load_index(index)
    assert appended.ids == [r.id for r in records] and appended.manifest["count"] == len(records)
    calibration = json.loads((index / "calibration.json").read_text())
    assert calibration["dna"]["fitted_on"]["references"] == len(records)
    full = load_index(barcode_refs.index)
    assert np.allclose(appended.vectors(), full.vectors(), atol=1e-5)
    assert np.array_equal(appended.holdings, full.holdings)  # the appended records' 5-mers follow theirs
    again = run("index", "-m", tiny_model, second, "-o", index, "--append")
    assert f"clibd: error: {second}:1: id {records[30].id} is already in the index (and " in error_line(again)
    # found before the records are embedded (then a million records took their hours to be refused)
    assert "embedding" not in again.stderr and not (tmp_path / "index.shards").exists()
    assert "not an index yet" in error_line(run("index", "-m", tiny_model, second, "-o", tmp_path / "new",
                                                "--append"))
    assert "not an index yet" in error_line(run("index", second, "-o", tmp_path / "new", "--append"))
    unnamed = run("index", second, "-o", tmp_path / "new")
    assert unnamed.exit_code == 2 and "Missing option '-m' / '--model'" in unnamed.output
    other = run("index", "-m", tiny_model, second, "-o", index, "--append", "--modality", "text")
    # was exit 1 and no word of the option to give
    assert other.exit_code == 2 and "holds dna vectors, not text; append with --modality dna" in error_line(other)
    # photo calibrations survive an append without photos, with a warning
    grown = tmp_path / "grown"
    shutil.copytree(specimen_refs.index, grown)
    new = Specimen("new1", records[0].barcode[::-1], records[0].lineage)
    extra = write_fasta(tmp_path / "extra.fa", [new])
    result = run("index", "-m", tiny_model, extra, "-o", grown, "--append")
    assert "image calibration is kept from before (give --images" in result.stderr
    assert set(json.loads((grown / "calibration.json").read_text())) == {
        "dna", "dna<500", "image", "image+dna"}
    assert "dna<500 calibration is kept from before (append 500 records" in result.stderr


def test_index_of_another_model_refuses_append(barcode_refs, tmp_path):
    import torch

    from models import create_model, save_model

    torch.manual_seed(2)
    other = save_model(create_model("clibd-tiny", modalities=("dna",)), tmp_path / "other")
    copy = tmp_path / "index"
    shutil.copytree(barcode_refs.index, copy)
    new = Specimen("x1", barcode_refs.records[0].barcode, {"order": "Diptera"})
    extra = write_fasta(tmp_path / "x.fa", [new])
    result = run("index", "-m", other, extra, "-o", copy, "--append")
    assert "index was built with model" in error_line(result)
    refused = run("index", "-m", other, extra, "--images", tmp_path, "-o", tmp_path / "new")
    assert refused.exit_code == 2 and "has no image encoder" in error_line(refused)  # was exit 1


def test_bad_references_are_refused_clearly(tiny_model, tmp_path):
    records = specimens(n_species=2, per_species=2, unnamed=0)

    def build(fasta, *extra):
        return run("index", "-m", tiny_model, fasta, "-o", tmp_path / "index", *extra)

    unlabelled = write_fasta(tmp_path / "plain.fa", records, sintax=False)
    assert "no reference record carries a taxonomy" in error_line(build(unlabelled))
    repeated = write_fasta(tmp_path / "rep.fa", records + records[:2])
    lines = [n for n, line in enumerate(repeated.read_text().splitlines(), 1) if line.startswith(">")]
    assert (f"must be unique; repeated: {records[0].id} ({repeated}:{lines[0]}, {repeated}:{lines[4]}), "
            f"{records[1].id} ({repeated}:{lines[1]}, {repeated}:{lines[5]})") in error_line(build(repeated))
    short = tmp_path / "short.fa"
    short.write_text(">a;tax=o:Diptera;\nACGT\n>b;tax=o:Diptera;\nMKV\n")
    assert error_line(build(short)).endswith(f"no usable reference records in {short}: 2 skipped, e.g. a (too short: "
                                             "4 unambiguous bases (at least 100 needed))")
    text = tmp_path / "notes.fa"
    text.write_text("id,order\n")
    assert error_line(build(text)).startswith(f"clibd: error: {text}:1: expected a FASTA header")
    sintax = tmp_path / "sintax.fa"
    sintax.write_text(f">a;tax=Diptera;\n{records[0].barcode}\n")
    assert error_line(build(sintax)).startswith(f"clibd: error: {sintax}:1: taxonomy entry 'Diptera'")
    assert build(unlabelled, "--modality", "image", "--images", tmp_path).exit_code == 2
    assert run("index", "-m", tmp_path / "no-model", unlabelled, "-o", tmp_path / "i").exit_code == 2
    assert not (tmp_path / "index").exists()


def test_rebuild_replaces_and_failure_keeps_the_old_index(barcode_refs, tiny_model, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(barcode_refs.index, index)
    small = write_fasta(tmp_path / "small.fa", barcode_refs.records[:6])
    assert run("-q", "index", "-m", tiny_model, small, "-o", index).exit_code == 0
    assert len(load_index(index)) == 6
    broken = tmp_path / "broken.fa"
    broken.write_text("oops\n" + small.read_text())
    assert run("-q", "index", "-m", tiny_model, broken, "-o", index).exit_code == 1
    assert len(load_index(index)) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.fa", "index", "small.fa"]


def test_dataset_hdf5_references(tiny_model, tmp_path):
    expected = clibd_hdf5(tmp_path / "clibd.h5")
    members = expected["all_keys"]
    for modality in ("dna", "image", "text"):
        out = tmp_path / modality
        result = run("-q", "index", "-m", tiny_model, tmp_path / "clibd.h5", "--split", "all_keys",
                     "--modality", modality, "-o", out)
        assert result.exit_code == 0, result.stderr
        index = load_index(out)
        if modality == "text":  # one record per distinct lineage, the label string as its id
            lineages = {label_string({r: row[r] for r in RANKS}) for row, _ in members}
            assert sorted(index.ids) == sorted(lineages - {""})
        else:
            usable = [row for row, _ in members
                      if modality == "image" or not barcode_problem(row["dna_barcode"])]
            assert index.ids == [row["processid"] for row in usable]
            assert index.labels["genus"] == [row["genus"] or None for row in usable]


def test_references_identified_only_to_family(tiny_model, tmp_path):
    records = [Specimen(r.id, r.barcode, {"order": r.lineage["order"], "family": r.lineage["family"]})
               for r in specimens(n_species=3, per_species=2, unnamed=0)]
    fasta = write_fasta(tmp_path / "r.fa", records)
    result = run("-q", "index", "-m", tiny_model, fasta, "-o", tmp_path / "i")
    assert result.exit_code == 0, result.stderr
    rows = tsv(run("classify", "-i", tmp_path / "i", fasta).stdout)
    assert len(rows) == len(records)
    for row, record in zip(rows, records):  # names no rank the references lack, with confidence 0
        assert row["genus"] == row["species"] == "" and row["genus_conf"] == row["species_conf"] == "0.0000"
        assert (row["order"], row["family"]) == (record.lineage["order"], record.lineage["family"]), row
        assert row["lineage"].count(",") == 1  # o:...,f:... only


def test_ranks_above_order_are_kept_as_each_orders_lineage(tmp_path):
    """SINTAX d/k/p/c entries are kept as the lineage above each order that most of its records
    name (the manifest's ``above_order``; records.tsv holds order to species): a prediction carries
    its best order's, as sure as the order, in the lineage column and in QIIME 2's levels, and
    ``--taxa`` reaches them (README, *Input and output at a glance*)."""
    records = specimens(n_species=3, per_species=3, unnamed=0)
    orders = [r.lineage["order"] for r in records]
    outvoted = next(i for i, order in enumerate(orders) if orders.count(order) >= 3)
    above = "d:Eukaryota,k:Animalia,p:Arthropoda,c:Insecta,"
    fasta = tmp_path / "r.fa"
    fasta.write_text("".join(r.sintax().replace(";tax=", ";tax=" + (above.replace("Insecta", "Collembola") if i == outvoted
                                                                    else above)) + f"\n{r.barcode}\n"
                             for i, r in enumerate(records)))
    assert run("-q", "index", "-m", "kmer", fasta, "-o", tmp_path / "i").exit_code == 0
    assert (tmp_path / "i" / "records.tsv").read_text() == "id\torder\tfamily\tgenus\tspecies\n" + \
        records_tsv(records)
    lineage = {"domain": "Eukaryota", "kingdom": "Animalia", "phylum": "Arthropoda", "class": "Insecta"}
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    assert manifest["above_order"] == {r.lineage["order"]: lineage for r in records}
    info = run("index", "info", tmp_path / "i").output
    assert f"above order: domain, kingdom, phylum, class (for {len(set(orders))} orders)" in info, info
    rows = tsv(run("classify", "-i", tmp_path / "i", fasta).stdout)
    for row in rows:
        conf = dict(part.rstrip(")").split("(") for part in row["lineage"].split(","))
        assert list(conf)[:5] == ["d:Eukaryota", "k:Animalia", "p:Arthropoda", "c:Insecta", f"o:{row['order']}"]
        assert conf["c:Insecta"] == conf[f"o:{row['order']}"]
    qiime = run("classify", "-i", tmp_path / "i", "--format", "qiime2", fasta).stdout.splitlines()[1]
    assert qiime.split("\t")[1].startswith("d__Eukaryota; k__Animalia; p__Arthropoda; c__Insecta; o__")
    ranks = json.loads(run("classify", "-i", tmp_path / "i", "--format", "jsonl", fasta).stdout.splitlines()[0])["ranks"]
    assert list(ranks)[:5] == [*lineage, "order"] and ranks["class"] == {**ranks["order"], "label": "Insecta"}
    assert run("classify", "-i", tmp_path / "i", "--taxa", "insecta", fasta).exit_code == 0
    result = run("classify", "-i", tmp_path / "i", "--taxa", "Arachnida", fasta)
    assert result.exit_code == 1 and "(the index keeps domain, kingdom, phylum, class, order, family, genus, " \
        "species;" in error_line(result)
    more = tmp_path / "more.fa"  # an --append keeps the lineages the index has, and adds new orders'
    other = Specimen("x1", records[0].barcode[::-1], {**records[0].lineage, "order": "Araneae"})
    more.write_text(other.sintax().replace(";tax=", ";tax=c:Arachnida,") + f"\n{other.barcode}\n"
                    + records[1].sintax().replace(";tax=", ";tax=c:Collembola,").replace(records[1].id, "x2")
                    + f"\n{records[1].barcode[:-3]}\n")
    assert run("-q", "index", "-m", "kmer", more, "--append", "-o", tmp_path / "i").exit_code == 0
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    assert manifest["above_order"] == {"Araneae": {"class": "Arachnida"}, **dict.fromkeys(orders, lineage)}


def test_each_orders_lineage_above_is_the_names_most_of_its_records_carry():
    """Per rank, the name most of the order's records carry (a tie: the one read first); an order
    none of whose records names a rank above it has no lineage (not an empty one)."""
    refs = References("dna")
    for i, ranks in enumerate(({"order": "Diptera", "class": "Insecta"}, {"order": "Araneae"},
                               {"order": "Diptera", "class": "Collembola", "phylum": "Arthropoda"},
                               {"order": "Diptera", "class": "Insecta", "phylum": "Chordata"},
                               {"order": None, "class": "Arachnida"})):
        refs.add(f"r{i}", ranks, "ACGT")
    assert refs.lineages_above_order() == {"Diptera": {"phylum": "Arthropoda", "class": "Insecta"}}


def test_text_references_keep_the_ranks_above_order(tmp_path):
    """A text index holds one record per distinct label string, and each order's lineage above it
    as the records read named it (it was dropped with the records folded together)."""
    records = specimens(n_species=3, per_species=2, unnamed=0)
    fasta = tmp_path / "r.fa"
    fasta.write_text("".join(r.sintax().replace(";tax=", ";tax=p:Arthropoda,c:Insecta,") + f"\n{r.barcode}\n"
                             for r in records))
    refs = read_references([str(fasta)], "text")
    assert len(refs) == 3 and refs.lineages_above_order() == {
        r.lineage["order"]: {"phylum": "Arthropoda", "class": "Insecta"} for r in records}


def test_fastq_references_build_the_index_fasta_builds(tmp_path):
    """README: FASTQ is accepted wherever FASTA is, reference headers with SINTAX taxonomy included."""
    records = specimens(n_species=3, per_species=2, unnamed=1)
    fastq = tmp_path / "r.fq"
    fastq.write_text("".join(f"@{r.sintax()[1:]}\n{r.barcode}\n+\n{'I' * len(r.barcode)}\n" for r in records))
    digests = []
    for name, path in (("fasta", write_fasta(tmp_path / "r.fa", records)), ("fastq", fastq)):
        assert run("-q", "index", "-m", "kmer", path, "-o", tmp_path / name).exit_code == 0
        digests.append(json.loads((tmp_path / name / "manifest.json").read_text())["sha256"])
    assert digests[0] == digests[1]

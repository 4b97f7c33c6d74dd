"""`clibd prepare`, what each source gives the dataset: FASTQ found by its first line, a
taxonomy table winning over headers, warnings given once, BIOSCAN ids, splits and photo
folders; barcodes at the length cap; the per-split table; the writer lock of ``-o``."""

import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from clibd_cli.data.store import open_dataset
from clibd_cli.io.sequences import MAX_LENGTH
from clibd_cli.main import cli
from fixtures.samples import bioscan1m_sample, bold_table, write_csv
from fixtures.specimens import copy_photos, specimens, write_fasta, write_taxonomy


def prepare(*args, seed=None):
    return CliRunner().invoke(cli, [*(["--seed", str(seed)] if seed is not None else []), "prepare",
                                    *map(str, args)])


def stored(path) -> dict[str, dict]:
    """processid -> {field: value} of every record in a dataset file."""
    with open_dataset(path) as dataset:
        every = dataset.split("all")
        ids, barcodes = every.ids(), every.column("barcode")
        return {pid: {"barcode": barcodes[i], **every.ranks(i)} for i, pid in enumerate(ids)}


@pytest.fixture(scope="module")
def records():
    return specimens(n_species=4, per_species=3, unnamed=1)


def test_a_fastq_is_told_by_its_first_line(records, tmp_path):
    fastq = tmp_path / "reads.fq"
    fastq.write_text("".join(f"@{r.sintax()[1:]}\n{r.barcode}\n+\n{'I' * len(r.barcode)}\n" for r in records))
    result = prepare(fastq, "-o", tmp_path / "q.h5")
    assert result.exit_code == 0, result.output
    assert sorted(stored(tmp_path / "q.h5")) == sorted(r.id for r in records)


def test_a_record_of_a_bad_barcode_is_left_out_of_the_protocols_splits(records, tmp_path):
    """FASTA (splits by the CLIBD protocol): the record is skipped, not put in no_split."""
    fasta = write_fasta(tmp_path / "r.fa", records)
    fasta.write_text(fasta.read_text() + ">bad;tax=o:Diptera;\nMKVLAAGIV\n")
    result = prepare(fasta, "-o", tmp_path / "r.h5")
    assert result.exit_code == 0, result.output
    assert "1 record skipped for an empty or non-nucleotide barcode" in result.stderr
    assert sorted(stored(tmp_path / "r.h5")) == sorted(r.id for r in records)


def test_a_barcode_at_the_length_cap_is_kept_one_over_is_skipped(tmp_path):
    header, rows = bold_table()
    rows = [dict(row) for row in rows[:12]]
    rows[2]["dna_barcode"] = "ACGT" * (MAX_LENGTH // 4)
    rows[3]["dna_barcode"] = "ACGT" * (MAX_LENGTH // 4) + "A"
    result = prepare(write_csv(tmp_path / "m.csv.gz", header, rows), "-o", tmp_path / "m.h5")
    assert result.exit_code == 0, result.output
    assert f"line 5 (barcode over {MAX_LENGTH:,} characters" in result.stderr
    kept = stored(tmp_path / "m.h5")
    assert len(kept[rows[2]["processid"]]["barcode"]) == MAX_LENGTH and rows[3]["processid"] not in kept


def test_an_input_of_no_usable_barcode_writes_no_dataset(records, tmp_path):
    fasta = tmp_path / "bad.fa"
    fasta.write_text("".join(f">{r.id}\nMKVLA\n" for r in records))
    result = prepare(fasta, "-o", tmp_path / "bad.h5")
    assert result.exit_code == 1 and f"no usable barcode in {len(records)} records" in result.output
    assert not (tmp_path / "bad.h5").exists()


def test_the_taxonomy_table_wins_over_the_header_and_warnings_come_once(records, tmp_path):
    """A record with SINTAX taxonomy in its header and a row in --taxonomy gets the table's; a
    record missing from the table keeps its header's, with one warning (the input is read two or
    three times); a photo named for no record is named, once."""
    fasta = write_fasta(tmp_path / "r.fa", records)
    first, missing = records[0], records[1]
    table = {r.id: r.lineage for r in records if r is not missing}
    table[first.id] = {"order": "Lepidoptera", "family": "Erebidae", "genus": "Arctia", "species": "Arctia caja"}
    photos = copy_photos(tmp_path / "photos", [first.id, "nobody"])
    result = prepare(fasta, "--taxonomy", write_taxonomy(tmp_path / "t.tsv", table), "--images",
                     tmp_path / "photos", "-o", tmp_path / "r.h5")
    assert result.exit_code == 0, result.output
    kept = stored(tmp_path / "r.h5")
    assert {rank: kept[first.id][rank] for rank in table[first.id]} == table[first.id]
    assert kept[missing.id]["species"] == missing.lineage["species"]
    assert result.stderr.count("1 record not in the taxonomy table") == 1
    assert result.stderr.count(f"1 photo matching no record id, e.g. {photos[1]}") == 1
    assert "the dataset has no photos" not in result.stderr
    # a folder that names no record (the wrong folder, or an empty one) gave a dataset without photos
    # and no word but the with_image column's zeros
    copy_photos(tmp_path / "elsewhere", ["nobody"])
    result = prepare(fasta, "--images", tmp_path / "elsewhere", "-o", tmp_path / "none.h5")
    assert result.exit_code == 0, result.output
    assert f"no photo under {tmp_path / 'elsewhere'} is named after a record id (ID.jpg): the dataset has " \
           "no photos" in result.stderr


def test_a_table_naming_no_record_is_a_warning_when_the_headers_carry_taxonomy(records, tmp_path):
    """Refused only when no record has taxonomy at all (its ids are not the FASTA's)."""
    fasta = write_fasta(tmp_path / "r.fa", records)
    table = write_taxonomy(tmp_path / "t.tsv", {"not-a-record": {"genus": "Aedes"}})
    result = prepare(fasta, "--taxonomy", table, "-o", tmp_path / "r.h5")
    assert result.exit_code == 0, result.output
    assert f"{len(records)} records not in the taxonomy table" in result.stderr


def test_bioscan1m_keeps_its_processids_and_finds_photos_in_the_package_folder(tmp_path):
    """``--images`` naming the package folder itself (its part1/, part2/ ... folders) finds the
    photos; the processid column is stored as the processid, the sampleid as the sampleid."""
    sample = bioscan1m_sample(tmp_path)
    result = prepare(sample["tsv"], "--images", sample["images"] / "images" / "cropped", "-o", tmp_path / "o.h5")
    assert result.exit_code == 0, result.output
    with open_dataset(tmp_path / "o.h5") as dataset:
        every = dataset.split("all")
        pairs = set(zip(every.ids(), every.column("sampleid")))
        assert dataset.attrs["summary"]["total"]["with_image"] == len(sample["with_photo"])
    assert pairs == {(row["processid"], row["sampleid"]) for row in sample["rows"]}


def bioscan5m(tmp_path, change):
    header, rows = bold_table()
    rows = [dict(row) for row in rows[:12]]
    change(rows)
    return write_csv(tmp_path / "m.csv.gz", header, rows)


def test_bioscan_rows_without_an_id_or_a_labelled_row_without_a_split_are_named(tmp_path):
    labelled = next(i for i, row in enumerate(bold_table()[1][:12]) if row["species"])
    no_split = bioscan5m(tmp_path, lambda rows: rows[labelled].update(split=""))
    result = prepare(no_split, "-o", tmp_path / "a.h5")
    assert result.exit_code == 1 and f":{labelled + 2}: split '' is not one of" in result.output
    no_id = bioscan5m(tmp_path, lambda rows: rows[4].update(processid=" "))
    result = prepare(no_id, "-o", tmp_path / "b.h5")
    assert result.exit_code == 1 and ":6: empty processid" in result.output
    assert not (tmp_path / "a.h5").exists() and not (tmp_path / "b.h5").exists()


def test_a_partition_for_bioscan5m_is_a_usage_error(tmp_path):
    partition = tmp_path / "partition"
    partition.mkdir()
    result = prepare(bioscan5m(tmp_path, lambda rows: None), "--partition", partition, "-o", tmp_path / "m.h5")
    assert result.exit_code == 2 and "--partition is for bioscan-1m, bold and fasta" in result.output
    assert not (tmp_path / "m.h5").exists()


def test_a_seed_for_bioscan5m_is_a_usage_error(tmp_path):
    """prepare's --seed draws the CLIBD split protocol; BIOSCAN-5M's splits are given, so it was silently
    ignored (and not stored)."""
    result = prepare(bioscan5m(tmp_path, lambda rows: None), "--seed", "3", "-o", tmp_path / "m.h5")
    assert result.exit_code == 2 and "--seed is for bioscan-1m, bold and fasta" in result.output
    assert not (tmp_path / "m.h5").exists()


def test_prepare_seed_zero_is_not_the_global_seed(tmp_path):
    """``clibd --seed 8 prepare --seed 0`` splits with seed 0, as ``prepare --seed 0`` does."""
    sample = bioscan1m_sample(tmp_path)
    assert prepare(sample["tsv"], "--seed", 0, "-o", tmp_path / "a.h5").exit_code == 0
    assert prepare(sample["tsv"], "--seed", 0, "-o", tmp_path / "b.h5", seed=8).exit_code == 0
    with open_dataset(tmp_path / "a.h5") as a, open_dataset(tmp_path / "b.h5") as b:
        assert a.attrs["seed"] == b.attrs["seed"] == 0
        assert {s: a.split(s).ids() for s in a.splits} == {s: b.split(s).ids() for s in b.splits}


def test_the_table_counts_genera_and_ends_with_the_total(records, tmp_path):
    result = prepare(write_fasta(tmp_path / "r.fa", records), "-o", tmp_path / "r.h5")
    assert result.exit_code == 0, result.output
    last = result.stdout.splitlines()[-1].split()
    genera = {r.lineage["genus"] for r in records if r.lineage["genus"]}
    species = {r.lineage["species"] for r in records if r.lineage["species"]}
    assert last == ["total", str(len(records)), str(len(species)), str(len(genera)), "0"]
    assert len(genera) < len(species)  # the sample tells genera from species


def test_prepare_waits_for_another_writer_of_its_output(records, tmp_path):
    from clibd_cli.io.outputs import writer_lock

    fasta, out = write_fasta(tmp_path / "r.fa", records), tmp_path / "r.h5"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with writer_lock(out):
        proc = subprocess.Popen([sys.executable, "-m", "clibd_cli", "prepare", str(fasta), "-o", str(out)],
                                env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        assert "another clibd is writing it; waiting" in proc.stderr.readline()
        time.sleep(0.5)
        assert proc.poll() is None and not out.exists()
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert out.is_file()


def test_quiet_leaves_only_errors_on_stderr(records, tmp_path):
    fasta = write_fasta(tmp_path / "r.fa", records)
    fasta.write_text(fasta.read_text() + ">bad\nMKVLAAGIV\n")
    result = CliRunner().invoke(cli, ["-q", "prepare", str(fasta), "-o", str(tmp_path / "r.h5")])
    assert result.exit_code == 0 and result.stderr == ""
    assert "skipped for an empty or non-nucleotide barcode" in prepare(fasta, "-o", tmp_path / "s.h5").stderr


def test_a_fasta_starting_with_blank_lines_is_told_a_fasta(records, tmp_path):
    """The FASTA reader skips blank lines before the first header; the format detection read only
    the first line ('cannot tell the input format (first line '')')."""
    fasta = tmp_path / "r.fa"
    fasta.write_text("\ufeff\n\n" + write_fasta(tmp_path / "plain.fa", records).read_text())
    result = prepare(fasta, "-o", tmp_path / "r.h5")
    assert result.exit_code == 0, result.output
    assert sorted(stored(tmp_path / "r.h5")) == sorted(r.id for r in records)


def test_a_bold_tsv_is_prepared_with_the_protocols_splits(records, tmp_path):
    """A BOLD v5 TSV (what ``clibd index`` reads) has a sampleid column, as BIOSCAN-1M's TSV
    has: it is read as BOLD (processid, nuc, ranks; other markers skipped with one warning),
    not refused as a BIOSCAN-1M file lacking ``nucraw``; ``--images`` is refused for it."""
    header = ["processid", "sampleid", "bin_uri", "order", "family", "genus", "species", "marker_code", "nuc"]
    rows = [{"processid": r.id, "sampleid": f"S{i}", "bin_uri": f"BOLD:AAA{i:04d}", "marker_code": "COI-5P",
             "nuc": r.barcode[:300] + "-" + r.barcode[300:], **{k: v or "" for k, v in r.lineage.items()}}
            for i, r in enumerate(records)]
    rows.append({**rows[0], "processid": "ITS0001", "marker_code": "ITS"})
    bold = write_csv(tmp_path / "bold.tsv", header, rows, delimiter="\t", compress=False)
    result = prepare(bold, "-o", tmp_path / "b.h5", seed=3)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("1 record of other markers than COI-5P skipped (1 ITS)") == 1
    kept = stored(tmp_path / "b.h5")
    assert kept == {r.id: {"barcode": r.barcode, **r.lineage} for r in records}
    with open_dataset(tmp_path / "b.h5") as dataset:
        assert dataset.attrs["input_format"] == "bold" and dataset.attrs["seed"] == 3
    refused = prepare(bold, "--images", tmp_path, "-o", tmp_path / "c.h5")
    assert refused.exit_code == 2 and "--images" in refused.output


def test_a_bold_row_without_a_processid_is_refused_at_its_line(records, tmp_path):
    """As a BIOSCAN row without one is (one rule: ``SourceRecord.check``), not stored with id ''."""
    header = ["processid", "species", "nuc"]
    rows = [{"processid": r.id, "species": r.lineage["species"] or "", "nuc": r.barcode} for r in records]
    rows[2]["processid"] = ""
    bold = write_csv(tmp_path / "bold.tsv", header, rows, delimiter="\t", compress=False)
    result = prepare(bold, "-o", tmp_path / "b.h5")
    assert result.exit_code == 1 and f"{bold}:4: empty processid" in result.output
    assert not (tmp_path / "b.h5").exists()


def test_a_label_with_a_tab_is_refused_at_its_line(records, tmp_path):
    """A quoted CSV cell or a SINTAX header may hold a tab, which an index's records.tsv cannot."""
    csv_file = bioscan5m(tmp_path, lambda rows: rows[3].update(species="Tab\tname"))
    result = prepare(csv_file, "-o", tmp_path / "a.h5")
    assert result.exit_code == 1 and ":5: species 'Tab\\tname' contains a tab or newline" in result.output
    fasta = write_fasta(tmp_path / "r.fa", records)
    fasta.write_text(fasta.read_text() + ">odd;tax=o:Diptera,s:Tab\tname;\nACGT\n")
    result = prepare(fasta, "-o", tmp_path / "r.h5")
    lines = len(fasta.read_text().splitlines())
    assert result.exit_code == 1 and f"{fasta}:{lines - 1}: species 'Tab\\tname'" in result.output


def test_a_second_photo_of_a_record_is_named_once(records, tmp_path):
    """``ID.jpg`` and ``ID.png``: the first in path order is stored, and one warning names the id and
    both photos (the second was left out unmentioned), not as a photo matching no record."""
    first = records[0]
    photos = copy_photos(tmp_path / "photos", [first.id, records[1].id])
    second = photos[0].with_suffix(".png")
    second.write_bytes(photos[1].read_bytes())
    slip = photos[1].with_name(f"{records[2].id.swapcase()}.jpg")  # named after a record in another case
    slip.write_bytes(photos[1].read_bytes())
    result = prepare(write_fasta(tmp_path / "r.fa", records), "--images", tmp_path / "photos",
                     "-o", tmp_path / "r.h5")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("1 record has more than one photo, the first in path order used and the others "
                               f"not stored: {first.id}: {photos[0]} (not {second})") == 1
    assert f"1 photo is named after a record id in another case only, and not paired with it, e.g. {slip} ~ " \
           f"{records[2].id}: ids are matched case-sensitively; rename the photo" in result.stderr
    assert f"1 photo matching no record id, e.g. {slip}" in result.stderr  # not the second photo
    with open_dataset(tmp_path / "r.h5") as dataset:
        every = dataset.split("all")
        assert every.image_bytes(every.ids().index(first.id)) == photos[0].read_bytes()


def test_photos_of_a_fasta_come_from_every_images(records, tmp_path):
    """``--images`` took one folder (index and classify take several): photos of one plate per folder,
    or a photo named by itself, are stored together; the file's attribute lists them. BIOSCAN's
    photos are one image folder: a second, or a photo file (it was looked in for a package folder), is
    a usage error."""
    first = copy_photos(tmp_path / "plate1", [records[0].id])
    second = copy_photos(tmp_path / "plate2", [records[1].id], first=1)
    alone = copy_photos(tmp_path / "loose", [records[2].id], first=2)
    result = prepare(write_fasta(tmp_path / "r.fa", records), "--images", tmp_path / "plate1", "--images",
                     tmp_path / "plate2", "--images", alone[0], "-o", tmp_path / "r.h5")
    assert result.exit_code == 0, result.output
    with open_dataset(tmp_path / "r.h5") as dataset:
        every = dataset.split("all")
        for record, photo in zip(records, [*first, *second, *alone]):
            assert every.image_bytes(every.ids().index(record.id)) == photo.read_bytes()
        assert dataset.attrs["images"] == [str(p) for p in (tmp_path / "plate1", tmp_path / "plate2", alone[0])]
    refused = prepare("--format", "bioscan-5m", tmp_path / "r.fa", "--images", tmp_path / "plate1", "--images",
                      tmp_path / "plate2", "-o", tmp_path / "b.h5")
    assert refused.exit_code == 2 and "bioscan-5m's photos are one image folder" in refused.output
    refused = prepare("--format", "bioscan-5m", tmp_path / "r.fa", "--images", alone[0], "-o",
                      tmp_path / "b.h5")
    assert refused.exit_code == 2 and f"give --images once, a folder, not the file {alone[0]}" in \
        refused.output


def test_a_webp_or_gif_photo_is_stored_as_jpeg(records, tmp_path):
    """A WebP, GIF or BMP photo was passed over ("convert them to JPEG or PNG"): it is stored re-encoded as
    JPEG (DESIGN.md: ``image`` is JPEG bytes), a JPEG as given."""
    import io

    from PIL import Image

    photos = copy_photos(tmp_path / "photos", [r.id for r in records[:3]])
    for path, fmt in zip(photos[1:], ("WEBP", "GIF")):
        Image.open(path).save(path.with_suffix(f".{fmt.lower()}"), format=fmt)
        path.unlink()
    result = prepare(write_fasta(tmp_path / "r.fa", records), "--images", tmp_path / "photos", "-o", tmp_path / "r.h5")
    assert result.exit_code == 0, result.output
    assert "not read" not in result.stderr
    with open_dataset(tmp_path / "r.h5") as dataset:
        every = dataset.split("all")
        data = [every.image_bytes(every.ids().index(r.id)) for r in records[:3]]
    assert data[0] == photos[0].read_bytes()
    assert [Image.open(io.BytesIO(photo)).format for photo in data] == ["JPEG"] * 3

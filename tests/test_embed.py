"""``clibd embed``: barcodes, photos and dataset records in, an embeddings HDF5 out; the same input
gets the same vector as in ``clibd index``."""

import gzip

import numpy as np

from clibd_cli.embedding.embeddings_file import read_embeddings
from clibd_cli.io.images import IMAGE_SUFFIXES
from clibd_cli.io.sequences import barcode_problem
from clibd_cli.reference.index_reading import load_index
from fixtures.samples import clibd_hdf5
from fixtures.specimens import copy_photos, error_line, run, write_fasta


def embed(*args, input=None):
    result = run("embed", *args, input=input)
    assert result.exit_code == 0, result.stderr
    return result


def test_barcodes_and_photos_in_input_order(barcode_refs, tiny_model, tmp_path):
    from models import load_model

    fasta = tmp_path / "q.fa"
    good = barcode_refs.records[0].barcode
    fasta.write_text(f">a\n{good}\n>protein\nMKVLAEFGHIKLMNPQRSTVWY\n>b desc\n{good[::-1]}\n>short\nACGT\n")
    photos = tmp_path / "photos"
    copy_photos(photos, ["p2", "p1"])
    (photos / "broken.jpg").write_bytes(b"GIF89a nothing")
    out = tmp_path / "emb.h5"
    result = embed("-m", tiny_model, fasta, photos, "-o", out)
    ids, kinds, vectors, attrs = read_embeddings(out)
    assert ids == ["a", "b", str(photos / "p1.jpg"), str(photos / "p2.jpg")]
    assert kinds == ["dna", "dna", "image", "image"]
    assert vectors.shape == (4, 32) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert attrs["model_fingerprint"] == load_model(tiny_model).fingerprint()
    assert attrs["model"] == str(tiny_model.resolve()) and attrs["clibd_version"] and "command" in attrs
    for message in (f"{fasta}:3: protein: skipped: not a nucleotide sequence",
                    f"{fasta}:7: short: skipped: too short", "broken.jpg: not an image"):
        assert message in result.stderr
    assert "4 embeddings written" in result.stderr
    assert run("-q", "embed", "-m", tiny_model, fasta, "-o", out).stderr == ""


def test_same_vectors_as_the_index(barcode_refs, tiny_model, tmp_path):
    out = tmp_path / "refs.h5"
    embed("-m", tiny_model, "--batch-size", 7, barcode_refs.fasta, "-o", out)
    ids, _, vectors, _ = read_embeddings(out)
    index = load_index(barcode_refs.index)
    assert ids == index.ids
    assert np.allclose(vectors, index.vectors(), atol=1e-5)


def test_stdin_gzip_and_fastq(barcode_refs, tiny_model, tmp_path):
    records = barcode_refs.records[:5]
    fasta = write_fasta(tmp_path / "q.fa", records)
    embed("-m", tiny_model, fasta, "-o", tmp_path / "file.h5")
    embed("-m", tiny_model, "-", "-o", tmp_path / "stdin.h5", input=gzip.compress(fasta.read_bytes()))
    fastq = tmp_path / "q.fq"
    fastq.write_text("".join(f"@{r.id}\n{r.barcode}\n+\n{'#' * len(r.barcode)}\n" for r in records))
    embed("-m", tiny_model, fastq, "-o", tmp_path / "fastq.h5")
    file_ids, _, file_vectors, _ = read_embeddings(tmp_path / "file.h5")
    for name in ("stdin.h5", "fastq.h5"):
        ids, _, vectors, _ = read_embeddings(tmp_path / name)
        assert ids == file_ids and np.array_equal(vectors, file_vectors)


def test_the_file_reads_with_h5py_alone(barcode_refs, tmp_path):
    """The layout that `clibd embed --help` and the README promise, read without clibd
    (read_embeddings decodes and casts to float32, so only a raw read catches a renamed dataset or
    another dtype): ids, modality, float32 unit vectors of embed_dim columns, provenance attributes."""
    import h5py

    records = barcode_refs.records[:3]
    out = tmp_path / "emb.h5"
    embed("-m", "kmer", write_fasta(tmp_path / "q.fa", records), "-o", out)
    with h5py.File(out, "r") as h5:
        assert set(h5) == {"ids", "modality", "vectors"}
        assert h5["ids"].asstr()[:].tolist() == [r.id for r in records]
        assert h5["modality"].asstr()[:].tolist() == ["dna"] * len(records)
        vectors = h5["vectors"]
        assert vectors.dtype == np.float32 and vectors.shape == (len(records), h5.attrs["embed_dim"])
        assert np.allclose(np.linalg.norm(vectors[:], axis=1), 1, atol=1e-5)
        assert h5.attrs["model_fingerprint"] and h5.attrs["clibd_version"]
        assert h5.attrs["command"].startswith("clibd embed -m kmer")


def test_dataset_hdf5_splits_and_modalities(tiny_model, tmp_path):
    members = [row for row, _ in clibd_hdf5(tmp_path / "clibd.h5")["test_unseen"]]
    for modality in ("dna", "image", "text"):
        out = tmp_path / f"{modality}.h5"
        embed("-m", tiny_model, tmp_path / "clibd.h5", "--split", "test_unseen", "--modality", modality,
              "-o", out)
        ids, kinds, vectors, _ = read_embeddings(out)
        usable = [r for r in members if modality != "dna" or not barcode_problem(r["dna_barcode"])]
        assert ids == [r["processid"] for r in usable] and len(vectors) == len(usable) > 0
        assert set(kinds) == {modality}


def test_dataset_rows_keep_their_own_ids_and_lineages(tiny_model, tmp_path):
    """A skipped barcode does not shift the ids after it; a text row embeds its own record's lineage;
    a record labelled at no rank is not embedded as text."""
    from clibd_cli.data.store_writer import DatasetWriter
    from clibd_cli.embedding.embedder import Embedder, load_model_for
    from fixtures.samples import bold_sample
    from models.config import RANKS

    rows = [row for row in bold_sample() if not barcode_problem(row["dna_barcode"]) and row["species"]][:3]
    rows[1] = {**rows[1], "dna_barcode": "NNNN"}  # skipped: not a barcode
    rows.append({**rows[0], "processid": "NOLABEL1", **dict.fromkeys(RANKS, "")})  # no text: skipped as text
    path = tmp_path / "three.h5"
    with DatasetWriter(path, {"source": "test"}) as writer:
        for row in rows:
            writer.add("test", {"processid": row["processid"], "barcode": row["dna_barcode"],
                                **{rank: row[rank] for rank in RANKS}})
    embedder = Embedder(load_model_for(str(tiny_model), ["dna", "text"]), precision="fp32")
    expected = {"dna": embedder.barcodes([rows[i]["dna_barcode"] for i in (0, 2, 3)]),
                "text": embedder.labels([embedder.model.label_string(row) for row in rows[:3]])}
    for modality, kept in (("dna", [0, 2, 3]), ("text", [0, 1, 2])):
        out = tmp_path / f"{modality}.h5"
        result = run("--precision", "fp32", "embed", "-m", tiny_model, path, "--modality", modality,
                     "-o", out)
        assert result.exit_code == 0, result.stderr
        ids, _, vectors, _ = read_embeddings(out)
        assert ids == [rows[i]["processid"] for i in kept]
        np.testing.assert_allclose(vectors, expected[modality], atol=1e-5)
        assert ("1 record labelled at no rank: skipped, e.g. NOLABEL1" in result.stderr) == (modality == "text")
    photos = run("embed", "-m", tiny_model, path, "--modality", "image", "-o", tmp_path / "image.h5")
    assert photos.exit_code == 0 and "skipped" not in photos.stderr  # records without a photo: not broken photos
    assert read_embeddings(tmp_path / "image.h5")[0] == []


def test_failures_leave_no_file(barcode_refs, tiny_model, tmp_path):
    import torch

    from models import create_model, save_model

    text = tmp_path / "notes.fa"
    text.write_text("plate 7\n")
    out = tmp_path / "out" / "emb.h5"
    out.parent.mkdir()
    assert error_line(run("embed", "-m", tiny_model, text, "-o", out)).startswith(f"clibd: error: {text}:1:")
    torch.manual_seed(0)
    dna_only = save_model(create_model("clibd-tiny", modalities=("dna",)), tmp_path / "dna_only")
    photos = tmp_path / "photos"
    copy_photos(photos, ["p1"])
    refused = run("embed", "-m", dna_only, photos, "-o", out)
    assert refused.exit_code == 2 and "has no image encoder" in error_line(refused)  # was exit 1
    # barcodes with the photos load only the DNA tower, yet the message names every tower the model has
    dna_text = save_model(create_model("clibd-tiny", modalities=("dna", "text")), tmp_path / "dna_text")
    both = error_line(run("embed", "-m", dna_text, barcode_refs.fasta, photos, "-o", out))
    assert "has no image encoder (it has: dna, text)" in both
    assert list(out.parent.iterdir()) == []
    assert run("embed", "-m", tiny_model, "-o", out).exit_code == 2  # no inputs
    assert run("embed", "-m", tiny_model, text).exit_code == 2  # no -o


def test_precision_auto_follows_the_hardware(monkeypatch):
    import pytest

    from clibd_cli.embedding import embedder as embedding
    from models.errors import ClibdError

    monkeypatch.setattr(embedding, "cpu_has_native_bf16", lambda: False)
    assert embedding.resolve_precision("auto", "cpu") == "fp32"
    assert embedding.resolve_precision("auto", "cuda:0") == "bf16"
    assert embedding.resolve_precision("bf16", "cpu") == "bf16"
    monkeypatch.setattr(embedding, "cpu_has_native_bf16", lambda: True)
    assert embedding.resolve_precision("auto", "cpu") == "bf16"
    assert embedding.resolve_precision("fp32", "cuda") == "fp32"
    with pytest.raises(ClibdError, match="precision must be one of"):
        embedding.resolve_precision("fp16", "cpu")


def test_bf16_vectors_close_to_fp32_and_fp32_exact(barcode_refs, tiny_model, tmp_path):
    import torch

    from models import load_model

    vectors = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.h5"
        assert run("-q", "--precision", precision, "embed", "-m", tiny_model, barcode_refs.fasta,
                   "-o", out).exit_code == 0
        ids, _, vectors[precision], _ = read_embeddings(out)
    cosine = (vectors["fp32"] * vectors["bf16"]).sum(axis=1)
    # bf16 is on (the vectors differ) and within the README's 1e-5 in cosine (8.5e-6 here)
    assert 1 - cosine.min() <= 1e-5 and not np.array_equal(vectors["fp32"], vectors["bf16"])
    model = load_model(tiny_model).eval()
    barcodes = [r.barcode for r in barcode_refs.records]
    with torch.inference_mode():
        direct = torch.nn.functional.normalize(model.encode_dna(**model.tokenize_dna(barcodes)), dim=-1)
    assert np.allclose(vectors["fp32"], direct.numpy(), atol=1e-6)


def test_a_model_directory_is_recorded_by_its_absolute_path_and_photos_by_any_case_of_suffix(tmp_path,
                                                                                              monkeypatch):
    from clibd_cli.embedding.embedder import model_reference
    from clibd_cli.embedding.embeddings_file import input_modality

    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert model_reference("model") == str(tmp_path / "model") and model_reference("kmer") == "kmer"
    assert [input_modality(name, "dna") for name in ("a.JPG", "b.Png", "c.fasta")] == ["image", "image", "dna"]


def test_no_readable_photo_is_an_error_and_nothing_is_written(tiny_model, tmp_path):
    """embed / index --modality image of a folder whose every photo is unreadable: exit 1, one error
    line, no output (an empty embeddings file was written, exit 0) and no chunks left behind."""
    from fixtures.specimens import write_taxonomy

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"GIF89a nothing")
    (folder / "b.png").write_bytes(b"")
    taxonomy = write_taxonomy(tmp_path / "t.tsv", {p: {"order": "Diptera"} for p in ("a", "b")})
    for command in (("embed", "-m", tiny_model, folder, "-o", tmp_path / "out"),
                    ("index", "-m", tiny_model, "--modality", "image", folder, "--taxonomy", taxonomy,
                     "-o", tmp_path / "out")):
        result = run(*command)
        assert result.exit_code == 1, (command[0], result.stderr)
        assert "clibd: error: no usable record" in error_line(result) and "nothing written" in error_line(result)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "t.tsv"], command[0]


def test_an_empty_input_is_an_error_and_nothing_is_written(tmp_path):
    """embed of an empty FASTA file or standard input: exit 1 as when every record is unusable (an
    embeddings file of 0 vectors was written, exit 0); a dataset's records without photos are no error."""
    empty = tmp_path / "empty.fa"
    empty.write_text("")
    out = tmp_path / "out.h5"
    for inputs, given in (((empty,), None), (("-",), "")):
        result = run("embed", "-m", "kmer", *inputs, "-o", out, input=given)
        assert result.exit_code == 1, result.stderr
        assert error_line(result) == f"clibd: error: no usable record in {inputs[0]} (no record read); nothing written"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.fa"]


def test_a_folder_without_photos_is_a_usage_error(tmp_path):
    """A folder is read as photos: one holding only FASTA files is exit 2 saying so and asking for the files
    by name (was exit 1, 'model kmer has no image encoder'), nothing written."""
    folder = tmp_path / "fdir"
    folder.mkdir()
    (folder / "a.fasta").write_text(">a\nACGT\n")
    result = run("embed", "-m", "kmer", folder, "-o", tmp_path / "x.h5")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (f"clibd: error: {folder}: is a folder, which embed reads as photos ("
                                              f"{', '.join(sorted(IMAGE_SUFFIXES))}), and it holds none; give barcode files "
                                              f"by name ({folder}/*.fasta), not their folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fdir"]


def test_repeated_ids_are_written_and_counted_in_one_warning(tmp_path):
    """Records sharing an id each get an embedding, so the file's ids are not unique (a join on id goes
    wrong): one warning says so, as classify's does, naming the first repeat's row; an unusable record
    is not written, so its id repeats nothing."""
    from fixtures.specimens import specimens

    a, b = specimens()[:2]
    first = tmp_path / "q.fa"
    first.write_text(f">{a.id}\n{a.barcode}\n>{b.id}\n{b.barcode}\n>{a.id}\nACGT\n")
    second = tmp_path / "r.fa"
    second.write_text(f">{b.id}\n{b.barcode}\n>{a.id}\n{a.barcode}\n")
    out = tmp_path / "emb.h5"
    result = embed("-m", "kmer", first, second, "-o", out)
    assert read_embeddings(out)[0] == [a.id, b.id, b.id, a.id]
    assert result.stderr.count("is the id of an earlier embedding too") == 1
    assert (f"{out}: ids[2]: '{b.id}' is the id of an earlier embedding too (embeddings repeating an earlier id: 2)"
            in result.stderr)
    assert "an earlier embedding" not in embed("-m", "kmer", second, "-o", tmp_path / "once.h5").stderr


def test_a_preset_is_said_to_embed_with_untrained_weights(tmp_path):
    """`-m clibd-tiny` (or clibd-fast for clibd-fast-bold) embeds with random weights: it said only
    "12 embeddings written", as for a trained model; now one warning says the vectors are untrained."""
    from fixtures.specimens import specimens

    query = write_fasta(tmp_path / "q.fa", specimens()[:2])
    result = embed("-m", "clibd-tiny", query, "--batch-size", "2", "-o", tmp_path / "preset.h5")
    assert result.stderr.count("not a trained model") == 1
    assert "clibd-tiny is an architecture (a preset or config JSON), not a trained model" in result.stderr
    assert "not a trained model" not in embed("-m", "kmer", query, "-o", tmp_path / "kmer.h5").stderr


def test_a_datasets_barcodes_that_cannot_be_embedded_are_named(tmp_path):
    """`prepare` keeps barcodes under 100 bases (BOLD's train has 10), which embed leaves out: of a
    dataset HDF5 it did so without a word (52,192 of 52,202 written); a warning now names them, once
    per run with the total (it came once per chunk of records, and per process)."""
    from fixtures.specimens import specimens

    fasta = write_fasta(tmp_path / "r.fa", specimens()[:6])
    fasta.write_text(fasta.read_text() + "".join(f">short{i};tax=o:Diptera,f:Culicidae,g:Aedes,s:Aedes_vexans;\n"
                                                 + "ACGT" * 15 + "\n" for i in (1, 2, 3)))
    assert run("prepare", fasta, "--seed", "1", "-o", tmp_path / "d.h5").exit_code == 0
    result = embed("-m", "kmer", tmp_path / "d.h5", "--batch-size", "1", "-o", tmp_path / "e.h5")  # 8-record chunks
    assert result.stderr.count("cannot be embedded") == 1, result.stderr
    said = "3 records with a barcode that cannot be embedded: skipped, e.g. short"
    assert said in result.stderr and ": too short: 60 " in result.stderr
    assert len(read_embeddings(tmp_path / "e.h5")[0]) == 6

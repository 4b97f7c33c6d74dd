"""``clibd embed`` in chunks: two gloo processes write what one writes, and an interrupted run
carries on where it stopped (clibd_cli/embedding/shards.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clibd_cli.embedding import embeddings_file
from clibd_cli.embedding.embeddings_file import read_embeddings
from fixtures.specimens import copy_photos, run, write_fasta, write_taxonomy

CLIBD = str(Path(sys.executable).with_name("clibd"))


def inputs(barcode_refs, tmp_path) -> list[Path]:
    """56 barcodes (4 chunks of 16 at --batch-size 2) and 3 photos (a fifth chunk)."""
    copy_photos(tmp_path / "photos", ["p3", "p1", "p2"])
    return [barcode_refs.fasta, tmp_path / "photos"]


def test_two_processes_write_what_one_writes(barcode_refs, tiny_model, tmp_path):
    sources = inputs(barcode_refs, tmp_path)
    one = run("-q", "--threads", "1", "embed", "-m", tiny_model, "--batch-size", "2", *sources,
              "-o", tmp_path / "one.h5")
    assert one.exit_code == 0, one.stderr
    two = subprocess.run([CLIBD, "--device", "cpu", "--threads", "1", "embed", "--nproc-per-node", "2",
                          "-m", str(tiny_model), "--batch-size", "2", *map(str, sources),
                          "-o", str(tmp_path / "two.h5")], capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "59 embeddings written" in two.stderr and two.stderr.count("embeddings written") == 1
    ids, kinds, vectors, _ = read_embeddings(tmp_path / "one.h5")
    ids2, kinds2, vectors2, _ = read_embeddings(tmp_path / "two.h5")
    assert len(ids) == 59 and ids[-3:] == [str(tmp_path / "photos" / f"p{i}.jpg") for i in (1, 2, 3)]
    assert ids2 == ids and kinds2 == kinds and np.array_equal(vectors2, vectors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.h5", "photos", "two.h5"]  # no shards left


def test_an_interrupted_embedding_carries_on(barcode_refs, tiny_model, tmp_path, monkeypatch):
    sources = inputs(barcode_refs, tmp_path)
    args = ["--threads", "1", "embed", "-m", tiny_model, "--batch-size", "2", *sources]
    assert run(*args, "-o", tmp_path / "straight.h5").exit_code == 0
    calls = []
    real = embeddings_file._barcodes

    def interrupted_at_the_third(*a):
        calls.append(len(a[2]))
        if len(calls) == 3 and not resuming:
            raise RuntimeError("power cut")
        return real(*a)

    resuming = False
    monkeypatch.setattr(embeddings_file, "_barcodes", interrupted_at_the_third)
    out = tmp_path / "emb.h5"
    stopped = run(*args, "-o", out)
    assert stopped.exit_code == 1 and "power cut" in stopped.stderr
    assert "2 embedded chunks kept" in stopped.stderr and not out.exists()
    shards = tmp_path / "emb.h5.shards"
    assert sorted(p.name for p in shards.glob("chunk-*")) == ["chunk-000000.npz", "chunk-000001.npz"]
    (shards / "chunk-000001.npz").write_bytes(b"damaged")  # checked: embedded again

    calls.clear()
    resuming = True
    resumed = run(*args, "-o", out)
    assert resumed.exit_code == 0, resumed.stderr
    assert "1 chunk already embedded" in resumed.stderr and len(calls) == 3  # chunks 1, 2, 3
    ids, kinds, vectors, _ = read_embeddings(out)
    ids0, kinds0, vectors0, _ = read_embeddings(tmp_path / "straight.h5")
    assert ids == ids0 and kinds == kinds0 and np.array_equal(vectors, vectors0)
    assert not shards.exists()


def test_an_interrupted_embedding_of_standard_input_keeps_no_chunks(tiny_model, tmp_path, monkeypatch):
    """A rerun reads standard input afresh: the chunks of an interrupted run are of no use to it."""
    real = embeddings_file._barcodes
    calls = []

    def interrupted_at_the_second(*a):
        calls.append(a)
        if len(calls) == 2:
            raise RuntimeError("power cut")
        return real(*a)

    monkeypatch.setattr(embeddings_file, "_barcodes", interrupted_at_the_second)
    fasta = "".join(f">r{i}\n{'ACGGT' * 60}\n" for i in range(40))  # 3 chunks of 16 at --batch-size 2
    stopped = run("--threads", "1", "embed", "-m", tiny_model, "--batch-size", "2", "-", "-o", tmp_path / "e.h5",
                  input=fasta)
    assert stopped.exit_code == 1 and "power cut" in stopped.stderr and "kept" not in stopped.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_photo_rewritten_in_place_after_an_interruption_is_embedded_afresh(barcode_refs, tiny_model,
                                                                           tmp_path, monkeypatch):
    """p1.jpg replaced by another photo under its name between an interrupted run and its rerun: the
    rerun starts afresh (a folder was known by its photo paths alone: p1 got the old photo's vector)."""
    photos = tmp_path / "photos"
    copy_photos(photos, ["p1", "p2"])
    args = ["--threads", "1", "embed", "-m", tiny_model, "--batch-size", "2", photos, barcode_refs.fasta]

    def fail(*a):
        raise RuntimeError("power cut")

    monkeypatch.setattr(embeddings_file, "_barcodes", fail)  # after the photos' chunk is saved
    assert run(*args, "-o", tmp_path / "emb.h5").exit_code == 1 and (tmp_path / "emb.h5.shards").is_dir()
    monkeypatch.undo()
    copy_photos(photos, ["p1"], first=2)
    resumed = run(*args, "-o", tmp_path / "emb.h5")
    assert resumed.exit_code == 0 and "starting afresh" in resumed.stderr
    assert run(*args[:-1], "-o", tmp_path / "photos.h5").exit_code == 0
    assert np.array_equal(read_embeddings(tmp_path / "emb.h5")[2][:2], read_embeddings(tmp_path / "photos.h5")[2])


def test_an_index_build_resumed_after_a_photo_is_rewritten_in_place_embeds_it_afresh(tiny_model, tmp_path,
                                                                                    monkeypatch):
    """As for clibd embed: the chunks of photos an index build embedded before it failed are not
    reused once a photo is replaced under its name (they were known by their record ids alone)."""
    from clibd_cli.reference import hnsw_index
    from clibd_cli.reference.index_reading import load_index

    photos = tmp_path / "photos"
    copy_photos(photos, ["p1", "p2"])
    lineages = {p: {"order": "Diptera", "genus": f"G{p}", "species": f"G{p} s"} for p in ("p1", "p2")}
    taxonomy = write_taxonomy(tmp_path / "t.tsv", lineages)
    args = ["--threads", "1", "index", "-m", tiny_model, "--modality", "image", photos, "--taxonomy", taxonomy]

    def fail(*a, **k):
        raise RuntimeError("power cut")

    monkeypatch.setattr(hnsw_index, "build_index", fail)  # after the photos are embedded
    assert run(*args, "-o", tmp_path / "index").exit_code == 1 and (tmp_path / "index.shards").is_dir()
    monkeypatch.undo()
    copy_photos(photos, ["p1"], first=2)
    resumed = run(*args, "-o", tmp_path / "index")
    assert resumed.exit_code == 0 and "starting afresh" in resumed.stderr
    assert run(*args, "-o", tmp_path / "fresh").exit_code == 0
    assert np.array_equal(load_index(tmp_path / "index").vectors(), load_index(tmp_path / "fresh").vectors())


def test_an_index_build_resumes_from_another_folder_and_past_a_photo_it_does_not_use(tiny_model, tmp_path,
                                                                                     monkeypatch):
    """What identifies an index's photos is the photos it uses, by their paths within the folder: a
    rerun naming the folder by its absolute path, after a photo no taxonomy row names was added, carries
    on (it started afresh: the digest held the paths as given and every photo in the folder)."""
    from clibd_cli.reference import hnsw_index

    photos = tmp_path / "photos"
    copy_photos(photos, ["p1", "p2"])
    lineages = {p: {"order": "Diptera", "genus": f"G{p}", "species": f"G{p} s"} for p in ("p1", "p2")}
    taxonomy = write_taxonomy(tmp_path / "t.tsv", lineages)
    args = ["--threads", "1", "index", "-m", tiny_model, "--modality", "image", "--taxonomy", taxonomy,
            "-o", tmp_path / "index"]

    def fail(*a, **k):
        raise RuntimeError("power cut")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hnsw_index, "build_index", fail)  # after the photos are embedded
    assert run(*args, "photos").exit_code == 1 and (tmp_path / "index.shards").is_dir()
    monkeypatch.undo()
    copy_photos(photos, ["p3"], first=2)
    resumed = run(*args, photos)
    assert resumed.exit_code == 0 and "already embedded" in resumed.stderr and "afresh" not in resumed.stderr


@pytest.mark.parametrize("command, output", [("embed", "out.h5"), ("index", "index")])
def test_a_full_disk_as_the_output_is_written_keeps_the_embedded_chunks_and_says_so(command, output, barcode_refs,
                                                                                   tiny_model, tmp_path, monkeypatch):
    """Every record embedded, then the disk fills as the output is written: the chunks are kept for
    a rerun and the message says so (it named the full disk alone, and 'give another path' embeds anew)."""
    import errno

    from clibd_cli.reference import hnsw_index

    def full(*a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(*(embeddings_file.EmbeddingsWriter, "add") if command == "embed" else (hnsw_index, "write_records"),
                        full)
    refs = write_fasta(tmp_path / "refs.fasta", barcode_refs.records[:40])  # 3 chunks of 16 at --batch-size 2
    args = ["--threads", "1", command, "-m", tiny_model, "--batch-size", "2", refs, "-o", tmp_path / output]
    failed = run(*args)
    assert failed.exit_code == 1 and "cannot write (No space left on device)" in failed.stderr
    assert f"3 embedded chunks kept in {tmp_path / output}.shards: run the same command again" in failed.stderr
    monkeypatch.undo()
    again = run(*args)
    assert again.exit_code == 0 and "3 chunks already embedded" in again.stderr


def test_a_full_disk_as_an_embedding_of_standard_input_is_written_leaves_no_chunks(tiny_model, tmp_path,
                                                                                    monkeypatch):
    """A rerun reads standard input afresh: its chunks were left behind on the full disk, of no use."""
    import errno

    def full(*a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(embeddings_file.EmbeddingsWriter, "add", full)
    result = run("--threads", "1", "embed", "-m", tiny_model, "-", "-o", tmp_path / "e.h5", input=">a\nACGT\n")
    assert result.exit_code == 1 and "No space left" in result.stderr and "kept" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_shards_of_other_inputs_are_not_reused(barcode_refs, tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "emb.h5"

    def fail(*a):
        raise RuntimeError("power cut")

    args = ["embed", "-m", tiny_model, "--batch-size", "2", barcode_refs.fasta, tmp_path / "photos", "-o", out]
    copy_photos(tmp_path / "photos", ["p1"])
    monkeypatch.setattr(embeddings_file, "_photos", fail)
    assert run(*args).exit_code == 1 and (tmp_path / "emb.h5.shards").is_dir()
    monkeypatch.undo()
    again = run(*args[:4], "3", *args[5:])  # another --batch-size: other chunks
    assert again.exit_code == 0 and "starting afresh" in again.stderr
    assert len(read_embeddings(out)[0]) == 57


def test_index_built_by_two_processes_is_the_one_of_one(barcode_refs, tiny_model, tmp_path):
    """References and --calibrate-on queries embedded by two gloo processes, chunks of 16 records."""
    from clibd_cli.reference.index_reading import load_index

    refs = write_fasta(tmp_path / "refs.fasta", barcode_refs.records[:40])
    held_out = write_fasta(tmp_path / "held_out.fasta", barcode_refs.records[40:])
    args = ["-m", str(tiny_model), "-k", "5", "--batch-size", "2", str(refs), "--calibrate-on", str(held_out)]
    one = run("-q", "--threads", "1", "index", *args, "-o", tmp_path / "one")
    assert one.exit_code == 0, one.stderr
    two = subprocess.run([CLIBD, "-q", "--device", "cpu", "--threads", "1", "index", "--nproc-per-node=2", *args,
                          "-o", str(tmp_path / "two")], capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = load_index(tmp_path / "one"), load_index(tmp_path / "two")
    assert a.ids == b.ids and len(a) == 40 and np.array_equal(a.vectors(), b.vectors())
    assert a.calibration == b.calibration and np.array_equal(a.holdings, b.holdings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["held_out.fasta", "one", "refs.fasta", "two"]


def test_standard_input_is_for_one_process(tiny_model, tmp_path):
    result = run("embed", "--nproc-per-node", "2", "-m", tiny_model, "-", "-o", tmp_path / "e.h5", input=">a\nACGT\n")
    assert result.exit_code == 2 and "one process only" in result.stderr


def test_a_changed_input_file_or_photo_folder_is_not_taken_for_the_one_embedded(tmp_path):
    """A resumed run reuses chunks only of the same inputs: a file rewritten at the same size (its
    mtime) and a photo folder with another photo in it describe themselves otherwise."""
    from clibd_cli.embedding.shards import describe_inputs

    fasta = tmp_path / "a.fasta"
    fasta.write_text(">a\nACGT\n")
    copy_photos(tmp_path / "photos", ["p1"])
    before = describe_inputs([fasta, tmp_path / "photos"])
    fasta.write_text(">a\nTGCA\n")
    os.utime(fasta, ns=(1, 1))
    assert describe_inputs([fasta])[0] != before[0]
    copy_photos(tmp_path / "photos", ["p2"])
    assert describe_inputs([tmp_path / "photos"])[0] != before[1]


def test_processes_that_saw_different_inputs_are_an_error(tmp_path, monkeypatch):
    """Rank 0 of 2 embeds chunks 0 and 2; the other rank's report decides whether the run is whole."""
    from clibd_cli import distributed
    from clibd_cli.embedding import shards
    from models.errors import ClibdError

    world = distributed.World(rank=0, size=2, launched=True)
    chunks = [lambda n=n: {"v": np.full(2, n)} for n in range(4)]

    def other_rank_reports(report):
        monkeypatch.setattr(distributed, "gather_objects", lambda obj, _: [obj, report if obj else None])

    other_rank_reports((4, {1: "x", 3: "y"}))
    files = shards.embed_chunks(chunks, tmp_path / "s", {"inputs": []}, world)
    assert [path.name for path, _ in files] == [f"chunk-00000{n}.npz" for n in range(4)]
    for report in ((5, {1: "x", 3: "y"}), (4, {1: "x"})):
        other_rank_reports(report)
        with pytest.raises(ClibdError, match="saw different inputs"):
            shards.embed_chunks(chunks, tmp_path / "s", {"inputs": []}, world)


def test_a_chunk_recorded_after_a_torn_line_is_found_on_the_next_resume(tmp_path):
    """A kill can leave the last line of ``done-rank-R.jsonl`` half-written, without its newline;
    the next run's first record must start a line of its own, or it is lost (and its chunk embedded
    again on a later resume)."""
    from clibd_cli import distributed
    from clibd_cli.embedding import shards

    (tmp_path / "done-rank-0.jsonl").write_text('{"chunk": 0, "file": "chunk-000000.npz", "sha')
    chunks = [lambda: {"vectors": np.ones((2, 3), np.float32)} for _ in range(2)]
    total, mine = shards._embed_mine(chunks, tmp_path, distributed.World(), None)
    assert total == 2 and shards._done(tmp_path) == mine and sorted(mine) == [0, 1]

"""The reference index directory: build, search, save/load, append, integrity checks."""

import json

import numpy as np
import pytest

from clibd_cli.reference.hnsw_index import build_index
from clibd_cli.reference.index_info import describe_index
from clibd_cli.reference.index_reading import load_index
from clibd_cli.reference.search import exact_search, top_k
from models.errors import ClibdError

FINGERPRINT = "ab" * 32


def unit(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def small_index(n: int = 60, dim: int = 16):
    vectors = unit(n, dim)
    vectors[n - 5 :] = vectors[:5]  # duplicated barcodes embed identically
    ids = [f"rec{i}" for i in range(n)]
    labels = {
        "genus": [f"G{i % 3}" for i in range(n)],
        "species": [None if i % 4 == 0 else f"G{i % 3} sp{i % 6}" for i in range(n)],
    }
    index = build_index(vectors, ids, labels, model_fingerprint=FINGERPRINT, modality="dna", M=8,
                        ef_construction=50, ef=20, seed=1)
    return index, vectors


def test_search_returns_sorted_records_including_shared_vectors():
    index, vectors = small_index()
    assert index.manifest["nodes"] == 55 and len(index) == 60
    rows, sims = index.search(vectors[:3], 4)
    assert rows.dtype == np.int64 and sims.dtype == np.float32 and rows.shape == (3, 4)
    assert np.all(np.diff(sims, axis=1) <= 1e-6)
    assert set(rows[0, :2]) == {0, 55}  # record 0 and its duplicate, both at similarity 1
    assert sims[0, :2] == pytest.approx([1.0, 1.0], abs=1e-5)
    exact_rows, exact_sims = index.search(vectors[:3], 4, exact=True)
    assert np.allclose(exact_sims, sims, atol=1e-5)


def test_top_k_on_threads_picks_what_one_thread_picks(monkeypatch):
    """``clibd --threads 2 index`` picks the pseudo-queries' neighbours on two threads, a block of
    rows at a time: the same columns as one partition of all the rows, ties included (rows of many
    equal scores, as duplicate barcodes give)."""
    from clibd_cli.reference import search

    scores = np.round(np.random.default_rng(0).random((37, 500)), 2).astype(np.float32)
    top = np.argpartition(-scores, 9, axis=1)[:, :10]  # the whole at once, as before blocks
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    one = np.take_along_axis(top, order, axis=1)
    assert np.array_equal(top_k(scores, 10)[0], one)
    for rows_at_once in (1, 4, 36):
        monkeypatch.setattr(search, "PARTITIONED", rows_at_once * scores.shape[1])
        for threads in (1, 2, 3, 40):
            rows, sims = top_k(scores, 10, threads)
            assert np.array_equal(rows, one) and np.array_equal(sims, np.take_along_axis(scores, one, axis=1))


def test_k_larger_than_reference_is_clamped():
    index, vectors = small_index(n=8)
    rows, sims = index.search(vectors[:2], 50)
    assert rows.shape == (2, 8)
    assert sorted(rows[0]) == list(range(8))


def test_hnsw_recall_against_exact_on_random_data():
    ref, queries = unit(3000, 32, seed=2), unit(200, 32, seed=3)
    index = build_index(ref, [str(i) for i in range(3000)], {"species": ["x"] * 3000},
                        model_fingerprint=FINGERPRINT, modality="dna", M=16, ef_construction=100, ef=64)
    rows, _ = index.search(queries, 10)
    truth, _ = exact_search(ref, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, truth)])
    assert recall >= 0.95


def test_exact_search_of_more_neighbours_than_records_returns_them_all():
    ref = np.eye(3, dtype=np.float32)
    rows, sims = exact_search(ref, ref[:1], 5)
    assert rows.tolist() == [[0, 1, 2]] and sims[0, 0] == 1.0


def test_exact_search_in_blocks_answers_every_query(monkeypatch):
    """Queries go through :func:`exact_search` ``BLOCK`` at a time: every query of every block,
    the last one short, gets its own neighbours."""
    from clibd_cli.reference import search

    ref = unit(20, seed=4)
    monkeypatch.setattr(search, "BLOCK", 2)
    rows, sims = exact_search(ref, ref[:7], 3)
    assert rows[:, 0].tolist() == list(range(7)) and np.allclose(sims[:, 0], 1.0, atol=1e-5)
    assert np.allclose(sims, np.take_along_axis(ref[:7] @ ref.T, rows, axis=1), atol=1e-6)


def test_search_falls_back_when_hnsw_cannot_return_k_results():
    index, vectors = small_index()

    class Flaky:  # hnswlib raises RuntimeError when the graph cannot yield k results
        def __init__(self, graph):
            self.graph, self.calls = graph, 0

        def knn_query(self, *args, **kwargs):
            self.calls += 1
            raise RuntimeError("Cannot return the results in a contiguous 2D array")

        def __getattr__(self, name):
            return getattr(self.graph, name)

    index.graph = Flaky(index.graph)
    rows, sims = index.search(vectors[:2], 5)
    exact_rows, _ = index.search(vectors[:2], 5, exact=True)
    assert index.graph.calls >= 2  # retried with a wider ef before going exact
    assert np.array_equal(rows, exact_rows)


def test_save_load_round_trip_with_manifest_and_calibration(tmp_path):
    index, vectors = small_index()
    index.calibration = {"format": "test", "k": 5}
    index.save(tmp_path / "ref")
    files = sorted(p.name for p in (tmp_path / "ref").iterdir())
    assert files == ["calibration.json", "index.bin", "manifest.json", "nodes.npy", "records.tsv"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left
    manifest = json.loads((tmp_path / "ref" / "manifest.json").read_text())
    for key in ("format_version", "clibd_version", "model_fingerprint", "modality", "dim", "metric",
                "hnsw", "count", "ranks", "sha256", "command", "created"):
        assert key in manifest
    assert set(manifest["sha256"]) == {"index.bin", "nodes.npy", "records.tsv", "calibration.json"}
    header = (tmp_path / "ref" / "records.tsv").read_text().splitlines()[:2]
    assert header == ["id\tgenus\tspecies", "rec0\tG0\t"]

    loaded = load_index(tmp_path / "ref", model_fingerprint=FINGERPRINT)
    assert loaded.ids == index.ids and loaded.labels == index.labels
    assert loaded.labels["species"][0] is None
    assert loaded.calibration == {"format": "test", "k": 5}
    before, after = index.search(vectors[:5], 3, exact=True), loaded.search(vectors[:5], 3, exact=True)
    assert np.array_equal(before[0], after[0])
    assert "60 records" in describe_index(loaded) and "genus: 60 records, 3 labels" in describe_index(loaded)


@pytest.mark.parametrize("name", ["index.bin", "records.tsv", "calibration.json"])
def test_corrupted_file_is_named(tmp_path, name):
    index, _ = small_index()
    index.calibration = {"k": 5}
    index.save(tmp_path / "coi_ref")
    target = tmp_path / "coi_ref" / name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ClibdError, match=rf"coi_ref/{name}: checksum mismatch .*rebuild with clibd index"):
        load_index(tmp_path / "coi_ref")
    if name == "calibration.json":  # without the check, the damage is still reported clearly
        with pytest.raises(ClibdError, match="coi_ref/calibration.json: unreadable"):
            load_index(tmp_path / "coi_ref", verify=False)


def test_missing_files_and_foreign_directories(tmp_path):
    with pytest.raises(ClibdError, match="not a clibd index"):
        load_index(tmp_path)
    index, _ = small_index()
    index.save(tmp_path / "ref")
    (tmp_path / "ref" / "nodes.npy").unlink()
    with pytest.raises(ClibdError, match="nodes.npy: missing"):
        load_index(tmp_path / "ref")


@pytest.mark.parametrize("node, message", [(-1, "expected one graph node number"), (None, "disagree on")])
def test_a_record_at_no_graph_node_is_refused(tmp_path, node, message):
    """A record pointing before the first node or past the last (a hand-edited or damaged
    nodes.npy, read without the checksums) is refused, not read as another record's vector."""
    index, _ = small_index()
    index.save(tmp_path / "ref")
    nodes = index.nodes.copy()
    nodes[3] = index.graph.get_current_count() if node is None else node
    np.save(tmp_path / "ref" / "nodes.npy", nodes, allow_pickle=False)
    with pytest.raises(ClibdError, match=f"{message}.*rebuild with clibd index"):
        load_index(tmp_path / "ref", verify=False)


def test_records_and_nodes_of_different_lengths_are_refused(tmp_path):
    """A records.tsv one record short (read without the checksums) would label every record after
    it with its neighbour's labels."""
    index, _ = small_index()
    index.save(tmp_path / "ref")
    records = tmp_path / "ref" / "records.tsv"
    lines = records.read_text().splitlines(keepends=True)
    records.write_text("".join(lines[:5] + lines[6:]))
    with pytest.raises(ClibdError, match="disagree on the number of records.*rebuild with clibd index"):
        load_index(tmp_path / "ref", verify=False)


def test_an_index_of_another_format_version_is_refused(tmp_path):
    index, _ = small_index()
    index.save(tmp_path / "ref")
    manifest = json.loads((tmp_path / "ref" / "manifest.json").read_text())
    manifest["format_version"] += 1  # written by a later clibd
    (tmp_path / "ref" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ClibdError, match=r"index format 2 is not supported \(this clibd reads format 1\)"):
        load_index(tmp_path / "ref")


def test_model_fingerprint_mismatch_is_refused(tmp_path):
    index, _ = small_index()
    index.save(tmp_path / "ref")
    message = r"index was built with model abababababab but the model given is cdcdcdcdcdcd"
    with pytest.raises(ClibdError, match=message):
        load_index(tmp_path / "ref", model_fingerprint="cd" * 32)


def test_an_index_whose_model_folder_was_trained_again_says_so(tmp_path):
    """classify without --model loads the folder the index names: when a training run replaced the model
    there, it said "but the model given is" the same folder; it says the folder holds another model now."""
    index, _ = small_index()
    index.manifest["model"] = str(tmp_path / "run" / "best")
    retrained = (r"built with model .*/run/best \(fingerprint abababababab\), and that folder now holds "
                 r"another one \(fingerprint cdcdcdcdcdcd\): trained again")
    with pytest.raises(ClibdError, match=retrained):
        index.check_model("cd" * 32, str(tmp_path / "run" / "best"))
    with pytest.raises(ClibdError, match=r"but the model given is other \(fingerprint cdcdcdcdcdcd\)"):
        index.check_model("cd" * 32, "other")


def test_append_grows_the_index_without_rebuilding(tmp_path):
    index, vectors = small_index()
    index.save(tmp_path / "ref")
    loaded = load_index(tmp_path / "ref")
    new = unit(4, seed=9)
    new[3] = vectors[7]  # identical to an existing record: shares its node
    loaded.append(new, ["n0", "n1", "n2", "n3"], {"genus": ["G9"] * 4})
    assert len(loaded) == 64 and loaded.manifest["nodes"] == 58
    assert loaded.labels["species"][-1] is None
    rows, sims = loaded.search(new[:3], 1)
    assert [loaded.ids[r] for r in rows[:, 0]] == ["n0", "n1", "n2"]
    assert {loaded.ids[r] for r in loaded.search(vectors[7:8], 2)[0][0]} == {"rec7", "n3"}
    loaded.save(tmp_path / "ref")
    again = load_index(tmp_path / "ref")
    assert again.manifest["count"] == 64 and again.ids[-4:] == ["n0", "n1", "n2", "n3"]
    assert "Appended 4 records" in describe_index(again)
    with pytest.raises(ClibdError, match="new and unique"):
        again.append(new[:1], ["rec0"], {"genus": ["G1"]})


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ClibdError, match="2 vectors but 1 record id$"):
        build_index(unit(2), ["a"], {"genus": ["x", "y"]}, model_fingerprint="f", modality="dna")
    with pytest.raises(ClibdError, match="unique"):
        build_index(unit(2), ["a", "a"], {"genus": ["x", "y"]}, model_fingerprint="f", modality="dna")
    with pytest.raises(ClibdError, match="tab"):
        build_index(unit(2), ["a", "b"], {"genus": ["x\ty", "y"]}, model_fingerprint="f", modality="dna")
    index, _ = small_index()
    with pytest.raises(ClibdError, match=r"expected a \[N, 16\] array"):
        index.search(unit(2, dim=8), 3)


def _stored_vectors(path, dim: int):
    """The vectors of an hnswlib file in label order, through the mapped view; None if not laid out as expected."""
    from clibd_cli.reference.hnsw_file import stored_view

    found = stored_view(path, dim)
    return None if found is None else np.ascontiguousarray(found[0][found[1]])


def test_stored_vectors_are_read_from_the_file_as_hnswlib_holds_them(tmp_path):
    """``node_vectors`` reads index.bin's level-0 block (hnswlib's get_items copies one item at
    a time); the same vectors in the same order, and hnswlib's answer when the file is not as
    expected or the graph has grown since it was saved."""
    index, vectors = small_index()
    index.save(tmp_path / "ref")
    loaded = load_index(tmp_path / "ref")
    graph = loaded.graph
    expected = graph.get_items(np.arange(graph.get_current_count()), return_type="numpy")
    stored = _stored_vectors(tmp_path / "ref" / "index.bin", loaded.manifest["dim"])
    assert stored.dtype == np.float32 and np.array_equal(stored, expected)
    assert np.array_equal(loaded.node_vectors(), expected)
    assert _stored_vectors(tmp_path / "ref" / "index.bin", 8) is None  # not this dimension
    (tmp_path / "cut.bin").write_bytes((tmp_path / "ref" / "index.bin").read_bytes()[:500])
    assert _stored_vectors(tmp_path / "cut.bin", 16) is None
    view, element = loaded.vector_view()  # mapped from the file, not copied
    assert not view.flags.owndata and not view.flags.writeable and np.array_equal(view[element], expected)
    loaded.append(unit(3, seed=9), ["new0", "new1", "new2"], {"genus": ["G9"] * 3, "species": [None] * 3})
    assert np.array_equal(loaded.node_vectors()[-3:], unit(3, seed=9))
    view, element = loaded.vector_view()  # the graph grew since the file was saved: its own vectors
    assert np.array_equal(view[element][-3:], unit(3, seed=9))


@pytest.mark.parametrize("block", [1 << 26, 1, 300])  # labels read in one block, or element by element, or 2-3 at a time
def test_a_stored_view_maps_labels_added_out_of_order(tmp_path, monkeypatch, block):
    """hnswlib stores items in the order threads add them; label ``i`` is ``view[element[i]]``."""
    import hnswlib

    from clibd_cli.reference import hnsw_file
    from clibd_cli.reference.hnsw_file import stored_view

    monkeypatch.setattr(hnsw_file, "_LABEL_BLOCK", block)

    vectors = unit(6, dim=8)
    graph = hnswlib.Index(space="cosine", dim=8)
    graph.init_index(max_elements=6, M=4, ef_construction=10, random_seed=0)
    graph.add_items(vectors[::-1], np.arange(6)[::-1], num_threads=1)
    graph.save_index(str(tmp_path / "index.bin"))
    view, element = stored_view(tmp_path / "index.bin", 8)
    assert element.tolist() == [5, 4, 3, 2, 1, 0]
    expected = graph.get_items(np.arange(6), return_type="numpy")
    assert np.array_equal(view[element], expected) and np.array_equal(_stored_vectors(tmp_path / "index.bin", 8), expected)


def test_an_index_file_cut_short_by_a_full_disk_fails_the_save_and_keeps_the_old_index(tmp_path):
    """hnswlib writes index.bin without checking its writes: under a full disk `clibd index`
    exited 0, its checksums made on the cut file, the previous index replaced by an unreadable one."""
    import os

    from clibd_cli.reference.hnsw_file import stored_whole

    index, _ = small_index()
    index.save(tmp_path / "ref")
    whole = tmp_path / "ref" / "index.bin"
    assert stored_whole(whole)
    data = whole.read_bytes()
    for cut in (data[:96], data[:len(data) // 2], data[:-1], data + b"\0"):
        (tmp_path / "cut.bin").write_bytes(cut)
        assert not stored_whole(tmp_path / "cut.bin")

    class CutShort:  # hnswlib's save, with the disk full before its last byte
        def __init__(self, graph):
            self.graph = graph

        def save_index(self, path):
            self.graph.save_index(path)
            os.truncate(path, os.path.getsize(path) - 1)

    other, _ = small_index(n=80)
    other.graph = CutShort(other.graph)
    with pytest.raises(ClibdError, match=r"ref: cannot write \(index\.bin cut short: no space left on the disk\?\)"):
        other.save(tmp_path / "ref")
    assert len(load_index(tmp_path / "ref")) == 60 and sorted(p.name for p in tmp_path.iterdir()) == ["cut.bin", "ref"]


def test_an_index_replaced_while_it_is_read_is_read_again_whole(tmp_path, monkeypatch):
    """A classify that opened the index as `clibd index -o` replaced it read the manifest of one
    version and the files of the other ('checksum mismatch (corrupted or modified)')."""
    import clibd_cli.reference.index_reading as index_reading

    first, _ = small_index()
    first.save(tmp_path / "ref")
    second, _ = small_index(n=80)
    read_records = index_reading.read_records
    replaced = []

    def replaced_while_reading(*args, **kwargs):
        if not replaced:  # the rebuild lands between the manifest and the records
            second.save(tmp_path / "ref")
            replaced.append(True)
        return read_records(*args, **kwargs)

    monkeypatch.setattr(index_reading, "read_records", replaced_while_reading)
    loaded = load_index(tmp_path / "ref")
    assert replaced and len(loaded) == 80 and loaded.manifest["count"] == 80
    assert np.array_equal(loaded.node_vectors(), second.node_vectors())


_SAVES = """
import sys
from clibd_cli.reference.index_reading import load_index
versions = [load_index(path) for path in sys.argv[2:4]]
for i in range(int(sys.argv[4])):
    versions[i % 2].save(sys.argv[1])
"""


def test_readers_never_miss_an_index_that_is_being_replaced(tmp_path):
    """The directory was moved aside, then the new one moved in: a reader in between found no
    index ('not a clibd index directory'). Now the two are exchanged in one step (renameat2)."""
    import os
    import subprocess
    import sys

    for name, n in (("a", 60), ("b", 80)):
        small_index(n=n)[0].save(tmp_path / name)
    small_index()[0].save(tmp_path / "ref")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.Popen([sys.executable, "-c", _SAVES, str(tmp_path / "ref"), str(tmp_path / "a"),
                               str(tmp_path / "b"), "300"], env=env)
    failures, reads = [], 0
    while writer.poll() is None:
        try:
            assert len(load_index(tmp_path / "ref")) in (60, 80)
            reads += 1
        except ClibdError as exc:
            failures.append(str(exc))
    assert writer.returncode == 0 and reads > 0
    assert failures == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "ref"]

"""The embeddings HDF5 written by ``clibd embed``: ids, modality per record, vectors, provenance;
and embedding the inputs into it, resumably and across processes (``shards.py``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from clibd_cli import __version__
from clibd_cli.embedding.embedder import Embedder, batched
from clibd_cli.embedding.shards import (CHUNK_BATCHES, Part, describe_inputs, discard, embed_chunks, kept_on_failure,
                                        read_chunks, shards_folder)
from clibd_cli.io.hdf5_files import HDF5Output
from clibd_cli.io.images import IMAGE_SUFFIXES, find_images, load_image, load_photos
from clibd_cli.io.outputs import writer_lock
from clibd_cli.io.repeated_ids import RepeatedIds
from clibd_cli.io.sequences import checked_barcode
from clibd_cli.io.streams import is_hdf5
from models.config import RANKS, is_missing_label
from models.errors import ClibdError

if TYPE_CHECKING:
    from clibd_cli.distributed import World

log = logging.getLogger("clibd")

UNEMBEDDED = {"dna": "with a barcode that cannot be embedded: skipped",  # a dataset's records, warned about once
              "text": "labelled at no rank: skipped"}


class EmbeddingsWriter:
    """Append batches of embeddings to a new HDF5 file that appears only when complete."""

    def __init__(self, path: Path, model, model_spec: str, command: str):
        self.path, self.count = Path(path), 0
        self._attrs = {"model_fingerprint": model.fingerprint(), "model": str(Path(model_spec).resolve())
                       if Path(model_spec).exists() else model_spec, "embed_dim": model.embed_dim,
                       "clibd_version": __version__, "command": command}
        self._dim = model.embed_dim

    def __enter__(self) -> EmbeddingsWriter:
        self._output = HDF5Output(self.path)
        self._file = self._output.file
        self._file.attrs.update(self._attrs)
        text = h5py.string_dtype()
        self._ids = self._file.create_dataset("ids", (0,), dtype=text, maxshape=(None,), chunks=(4096,))
        self._kinds = self._file.create_dataset("modality", (0,), dtype=text, maxshape=(None,),
                                                chunks=(4096,))
        self._vectors = self._file.create_dataset("vectors", (0, self._dim), dtype="f4",
                                                  maxshape=(None, self._dim),
                                                  chunks=(1024, self._dim))
        return self

    def add(self, ids: Sequence[str], kinds: Sequence[str], vectors: np.ndarray) -> None:
        n = len(ids)
        with self._output.writing():
            for dataset, values in ((self._ids, ids), (self._kinds, kinds), (self._vectors, vectors)):
                dataset.resize(self.count + n, axis=0)
                dataset[self.count:] = values
        self.count += n

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self._output.close()
        else:
            self._output.abort(exc)


def read_embeddings(path: str | Path) -> tuple[list[str], list[str], np.ndarray, dict]:
    """``(ids, modality per record, vectors [N, D] float32, attributes)`` of an embeddings file."""
    with h5py.File(path, "r") as f:
        return ([s.decode() for s in f["ids"][:]], [s.decode() for s in f["modality"][:]],
                f["vectors"][:].astype(np.float32), dict(f.attrs))


def input_modality(source: str, dataset_modality: str) -> str:
    """What an input holds: a dataset HDF5 (embedded as ``dataset_modality``), photos, or barcodes."""
    path = Path(source)
    if is_hdf5(source):
        return dataset_modality
    if source != "-" and (path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES):
        return "image"
    return "dna"


def embed_to_file(embedder: Embedder, inputs: Sequence[str], splits: Sequence[str], dataset_modality: str,
                  output: Path, model_spec: str, command: str, world: World, progress: bool = False) -> int:
    """Embed the inputs into ``output`` (process 0 writes it; every process embeds its share of the
    chunks, see ``clibd_cli/embedding/shards.py``); the number of embeddings written (0 elsewhere).
    Embeddings repeating an earlier id are written too, and counted in one warning (``RepeatedIds.report``).
    A dataset's records that cannot be embedded are counted in one warning too, whichever process
    embedded their chunks (``Problems.report``, ``clibd_cli/data/build.py``).
    A second clibd writing the same output waits for the first: they would share its chunks."""
    from clibd_cli.data.build import Problems

    if "-" in inputs and world.enabled:
        raise ClibdError("standard input can be read by one process only; embed a file with --nproc-per-node")
    size = embedder.batch_size * CHUNK_BATCHES
    folder = shards_folder(output)
    with writer_lock(output) if world.is_main else nullcontext():
        fingerprint = {"command": "embed", "inputs": describe_inputs(inputs), "splits": list(splits),
                       "modality": dataset_modality, "model": embedder.model.fingerprint(),
                       "precision": embedder.precision, "chunk_records": size}
        files = embed_chunks(input_chunks(embedder, inputs, splits, dataset_modality, size), folder, fingerprint,
                             world, progress)
        if not world.is_main:
            return 0
        skipped = 0
        repeated, unembedded = RepeatedIds(), Problems()
        with kept_on_failure(folder, "-" not in inputs), \
                EmbeddingsWriter(output, embedder.model, model_spec, command) as writer:
            for part in read_chunks(files):
                ids = part["ids"].tolist()
                for row, record_id in enumerate(ids, writer.count):
                    repeated.add(record_id, f"{output}: ids[{row}]")
                writer.add(ids, part["modality"].tolist(), part["vectors"])
                skipped += int(part.get("skipped", 0))  # chunks saved before it counted none
                for example in part.get("unembedded", ()):  # nor named their records
                    unembedded.add(dataset_modality, str(example))
            unembedded.report(dataset_modality, "record", UNEMBEDDED.get(dataset_modality, "skipped"))
            # raised inside: the temporary file is dropped, not put in place; a dataset's records without
            # photos are no error (an empty file of photo embeddings), an empty FASTA or photo list is
            if not writer.count and (skipped or not any(map(is_hdf5, inputs))):
                discard(folder)
                raise ClibdError(nothing_usable(inputs, skipped=bool(skipped)))
        discard(folder)
    repeated.report("embedding", f"each has its own row, so ids in {output} are not unique (a join on id "
                                 "pairs each with every row of that id)")
    return writer.count


def nothing_usable(inputs: Sequence[str | Path], skipped: bool = True) -> str:
    """The error when every record of ``inputs`` was ``skipped`` as unusable, or there was none."""
    why = "the records skipped are named above" if skipped else "no record read"
    return f"no usable record in {', '.join(map(str, inputs))} ({why}); nothing written"


def input_chunks(embedder: Embedder, inputs: Sequence[str], splits: Sequence[str], dataset_modality: str,
                 size: int) -> Iterator[Callable[[], Part]]:
    """Each input in turn (dataset HDF5s, photo files/folders, FASTA/FASTQ) cut into chunks of at
    most ``size`` records: functions that embed their chunk. Reading is cheap, embedding is the
    work: a process calls only the functions of its own chunks."""
    from clibd_cli.io.sequences import read_sequences
    from clibd_cli.io.streams import display_name

    for source in inputs:
        if is_hdf5(source):
            yield from _dataset(embedder, source, splits, dataset_modality, size)
        elif input_modality(source, dataset_modality) == "image":
            for paths in batched(find_images([source]), size):
                yield partial(_photos, embedder, [(str(p), partial(load_image, p)) for p in paths])
        else:
            for records in batched(read_sequences(source), size):
                yield partial(_barcodes, embedder, display_name(source), records)


def _part(ids: Sequence[str], modality: str, vectors: np.ndarray, skipped: int,
          unembedded: Sequence[str] = ()) -> Part:
    """A chunk's embeddings, how many of its records were skipped as unusable, and (of a dataset,
    whose skipped records are warned about once per run) which: ``ID: why``, or ``ID``."""
    return {"ids": np.asarray(ids, dtype=str), "modality": np.asarray([modality] * len(ids), dtype=str),
            "vectors": vectors, "skipped": np.asarray(skipped),
            "unembedded": np.asarray(unembedded, dtype=str)}


def _encode(encode: Callable[[list], np.ndarray], items: list, embedder: Embedder) -> np.ndarray:
    """``encode(items)``, or no rows when there is nothing to encode."""
    return encode(items) if items else np.empty((0, embedder.model.embed_dim), np.float32)


def _barcodes(embedder: Embedder, name: str, records: list) -> Part:
    usable = []
    for record in records:
        record.seq, problem = checked_barcode(record.seq)
        if problem:
            log.warning("%s:%d: %s: skipped: %s", name, record.line, record.id, problem)
        else:
            usable.append(record)
    return _part([r.id for r in usable], "dna", _encode(embedder.barcodes, [r.seq for r in usable], embedder),
                 len(records) - len(usable))


def _photos(embedder: Embedder, loaders: list) -> Part:
    """Embeddings of the photos that load, a model batch at a time: each is shrunk to the model's
    input once decoded, and even shrunk, photos are large."""
    ids: list[str] = []
    vectors = [_encode(embedder.images, [], embedder)]
    for batch in batched(loaders, embedder.batch_size):
        loaded, pixels = load_photos(batch, embedder.pixels, skipped="skipped")
        if pixels:
            ids += loaded
            vectors.append(embedder.images(pixels))
    return _part(ids, "image", np.concatenate(vectors), len(loaders) - len(ids))


def _dataset(embedder: Embedder, source: str, splits: Sequence[str], modality: str,
             size: int) -> Iterator[Callable[[], Part]]:
    from clibd_cli.data.store import open_dataset

    with open_dataset(source) as dataset:
        part = dataset.splits_union(splits)
        ids = part.ids()
        photo_sizes = part.image_sizes if modality == "image" else None
        for start in range(0, len(part), size):
            stop = min(start + size, len(part))
            if modality == "image":
                yield partial(_photos, embedder, [(ids[i], partial(_stored_photo, part, i, f"{source}:{ids[i]}"))
                                                  for i in range(start, stop) if photo_sizes[i]])
            else:
                yield partial(_records, embedder, part, modality, ids[start:stop], start, stop)


def _stored_photo(part, row: int, name: str):
    return load_image(part.image_bytes(row), name)


def _records(embedder: Embedder, part, modality: str, ids: list[str], start: int, stop: int) -> Part:
    """Rows ``start:stop`` of a dataset: their label strings or usable barcodes, embedded."""
    if modality == "text":  # a record labelled at no rank has no text to embed
        lineages = [dict(zip(RANKS, values)) for values in zip(*[part.column(rank, start, stop) for rank in RANKS])]
        keep = [j for j, lineage in enumerate(lineages) if not all(map(is_missing_label, lineage.values()))]
        skipped = sorted(set(range(len(lineages))) - set(keep))
        labels = [embedder.model.label_string(lineages[j]) for j in keep]
        return _part([ids[j] for j in keep], "text", _encode(embedder.labels, labels, embedder), len(skipped),
                     [ids[j] for j in skipped])
    barcodes = part.column("barcode", start, stop)
    checked = [checked_barcode(b) for b in barcodes]
    keep = [j for j, (_, problem) in enumerate(checked) if not problem]
    # named (prepare keeps barcodes under 100 bases, once left out without a word), in one warning per run
    unembedded = [f"{ids[j]}: {problem}" for j, (_, problem) in enumerate(checked) if problem]
    return _part([ids[j] for j in keep], "dna", _encode(embedder.barcodes, [checked[j][0] for j in keep], embedder),
                 len(checked) - len(keep), unembedded)
